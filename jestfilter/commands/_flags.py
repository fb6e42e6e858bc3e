"""CLI flags made from the settings dataclasses of ``jestfilter.config``, and the batch jobs' shared flags.

Each field's default and help text are written once, on the field; a flag shows the default
in ``--help`` and parses to None when not given, so a ``--config`` file can sit between the
defaults and the flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from jestfilter.errors import UsageError

if typing.TYPE_CHECKING:
    from jestfilter.jobs.runner import Placement

PRECEDENCE_HELP = ("rank and world size: --rank/--world-size win, then torchrun's RANK/WORLD_SIZE, then "
                   "SLURM (array index × tasks per array element + SLURM_PROCID); default 0 of 1")


def add_flags(parser, cls: type, only: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()) -> None:
    """A flag for every documented field of dataclass ``cls`` (or only those named)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if "help" not in field.metadata or field.name in skip or (only is not None and field.name not in only):
            continue
        meta = dict(field.metadata)
        kind = _base_type(hints[field.name])
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        name = "--" + field.name.replace("_", "-")
        shown = ",".join(default) if isinstance(default, list) else default
        help_text = meta.pop("help")
        if kind is bool:  # a switch: off unless given (the CLI says so)
            flag = meta.pop("flag", name)
            off = flag.startswith("--no-")  # the field says what it turns on; the flag turns it off
            parser.add_argument(flag, dest=field.name, action="store_false" if off else "store_true", default=None,
                                help=f"don't {help_text}" if off else help_text)
            continue
        if "default" not in help_text:  # a help text may say what its default means instead
            help_text += f" (default: {'none' if shown in (None, '') else shown})"
        if kind is list:
            parser.add_argument(name, default=None, help=help_text, **meta)
        else:
            if "choices" not in meta:
                meta.setdefault("metavar", {int: "N", float: "X"}.get(kind))
            parser.add_argument(name, type=kind, default=None, help=help_text, **meta)


def given(args: argparse.Namespace, cls: type, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The fields of ``cls`` (or only those named) that were given as flags."""
    names = {field.name for field in dataclasses.fields(cls)} & set(only or vars(args))
    return {name: value for name, value in vars(args).items() if name in names and value is not None}


def _base_type(hint) -> type:
    """``int | None`` → int, ``list[str] | None`` → list."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return typing.get_origin(hint) or hint


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every batch job shares."""
    parser.add_argument("--rank", type=int, metavar="R", help=PRECEDENCE_HELP)
    parser.add_argument("--world-size", type=int, metavar="N",
                        help="number of ranks sharing the shard list (default: see --rank)")
    parser.add_argument("--retries", type=int, default=2, metavar="N",
                        help="attempts after the first for a failing shard")


def placement_from_args(args: argparse.Namespace) -> "Placement":
    from jestfilter.jobs.runner import resolve_placement

    if args.retries < 0:
        raise UsageError(f"--retries must be >= 0, got {args.retries}")
    return resolve_placement(args.rank, args.world_size)
