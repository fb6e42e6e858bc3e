"""The validation suite: every set of `jestfilter demo-data --set` (and the demo's low-repetition
pool), the library's defaults against an independent plain loop, over seeds (issue "Training
that holds on data it was not tuned on").

Per set and seed: one `bootstrap` with every default and `--compare uniform,easy_reference,
independent` (the reference, uniform, JEST and the two baselines), `jestfilter train` on the web
shards (uniform, the library's standalone trainer), and `tools/plain_loop.py` (decodes the
shards into memory, draws batches with replacement, its own loss/optimiser/schedule) on the
web shards for the same steps and on the curated shards for the reference's steps, with each
recipe of ``--plain-recipes``. Same data for every seed; the seed changes the models' weights,
the data order and the sampling. A set's steps are what its data needs (the many-class sets
learn slower); its reference reads its curated set 12.8 times (the demo's 400 × 64 over 2,000).

    python tools/suite.py --out runs/suite                          # hours on 2 cores; resumes
    python tools/suite.py --out runs/suite --sets digits --seeds 1  # one set, one seed
    python tools/suite.py --out /tmp/suite --tiny --seeds 1         # minutes: checks the script
    python tools/suite.py --out runs/suite --sets symbols --seeds 4 5 6 --references-only \
        --plain-recipes jest-tiny:half:batch jest-tiny:half:batch:1e-3  # the references alone, more seeds

Writes OUT/suite.md (a table per set) and OUT/suite.json (``--references-only``: OUT/references.md
and .json); every run resumes or is skipped when done.
Run it with OMP_NUM_THREADS=1; two of it at once (e.g. one per seed) share 2 cores well.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from jestfilter.config import BootstrapConfig, TrainSettings
from jestfilter.datasets.demo import SETS, build_demo_data
from jestfilter.jobs.train import train_uniform
from jestfilter.pipeline import run_bootstrap, stages
from jestfilter.pipeline.job import Job
from jestfilter.train.stall import not_learning
from _stats import mean_sd, seeds_parser  # noqa: E402  (tools/ is on sys.path when run as a script)

COMPARE = ["uniform", "easy_reference", "independent"]
# model:preprocess:bias[:lr] of the plain loop; its defaults otherwise (lr 2e-3, β2 0.95, 5 % warm-up, cosine):
# the best recipe of the grid in docs/benchmarks.md at the lr and at the library's, and the (bias −10)
PLAIN_RECIPES = ["jest-tiny:half:batch", "jest-tiny:half:batch:1e-3", "jest-tiny:half:-10"]
# name: (demo-data set, its data options, learner steps, reference steps)
SUITE = {
    "fashion": ("fashion", {}, 600, 400),
    "fashion-fresh": ("fashion", {"web": 200_000, "augment": 4}, 600, 400),  # the pool read about once
    "digits": ("digits", {}, 600, 300),
    "symbols": ("symbols", {}, 1500, 800),
    "clipart": ("clipart", {}, 1200, 200),
}
TINY_DATA = dict(curated=200, web=600, eval=100, samples_per_shard=100)
TINY = dict(steps=12, batch_size=16, n_chunks=4, eval_every=6, workers=0)


def build(root: Path, name: str, tiny: bool):
    source, options, *_ = SUITE[name]
    return build_demo_data(root / "data" / name, set=source, progress=False, **(TINY_DATA if tiny else options))


def lengths(name: str, tiny: bool) -> tuple[int, int]:
    """The learner's and the reference's steps on set ``name``."""
    return (TINY["steps"], 6) if tiny else SUITE[name][2:]


def config(data, out: Path, seed: int, steps: int, reference_steps: int, tiny: bool) -> BootstrapConfig:
    """The suite's bootstrap: every default, ``--compare`` the three baselines."""
    settings = TrainSettings(seed=seed, threads=1, **{**(TINY if tiny else {}), "steps": steps})
    return BootstrapConfig(curated=[data.curated], web=[data.web], eval=str(data.eval), out=str(out), progress=False,
                           compare=COMPARE, train=settings, reference_steps=reference_steps)


def bootstrap(data, out: Path, seed: int, steps: int, reference_steps: int, tiny: bool) -> dict:
    return run_bootstrap(config(data, out, seed, steps, reference_steps, tiny))


