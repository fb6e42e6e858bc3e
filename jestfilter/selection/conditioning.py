"""The conditional part of each candidate's score, kept as running sums over chosen chunks.

Algorithm 1 of the paper builds the full B×B pair matrix and re-sums masked rows and columns
at every chunk. These accumulators give the same numbers from [rows × chunk] blocks only, so
memory stays O(B·chunk) instead of O(B²).
"""

from __future__ import annotations

import torch
from torch import Tensor

from jestfilter.selection.losses import logsumexp_rows, negative_pair_loss_sums, reduce_blocks
from jestfilter.selection.outputs import SiglipOutputs

# (weight, a model's outputs for the candidate rows); the weights say which criterion is
# scored: learnability = (+1, learner), (-1, reference).
Terms = list[tuple[float, SiglipOutputs]]
# A chunk's (image, text) embeddings for each term, in the same order.
ChunkEmbeddings = list[tuple[Tensor, Tensor]]


class NoConditioning:
    """For uniform and independent selection: the score is the example's own, nothing more."""

    def __init__(self, rows: int, device: torch.device):
        self.value = torch.zeros(rows, device=device)

    def add(self, chunk: ChunkEmbeddings) -> None:
        pass


class PairLossSums:
    """Sigmoid loss: ``value[i] = Σ_{k chosen} (A_ik + A_ki)``.

    A candidate i is never one of the chosen k, so every (i, k) pair here is a negative pair:
    its term needs only image i against text k (A_ik) and image k against text i (A_ki).
    """

    def __init__(self, terms: Terms, block_bytes: int):
        self.terms, self.block_bytes = terms, block_bytes
        self.value = torch.zeros(terms[0][1].image.shape[0], device=terms[0][1].image.device)

    def add(self, chunk: ChunkEmbeddings) -> None:
        for (weight, model), (chunk_image, chunk_text) in zip(self.terms, chunk):
            for rows, columns in ((model.image, chunk_text), (model.text, chunk_image)):
                self.value += weight * reduce_blocks(rows, columns, model.scale, model.bias,
                                                     negative_pair_loss_sums, self.block_bytes)


class LogSumExps:
    """Softmax loss (the paper's Algorithm 3): ``value[i] = Σ_terms weight · ½(LSE_row + LSE_col)``
    with the log-sum-exps over the chosen items only, kept as running log-sum-exps."""

    def __init__(self, terms: Terms, block_bytes: int):
        self.terms, self.block_bytes = terms, block_bytes
        rows = terms[0][1].image.shape[0]
        device = terms[0][1].image.device
        self.lse = torch.full((len(terms), 2, rows), float("-inf"), device=device)
        self.value = torch.zeros(rows, device=device)

    def add(self, chunk: ChunkEmbeddings) -> None:
        self.value = torch.zeros_like(self.value)
        for t, ((weight, model), (chunk_image, chunk_text)) in enumerate(zip(self.terms, chunk)):
            for side, (rows, columns) in enumerate(((model.image, chunk_text),
                                                     (model.text, chunk_image))):
                # A bias shifts every logit alike and cancels in the softmax: leave it out.
                block_lse = reduce_blocks(rows, columns, model.scale, torch.zeros_like(model.bias),
                                          logsumexp_rows, self.block_bytes)
                self.lse[t, side] = torch.logaddexp(self.lse[t, side], block_lse)
            self.value += weight * 0.5 * self.lse[t].sum(dim=0)
