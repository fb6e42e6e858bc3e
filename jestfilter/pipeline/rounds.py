"""``--rounds N``: round k+1 is a whole bootstrap in ``OUT/round-(k+1)/`` whose reference is
round k's final model."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import asdict

import torch

from jestfilter.config import BootstrapConfig
from jestfilter.data import atomic_write_json
from jestfilter.distributed import World, broadcast_object
from jestfilter.pipeline.arms import build_arms
from jestfilter.pipeline.bootstrap import Bootstrap
from jestfilter.pipeline.inputs import Inputs
from jestfilter.pipeline.layout import RunLayout
from jestfilter.report import write_rounds_report
from jestfilter.results import round_summary, rounds_table


class Rounds:
    """Round k+1's reference is round k's final model (its cache is named by the reference, so
    the web data is embedded again). A round its layout calls finished is read back; the rounds
    stop early when a round's final model is not better than its reference. An arm that does
    not use the reference (uniform) would train exactly as in round 1, so later rounds reuse
    its result."""

    def __init__(self, cfg: BootstrapConfig, inputs: Inputs, world: World, device: torch.device):
        self.cfg, self.inputs, self.world, self.device = cfg, inputs, world, device
        self.arms = build_arms(cfg)
        self.layout = RunLayout(cfg.out, self.arms.main.name)

    def config(self, k: int) -> BootstrapConfig:
        out = str(self.layout.round(k).out)
        if k == 1:
            return dataclasses.replace(self.cfg, out=out, rounds=1)
        return dataclasses.replace(self.cfg, out=out, rounds=1, reference_cache=None,
                                   reference=f"local-dir:{self.layout.round(k - 1).final}")

    def round(self, k: int) -> dict:
        """Round k's metrics (run or resumed here, or read when it is done), on every rank."""
        here = self.layout.round(k)
        if here.finished(self.arms.names):
            return json.loads(here.metrics.read_text())
        if k > 1 and self.world.main:
            here.runs.mkdir(parents=True, exist_ok=True)
            first = self.layout.round(1)
            for arm in self.arms.all[1:]:
                if not arm.needs_reference and first.done(arm.name):
                    shutil.copy2(first.record(arm.name), here.record(arm.name))
        metrics = Bootstrap(self.config(k), self.inputs, self.world, self.device).run()  # under the lock on OUT
        return broadcast_object(self.world, metrics if self.world.main else None)

    def run(self) -> dict:
        started = time.perf_counter()
        summaries, stopped = [], None
        for k in range(1, self.cfg.rounds + 1):
            metrics = self.round(k)
            summaries.append(round_summary(k, metrics))
            if self.cfg.early_stop and not summaries[-1]["improved"] and k < self.cfg.rounds:
                stopped = (f"round {k}'s final model (zero-shot {metrics['final']['zeroshot_top1']:.3f}) is not "
                           f"better than its reference ({metrics['reference']['zeroshot_top1']:.3f}): "
                           f"round {k + 1} not run")
                break
        if not self.world.main:
            return {}
        finals = {s["round"]: json.loads(self.layout.round(s["round"]).metrics.read_text()) for s in summaries}
        best = max(summaries, key=lambda s: s["final"]["zeroshot_top1"])["round"]
        metrics = {"rounds": summaries, "reference": finals[1]["reference"], "final": finals[len(summaries)]["final"],
                   "best_round": best, "stopped_early": stopped, "config": asdict(self.cfg),
                   "seconds": time.perf_counter() - started}
        atomic_write_json(self.layout.metrics, metrics)
        page = write_rounds_report(self.layout.out, metrics, {k: m["final"] for k, m in finals.items()})
        print(rounds_table(summaries) + (f"\nstopped early: {stopped}" if stopped else ""))
        print(f"report: {page}")
        return metrics