def reference(data, out: Path, seed: int, steps: int, reference_steps: int, tiny: bool) -> dict:
    """Bootstrap's reference alone: its stage of the suite's bootstrap in ``out`` (a finished
    bootstrap's, or one a later full run there picks up); its metrics."""
    if (out / "metrics.json").exists():
        return json.loads((out / "metrics.json").read_text())["reference"]
    return stages.reference(Job(config(data, out, seed, steps, reference_steps, tiny)))[1]


def plain_arm(name: str, result: dict) -> dict:
    """A plain loop's result as an arm: its final zero-shot and whether it stalled."""
    top1 = result["final"]["zeroshot_top1"]
    return {"zeroshot_top1": top1, "stalled": not_learning(top1, 1 / SETS[SUITE[name][0]].classes, []) is not None}


def library_train(data, out: Path, seed: int, steps: int, tiny: bool) -> dict:
    if not (out / "metrics.json").exists():
        settings = TrainSettings(seed=seed, method="uniform", threads=1, **{**(TINY if tiny else {}), "steps": steps})
        train_uniform([data.web], out, settings, eval_dir=str(data.eval))
    return json.loads((out / "metrics.json").read_text())


def plain(data, split: str, recipe: str, out: Path, seed: int, steps: int, tiny: bool) -> dict:
    """``tools/plain_loop.py`` on ``split`` ("web" or "curated") with ``recipe``; its JSON."""
    if not out.exists():
        model, preprocess, bias, *lr = recipe.split(":")
        shards = data.web if split == "web" else data.curated
        command = [sys.executable, str(Path(__file__).parent / "plain_loop.py"), "--web", shards, "--eval",
                   str(data.eval), "--model", model, "--preprocess", preprocess, f"--bias-init={bias}",
                   "--seed", str(seed), "--steps", str(steps), "--json", str(out), *(["--lr", lr[0]] if lr else [])]
        if tiny:
            command += ["--batch", str(TINY["batch_size"]), "--eval-every", str(TINY["eval_every"])]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.read_text())


def one_seed(root: Path, name: str, data, seed: int, recipes: list[str], tiny: bool) -> dict:
    """{arm: {"zeroshot_top1", "stalled", "web_passes", ...}} for one set and seed."""
    run = root / name / f"seed{seed}"
    steps, reference_steps = lengths(name, tiny)
    metrics = bootstrap(data, run / "bootstrap", seed, steps, reference_steps, tiny)
    arms = {"reference": metrics["reference"], metrics["final"]["method"]: metrics["final"], **metrics["compare"]}
    arms["speedup"] = metrics["speedup"]
    arms["train (library, uniform)"] = library_train(data, run / "train", seed, steps, tiny)
    for recipe in recipes:
        web = plain(data, "web", recipe, run / f"plain-web-{recipe.replace(':', '-')}.json", seed, steps, tiny)
        arms[f"plain loop {recipe}"] = plain_arm(name, web)
        arms[f"plain loop reference {recipe}"] = plain_reference(run, name, data, seed, recipe, tiny)
    return arms


def plain_reference(run: Path, name: str, data, seed: int, recipe: str, tiny: bool) -> dict:
    """The plain loop with ``recipe`` on the curated shards for the reference's steps, as an arm."""
    out = run / f"plain-curated-{recipe.replace(':', '-')}.json"
    return plain_arm(name, plain(data, "curated", recipe, out, seed, lengths(name, tiny)[1], tiny))


def references_seed(root: Path, name: str, data, seed: int, recipes: list[str], tiny: bool) -> dict:
    """``--references-only``: bootstrap's reference and the plain loop's, for one set and seed."""
    run = root / name / f"seed{seed}"
    steps, reference_steps = lengths(name, tiny)
    return {"reference": reference(data, run / "bootstrap", seed, steps, reference_steps, tiny),
            **{f"plain loop reference {r}": plain_reference(run, name, data, seed, r, tiny) for r in recipes}}


