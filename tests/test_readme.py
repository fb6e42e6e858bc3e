"""The README's commands run as written, on a small demo laid out as the README says."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from jestfilter.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
SMALL = {  # appended to each command (a flag given twice: argparse keeps the last)
    "demo-data": ["--curated", "100", "--web", "1000", "--eval", "100", "--samples-per-shard", "25"],
    "bootstrap": ["--steps", "4", "--reference-steps", "4", "--batch-size", "16", "--n-chunks", "4", "--eval-every",
                  "4", "--workers", "0", "--no-progress", "--compare", "none", "--samples-per-shard", "50"],
    "train": ["--steps", "4", "--batch-size", "16", "--eval-every", "4", "--workers", "0"],
    "select": ["--super-batch", "20", "--n-chunks", "4"],  # 25 samples a shard here
    "dedup": ["--threshold", "0.9999"],  # a 4-step reference finds every image alike at 0.95
}
SKIP = {"ingest"}  # downloads from the internet


def readme_commands() -> list[list[str]]:
    """Every `python -m jestfilter ...` command of the README, in order: lines of code blocks
    (continued by a backslash) and inline code, without `[optional]` parts and comments."""
    text = README.read_text()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S) + re.findall(r"((?:\n    .*)+)", text):
        found += [line for line in block.replace("\\\n", " ").splitlines() if "python -m jestfilter" in line]
    found += re.findall(r"`(python -m jestfilter[^`]*)`", text)
    commands = []
    for line in found:
        line = re.sub(r"\[[^\]]*\]", "", line.split(" #")[0])
        words = shlex.split(line[line.index("python -m jestfilter"):])[3:]
        if words and words[0] not in SKIP and words != ["bootstrap"] and words not in commands:
            commands.append(words)
    return commands


def test_the_readme_shows_the_commands_users_need():
    names = {words[0] for words in readme_commands()}
    assert {"demo-data", "bootstrap", "train", "evaluate", "inspect", "embed", "dedup", "score", "filter", "select",
            "info", "--help"} <= names


def test_every_readme_command_runs_on_a_small_demo(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for words in readme_commands():
        argv = words + SMALL.get(words[0], [])
        try:
            status = main(argv)
        except SystemExit as exit_:  # --help
            status = exit_.code
        assert status == 0, f"{' '.join(argv)}: {capsys.readouterr().err[-1500:]}"
    assert (tmp_path / "runs" / "mine" / "final").is_dir() and (tmp_path / "runs" / "offline" / "final").is_dir()
    assert (tmp_path / "filtered" / "_SUCCESS").exists() and (tmp_path / "dedup.parquet").exists()
