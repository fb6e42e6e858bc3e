"""Uniform training on any shards (e.g. bootstrap's filtered output): a model folder and metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from jestfilter.config import TrainSettings
from jestfilter.data import atomic_write_json
from jestfilter.distributed import barrier, init_distributed, lock_folder, resolve_device
from jestfilter.eval import evaluate, load_eval_set
from jestfilter.models import input_size, save_local_dir, start_model, stats_for_new_model
from jestfilter.models.options import DEFAULT_MODEL
from jestfilter.plan import batch_summary
from jestfilter.train.loop import OnlineTrainer

MODEL_DIR = "final"  # as bootstrap names its trained model


def train_uniform(shards: Sequence[str], out: str | Path, settings: TrainSettings, eval_dir: str | None = None,
                  model: str = DEFAULT_MODEL, device: str = "auto", keep_checkpoints: bool = False) -> int:
    """Train ``model`` on ``shards`` into ``out/final`` with ``out/metrics.json``; resumes after a
    kill, and a finished run is not redone. A new model starts as bootstrap's learners do
    (bias for the batch size); a model folder continues from its weights."""
    settings.validate()
    out = Path(out)
    if (out / "metrics.json").exists() and (out / MODEL_DIR).is_dir():
        print(f"{out} holds a finished run: nothing to do (model: {out / MODEL_DIR})")
        return 0
    eval_size = None if settings.decode == "full" else input_size(model)
    eval_set = load_eval_set(eval_dir, eval_size) if eval_dir else None
    world, device = init_distributed(resolve_device(device))
    lock = lock_folder(out, world)
    try:
        # bootstrap's learners start from this seed too
        stats = stats_for_new_model(settings.pixel_norm, model, shards)  # from the shards it trains on
        bundle = start_model(model, settings.model_seed("learner"), settings.batch_size, device, pixel_stats=stats)
        if world.main:
            print(batch_summary(settings, world.size))
        evaluator = (lambda b: evaluate(b, eval_set, device=device)) if eval_set is not None else None
        trainer = OnlineTrainer(bundle, shards, settings, checkpoint=out / "checkpoint.pt", evaluate=evaluator,
                                name="train", progress=world.main, on_evaluation=print_evaluation)
        metrics = trainer.run()
        barrier(world)
        if not world.main:
            return 0
        save_local_dir(bundle, out / MODEL_DIR)
        atomic_write_json(out / "metrics.json", metrics)
        if not keep_checkpoints:
            trainer.checkpoint.remove()
    finally:
        if lock is not None:
            lock.release()
    if eval_set is not None:
        print(f"zero-shot top-1 {metrics['zeroshot_top1']:.3f}, retrieval R@1 {metrics['retrieval_r1']:.3f}")
    print(f"model: {out / MODEL_DIR}")
    return 0


def print_evaluation(step: int, steps: int, metrics: dict) -> None:
    tqdm.write(f"[train] step {step}/{steps}: zero-shot {metrics['zeroshot_top1']:.3f}, "
               f"R@1 {metrics['retrieval_r1']:.3f}")
