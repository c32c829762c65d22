"""Structured output from the bundled local model, with and without grammar-constrained decoding.

120 extraction prompts over 12 schemas (nested objects, enums, arrays, optional fields, numbers,
``anyOf``, a nullable enum), each written from a gold object drawn with a fixed seed ("Extract: Alice is 31 and
lives in Paris." -> ``{"name": "Alice", "age": 31, "city": "Paris"}``), and 24 tool-call prompts
over three tools. Each prompt runs twice, one after the other so load changes hit both runs alike:

- constrained: ``response_format`` json_schema (the grammar of :mod:`plait.local_models.llm.constrained`);
- free: the same instructions in the system message (what plait did before), parsed leniently.

Figures: ``valid_rate`` (parses and validates; constrained), ``unconstrained_valid_rate``,
``tool_call_rate_required`` (tool_choice="required": a call with valid arguments),
``constrained_tok_s`` / ``free_tok_s`` (decode speed: streamed tokens after the first over the
time after it, so the prompt's prefill is left out), ``speed_ratio`` (constrained / free),
``*_e2e_tok_s`` (completion tokens over whole-request time, prefill included: this favours
longer answers), ``constraint_ms_per_token`` and ``constraint_share`` (time in the grammar's
mask, forced tokens and budget checks, per answer token and as a share of the constrained
requests' time: these hardly move with the machine's load), ``tokens_per_model_step`` (answer
tokens over model forward passes, prefill included: forced tokens share a step), ``field_accuracy`` (gold leaf values matched, over the constrained answers;
strings compared case-insensitively, lists as sets). Greedy decoding. Timings on a shared
machine are noisy; both modes run back to back on each prompt, alternating which goes first.

    nice python benchmarks/structured_local.py [--per-schema 10]

The grammar engines themselves are compared by ``benchmarks/structured_engines.py``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plait import prompted_tools as pt  # noqa: E402
from plait.messages import SystemMessage, UserMessage  # noqa: E402
from plait.parsers import OutputParserError, parse_json  # noqa: E402


# --- schemas ---------------------------------------------------------------------------------------
class Person(BaseModel):
    name: str
    age: int
    city: str


class Currency(StrEnum):
    USD = "USD"
    EUR = "EUR"
    GBP = "GBP"


class Product(BaseModel):
    name: str
    price: float
    currency: Currency
    in_stock: bool


class Place(BaseModel):
    city: str
    country: str


class Event(BaseModel):
    title: str
    year: int
    place: Place


class Item(BaseModel):
    name: str
    quantity: int


class Order(BaseModel):
    customer: str
    items: list[Item]


class Contact(BaseModel):
    name: str
    email: str | None = None
    phone: str | None = None


class Movie(BaseModel):
    title: str
    year: int
    genre: Literal["drama", "comedy", "horror", "documentary"]
    rating: float = Field(ge=0, le=10)


class Weather(BaseModel):
    city: str
    temperature: int
    unit: Literal["celsius", "fahrenheit"]
    conditions: Literal["sunny", "cloudy", "rainy", "snowy"]


class Author(BaseModel):
    first_name: str
    last_name: str


class Book(BaseModel):
    title: str
    author: Author
    pages: int


class Recipe(BaseModel):
    dish: str
    servings: int
    ingredients: list[str]
    vegetarian: bool


class Employee(BaseModel):
    name: str
    role: Literal["engineer", "designer", "manager", "sales"]
    manager: str | None = None
    skills: list[str] = []


class Cat(BaseModel):
    kind: Literal["cat"]
    name: str
    indoor: bool


class Dog(BaseModel):
    kind: Literal["dog"]
    name: str
    breed: str


class Pet(BaseModel):
    owner: str
    pet: Cat | Dog


class Flight(BaseModel):
    airline: str
    number: str
    origin: str
    destination: str
    seats: int
    seat_class: Literal["economy", "business", "first"] | None = None


# --- prompts with gold answers ---------------------------------------------------------------------
NAMES = ["Alice", "Bob", "Carla", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam"]
SURNAMES = ["Smith", "Garcia", "Chen", "Novak", "Okafor", "Rossi", "Dubois", "Tanaka", "Berg", "Silva"]
CITIES = [("Paris", "France"), ("Berlin", "Germany"), ("Madrid", "Spain"), ("Rome", "Italy"), ("Tokyo", "Japan"),
          ("Lisbon", "Portugal"), ("Oslo", "Norway"), ("Cairo", "Egypt"), ("Lima", "Peru"), ("Toronto", "Canada")]
THINGS = ["lamp", "backpack", "kettle", "guitar", "helmet", "notebook", "blender", "jacket", "drone", "chair"]
FOODS = ["flour", "eggs", "milk", "tomatoes", "basil", "garlic", "rice", "onions", "cheese", "lentils"]
SKILLS = ["python", "sql", "figma", "negotiation", "kubernetes", "writing"]
AIRLINES = ["Air France", "Lufthansa", "Iberia", "KLM"]


def _cases(r: random.Random) -> list[tuple[type[BaseModel], str, dict[str, Any]]]:
    """One (schema, prompt, gold) per schema, drawn from ``r``."""
    name, other, sur = r.choice(NAMES), r.choice(NAMES), r.choice(SURNAMES)
    (city, country), n = r.choice(CITIES), r.randint(2, 9)
    other_city, airline = r.choice([c for c, _ in CITIES if c != city]), r.choice(AIRLINES)
    flight, seat_class = f"{r.choice('ABLU')}{r.choice('AXZ')}{r.randint(100, 999)}", r.choice(["economy", "business", "first"])
    thing, price = r.choice(THINGS), round(r.uniform(5, 500), 2)
    cur, stock = r.choice(list(Currency)), r.random() < 0.5
    year, rating = r.randint(1950, 2023), round(r.uniform(1, 9.5), 1)
    genre = r.choice(["drama", "comedy", "horror", "documentary"])
    temp, unit = r.randint(-10, 35), r.choice(["celsius", "fahrenheit"])
    cond = r.choice(["sunny", "cloudy", "rainy", "snowy"])
    foods = r.sample(FOODS, 3)
    role, skills = r.choice(["engineer", "designer", "manager", "sales"]), r.sample(SKILLS, 2)
    items = [{"name": t, "quantity": r.randint(1, 5)} for t in r.sample(THINGS, 2)]
    email = f"{name.lower()}@example.com"
    kind = r.choice(["cat", "dog"])
    pet: dict[str, Any] = ({"kind": "cat", "name": r.choice(["Misty", "Tom", "Luna"]), "indoor": r.random() < 0.5}
                           if kind == "cat" else {"kind": "dog", "name": r.choice(["Rex", "Bella", "Max"]),
                                                  "breed": r.choice(["beagle", "poodle", "collie"])})
    pet_text = (f"a cat called {pet['name']} that {'stays indoors' if pet.get('indoor') else 'goes outside'}"
                if kind == "cat" else f"a {pet['breed']} dog called {pet['name']}")
    return [
        (Person, f"Extract: {name} is {n * 7} years old and lives in {city}.", {"name": name, "age": n * 7, "city": city}),
        (Product, f"Extract the product: a {thing} costs {price} {cur.value} and is {'in stock' if stock else 'sold out'}.",
         {"name": thing, "price": price, "currency": cur.value, "in_stock": stock}),
        (Event, f"Extract the event: the {thing.title()} Festival in {year} takes place in {city}, {country}.",
         {"title": f"{thing.title()} Festival", "year": year, "place": {"city": city, "country": country}}),
        (Order, f"Extract the order: {name} ordered {items[0]['quantity']} {items[0]['name']} and "
                f"{items[1]['quantity']} {items[1]['name']}.", {"customer": name, "items": items}),
        (Contact, f"Extract the contact: {name} {sur}, email {email}.", {"name": f"{name} {sur}", "email": email}),
        (Movie, f"Extract the movie: \"The {thing.title()}\" is a {genre} from {year}, rated {rating} out of 10.",
         {"title": f"The {thing.title()}", "year": year, "genre": genre, "rating": rating}),
        (Weather, f"Extract the weather: in {city} it is {temp} degrees {unit} and {cond}.",
         {"city": city, "temperature": temp, "unit": unit, "conditions": cond}),
        (Book, f"Extract the book: \"{thing.title()} Days\" by {name} {sur} has {n * 50} pages.",
         {"title": f"{thing.title()} Days", "author": {"first_name": name, "last_name": sur}, "pages": n * 50}),
        (Recipe, f"Extract the recipe: {thing} soup for {n} people, made with {', '.join(foods)}; "
                 f"{'it is vegetarian' if 'cheese' in foods or r.random() < 0.5 else 'it has meat'}.",
         {"dish": f"{thing} soup", "servings": n, "ingredients": foods}),
        (Employee, f"Extract the employee: {name} works as a {role}, reports to {other} and knows "
                   f"{skills[0]} and {skills[1]}.", {"name": name, "role": role, "manager": other, "skills": skills}),
        (Pet, f"Extract: {name} has {pet_text}.", {"owner": name, "pet": pet}),
        (Flight, f"Extract the booking: {airline} flight {flight} from {city} to {other_city}, "
                 f"{n} seats in {seat_class}.", {"airline": airline, "number": flight, "origin": city, "destination": other_city,
                                                 "seats": n, "seat_class": seat_class}),
    ]


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, f"{prefix}.{key}").items()}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return {k: v for i, item in enumerate(value) for k, v in _leaves(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def _same(got: Any, gold: Any) -> bool:
    if isinstance(gold, str):
        return isinstance(got, str) and got.strip().lower() == gold.lower()
    if isinstance(gold, list):
        return isinstance(got, list) and {str(x).lower() for x in got} == {str(x).lower() for x in gold}
    if isinstance(gold, bool) or gold is None:
        return got is gold
    return isinstance(got, (int, float)) and not isinstance(got, bool) and abs(got - gold) < 1e-6


def _field_hits(answer: dict[str, Any], gold: dict[str, Any]) -> tuple[int, int]:
    got, want = _leaves(json.loads(json.dumps(answer, default=str))), _leaves(gold)
    return sum(1 for k, v in want.items() if k in got and _same(got[k], v)), len(want)


# --- tools ----------------------------------------------------------------------------------------
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Current weather in a city.

    Args:
        city: the city, e.g. "Paris".
        unit: temperature unit.
    """
    return ""


