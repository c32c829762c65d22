"""The user's settings in the data directory: ``config.json`` (defaults, aliases, options) and ``keys.json``.

``config.json`` holds a few keys, written with ``plait config set KEY VALUE``:

===========================  ==================================================================
``model``                    the default chat model for ``plait ask`` / ``plait chat`` (a spec
                             or an alias; default ``local``)
``log``                      ``true`` / ``false``: log prompts and answers (default ``true``)
``aliases.NAME``             a short name for a spec: ``aliases.fast openai:gpt-4o-mini`` lets
                             ``--model fast`` stand for it
``options.SPEC.OPTION``      a generation option for one model, e.g.
                             ``options.openai:gpt-4o-mini.temperature 0.2``
===========================  ==================================================================

Values are read as JSON where they parse (``0.2``, ``true``, ``["\\n\\n"]``), else as text.
``keys.json`` holds API keys by name (``openai``), written with permissions 0600 and never printed.

Example::

    from plait import config
    config.set_value("aliases.fast", "openai:gpt-4o-mini")
    config.resolve_alias("fast")            # "openai:gpt-4o-mini"
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from plait.defaults import data_dir

CONFIG_FILE = "config.json"
KEYS_FILE = "keys.json"
#: Generation options a model may be given in the config (each backend checks its own at call time).
OPTIONS: dict[str, type | tuple[type, ...]] = {
    "temperature": (int, float), "top_p": (int, float), "top_k": int, "max_tokens": int, "seed": int,
    "frequency_penalty": (int, float), "presence_penalty": (int, float), "stop": list,
}
KEYS_HELP = ("model (default chat model), log (true/false), aliases.NAME (a spec), "
             "options.SPEC.OPTION (one of: " + ", ".join(OPTIONS) + ")")


class ConfigError(ValueError):
    """A config key or value that is not allowed; the message says what is."""


def config_path() -> Path:
    return data_dir() / CONFIG_FILE


def keys_path() -> Path:
    return data_dir() / KEYS_FILE


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {path} ({e}); fix or delete that file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object; fix or delete that file")
    return data


def _write(path: Path, data: dict[str, Any], mode: int = 0o644) -> None:
    """Write through a temporary file and rename, so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.chmod(tmp, mode)  # the file may have existed with other permissions
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def load() -> dict[str, Any]:
    """The whole config (``{}`` when there is none)."""
    return _read(config_path())


def parse_value(text: str) -> Any:
    """A value as typed on the command line: JSON where it parses, else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _split(key: str) -> tuple[str, ...]:
    """``model`` -> (model,); ``aliases.fast`` -> (aliases, fast); ``options.SPEC.temperature`` -> (options, SPEC, temperature)."""
    head, _, rest = key.partition(".")
    if head in ("model", "log") and not rest:
        return (head,)
    if head == "aliases" and rest:
        return (head, rest)
    if head == "options" and "." in rest:
        spec, _, option = rest.rpartition(".")
        if spec and option:
            return (head, spec, option)
    raise ConfigError(f"unknown config key {key!r}; the keys are: {KEYS_HELP}")


def _check(parts: tuple[str, ...], value: Any) -> Any:
    if parts[0] in ("model", "aliases"):
        spec = value.strip() if isinstance(value, str) else ""
        if spec.partition(":")[0] not in ("local", "openai") and spec not in (load().get("aliases") or {}):
            raise ConfigError(f"{'.'.join(parts)} must be a model spec (local, local:PATH_OR_ID, openai:MODEL) "
                              f"or an alias, not {value!r}")
        if parts[0] == "aliases" and ":" in parts[1]:
            raise ConfigError(f"an alias name cannot contain ':' ({parts[1]!r}); specs use it")
        return spec
    if parts[0] == "log":
        if not isinstance(value, bool):
            raise ConfigError("log must be true or false")
        return value
    option = parts[2]
    if option not in OPTIONS:
        raise ConfigError(f"unknown model option {option!r}; use one of: {', '.join(OPTIONS)}")
    if option == "stop" and isinstance(value, str):
        value = [value]
    if isinstance(value, bool) or not isinstance(value, OPTIONS[option]):
        raise ConfigError(f"{option} must be {'a list of strings' if option == 'stop' else 'a number'}, not {value!r}")
    return value


def get_value(key: str) -> Any:
    """The value at ``key`` (None when unset)."""
    node: Any = load()
    for part in _split(key):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def set_value(key: str, value: Any) -> Any:
    """Set ``key`` (checked: :class:`ConfigError` says what is allowed). Returns the value stored."""
    parts = _split(key)
    value = _check(parts, value)
    data = load()
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    _write(config_path(), data)
    return value


def unset_value(key: str) -> bool:
    """Remove ``key``; False when it was not set."""
    parts = _split(key)
    data = load()
    trail = [data]
    for part in parts[:-1]:
        nxt = trail[-1].get(part)
        if not isinstance(nxt, dict):
            return False
        trail.append(nxt)
    if parts[-1] not in trail[-1]:
        return False
    del trail[-1][parts[-1]]
    for depth in range(len(parts) - 1, 0, -1):  # drop tables left empty
        if not trail[depth]:
            del trail[depth - 1][parts[depth - 1]]
    _write(config_path(), data)
    return True


def default_model() -> str:
    """The chat model used when ``--model`` is not given: the config's ``model``, else ``local``."""
    return str(load().get("model") or "local")


def resolve_alias(spec: str) -> str:
    """The spec an alias stands for (aliases may name aliases); other specs unchanged."""
    aliases = load().get("aliases") or {}
    seen = {spec}
    while spec in aliases:
        spec = str(aliases[spec])
        if spec in seen:
            raise ConfigError(f"the aliases {sorted(seen)} refer to each other; fix them with plait config set")
        seen.add(spec)
    return spec


def model_options(spec: str) -> dict[str, Any]:
    """Generation options the config sets for ``spec`` (``options.SPEC.*``)."""
    found = (load().get("options") or {}).get(spec) or {}
    return dict(found) if isinstance(found, dict) else {}


def logging_enabled() -> bool:
    return load().get("log", True) is not False


# --- keys ----------------------------------------------------------------------------------------
def get_key(name: str) -> str | None:
    value = _read(keys_path()).get(name)
    return str(value) if value else None


def set_key(name: str, value: str) -> None:
    """Store a key (the file is readable by its owner only: 0600)."""
    if not value.strip():
        raise ConfigError("the key is empty")
    keys = _read(keys_path())
    keys[name] = value.strip()
    _write(keys_path(), keys, mode=0o600)


def remove_key(name: str) -> bool:
    keys = _read(keys_path())
    if name not in keys:
        return False
    del keys[name]
    _write(keys_path(), keys, mode=0o600)
    return True


def key_names() -> list[str]:
    return sorted(_read(keys_path()))
