"""``run_bootstrap``: the config checked and the torchrun world joined once, the data prepared
once, the run's folder locked, then one bootstrap or its rounds."""

from __future__ import annotations

from jestfilter.config import BootstrapConfig
from jestfilter.distributed import lock_folder, main_first
from jestfilter.pipeline.bootstrap import Bootstrap
from jestfilter.pipeline.inputs import prepare_data
from jestfilter.pipeline.job import setup
from jestfilter.pipeline.rounds import Rounds


def run_bootstrap(cfg: BootstrapConfig) -> dict:
    """Run (or resume) a bootstrap job; returns the metrics also written to ``metrics.json``.
    The job owns ``--out`` while it runs: rank 0 holds its lock (``jestfilter.data.lock``)."""
    world, device = setup(cfg)
    lock = lock_folder(cfg.out, world)
    try:
        with main_first(world):  # rank 0 builds the demo data, the others find it built
            inputs = prepare_data(cfg)
        job = Bootstrap if cfg.rounds == 1 else Rounds
        return job(cfg, inputs, world, device).run()
    finally:
        if lock is not None:
            lock.release()
