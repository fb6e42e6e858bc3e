"""The settings of a run, in one place: defaults, help texts and checks.

``TrainSettings`` is one training run (the reference, a baseline or the JEST learner);
``BootstrapConfig`` is a whole bootstrap job and holds its learner's ``TrainSettings`` as
``train`` rather than copying them. Every field carries its help text, from which the CLI
builds its flags (``jestfilter.commands._flags``), so a default is written once.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from jestfilter.data.options import DECODES, MANIFESTS, SAMPLES_PER_SHARD
from jestfilter.models.options import DEFAULT_MODEL, LOCAL_DIR, PIXEL_NORMS
from jestfilter.selection.batches import BatchPlan
from jestfilter.selection.criteria import ONLINE, SAMPLINGS, criterion
from jestfilter.sinks.rules import FILTERED_RULES

DEVICE_HELP = "auto (this rank's GPU if there is one, else cpu), cpu, cuda, cuda:1, ..."
MAX_COUNT = 10**9  # the most steps, samples, batch rows, workers, ... a setting may give
MAX_SEED = 2**63 - 1
PRECISIONS = ("fp32", "bf16")
FLEXI_MODES = ("off", "score", "train")  # train: the paper's Flexi-JEST; score: its cheap scoring alone
DEMO_COMPARE = ["uniform", "easy_reference"]  # the demo's comparisons, when --compare is not given


def described(choices: dict[str, str]) -> str:
    """A help text's list of choices: ``name: what it does; ...``."""
    return "; ".join(f"{name}: {text}" for name, text in choices.items())


