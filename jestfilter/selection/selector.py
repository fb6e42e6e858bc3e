"""Joint example selection (JEST, arXiv 2406.17711, Algorithm 1) without the B×B matrix."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from jestfilter.selection.conditioning import LogSumExps, NoConditioning, PairLossSums
from jestfilter.selection.losses import own_pair_loss
from jestfilter.selection.outputs import Selection, SiglipOutputs, as_siglip_outputs

# Which models each criterion scores, as (learner weight, reference weight): A = wL·l_L + wR·l_R.
CRITERIA = {
    "learnability": (1.0, -1.0),
    "independent": (1.0, -1.0),  # learnability scored per example: one chunk, diagonal only
    "hard_learner": (1.0, 0.0),
    "easy_reference": (0.0, -1.0),
    "uniform": (0.0, 0.0),
}
SAMPLINGS = ("softmax", "greedy")
LOSSES = ("sigmoid", "softmax")


class Selector:
    """Chooses the b = round(B·(1 − filter_ratio)) most learnable examples of a super-batch, jointly.

    Criteria (``method``): ``learnability`` (A = l_learner − l_reference per pair, the default),
    ``hard_learner`` (A = l_learner), ``easy_reference`` (A = −l_reference), ``uniform``, and
    ``independent``: learnability scored per example, all b drawn from A_ii alone (the paper's
    baseline). Any criterion becomes per-example with ``n_chunks=1``. ``reference`` may be None
    for hard_learner/uniform, ``learner`` may be None for easy_reference/uniform.

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
                 loss: str = "sigmoid", block_bytes: int = 256 * 2**20):
        _check_choice("method", method, tuple(CRITERIA))
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
        self.n_chunks = 1 if method in ("independent", "uniform") else n_chunks
        self.gain, self.seed, self.strata, self.block_bytes = gain, seed, strata, block_bytes

    def select(self, learner, reference, step: int = 0, group=None) -> Tensor:
        """Indices of the chosen examples into the super-batch, a LongTensor [b]."""
        return self.select_with_scores(learner, reference, step=step, group=group).indices

    def select_with_scores(self, learner, reference, step: int = 0, group=None) -> Selection:
        """The chosen indices plus each example's own-pair losses, from the same pass."""
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        learner, reference = self._check_models(learner, reference)
        rows, device = _rows_and_device(learner, reference)
        weight_learner, weight_reference = CRITERIA[self.method]
        nan = torch.full((rows,), float("nan"), device=device)
        learner_loss = own_pair_loss(learner, self.loss) if learner is not None else nan
        reference_loss = own_pair_loss(reference, self.loss) if reference is not None else nan
        terms = [(weight, model) for weight, model in
                 ((weight_learner, learner), (weight_reference, reference)) if weight]
        own = torch.zeros(rows, device=device)
        if weight_learner:
            own += weight_learner * learner_loss
        if weight_reference:
            own += weight_reference * reference_loss
        conditional = self._conditioning(terms, rows, device)
        generator = torch.Generator(device).manual_seed(self._generator_seed(step))
        sample = dict(own=own, conditional=conditional, generator=generator)
        if group is None:
            chunk_size = self._chunk_size(rows)
            indices = self._sample(**sample, quota=chunk_size // self.strata, strata=self.strata,
                                   first_row=0, total_rows=rows,
                                   gather=lambda new: [(m.image[new], m.text[new]) for _, m in terms])
        else:
            indices = self._sample_distributed(sample, terms, rows, group)
        return Selection(indices, learner_loss, reference_loss, learner_loss - reference_loss)

    def _sample(self, own: Tensor, conditional, generator: torch.Generator, quota: int,
                strata: int, first_row: int, total_rows: int, gather) -> Tensor:
        """Algorithm 1: draw chunk after chunk, each conditioned on all chunks before it.

        ``own`` holds A_ii for the rows this process owns (rows first_row… of total_rows);
        ``conditional.value`` holds Σ_{k chosen}(A_ik + A_ki) for them; ``gather`` turns this
        process's newly chosen rows into the whole chunk's embeddings.
        """
        chosen = torch.zeros_like(own, dtype=torch.bool)
        picks = []
        for chunk in range(self.n_chunks):
            logits = self.gain * (own + conditional.value)
            if self.sampling == "softmax" or self.method == "uniform":
                noise = gumbel_noise(total_rows, generator)  # all rows, so every process agrees
                logits += noise[first_row:first_row + own.shape[0]]
            logits[chosen] = float("-inf")
            new = top_k_per_stratum(logits, quota, strata)
            chosen[new] = True
            picks.append(new)
            if chunk + 1 < self.n_chunks:  # the last chunk conditions nothing
                # The one twist on Algorithm 1: rather than re-summing masked rows and columns
                # of a B×B matrix, add the new chunk's pairs to a running sum per candidate.
                conditional.add(gather(new))
        return torch.cat(picks)

    def _sample_distributed(self, sample: dict, terms, rows: int, group) -> Tensor:
        from jestfilter.selection.distributed import all_gather_rows, world_rows

        world, rank, total_rows = world_rows(rows, group)
        if self.strata not in (1, world):
            raise ValueError(f"strata={self.strata} with a process group of {world} ranks: "
                             f"leave strata=1 (each rank is one stratum) or pass {world}")
        chunk_size = self._chunk_size(total_rows, strata=world)

        def gather(new: Tensor):
            return [(all_gather_rows(m.image[new], group), all_gather_rows(m.text[new], group))
                    for _, m in terms]

        return self._sample(**sample, quota=chunk_size // world, strata=1, first_row=rank * rows,
                            total_rows=total_rows, gather=gather)

    def _check_models(self, learner, reference):
        weight_learner, weight_reference = CRITERIA[self.method]
        if learner is None and reference is None:
            raise ValueError("pass the learner's or the reference's outputs (both are None)")
        if learner is None and weight_learner:
            raise ValueError(f"method={self.method!r} needs the learner's outputs (got None)")
        if reference is None and weight_reference:
            raise ValueError(f"method={self.method!r} needs the reference's outputs (got None)")
        learner = None if learner is None else as_siglip_outputs(learner, "learner")
        device = learner.image.device if learner is not None else None
        reference = None if reference is None else as_siglip_outputs(reference, "reference", device)
        if learner is not None and reference is not None and \
                learner.image.shape[0] != reference.image.shape[0]:
            raise ValueError(f"learner has {learner.image.shape[0]} examples but reference has "
                             f"{reference.image.shape[0]}")
        return learner, reference

    def _conditioning(self, terms, rows: int, device: torch.device):
        if self.n_chunks == 1 or not terms:
            return NoConditioning(rows, device)
        accumulator = PairLossSums if self.loss == "sigmoid" else LogSumExps
        return accumulator(terms, self.block_bytes)

    def _chunk_size(self, rows: int, strata: int | None = None) -> int:
        """Chunk size in integers (the paper's float truncation loses examples), or a ValueError
        saying what to change."""
        strata = self.strata if strata is None else strata
        keep = round(rows * (1 - self.filter_ratio))
        step = self.n_chunks * strata
        what = f"n_chunks={self.n_chunks}" + (f" × strata={strata}" if strata > 1 else "")
        if rows % strata:
            raise ValueError(f"B={rows} examples do not split into strata={strata} equal blocks")
        if keep < step:
            raise ValueError(f"too few examples: B={rows} at filter_ratio={self.filter_ratio} keeps "
                             f"b={keep}, fewer than {what} = {step} (one per chunk and stratum)")
        if keep % step:
            fits = [n for n in range(1, 65) if keep % (n * strata) == 0]
            raise ValueError(f"b={keep} (= round({rows}·(1−{self.filter_ratio}))) is not divisible "
                             f"by {what}: use a super-batch of B={self._nearest_batch(rows, strata)}"
                             + (f" or n_chunks in {fits}" if fits else ""))
        return keep // self.n_chunks

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


def _rows_and_device(learner: SiglipOutputs | None, reference: SiglipOutputs | None):
    model = learner if learner is not None else reference
    return model.image.shape[0], model.image.device


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}: choose one of {', '.join(allowed)}")
