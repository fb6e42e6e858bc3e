"""A bootstrap run's data: the curated and web shard lists and the eval folder."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from jestfilter.config import BootstrapConfig
from jestfilter.data import expand_shards


class Inputs(NamedTuple):
    """A run's data: curated and web shard lists, the eval folder, and (the demo) the web's truth."""

    curated: list[str]
    web: list[str]
    eval: str
    truth: Path | None = None  # web_truth.parquet: each demo web sample's noise kind


def prepare_data(cfg: BootstrapConfig) -> Inputs:
    """The curated and web shard lists and the eval folder; the demo data when none is given."""
    if cfg.curated is None:
        from jestfilter.datasets.demo import build_demo_data

        demo = build_demo_data(Path(cfg.out) / "demo-data", seed=cfg.train.seed, progress=cfg.progress)
        return Inputs(expand_shards(demo.curated), expand_shards(demo.web), str(demo.eval), Path(demo.truth))
    eval_dir = Path(cfg.eval)
    if not eval_dir.is_dir():
        raise FileNotFoundError(f"--eval directory not found: {eval_dir}")
    return Inputs(expand_shards(cfg.curated), expand_shards(cfg.web), str(eval_dir))
