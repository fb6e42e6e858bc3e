"""Every path of a bootstrap run's folder, and the one rule that says when a stage is done.

A stage is done when its record (``runs/<stage>.json``) exists and, for a stage that trains a
model, its model folder too (``reference/``; the main arm's ``final/``). The plan, the stages,
the rounds, resuming and the clean-up ask ``RunLayout`` and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from jestfilter.data import atomic_write_json

REFERENCE = "reference"
EMBEDDINGS = "reference embeddings"


class RunLayout:
    """The folder ``out`` of one bootstrap run (one round); ``main`` names the arm whose model
    is ``final/``."""

    def __init__(self, out: str | Path, main: str):
        self.out, self.main = Path(out), main
        self.runs = self.out / "runs"
        self.reference, self.final = self.out / "reference", self.out / "final"
        self.filtered, self.checkpoints = self.out / "filtered", self.out / "checkpoints"
        self.metrics, self.extremes = self.out / "metrics.json", self.out / "report-extremes.pt"
        self.precision = self.runs / "precision.json"
        self.demo_data, self.report_page = self.out / "demo-data", self.out / "report" / "report.md"

    def record(self, stage: str) -> Path:
        """The JSON a finished stage leaves: its metrics (what embedding the web data cost)."""
        return self.runs / ("reference_embedding.json" if stage == EMBEDDINGS else f"{stage}.json")

    def model(self, stage: str) -> Path | None:
        """The model folder a stage trains, if it trains one."""
        return {REFERENCE: self.reference, self.main: self.final}.get(stage)

    def done(self, stage: str) -> bool:
        """Whether an earlier run finished ``stage``: its record and its model folder exist."""
        folder = self.model(stage)
        return self.record(stage).exists() and (folder is None or folder.is_dir())

    def finished(self, stages: list[str]) -> bool:
        """Whether the whole run is done: every stage, then its metrics."""
        return self.metrics.exists() and all(self.done(stage) for stage in stages)

    def read(self, stage: str) -> dict:
        return json.loads(self.record(stage).read_text())

    def write(self, stage: str, values: dict) -> None:
        atomic_write_json(self.record(stage), values)

    def checkpoint(self, name: str) -> Path:
        return self.checkpoints / f"{name}.pt"

    def cache(self, given: str | None = None) -> Path:
        """The reference's embeddings of the web data: ``given``, else a folder named by the
        reference's weights (a new reference embeds again)."""
        digest = hashlib.sha256()
        if given is None:
            for path in sorted(self.reference.iterdir()):
                digest.update(path.read_bytes())
        return Path(given or self.out / "cache" / f"reference-{digest.hexdigest()[:12]}")

    def round(self, k: int) -> RunLayout:
        """Round k's folder of a ``--rounds`` run (each the one-round layout)."""
        return RunLayout(self.out / f"round-{k}", self.main)

    def clean(self) -> None:
        """What only a resume needs, removed once the run is complete."""
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        self.extremes.unlink(missing_ok=True)