def option(default: Any, help: str, **flag: Any) -> Any:
    """A dataclass field with its CLI help (and argparse extras such as ``choices``)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **flag})
    return field(default=default, metadata={"help": help, **flag})


@dataclass
class TrainSettings:
    """One training run. ``batch_size`` is b, the examples trained on per step over all ranks."""

    steps: int = option(600, "training steps")
    batch_size: int = option(64, "b: examples trained on per step over all ranks: under torchrun each of N "
                                 "ranks reads B/N and trains on b/N (open_clip_train's --batch-size is per GPU, "
                                 "i.e. b/N)")
    method: str = option("learnability", "selection criterion", choices=ONLINE)
    filter_ratio: float = option(0.8, "f: share of each super-batch of B = b/(1−f) dropped")
    n_chunks: int = option(16, "chunks of the joint sampler")
    sampling: str = option("softmax", "draw each chunk by softmax (Gumbel-top-k) or take the top scores",
                           choices=SAMPLINGS)
    gain: float = option(1.0, "inverse temperature of softmax sampling")
    seed: int = option(0, "seed of model init, data order and sampling")
    lr: float = option(1e-3, "peak learning rate (AdamW); 2e-3 trained some seeds 15-30 points worse on the "
                             "validation suite (docs/benchmarks.md)")
    weight_decay: float = option(1e-4, "decoupled weight decay: each step shrinks the weight matrices by this × "
                                       "the schedule's factor (big_vision's meaning, the paper's 1e-4; AdamW gets "
                                       "it divided by --lr)")
    warmup: float = option(0.05, "share of the steps spent warming the learning rate up")
    grad_clip_norm: float = option(1.0, "clip the gradients' global norm to this before each update; 0 turns it off, "
                                        "as open_clip_train does (docs/benchmarks.md: at --lr 2e-3 turning it off helped the demo "
                                        "and hurt small pools read many times)")
    flexi: str = option("off", "Flexi-JEST: score each super-batch at a coarser patch size (score), and also co-train "
                               "half of each batch there (train, the paper's; --flexi alone)", choices=FLEXI_MODES,
                        nargs="?", const="train")
    flexi_patch_size: int | None = option(None, "Flexi's coarse patch size (default: the divisor of the image "
                                                "size nearest to twice the native one)")
    score_context: int | None = option(None, "the learner scores captions cut to N tokens (default: whole "
                                             "captions); a cheaper, approximate text side for scoring")
    select_until: float = option(1.0, "fraction of the steps that select; after it the learner trains on "
                                      "plain batches of b from the same stream, reading b instead of B")
    filter_ratio_end: float | None = option(None, "lower f linearly from --filter-ratio to this while selecting "
                                                  "(default: constant)")
    precision: str = option("auto", "arithmetic of the learner's scoring and training passes: fp32, bf16 (autocast, "
                                    "fp32 master weights, selection in fp32), or auto: bf16 on a GPU, and on a CPU "
                                    "each phase in whichever of the two a timed pass at start finds faster "
                                    "(--score-precision / --train-precision set one phase)",
                            choices=("auto", *PRECISIONS))
    score_precision: str | None = option(None, "the learner's scoring pass only: fp32 or bf16 (default: from "
                                               "--precision)", choices=PRECISIONS)
    train_precision: str | None = option(None, "the training step only: fp32 or bf16 (default: from --precision)",
                                         choices=PRECISIONS)
    compile: bool = option(False, "torch.compile the transformer blocks (slow first steps, then faster)")
    eval_every: int = option(100, "evaluate every N steps")
    checkpoint_every: int = option(50, "checkpoint every N steps")
    decode: str = option("auto", "where and how images are decoded: " + described(DECODES), choices=tuple(DECODES))
    workers: int | None = option(None, "decoding workers (default: from the cores, see --threads)")
    threads: int | None = option(None, "torch CPU threads (default: $OMP_NUM_THREADS, else the cores left "
                                        "after the loader's workers, at least 1)")
    pixel_norm: str = option("half", "how a new model normalises its pixels: data (each channel's mean and std "
                                      "over its training images: the curated set for bootstrap), half ((x−0.5)/0.5) "
                                      "or clip (CLIP's, for photographs); saved in the model folder, and a model "
                                      "folder keeps its own", choices=PIXEL_NORMS)
    shuffle_buffer: int = option(20_000, "raw samples each loader worker holds to mix the stream; it must span "
                                         "many shards, since shards are often ordered (img2dataset keeps its "
                                         "input's order) and an ordered stream cripples training")

    def validate(self) -> None:
        """Fail fast, with one line, on settings that cannot work."""
        criterion(self.method)
        check_bounds(self)
        if not 0.0 < self.filter_ratio < 1.0:
            raise ValueError(f"--filter-ratio must lie strictly between 0 and 1, got {self.filter_ratio}")
        for name in ("steps", "batch_size", "eval_every", "checkpoint_every", "n_chunks"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not self.lr > 0.0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if not self.weight_decay >= 0.0:
            raise ValueError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        if not self.grad_clip_norm >= 0.0:
            raise ValueError(f"--grad-clip-norm must be 0 (off) or more, got {self.grad_clip_norm}")
        if not math.isfinite(self.gain):
            raise ValueError(f"--gain must be a number, got {self.gain}")
        if not self.gain > 0:
            raise ValueError(f"--gain must be positive, got {self.gain}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"--sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")
        if self.flexi_patch_size is not None and self.flexi_patch_size < 1:
            raise ValueError(f"--flexi-patch-size must be positive, got {self.flexi_patch_size}")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"--warmup must be a fraction of the steps in [0, 1), got {self.warmup}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"--workers must be 0 or more, got {self.workers}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be positive, got {self.threads}")
        if not 0.0 <= self.select_until <= 1.0:
            raise ValueError(f"--select-until must be a fraction of the steps in [0, 1], got {self.select_until}")
        if self.filter_ratio_end is not None and not 0.0 < self.filter_ratio_end < 1.0:
            raise ValueError(f"--filter-ratio-end must lie strictly between 0 and 1, got {self.filter_ratio_end}")
        if self.flexi not in FLEXI_MODES:
            raise ValueError(f"--flexi must be one of {', '.join(FLEXI_MODES)}, got {self.flexi!r}")
        if self.score_context is not None and self.score_context < 2:
            raise ValueError(f"--score-context must be at least 2 tokens, got {self.score_context}")
        self.batches().check()  # b must split into chunks
        if self.filter_ratio_end is not None:
            self.batches().at(self.filter_ratio_end).check()

    def model_seed(self, role: str) -> int:
        """The torch seed of a model's initial weights: each role ("reference", "learner") its
        own, derived from ``seed``, so the reference and the learner start apart (the paper
        trains them as separate runs) while every learner of a comparison starts alike."""
        import numpy as np  # not needed to build the CLI

        return int(np.random.SeedSequence([self.seed, *role.encode()]).generate_state(1)[0])

    def batches(self, ranks: int = 1) -> BatchPlan:
        """b, B and f of this run's selecting steps over ``ranks`` ranks (at ``filter_ratio``)."""
        return BatchPlan.of(criterion(self.method), self.batch_size, self.filter_ratio, self.n_chunks, ranks)

    @property
    def select_steps(self) -> int:
        """The steps that select (the first ones); the rest train on plain batches."""
        return round(self.select_until * self.steps)


