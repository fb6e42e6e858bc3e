"""Command-line front end.

Every subcommand is one module in ``jestfilter/commands/`` that defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. They are discovered here, so adding a
command is adding a file. Command modules import torch, open_clip and the data stack only
inside ``run``, so ``--help`` and ``--version`` answer at once. A wrong argument ends in a
one-line message and exit status 2; ``jestfilter`` with no command prints the help and exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import shlex
import signal
import sys
import threading

import jestfilter
from jestfilter import commands
from jestfilter.errors import Stopped, UsageError

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
    """The ``jestfilter`` parser: one subcommand per module of ``jestfilter.commands``."""
    parser = argparse.ArgumentParser(
        prog="jestfilter",
        description="Bootstrap image-text data quality with JEST (joint example selection).",
        epilog="`jestfilter bootstrap` with no data arguments runs the Fashion-MNIST demo (also: make demo).",
    )
    parser.add_argument("--version", action="version", version=f"jestfilter {jestfilter.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in command_modules().items():
        sub_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub_parser)
        show_defaults(sub_parser)
        sub_parser.set_defaults(_run=module.run)
    return parser


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """End the help of every optional flag that does not name its default with it: a flag
    without a value is off unless given; a value's default is shown as set."""
    for action in parser._actions:
        if not action.option_strings or action.required or action.help in (None, argparse.SUPPRESS):
            continue
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)) or "default" in action.help:
            continue
        if action.nargs == 0:
            action.help += " (default: off)"
        elif action.default is not None:
            shown = ",".join(map(str, action.default)) if isinstance(action.default, list) else action.default
            action.help += f" (default: {shown})"


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (2 for a usage error, one line on stderr)."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:  # no command: say what there is
        parser.print_help()
        return 2
    try:
        with stop_on_signals():
            return int(args._run(args) or 0)
    except (UsageError, FileNotFoundError, NotADirectoryError, ValueError) as error:
        print(f"jestfilter {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # the machine, not the arguments: a full disk, a read-only folder
        print(f"jestfilter {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        signum = getattr(stop, "signum", signal.SIGINT)
        print(f"jestfilter {args.command}: stopped by {signal.Signals(signum).name}{getattr(stop, 'where', '')}; "
              f"the same command resumes: {_program()} {shlex.join(argv)}", file=sys.stderr)
        return 128 + signum


@contextlib.contextmanager
def stop_on_signals():
    """SIGTERM and Ctrl-C raise ``Stopped`` in the main thread (the default SIGTERM would end
    the process at once, with no message and its DataLoader workers left running)."""
    def stop(signum, frame):
        raise Stopped(signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _one_line(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.filename}: {error.strerror}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _program() -> str:
    """How this process was started: ``jestfilter`` (the console script) or ``python -m jestfilter``."""
    return "jestfilter" if os.path.basename(sys.argv[0]) == "jestfilter" else "python -m jestfilter"