def references_table(name: str, seeds: dict[int, dict]) -> list[str]:
    """One set's references over the seeds, bootstrap's against each plain loop's (paired)."""
    ours = [arms["reference"]["zeroshot_top1"] for arms in seeds.values()]
    lines = [f"### {name}: references, seeds {', '.join(map(str, seeds))}", "",
             "| model | zero-shot per seed | mean ± sd | bootstrap − this (paired, points) |", "|---|---|---|---|"]
    for arm in next(iter(seeds.values())):
        top1 = [arms[arm]["zeroshot_top1"] for arms in seeds.values()]
        paired = [100 * (a - b) for a, b in zip(ours, top1)]
        lines.append(f"| {arm} | {' / '.join(f'{v:.3f}' for v in top1)} | {mean_sd(top1)} | "
                     + ("–" if arm == "reference" else f"{mean_sd(paired, 1)} ({', '.join(f'{d:+.1f}' for d in paired)})")
                     + " |")
    return lines + [""]


def table(name: str, seeds: dict[int, dict]) -> list[str]:
    """One set: every arm over the seeds, JEST against uniform (paired), passes over the web pool."""
    source = SETS[SUITE[name][0]]
    first = next(iter(seeds.values()))
    steps, reference_steps = SUITE[name][2:]
    lines = [f"### {name}: {source.description}; learners {steps} steps, reference {reference_steps}", "",
             "| arm | zero-shot per seed | mean ± sd | stalled | web passes |", "|---|---|---|---|---|"]
    for arm in (a for a in first if a != "speedup"):
        top1 = [arms[arm]["zeroshot_top1"] for arms in seeds.values()]
        stalled = sum(bool(arms[arm].get("stalled")) for arms in seeds.values())
        passes = [arms[arm].get("web_passes") for arms in seeds.values()]
        lines.append(f"| {arm} | {', '.join(f'{v:.3f}' for v in top1)} | {mean_sd(top1)} | {stalled}/{len(seeds)} "
                     f"| {mean_sd(passes, 1)} |")
    gain = [arms["learnability"]["zeroshot_top1"] - arms["uniform"]["zeroshot_top1"] for arms in seeds.values()]
    sooner = [arms["speedup"].get("learnability", {}) for arms in seeds.values()]
    ratios = [s["examples_ratio"] for s in sooner if s.get("reached")]
    seconds = [s["seconds_ratio"] for s in sooner if s.get("reached")]
    chosen = [arms["learnability"].get("precision", {}) for arms in seeds.values()]
    lines += ["", "Precision the bootstrap's `auto` chose (score/train) per seed: "
              + ", ".join(f"{c.get('score', '?')}/{c.get('train', '?')}" for c in chosen) + "."]
    lines += ["", f"JEST − uniform (paired): {', '.join(f'{100 * g:+.1f}' for g in gain)} points, "
              f"mean {mean_sd([100 * g for g in gain], 1)}. JEST reached uniform's final accuracy on "
              f"{len(ratios)}/{len(seeds)} seeds, {mean_sd(ratios, 2)}× sooner in examples "
              f"({', '.join(f'{r:.2f}' for r in ratios)}) and {mean_sd(seconds, 2)}× in the steps' seconds "
              f"(runs sharing 2 cores: noisy).", ""]
    return lines


def main() -> None:
    parser = seeds_parser(__doc__, "runs/suite", "tiny sets and runs: checks the script in minutes")
    parser.set_defaults(seeds=[1, 2, 3])
    parser.add_argument("--sets", nargs="+", default=list(SUITE), choices=list(SUITE))
    parser.add_argument("--plain-recipes", nargs="+", default=PLAIN_RECIPES, metavar="MODEL:PREPROCESS:BIAS[:LR]")
    parser.add_argument("--references-only", action="store_true",
                        help="only bootstrap's reference and the plain loop's on the curated shards (more seeds of "
                             "the reference target, cheaply); writes OUT/references.md")
    args = parser.parse_args()
    seed_run, tabulate, stem = ((references_seed, references_table, "references") if args.references_only
                                else (one_seed, table, "suite"))
    results, lines = {}, ["# Validation suite", ""]
    for name in args.sets:
        data = build(args.out, name, args.tiny)
        results[name] = {seed: seed_run(args.out, name, data, seed, args.plain_recipes, args.tiny)
                         for seed in args.seeds}
        lines += tabulate(name, results[name])
        (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
