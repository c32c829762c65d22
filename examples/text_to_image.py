"""Text to image as one chain: a local LLM rewrites a request into an image prompt, the image model draws it.

    request -> {request, rewrite: prompt | llm | parser} -> to_caption -> image_model

The chain is streamed as events: the LLM's tokens as they come, then the image model's progress
events, then the image. The bundled image model draws one shape ("a small red circle on the
left"), so ``to_caption`` keeps the LLM's words where they fit that vocabulary and falls back to
the user's own words for anything the LLM left out: a small LLM is a helpful but unreliable
rewriter, and the chain stays correct when it drifts.

Run: python examples/text_to_image.py ["a request"] [-o out.png] [--model local | --model openai:MODEL]
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from plait import ChatPromptTemplate, Lambda, StrOutputParser
from plait.messages import ImageResult, ProgressEvent

try:
    from examples._model import example_model
except ImportError:  # run as a script from the examples folder
    from _model import example_model  # type: ignore[no-redef]

PROMPT = ChatPromptTemplate.from_messages([
    ("system", "You turn requests into short image captions of the form "
               "'a [small|large] COLOUR SHAPE POSITION'. Colours: red, orange, yellow, green, cyan, blue, "
               "purple, pink. Shapes: circle, square, triangle. Positions: on the left, on the right, at the top, "
               "at the bottom, in the center. Reply with the caption only."),
    ("user", "I'd like a big round red thing over on the left side"),
    ("assistant", "a large red circle on the left"),
    ("user", "{request}"),
])


def to_caption(inputs: dict[str, str]) -> str:
    """The LLM's caption in the image model's vocabulary, with gaps filled from the request."""
    from plait.local_models.diffusion.shapes_data import make_caption, parse_caption

    said, asked = parse_caption(inputs["rewrite"]), parse_caption(inputs["request"])
    colour = asked.colour or said.colour or "red"  # the user's own words win where they are explicit
    shape = asked.shape or said.shape or "circle"
    position = asked.position or said.position or "center"
    size = asked.size or said.size
    return make_caption(colour, shape, position, size)


def build_chain(model: Any = None, image_model: Any = None) -> Any:
    from plait.local_models.diffusion.diffusers_image import DiffusersImageModel

    llm = example_model(model, max_tokens=24)
    image_model = image_model or DiffusersImageModel(previews=False)
    rewrite = PROMPT | llm | StrOutputParser()
    return {"request": lambda x: x["request"], "rewrite": rewrite} | Lambda(to_caption, name="to_caption") | image_model


async def run(request: str, out: str = "text_to_image.png", model: Any = None, image_model: Any = None) -> ImageResult:
    chain = build_chain(model, image_model)
    result: ImageResult | None = None
    drawing = False
    async for event in chain.astream_events({"request": request}):
        if event["event"] != "chunk":
            continue
        chunk = event["data"]["chunk"]
        if event["name"] == "StrOutputParser":
            print(chunk, end="", flush=True)  # the LLM's tokens
        elif isinstance(chunk, ProgressEvent) and event["name"] == "DiffusersImageModel":
            if not drawing:
                print()
                drawing = True
            print(f"\rdrawing: step {chunk.step}/{chunk.total}", end="", flush=True)
        elif isinstance(chunk, ImageResult) and event["name"] == "DiffusersImageModel":
            result = chunk
    print()
    if result is None:
        raise RuntimeError("the image model returned no image")
    result.save(out)
    print(f"caption {result.parameters['prompt']!r}, seed {result.parameters['seed']} -> {out}")
    return result


def main(model: Any = None, image_model: Any = None, request: str | None = None, out: str | None = None) -> ImageResult:
    args = list(sys.argv[1:])
    if "--model" in args:  # read by example_model
        i = args.index("--model")
        del args[i:i + 2]
    if "-o" in args:
        i = args.index("-o")
        out = out or args[i + 1]
        del args[i:i + 2]
    request = request or (args[0] if args else "please draw a little blue triangle near the top")
    return asyncio.run(run(request, out or "text_to_image.png", model, image_model))


if __name__ == "__main__":
    main()
