"""Wall-clock to uniform's final accuracy on the Fashion-MNIST demo: uniform, JEST and Flexi-JEST
side by side (and JEST selecting only for the first part of the run, ``--select-until``).

Every second of a step counts (waiting for the loader, preprocessing, scoring, reference
lookup, selection, training, writing the filtered shards); evaluations and checkpoints do not.
The one-off reference costs (training the reference, embedding the web data once) are shown
apart. Each seed trains one reference and every method of that seed reuses it and its cache.
First it checks the input pipeline: the loader must hand out a super-batch of B faster than the
learner scores one.

    PYTHONPATH=. python tools/bench_wallclock.py --out runs/bench-wallclock --seeds 0 1 2
    PYTHONPATH=. python tools/bench_wallclock.py --out /tmp/wallclock --tiny     # a 2-minute check
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from jestfilter import machine
from jestfilter.config import BootstrapConfig, TrainSettings
from jestfilter.data import SuperBatchLoader
from jestfilter.datasets.demo import build_demo_data
from jestfilter.models import coarse_patch_size, create_model, embed
from jestfilter.pipeline import run_bootstrap
from jestfilter.results import reach
from _stats import mean_sd, seeds_parser  # noqa: E402  (tools/ is on sys.path when run as a script)


def seconds_to_reach(run: dict, target: float) -> float | None:
    """Seconds at which ``run`` first reaches ``target`` (interpolated between evaluations)."""
    at = reach(run, target)
    return None if at is None else at["seconds"]


def loader_against_scoring(demo, settings: TrainSettings, model: str, batches: int) -> dict:
    """ms to hand out one super-batch of B (loader on its own, default workers) against ms to
    score one with the learner (full and Flexi patches)."""
    device = torch.device("cpu")
    workers, threads = machine.configure(device, settings.workers, settings.threads)
    rows = settings.batches().super_batch
    bundle = create_model(model)
    loader = SuperBatchLoader(demo.web, rows, bundle.tokenizer, workers=workers, shuffle_buffer=settings.shuffle_buffer,
                              passes=None)
    stream = iter(loader)
    first = next(stream)  # the workers' start and the shuffle buffer's first fill
    started = time.perf_counter()
    for _ in range(batches):
        next(stream)
    loading = (time.perf_counter() - started) / batches
    del stream
    pixels, texts = bundle.preprocess.to_model(first.images), first.texts
    timings = {}
    bundle.model.eval()
    for name, patch in (("full", None), ("flexi", coarse_patch_size(bundle.model))):
        with torch.no_grad():
            embed(bundle.model, pixels, texts, patch)
            started = time.perf_counter()
            for _ in range(batches):
                embed(bundle.model, pixels, texts, patch)
        timings[name] = (time.perf_counter() - started) / batches
    return {"B": rows, "workers": workers, "threads": threads, "loader ms per B": 1e3 * loading,
            "scoring ms per B (full)": 1e3 * timings["full"], "scoring ms per B (Flexi)": 1e3 * timings["flexi"],
            "worker seconds per B": {k: v / (batches + 1) for k, v in loader.timings.items()}}


def bootstrap(demo, out: Path, train: TrainSettings, **config) -> dict:
    cfg = BootstrapConfig(curated=[demo.curated], web=[demo.web], eval=str(demo.eval), out=str(out),
                          progress=False, train=train, **config)
    return run_bootstrap(cfg)


def run_seed(demo, out: Path, seed: int, args) -> dict:
    """Every method of one seed: {name: run summary}, plus the reference's one-off costs."""
    train = TrainSettings(steps=args.steps, seed=seed, eval_every=args.eval_every, batch_size=args.batch_size,
                          n_chunks=args.n_chunks, workers=args.workers, threads=args.threads,
                          precision=args.precision)
    first = bootstrap(demo, out / "jest", train, model=args.model, reference_steps=args.reference_steps,
                      compare=["uniform"])
    runs = {"uniform": first["compare"]["uniform"], "JEST": first["final"]}
    reuse = {"model": args.model, "reference": f"local-dir:{out / 'jest' / 'reference'}",
             "reference_cache": str(next((out / "jest" / "cache").glob("reference-*")))}
    flexi = TrainSettings(**{**vars(train), "flexi": "train", "score_context": args.flexi_context})
    runs["Flexi-JEST"] = bootstrap(demo, out / "flexi", flexi, **reuse)["final"]
    for until in args.select_until:
        partial = TrainSettings(**{**vars(train), "select_until": until})
        runs[f"JEST until {until:g}"] = bootstrap(demo, out / f"until-{until:g}", partial, **reuse)["final"]
    reference = {"training seconds": first["reference"]["train_seconds"],
                 "embedding seconds": first["costs"]["reference_embedding_seconds"]}
    return {"runs": runs, "reference": reference}


