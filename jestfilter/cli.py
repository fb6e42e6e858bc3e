"""Command-line front end.

Every subcommand is one module in ``jestfilter/commands/`` that defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. They are discovered here, so adding a
command is adding a file. A wrong argument ends in a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

import jestfilter
from jestfilter import commands
from jestfilter.errors import UsageError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def command_modules() -> dict:
    """Subcommand name (module name, ``_`` → ``-``) → module."""
    found = {}
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"jestfilter.commands.{info.name}")
        found[info.name.replace("_", "-")] = module
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jestfilter",
        description="Bootstrap image-text data quality with JEST (joint example selection).",
    )
    parser.add_argument("--version", action="version", version=f"jestfilter {jestfilter.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in command_modules().items():
        sub_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv and "bootstrap" in command_modules():
        argv = ["bootstrap"]  # no arguments: the demo run
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (UsageError, FileNotFoundError, NotADirectoryError, ValueError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"jestfilter {args.command}: error: {message}", file=sys.stderr)
        return 2
