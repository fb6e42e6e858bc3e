"""What every stage of one bootstrap run shares: its config, folder, arms, world and data."""

from __future__ import annotations

import functools
from typing import Callable

import torch
from tqdm import tqdm

from jestfilter.config import BootstrapConfig, TrainSettings
from jestfilter.distributed import World, init_distributed, main_first, resolve_device
from jestfilter.eval import evaluate, load_eval_set
from jestfilter.models import ModelBundle, PixelStats, input_size, start_model, stats_for_new_model
from jestfilter.pipeline.arms import build_arms
from jestfilter.pipeline.inputs import Inputs, prepare_data
from jestfilter.pipeline.layout import RunLayout
from jestfilter.plan import Plan
from jestfilter.train.loop import OnlineTrainer


def setup(cfg: BootstrapConfig) -> tuple[World, torch.device]:
    """Check the config (one line on what cannot work) and join the torchrun world, once a job."""
    cfg.validate()
    return init_distributed(resolve_device(cfg.device))


class Job:
    """One bootstrap run's shared parts. ``world``/``device`` come from ``setup`` (called here
    when not given, for a job built on its own); ``inputs`` from ``prepare_data`` likewise."""

    def __init__(self, cfg: BootstrapConfig, inputs: Inputs | None = None, world: World | None = None,
                 device: torch.device | None = None):
        if world is None:
            world, device = setup(cfg)
        self.cfg, self.world, self.device = cfg, world, device
        self.arms = build_arms(cfg)
        self.layout = RunLayout(cfg.out, self.arms.main.name)
        self.progress = cfg.progress and world.main
        with main_first(world):  # rank 0 builds the demo data, the others find it built
            self.layout.runs.mkdir(parents=True, exist_ok=True)
            self.inputs = inputs or prepare_data(cfg)
        self.curated, self.web = self.inputs.curated, self.inputs.web
        # decoded for the learner's input size, as its training data (--decode full: as stored)
        self.eval_set = load_eval_set(self.inputs.eval, None if cfg.train.decode == "full" else input_size(cfg.model))
        self.plan = Plan([])  # run() makes the real one; a stage called on its own (a tool) has none

    def evaluator(self) -> Callable[[ModelBundle], dict]:
        eval_set, device = self.eval_set, self.device
        return lambda bundle: evaluate(bundle, eval_set, device=device)

    def new_model(self, role: str) -> ModelBundle:
        """A freshly initialised model for ``role`` (its own seed: see ``TrainSettings.model_seed``),
        normalising its pixels as ``--pixel-norm`` says, measured on the curated set: the
        reference and every learner alike."""
        return start_model(self.cfg.model, self.cfg.train.model_seed(role), self.cfg.train.batch_size, self.device,
                           pixel_stats=self.pixel_stats)

    @functools.cached_property
    def pixel_stats(self) -> PixelStats | None:
        return stats_for_new_model(self.cfg.train.pixel_norm, self.cfg.model, self.curated)

    def trainer(self, bundle: ModelBundle, patterns: list[str], settings: TrainSettings, name: str,
                **parts) -> OnlineTrainer:
        return OnlineTrainer(bundle, patterns, settings, checkpoint=self.layout.checkpoint(name),
                             evaluate=self.evaluator(), name=name, progress=self.progress,
                             on_evaluation=self.evaluation_line, **parts)

    def evaluation_line(self, step: int, steps: int, metrics: dict) -> None:
        tqdm.write(self.plan.eta_line(step, steps, metrics))