def tables(seeds: dict[int, dict]) -> str:
    names = list(next(iter(seeds.values()))["runs"])
    lines = ["| method | zero-shot top-1 | s/step | step / uniform | seconds to uniform's final (per seed) | "
             "× sooner than uniform (per seed) | mean × sooner |", "|---|---|---|---|---|---|---|"]
    for name in names:
        reach, sooner, top1, per_step, ratio = [], [], [], [], []
        for result in seeds.values():
            uniform, run = result["runs"]["uniform"], result["runs"][name]
            target = uniform["zeroshot_top1"]
            base, mine = seconds_to_reach(uniform, target), seconds_to_reach(run, target)
            reach.append(mine)
            sooner.append(None if mine is None or not base else base / mine)
            top1.append(run["zeroshot_top1"])
            per_step.append(run["seconds_per_step"])
            ratio.append(run["seconds_per_step"] / uniform["seconds_per_step"])
        cells = ", ".join("never" if r is None else f"{r:.0f}" for r in reach)
        soon = ", ".join("–" if r is None else f"{r:.2f}×" for r in sooner)
        mean_sooner = mean_sd(sooner, 2, empty="never")
        lines.append(f"| {name} | {mean_sd(top1)} | {mean_sd(per_step)} | {mean_sd(ratio, 2)}× | {cells} | {soon} | "
                     f"{mean_sooner}{'' if mean_sooner == 'never' else '×'} |")
    lines += ["", "Where a step's time went (seconds per step, mean over seeds; worker seconds run in parallel):", "",
              "| method | " + " | ".join(PARTS) + " | workers: read | decode | tokenise |",
              "|---|" + "---:|" * (len(PARTS) + 3)]
    for name in names:
        def per_step(part: str, workers: bool = False) -> float:
            values = []
            for result in seeds.values():
                breakdown = result["runs"][name]["time_breakdown"]
                source = breakdown["loader_workers"] if workers else breakdown
                values.append(source.get(part, 0.0) / breakdown["steps"])
            return statistics.mean(values)

        cells = [f"{per_step(p):.3f}" for p in PARTS] + [f"{per_step(p, True):.3f}" for p in ("read", "decode", "tokenise")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    refs = [result["reference"] for result in seeds.values()]
    training, embedding = (mean_sd([r[name] for r in refs], 1) for name in ("training seconds", "embedding seconds"))
    lines += ["", f"One-off reference costs (not in the seconds above): training {training} s, "
              f"embedding the web data {embedding} s."]
    return "\n".join(lines)


PARTS = ("load", "preprocess", "score", "reference", "select", "train", "write")


def main() -> None:
    parser = seeds_parser(__doc__, "runs/bench-wallclock", "a small data set and a few steps, to check the tool")
    parser.add_argument("--model", default=BootstrapConfig.model)
    parser.add_argument("--steps", type=int, default=TrainSettings.steps)
    parser.add_argument("--reference-steps", type=int, default=BootstrapConfig.reference_steps)
    parser.add_argument("--batch-size", type=int, default=TrainSettings.batch_size)
    parser.add_argument("--n-chunks", type=int, default=TrainSettings.n_chunks)
    parser.add_argument("--eval-every", type=int, default=50, help="finer than the default: the time resolution")
    parser.add_argument("--select-until", type=float, nargs="*", default=[0.25, 0.5])
    parser.add_argument("--flexi-context", type=int, default=None, help="Flexi-JEST's --score-context")
    parser.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    size = dict(curated=2000, web=20000, eval=2000)
    if args.tiny:
        size = dict(curated=300, web=1500, eval=200, samples_per_shard=100)
        args.steps, args.reference_steps, args.eval_every, args.batch_size, args.n_chunks = 30, 20, 10, 32, 4
        args.seeds = args.seeds[:1]
    started = time.perf_counter()
    demo = build_demo_data(args.out / "demo-data", progress=False, **size)
    probe = TrainSettings(batch_size=args.batch_size, n_chunks=args.n_chunks, workers=args.workers,
                          threads=args.threads)
    pipeline = loader_against_scoring(demo, probe, args.model, batches=5 if args.tiny else 20)
    print(json.dumps(pipeline, indent=1), flush=True)
    seeds = {}
    for seed in args.seeds:
        seeds[seed] = run_seed(demo, args.out / f"seed{seed}", seed, args)
        print(f"seed {seed} done after {time.perf_counter() - started:.0f} s", flush=True)
    report = (f"Input pipeline ({args.model}, B = {pipeline['B']}, {pipeline['workers']} worker(s), "
              f"{pipeline['threads']} thread(s)): the loader hands out a super-batch in "
              f"{pipeline['loader ms per B']:.0f} ms; the learner scores it in "
              f"{pipeline['scoring ms per B (full)']:.0f} ms (Flexi: {pipeline['scoring ms per B (Flexi)']:.0f} ms).\n\n"
              f"{tables(seeds)}\n\n(total {time.perf_counter() - started:.0f} s)\n")
    print(report)
    (args.out / "wallclock.md").write_text(report)
    (args.out / "wallclock.json").write_text(json.dumps({"pipeline": pipeline, "seeds": seeds}, indent=1))


if __name__ == "__main__":
    main()
