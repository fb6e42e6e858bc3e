"""Joint example selection (JEST, arXiv 2406.17711, Algorithm 1) without the B×B matrix."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from jestfilter.selection.batches import BatchPlan
from jestfilter.selection.conditioning import LogSumExps, NoConditioning, PairLossSums
from jestfilter.selection.criteria import SAMPLINGS, criterion
from jestfilter.selection.losses import own_pair_logits, own_pair_loss, sigmoid_pair_loss
from jestfilter.selection.outputs import Selection, SiglipOutputs, as_siglip_outputs

LOSSES = ("sigmoid", "softmax")


class Selector:
    """Chooses the b = round(B·(1 − filter_ratio)) most learnable examples of a super-batch, jointly.

    Criteria (``method``, see ``jestfilter.selection.criteria``): ``learnability`` (A =
    l_learner − l_reference per pair, the default), ``hard_learner`` (A = l_learner),
    ``easy_reference`` (A = −l_reference), ``uniform``, and the per-example baselines
    ``independent`` (each example's learnability in the whole super-batch, the paper's Eq. 2),
    ``independent_own_pair`` and ``reference_score`` (each example's own pair alone). A joint
    criterion with ``n_chunks=1`` draws by A_ii alone. ``reference`` may be None when the
    criterion does not score with the reference, ``learner`` likewise.

    The batch is drawn in ``n_chunks`` chunks (Algorithm 1): the first by each example's own
    score A_ii, each next one by A_ii + Σ_{k chosen}(A_ik + A_ki), i.e. conditioned on
    everything chosen so far. ``sampling="softmax"`` draws each chunk without replacement with
    probability ∝ exp(gain·score) (Gumbel-top-k, never exponentiated); ``"greedy"`` takes the
    top scores. ``uniform`` always draws uniformly at random.

    ``gain`` defaults to 1: scores are summed pair losses in nats, so exp(score) is the
    paper's target distribution p(batch) ∝ exp(learnability) (Algorithm 1 shows no gain). Sums
    over many pairs already spread candidates by several nats, so gain 1 strongly prefers
    learnable data yet still explores; Algorithm 2's gain 100 makes every chunk practically
    greedy (use ``sampling="greedy"`` for that), and rescaling by 1/b would flatten large
    super-batches towards uniform. A prototype on the demo data did well with gain 1.

    Batch arithmetic. Without ``batch_size`` the sub-batch is b = round(B·(1 − filter_ratio))
    of whatever B rows come in, and b must split into chunks (a ValueError says what to
    change). With ``batch_size=b`` the Selector plans a run once (``batches``, a ``BatchPlan``):
    ``super_batch`` is the B to read per step (b itself for ``uniform``, which reads nothing
    extra), b is checked to split into chunks × strata at construction, a full super-batch
    keeps exactly b, and a short one (the end of a pass) keeps its share in whole chunks,
    possibly none.

    ``strata=k`` splits the rows into k equal contiguous blocks and takes chunk/k from each
    block in every chunk (what each rank of a distributed job takes from its own rows).
    ``loss="softmax"`` scores CLIP-loss models (the paper's Algorithm 3, each model with its
    own embeddings and scale). Scoring never builds a B×B matrix: ``block_bytes`` caps the
    scratch memory of one [rows × chunk] block of fp32 logits plus one temporary (256 MiB).
    The same (seed, step, inputs, device type) always give the same indices.

    ``group`` (a torch.distributed process group): each rank passes its own rows, the same
    number on every rank, and gets back indices into them; ranks exchange only each chosen
    chunk's embeddings and draw the same noise, so together they choose exactly what
    ``Selector(strata=world)`` chooses from the concatenated super-batch.
    """

    def __init__(self, method: str = "learnability", filter_ratio: float = 0.8, n_chunks: int = 16,
                 sampling: str = "softmax", gain: float = 1.0, seed: int = 0, strata: int = 1,
                 loss: str = "sigmoid", block_bytes: int = 256 * 2**20, batch_size: int | None = None):
        self.criterion = criterion(method)
        if self.criterion.offline is not None:
            raise ValueError(f"{method} is an offline per-example score, not a selection inside super-batches: "
                             "rank a whole pool by it (the score and filter jobs, or bootstrap --compare)")
        _check_choice("sampling", sampling, SAMPLINGS)
        _check_choice("loss", loss, LOSSES)
        if not 0.0 < filter_ratio < 1.0:
            raise ValueError(f"filter_ratio must lie strictly between 0 and 1, got {filter_ratio}")
        for name, value in (("n_chunks", n_chunks), ("strata", strata), ("block_bytes", block_bytes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (math.isfinite(gain) and gain > 0):
            raise ValueError(f"gain must be a positive finite number, got {gain}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.method, self.filter_ratio, self.sampling, self.loss = method, filter_ratio, sampling, loss
        self.n_chunks = n_chunks if self.criterion.joint else 1
        self.gain, self.seed, self.strata, self.block_bytes = gain, seed, strata, block_bytes
        self.batch_size = batch_size
        self.batches = None if batch_size is None else BatchPlan.of(self.criterion, batch_size, filter_ratio,
                                                                    self.n_chunks, strata)
        if self.batches is not None:
            self.batches.check()

    @property
    def super_batch(self) -> int | None:
        """B: the rows to read per step for ``batch_size`` (None without one)."""
        return None if self.batches is None else self.batches.super_batch

    def keep(self, rows: int, strata: int | None = None) -> int:
        """b: how many of ``rows`` (over all strata) the Selector keeps."""
        if self.batch_size is None:
            return round(rows * (1 - self.filter_ratio))
        if self.criterion.random:
            return min(rows, self.batch_size)
        step = self.n_chunks * (strata or self.strata)
        return min(self.batch_size, round(rows * (1 - self.filter_ratio)) // step * step)

    def select(self, learner, reference, step: int = 0, group=None, rows: int | None = None) -> Tensor:
        """Indices of the chosen examples into the super-batch, a LongTensor [b]."""
        return self.select_with_scores(learner, reference, step=step, group=group, rows=rows).indices

    def select_with_scores(self, learner, reference, step: int = 0, group=None, rows: int | None = None) -> Selection:
        """The chosen indices plus each example's own-pair losses, from the same pass.

        ``rows`` (the super-batch's size) is needed only when neither model's outputs are given,
        i.e. for ``uniform``.
        """
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        learner, reference = self._check_models(learner, reference, rows)
        model = learner if learner is not None else reference
        device = model.image.device if model is not None else torch.device("cpu")
        rows = model.image.shape[0] if model is not None else rows
        learner_loss = None if learner is None else own_pair_loss(learner, self.loss)
        reference_loss = None if reference is None else own_pair_loss(reference, self.loss)
        learnability = None if learner is None or reference is None else learner_loss - reference_loss
        scores = dict(learner_loss=learner_loss, reference_loss=reference_loss, learnability=learnability)
        c = self.criterion
        terms = [(weight, m) for weight, m in ((c.learner_weight, learner), (c.reference_weight, reference)) if weight]
        own = torch.zeros(rows, device=device)
        for weight, m in terms:
            own += weight * (learner_loss if m is learner else reference_loss)
        if group is None:
            keep = self._checked_keep(rows, self.strata)
            quota, strata, first_row, total_rows = keep // self.n_chunks // self.strata, self.strata, 0, rows

            def gather(new: Tensor):
                return [(m.image[new], m.text[new]) for _, m in terms]
        else:
            world, rank, total_rows = self._world(rows, group)
            keep = self._checked_keep(total_rows, world)
            quota, strata, first_row = keep // self.n_chunks // world, 1, rank * rows

            def gather(new: Tensor):
                from jestfilter.selection.exchange import all_gather_rows

                return [(all_gather_rows(m.image[new], group), all_gather_rows(m.text[new], group))
                        for _, m in terms]
        if keep == total_rows:  # nothing to choose
            return Selection(torch.arange(rows, device=device), **scores)
        if c.draw == "super_batch":
            own = own + self._super_batch_terms(terms, gather(torch.arange(rows, device=device)))
        generator = torch.Generator(device).manual_seed(self._generator_seed(step))
        indices, chunks, drawn = self._sample(own, self._conditioning(terms, rows, device), generator, quota,
                                              strata, first_row, total_rows, gather)
        return Selection(indices, **scores, chunks=chunks, scores=None if c.random else drawn)

    def _sample(self, own: Tensor, conditional, generator: torch.Generator, quota: int,
                strata: int, first_row: int, total_rows: int, gather) -> tuple[Tensor, Tensor, Tensor]:
        """Algorithm 1: draw chunk after chunk, each conditioned on all chunks before it.

        ``own`` holds A_ii for the rows this process owns (rows first_row… of total_rows);
        ``conditional.value`` holds Σ_{k chosen}(A_ik + A_ki) for them; ``gather`` turns this
        process's newly chosen rows into the whole chunk's embeddings. Returns the chosen rows,
        the chunk of each, and the score each was drawn by.
        """
        chosen = torch.zeros_like(own, dtype=torch.bool)
        picks, chunks, drawn = [], [], []
        for chunk in range(self.n_chunks if quota else 0):
            score = own + conditional.value
            logits = self.gain * score
            if self.sampling == "softmax" or self.criterion.random:
                noise = gumbel_noise(total_rows, generator)  # all rows, so every process agrees
                logits += noise[first_row:first_row + own.shape[0]]
            logits[chosen] = float("-inf")
            new = top_k_per_stratum(logits, quota, strata)
            chosen[new] = True
            picks.append(new)
            chunks.append(torch.full_like(new, chunk))
            drawn.append(score[new])
            if chunk + 1 < self.n_chunks:  # the last chunk conditions nothing
                # The one twist on Algorithm 1: rather than re-summing masked rows and columns
                # of a B×B matrix, add the new chunk's pairs to a running sum per candidate.
                conditional.add(gather(new))
        if not picks:
            empty = torch.zeros(0, dtype=torch.long, device=own.device)
            return empty, empty, own.new_zeros(0)
        return torch.cat(picks), torch.cat(chunks), torch.cat(drawn)

    def _super_batch_terms(self, terms, everyone) -> Tensor:
        """Σ_j (A_ij + A_ji) over the whole super-batch minus the own pair counted as a negative:
        with A_ii (``own``) this is each example's own loss in the super-batch (Eq. 2), in one
        streamed pass over [rows × B] blocks (the softmax loss's per-example normaliser runs
        over every column, its own included, so nothing is taken off there)."""
        sums = self._conditioning(terms, terms[0][1].image.shape[0], terms[0][1].image.device, force=True)
        sums.add(everyone)
        if self.loss == "softmax":
            return sums.value
        return sums.value - 2 * sum(w * sigmoid_pair_loss(own_pair_logits(m), positive=False) for w, m in terms)

    def _world(self, rows: int, group) -> tuple[int, int, int]:
        from jestfilter.selection.exchange import world_rows

        world, rank, total_rows = world_rows(rows, group)
        if self.strata not in (1, world):
            raise ValueError(f"strata={self.strata} with a process group of {world} ranks: "
                             f"leave strata=1 (each rank is one stratum) or pass {world}")
        return world, rank, total_rows

    def _check_models(self, learner, reference, rows: int | None):
        c = self.criterion
        if learner is None and reference is None and (not c.random or rows is None):
            raise ValueError("pass the learner's or the reference's outputs (both are None)")
        if learner is None and c.needs_learner:
            raise ValueError(f"method={self.method!r} needs the learner's outputs (got None)")
        if reference is None and c.needs_reference:
            raise ValueError(f"method={self.method!r} needs the reference's outputs (got None)")
        learner = None if learner is None else as_siglip_outputs(learner, "learner")
        device = learner.image.device if learner is not None else None
        reference = None if reference is None else as_siglip_outputs(reference, "reference", device)
        if learner is not None and reference is not None and \
                learner.image.shape[0] != reference.image.shape[0]:
            raise ValueError(f"learner has {learner.image.shape[0]} examples but reference has "
                             f"{reference.image.shape[0]}")
        return learner, reference

    def _conditioning(self, terms, rows: int, device: torch.device, force: bool = False):
        if not terms or (self.n_chunks == 1 and not force):
            return NoConditioning(rows, device)
        accumulator = PairLossSums if self.loss == "sigmoid" else LogSumExps
        return accumulator(terms, self.block_bytes)

    def _checked_keep(self, rows: int, strata: int) -> int:
        """b for ``rows``, or a ValueError saying what to change."""
        keep = self.keep(rows, strata)
        what = f"n_chunks={self.n_chunks}" + (f" × strata={strata}" if strata > 1 else "")
        if rows % strata:
            raise ValueError(f"B={rows} examples do not split into strata={strata} equal blocks")
        if self.batch_size is not None:
            return keep
        step = self.n_chunks * strata
        if keep < step:
            raise ValueError(f"too few examples: B={rows} at filter_ratio={self.filter_ratio} keeps "
                             f"b={keep}, fewer than {what} = {step} (one per chunk and stratum)")
        if keep % step:
            fits = [n for n in range(1, 65) if keep % (n * strata) == 0]
            raise ValueError(f"b={keep} (= round({rows}·(1−{self.filter_ratio}))) is not divisible "
                             f"by {what}: use a super-batch of B={self._nearest_batch(rows, strata)}"
                             + (f" or n_chunks in {fits}" if fits else ""))
        return keep

    def _nearest_batch(self, rows: int, strata: int) -> int:
        step = self.n_chunks * strata
        for distance in range(rows * 2):
            for candidate in (rows + distance, rows - distance):
                keep = round(candidate * (1 - self.filter_ratio))
                if candidate > 0 and candidate % strata == 0 and keep >= step and keep % step == 0:
                    return candidate
        return rows * step

    def _generator_seed(self, step: int) -> int:
        """A well-mixed 64-bit seed from (seed, step): neighbouring steps draw unrelated noise."""
        return int(np.random.SeedSequence([self.seed, step]).generate_state(1, np.uint64)[0])


def gumbel_noise(n: int, generator: torch.Generator) -> Tensor:
    """Gumbel(0, 1) noise: top-k of logits + noise samples k items without replacement with
    probability ∝ exp(logits), without ever exponentiating the logits."""
    uniform = torch.rand(n, generator=generator, device=generator.device)
    return -torch.log(-torch.log(uniform.clamp_min(torch.finfo(uniform.dtype).tiny)))


def top_k_per_stratum(logits: Tensor, k: int, strata: int) -> Tensor:
    """Indices of the k largest logits in each of ``strata`` equal contiguous blocks."""
    blocks = logits.view(strata, -1)
    offsets = torch.arange(strata, device=logits.device)[:, None] * blocks.shape[1]
    return (blocks.topk(k, dim=1).indices + offsets).flatten()


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}: choose one of {', '.join(allowed)}")
