"""``plait config``: settings in ``<data dir>/config.json``: the default model, aliases, model options, logging.

    plait config                                        # everything set, as JSON
    plait config set model openai:gpt-4o-mini           # the default for ask and chat
    plait config set aliases.fast openai:gpt-4o-mini    # then: plait ask --model fast ...
    plait config set options.local.temperature 0.7      # a generation option for one model spec
    plait config set log false                          # stop logging prompts and answers
    plait config get aliases.fast
    plait config unset aliases.fast
    plait config path

Values are JSON where they parse (0.7, true, ["\\n\\n"]), else text. ``--model`` on the command
line, ``--max-tokens`` and the like win over the config.
"""

from __future__ import annotations

import argparse
import json


def configure(parser: argparse.ArgumentParser) -> None:
    from plait.config import KEYS_HELP

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (__doc__ or "").split("\n\n")[1] + f"\n\nKeys: {KEYS_HELP}."
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    get = sub.add_parser("get", help="print one value (or everything, with no KEY)")
    get.add_argument("key", nargs="?", metavar="KEY")
    set_ = sub.add_parser("set", help="set a value")
    set_.add_argument("key", metavar="KEY")
    set_.add_argument("value", metavar="VALUE")
    unset = sub.add_parser("unset", help="remove a value")
    unset.add_argument("key", metavar="KEY")
    sub.add_parser("path", help="print where the config file is")


def run(args: argparse.Namespace) -> int:
    from plait import config
    from plait.commands._checks import CLIError, UsageError

    action = args.action or "get"
    try:
        if action == "path":
            print(config.config_path())
        elif action == "get" and not getattr(args, "key", None):
            print(json.dumps(config.load(), indent=2, sort_keys=True))
        elif action == "get":
            value = config.get_value(args.key)
            if value is None:
                raise CLIError(f"{args.key} is not set; `plait config` shows what is")
            print(value if isinstance(value, str) else json.dumps(value))
        elif action == "set":
            value = config.set_value(args.key, config.parse_value(args.value))
            print(f"{args.key} = {json.dumps(value)}")
        elif action == "unset" and not config.unset_value(args.key):
            raise CLIError(f"{args.key} was not set")
    except config.ConfigError as e:
        raise UsageError(str(e)) from None
    return 0
