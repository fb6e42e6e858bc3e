"""Everything a training run sets up before its first step, in one place: the Selector and
what each step reads, the model on this rank (fast kernels, compilation, rank 0's weights),
the loss, optimiser and schedule, the loader over this rank's shards, and the precisions."""

from __future__ import annotations

from pathlib import Path
from typing import Collection, NamedTuple, Sequence

from open_clip.loss import SigLipLoss
from tqdm import tqdm

from jestfilter import machine
from jestfilter.config import TrainSettings
from jestfilter.data import SuperBatchLoader
from jestfilter.data.pixels import decode_options
from jestfilter.distributed import World, broadcast_object, broadcast_parameters
from jestfilter.models import ModelBundle, coarse_view_warning, flexi_patch_size
from jestfilter.selection import Selector
from jestfilter.train.checkpoint import RunCheckpoint
from jestfilter.train.optim import make_optimizer, make_scheduler
from jestfilter.train.precision import Phases, choose_phases, compile_towers, use_fast_kernels
from jestfilter.train.schedule import StepPlan, make_selector, step_plan


class TrainerParts(NamedTuple):
    selector: Selector
    plan: StepPlan
    score_patch_size: int | None  # the learner scores at the coarse patch size in both Flexi modes
    train_patch_size: int | None  # and co-trains there in one
    loss_fn: SigLipLoss
    optimizer: object
    scheduler: object
    loader: SuperBatchLoader
    checkpoint: RunCheckpoint
    phases: Phases


def build_trainer(bundle: ModelBundle, patterns: str | Sequence[str], settings: TrainSettings, world: World, *,
                  checkpoint: str | Path, only: Collection[tuple[str, str]] | None = None,
                  progress: bool = True) -> TrainerParts:
    """The parts of an ``OnlineTrainer`` of ``bundle`` on ``patterns`` over ``world``."""
    model, device = bundle.model, bundle.model.logit_scale.device
    selector = make_selector(settings, world.size)
    plan = step_plan(settings, world.size)
    coarse = flexi_patch_size(model, settings.flexi, settings.flexi_patch_size)
    if world.main and (caution := coarse_view_warning(model, coarse)):
        tqdm.write(caution)
    workers, _ = machine.configure(device, settings.workers, settings.threads, say=world.main)
    use_fast_kernels(device)
    if settings.compile:
        compile_towers(model)
    broadcast_parameters(world, model)
    loss_fn = SigLipLoss(rank=world.rank, world_size=world.size)
    optimizer = make_optimizer(model, settings.lr, settings.weight_decay)
    scheduler = make_scheduler(optimizer, settings.steps, settings.warmup)
    loader = _loader(bundle, patterns, settings, plan, world, workers, only, progress)
    saved = RunCheckpoint(checkpoint, world)
    phases = broadcast_object(world, choose_phases(
        settings.precision, settings.score_precision, settings.train_precision, model,
        plan.super_batch(0) // world.size, settings.batch_size // world.size,
        selector.criterion.needs_learner))  # every rank runs rank 0's choice
    if world.main and progress and phases.why != "as asked":
        print(phases.line(), flush=True)
    return TrainerParts(selector, plan, coarse, coarse if settings.flexi == "train" else None, loss_fn, optimizer,
                        scheduler, loader, saved, phases)


def _loader(bundle: ModelBundle, patterns: str | Sequence[str], settings: TrainSettings, plan: StepPlan,
            world: World, workers: int, only: Collection[tuple[str, str]] | None, progress: bool) -> SuperBatchLoader:
    """The super-batches of this rank's shards, as ``plan`` sizes them; a rank needs a shard."""
    device = bundle.model.logit_scale.device
    # a constant B stays a number, so checkpoints of runs without a schedule resume as before
    constant = settings.select_until >= 1.0 and settings.filter_ratio_end is None
    image_size, defer_jpeg = decode_options(settings.decode, device, bundle.preprocess.size)
    loader = SuperBatchLoader(
        patterns, plan(0) if constant else plan, bundle.tokenizer, workers=workers,
        shuffle_buffer=settings.shuffle_buffer, seed=settings.seed, passes=None,
        pin_memory=device.type == "cuda", only=only, image_size=image_size, defer_jpeg=defer_jpeg)
    if len(loader.shards) < world.size:
        raise ValueError(f"{len(loader.shards)} shard(s) for {world.size} ranks: every rank needs "
                         "at least one; write the data in more, smaller shards")
    note = loader.mixing_note()
    if note and world.main and progress:
        print(note, flush=True)
    return loader