@dataclass
class BootstrapConfig:
    """Everything a bootstrap run needs; the CLI flags and ``--config`` files fill it."""

    curated: list[str] | None = option(None, "curated shards, e.g. 'curated/{00000..00003}.tar'", nargs="+",
                                       metavar="PATTERN")
    web: list[str] | None = option(None, "web shards, e.g. 'web/{00000..00039}.tar'", nargs="+", metavar="PATTERN")
    eval: str | None = option(None, "eval folder: *.tar with KEY.jpg/.txt/.cls, classnames.txt", metavar="DIR")
    out: str = option("runs/demo", "output folder", metavar="DIR")
    reference: str | None = option(None, "reuse this reference model folder instead of training one",
                                   metavar="DIR")
    reference_cache: str | None = option(None, "the reference's embeddings of the web shards (a `jestfilter "
                                               "embed` output); shards missing there are embedded into it",
                                         metavar="DIR")
    reference_steps: int = option(400, "reference training steps")
    model: str = option(DEFAULT_MODEL, "jest-tiny, jest-tiny-p4, jest-small, jest-b16, an open_clip name, or a "
                                       "model folder to start from (DIR or local-dir:DIR)")
    compare: list[str] | None = option(None, "also train these methods with the same budget ('none' for none; "
                                             "default: " + ",".join(DEMO_COMPARE) + " on the demo data, else none); "
                                             "clip_score and neg_clip_loss keep the top 1−f of the web by the "
                                             "reference and train on it uniformly", metavar="M1,M2")
    rounds: int = option(1, "bootstrap rounds: round k+1 takes round k's final model as its reference "
                            "(OUT/round-K/); stops early when a round's final is not better than its reference")
    early_stop: bool = option(True, "stop the rounds after one whose final model is not better than its "
                                    "reference", flag="--no-early-stop")
    filtered_rule: str = option("first-pass", "which samples filtered/ holds: " + described(FILTERED_RULES),
                                choices=tuple(FILTERED_RULES))
    samples_per_shard: int = option(SAMPLES_PER_SHARD, "samples per filtered shard")
    manifest: str = option("all", "what filtered/manifest.parquet records: " + described(MANIFESTS),
                           choices=tuple(MANIFESTS))
    device: str = option("auto", DEVICE_HELP)
    progress: bool = option(True, "show progress bars", flag="--no-progress")
    keep_checkpoints: bool = option(False, "keep the checkpoints after a successful run (an unfinished run "
                                           "always keeps them, to resume from)")
    train: TrainSettings = field(default_factory=TrainSettings)

    def __post_init__(self) -> None:
        if self.compare is None:  # not given: the demo compares with DEMO_COMPARE, given data with nothing
            self.compare = list(DEMO_COMPARE) if self.curated is None and self.web is None and self.eval is None else []

    def validate(self) -> None:
        """Fail fast, with one line, on arguments that cannot work."""
        check_bounds(self)
        given = [self.curated is not None, self.web is not None, self.eval is not None]
        if any(given) and not all(given):
            raise ValueError("give --curated, --web and --eval together (or none of them for the demo)")
        if self.reference and not os.path.isdir(self.reference.removeprefix(LOCAL_DIR)):
            raise ValueError(f"--reference must be a model folder (PATH or local-dir:PATH), got {self.reference!r}")
        if criterion(self.train.method).offline is not None:
            raise ValueError(f"--method {self.train.method} is an offline score: pass it to --compare "
                             "(or use the score and filter jobs)")
        for method in self.methods:
            self.settings_for(method).validate()
        if self.samples_per_shard < 1:
            raise ValueError(f"--samples-per-shard must be positive, got {self.samples_per_shard}")
        if self.reference_steps < 1 and not self.reference:
            raise ValueError("--reference-steps must be positive (or pass --reference DIR)")
        if self.rounds < 1:
            raise ValueError(f"--rounds must be positive, got {self.rounds}")
        if self.manifest != "all" and self.filtered_rule == "top":
            raise ValueError("--filtered-rule top ranks every sample by its scores in every pass: it needs "
                             "--manifest all")
        if self.rounds > 1 and not criterion(self.train.method).needs_reference:
            raise ValueError(f"--rounds {self.rounds} needs a --method that uses the reference; "
                             f"{self.train.method} does not")

    @property
    def methods(self) -> list[str]:
        """The main method first, then each compared one once."""
        return [self.train.method] + [m for m in self.compare if m != self.train.method]

    def reference_settings(self) -> TrainSettings:
        """The reference's run: the learner's recipe, uniform on the curated data, at full resolution."""
        return dataclasses.replace(self.train, method="uniform", steps=self.reference_steps, flexi="off",
                                   score_context=None, select_until=1.0, filter_ratio_end=None)

    def settings_for(self, method: str) -> TrainSettings:
        """The learner's run with ``method``, the same budget and recipe. Only the main method
        runs Flexi: the paper compares Flexi-JEST with baselines trained at full resolution. An
        offline criterion's run trains uniformly (on the part of the web data its scores keep)."""
        offline = criterion(method).offline is not None
        main = method == self.train.method
        return dataclasses.replace(self.train, method="uniform" if offline else method,
                                   flexi=self.train.flexi if main else "off",
                                   score_context=self.train.score_context if main else None)


