"""`jestfilter bootstrap`: reference → online JEST → filtered shards → final model → report."""

from __future__ import annotations

import argparse
import json
import tomllib
from dataclasses import fields
from pathlib import Path

from jestfilter.commands._flags import add_flags, given
from jestfilter.config import BootstrapConfig, TrainSettings, check_types
from jestfilter.errors import UsageError

HELP = "train a reference, select web data online with JEST, write filtered shards, train and evaluate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data (all three, or none for the Fashion-MNIST demo)")
    add_flags(data, BootstrapConfig, only=("curated", "web", "eval"))
    add_flags(parser, BootstrapConfig, skip=("curated", "web", "eval"))
    parser.add_argument("--config", metavar="FILE",
                        help="JSON or TOML file of these options; flags win (default: none)")
    add_flags(parser.add_argument_group("selection and training of the learner"), TrainSettings)


def config_from(args: argparse.Namespace) -> BootstrapConfig:
    """Defaults, then the --config file (flat keys, or training keys under ``train``), then the flags."""
    top, train = {f.name for f in fields(BootstrapConfig)} - {"train"}, {f.name for f in fields(TrainSettings)}
    values: dict = {}
    if args.config:
        values = _read_config(Path(args.config))
    values.update(given(args, BootstrapConfig))
    values.update(given(args, TrainSettings))
    nested = values.pop("train", {})
    unknown = sorted(set(values) - top - train) + sorted(set(nested) - train)
    if unknown:
        raise UsageError(f"unknown option(s) in {args.config}: {', '.join(unknown)}")
    settings = {**nested, **{k: v for k, v in values.items() if k in train}}
    values = {k: v for k, v in values.items() if k in top}
    if isinstance(values.get("compare"), str):
        values["compare"] = [] if values["compare"] == "none" else [m for m in values["compare"].split(",") if m]
    for key in ("curated", "web"):
        if isinstance(values.get(key), str):
            values[key] = [values[key]]
    return BootstrapConfig(**values, train=TrainSettings(**settings))


def _read_config(path: Path) -> dict:
    """A config file's options, their types checked. ``pipe:`` patterns run shell commands, so a
    file (perhaps someone else's) may only hold them with ``allow_pipe = true``."""
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    text = path.read_text()
    try:
        loaded = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"cannot parse {path}: {error}") from None
    if not isinstance(loaded, dict):
        raise UsageError(f"{path} must hold a table of options, got {type(loaded).__name__}")
    normalise = lambda table: {k.replace("-", "_"): v for k, v in table.items()}  # noqa: E731
    values = _with_flexi_mode(normalise(loaded))
    if "train" in values:
        if not isinstance(values["train"], dict):
            raise UsageError(f"{path}: train must be a table of training options, got {values['train']!r}")
        values["train"] = _with_flexi_mode(normalise(values["train"]))
        check_types(TrainSettings, values["train"], f"{path} [train]")
    check_types(BootstrapConfig, values, str(path))
    check_types(TrainSettings, values, str(path))
    allow_pipe = values.pop("allow_pipe", False)
    if not isinstance(allow_pipe, bool):
        raise UsageError(f"{path}: allow_pipe must be true or false, got {allow_pipe!r}")
    from jestfilter.data.shards import shell_commands  # the data stack only when a file is read

    for key in ("curated", "web"):
        patterns = [values[key]] if isinstance(values.get(key), str) else values.get(key) or []
        piped = shell_commands(patterns)  # what the patterns expand to, as the reader will see it
        if piped and not allow_pipe:
            raise UsageError(f"{path}: {key} runs a shell command ({piped[0]!r}); a config file may only do that "
                             "with allow_pipe = true")
    return values


def _with_flexi_mode(table: dict) -> dict:
    """``flexi = true/false`` (before Flexi had modes) as the mode it meant: ``train`` or ``off``."""
    if isinstance(table.get("flexi"), bool):
        table["flexi"] = "train" if table["flexi"] else "off"
    return table


def run(args: argparse.Namespace) -> int:
    from jestfilter.pipeline import run_bootstrap

    run_bootstrap(config_from(args))
    return 0