def convert_currency(amount: float, source: str, target: str) -> str:
    """Convert money between currencies.

    Args:
        amount: how much money.
        source: currency code to convert from, e.g. "USD".
        target: currency code to convert to, e.g. "EUR".
    """
    return ""


def book_table(restaurant: str, people: int, time: str) -> str:
    """Book a restaurant table.

    Args:
        restaurant: the restaurant's name.
        people: how many people.
        time: when, e.g. "19:30".
    """
    return ""


def _tool_cases(r: random.Random) -> list[tuple[str, str]]:
    city = r.choice(CITIES)[0]
    amount, (a, b) = r.randint(5, 900), r.sample(["USD", "EUR", "GBP", "JPY"], 2)
    place, people, hour = r.choice(["Chez Marie", "Luigi's", "The Oak"]), r.randint(2, 8), r.choice(["19:30", "20:00", "12:15"])
    return [(f"What's the weather like in {city}?", "get_weather"),
            (f"How much is {amount} {a} in {b}?", "convert_currency"),
            (f"Book a table at {place} for {people} people at {hour}.", "book_table")]


# --- the run --------------------------------------------------------------------------------------
def run(per_schema: int, max_tokens: int) -> dict[str, Any]:
    from plait.local_models.llm.transformers_chat import TransformersChatModel

    model = TransformersChatModel().load()
    spent, steps = _instrument(model)
    r = random.Random(17)
    cases = [c for _ in range(per_schema) for c in _cases(r)]
    tools = [get_weather, convert_currency, book_table]
    tool_cases = [c for _ in range(max(1, per_schema * 8 // 10)) for c in _tool_cases(r)]
    model.invoke("Hello", max_tokens=4)  # warm up
    valid = free_valid = hits = total_fields = 0
    tokens, e2e_tokens = {"constrained": 0, "free": 0}, {"constrained": 0, "free": 0}
    seconds, e2e_seconds = {"constrained": 0.0, "free": 0.0}, {"constrained": 0.0, "free": 0.0}
    print(f"{'schema':10} {'constrained':>12} {'free':>6}  constrained answer")
    for i, (schema, prompt, gold) in enumerate(cases):
        fmt = {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema()}}
        order = ("constrained", "free") if i % 2 == 0 else ("free", "constrained")
        out: dict[str, Any] = {}
        for mode in order:
            if mode == "constrained":
                stream = model.stream(prompt, response_format=fmt, max_tokens=max_tokens)
            else:  # the same instructions, no grammar
                stream = model.stream([SystemMessage(content=pt.json_instructions(fmt)), UserMessage(content=prompt)],
                                      max_tokens=max_tokens)
            start = time.perf_counter()
            pieces, first, usage = [], 0.0, None
            for chunk in stream:
                if chunk.content:
                    first = first or time.perf_counter()
                    pieces.append(chunk.content)
                usage = chunk.usage or usage
            end = time.perf_counter()
            # decode speed: the tokens after the first one over the time after it (the prompt's prefill
            # is left out, since answers of different lengths would share it unequally)
            seconds[mode] += end - (first or end)
            tokens[mode] += max(0, len(pieces) - 1)
            e2e_seconds[mode] += end - start
            e2e_tokens[mode] += usage.completion_tokens if usage else 0
            out[mode] = "".join(pieces)
        ok = _valid(schema, out["constrained"], strict=True)
        free_ok = _valid(schema, out["free"], strict=False)
        valid += ok is not None
        free_valid += free_ok is not None
        if ok is not None:
            h, n = _field_hits(ok.model_dump(mode="json"), gold)
        else:
            h, n = 0, len(_leaves(gold))
        hits, total_fields = hits + h, total_fields + n
        print(f"{schema.__name__:10} {'valid' if ok else 'INVALID':>12} {'valid' if free_ok else 'no':>6}  "
              f"{h}/{n} {out['constrained'][:80]!r}  free: {out['free'][:40]!r}")
    constraint_s, model_steps = spent["s"], steps["n"]  # over the constrained JSON answers
    called = right_tool = 0
    for prompt, want in tool_cases:
        msg = model.bind_tools(tools, tool_choice="required").invoke(prompt, max_tokens=max_tokens)
        by_name = {t.__name__: t for t in tools}
        good = bool(msg.tool_calls) and all(_args_ok(by_name, c.name, c.arguments) for c in msg.tool_calls)
        called += good
        right_tool += good and msg.tool_calls[0].name == want
        print(f"tools      {'call' if good else 'NO CALL':>12}  {want:16} {[(c.name, c.arguments) for c in msg.tool_calls]}")
    c_tps, f_tps = tokens["constrained"] / seconds["constrained"], tokens["free"] / seconds["free"]
    return {"prompts": len(cases), "schemas": len({c[0] for c in cases}), "tool_prompts": len(tool_cases),
            "valid_rate": round(valid / len(cases), 4), "unconstrained_valid_rate": round(free_valid / len(cases), 4),
            "tool_call_rate_required": round(called / len(tool_cases), 4),
            "tool_name_accuracy": round(right_tool / len(tool_cases), 4),
            "constrained_tok_s": round(c_tps, 1), "free_tok_s": round(f_tps, 1), "speed_ratio": round(c_tps / f_tps, 3),
            "constrained_tokens": e2e_tokens["constrained"], "free_tokens": e2e_tokens["free"],
            "constrained_e2e_tok_s": round(e2e_tokens["constrained"] / e2e_seconds["constrained"], 1),
            "free_e2e_tok_s": round(e2e_tokens["free"] / e2e_seconds["free"], 1),
            "constraint_ms_per_token": round(constraint_s * 1e3 / max(1, e2e_tokens["constrained"]), 4),
            "constraint_share": round(constraint_s / e2e_seconds["constrained"], 4),
            "tokens_per_model_step": round(e2e_tokens["constrained"] / max(1, model_steps), 3),
            "field_accuracy": round(hits / total_fields, 4)}


def _instrument(model: Any) -> tuple[dict[str, float], dict[str, int]]:
    """Count the time spent in the grammar (mask, forced tokens, advance) and the model steps of
    constrained requests: figures that the CPU's other load disturbs far less than tokens/s."""
    from plait.local_models.llm import constrained

    spent, steps = {"s": 0.0}, {"n": 0}
    for name in ("mask", "advance", "forced"):
        method = getattr(constrained.Constraint, name)

        def timed(self: Any, *args: Any, _method: Any = method) -> Any:
            start = time.perf_counter()
            try:
                return _method(self, *args)
            finally:
                spent["s"] += time.perf_counter() - start
        setattr(constrained.Constraint, name, timed)
    engine = model._engine
    step, forward = engine.decoder.step, engine._decode

    def counted_step(ids: Any) -> Any:
        steps["n"] += 1
        return step(ids)

    def decode(ids: Any, budget: int, sampler: Any, stop: Any, constraint: Any) -> Any:
        engine.decoder.step = counted_step if constraint is not None else step
        return forward(ids, budget, sampler, stop, constraint)
    engine._decode = decode
    return spent, steps


def _valid(schema: type[BaseModel], text: str, strict: bool) -> BaseModel | None:
    try:
        return schema.model_validate_json(text) if strict else schema.model_validate(parse_json(text))
    except (ValidationError, OutputParserError, ValueError):
        return None


def _args_ok(tools: dict[str, Any], name: str, arguments: dict[str, Any]) -> bool:
    from plait.tools import Tool, ToolArgumentsError

    try:
        Tool.from_function(tools[name]).validate_arguments(arguments)
        return True
    except (KeyError, ToolArgumentsError):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-schema", type=int, default=10, help="prompts per schema (12 schemas)")
    parser.add_argument("--max-tokens", type=int, default=160)
    args = parser.parse_args()
    print(json.dumps(run(args.per_schema, args.max_tokens)))


if __name__ == "__main__":
    main()