def check_bounds(settings: Any) -> None:
    """Refuse, in one line, a whole number beyond what a run can mean (``steps = 1e20`` in a
    config file would loop in the plan, a seed over 2⁶³ fails deep in torch): at most
    ``MAX_COUNT``, a seed in [0, 2⁶³)."""
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        low, high = (0, MAX_SEED) if item.name == "seed" else (-MAX_COUNT, MAX_COUNT)
        if not low <= value <= high:
            flag = "--" + item.name.replace("_", "-")
            raise ValueError(f"{flag} must be {'at most' if value > high else 'at least'} "
                             f"{high if value > high else low:,}, got {value}")


def check_types(cls: type, values: dict[str, Any], where: str) -> None:
    """Refuse, in one line, a value whose type does not fit its field of dataclass ``cls`` (a
    config file's ``steps = "10"``); names ``cls`` does not have are left to the caller."""
    hints = typing.get_type_hints(cls)
    for name, value in values.items():
        if name not in hints or dataclasses.is_dataclass(hints[name]):
            continue
        kinds = typing.get_args(hints[name]) if isinstance(hints[name], types.UnionType) else (hints[name],)
        if not any(_fits(value, kind) for kind in kinds):
            wanted = " or ".join(_describe(kind) for kind in kinds)
            raise ValueError(f"{where}: {name} must be {wanted}, got {value!r}")


def _fits(value: Any, kind: Any) -> bool:
    if kind is type(None):
        return value is None
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typing.get_origin(kind) is list:  # a single string stands for a one-item (or comma-separated) list
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    return isinstance(value, kind)


def _describe(kind: Any) -> str:
    if kind is type(None):
        return "none"
    if typing.get_origin(kind) is list:
        return "a list of strings"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(kind, str(kind))
