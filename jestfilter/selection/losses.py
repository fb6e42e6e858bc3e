"""Per-pair terms of the SigLIP (sigmoid) and CLIP (softmax) losses, in open_clip's convention.

For image i and text j: ``logit_ij = scale·<u_i, v_j> + bias``. SigLIP's loss is a sum of
independent pair terms ``-logsigmoid(y_ij·logit_ij)`` with ``y = +1`` for an image with its own
text and ``-1`` otherwise (``open_clip.loss.SigLipLoss``); that sum is why a batch's
learnability is the sum of a pair matrix over the batch.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from jestfilter.selection.outputs import SiglipOutputs


def sigmoid_pair_loss(logits: Tensor, positive: bool) -> Tensor:
    """SigLIP's term for each pair: ``-logsigmoid(±logit)`` written as a softplus."""
    return F.softplus(-logits) if positive else F.softplus(logits)


def own_pair_similarity(model: SiglipOutputs) -> Tensor:
    """``<u_i, v_i>`` for every example, ``[B]`` (einsum: no [B, d] temporary)."""
    return torch.einsum("id,id->i", model.image, model.text)


def own_pair_logits(model: SiglipOutputs) -> Tensor:
    """``logit_ii`` of every example with its own text, ``[B]``."""
    return model.scale * own_pair_similarity(model) + model.bias


def own_pair_loss(model: SiglipOutputs, loss: str) -> Tensor:
    """Each example's score alone: its own pair's SigLIP loss, or, for the softmax loss, the
    paper's unconditional term ``-scale·<u_i, v_i>`` (a bias cancels inside a softmax)."""
    if loss == "sigmoid":
        return sigmoid_pair_loss(own_pair_logits(model), positive=True)
    return -model.scale * own_pair_similarity(model)


def negative_pair_loss_sums(logits: Tensor) -> Tensor:
    """Row sums of SigLIP losses of a block whose pairs are all negatives (image ≠ text)."""
    return sigmoid_pair_loss(logits, positive=False).sum(dim=1)


def logsumexp_rows(logits: Tensor) -> Tensor:
    """Row log-sum-exps: the softmax loss's normaliser restricted to the block's columns."""
    return torch.logsumexp(logits, dim=1)


def reduce_blocks(rows: Tensor, columns: Tensor, scale: Tensor, bias: Tensor,
                  reduce: Callable[[Tensor], Tensor], block_bytes: int) -> Tensor:
    """``reduce`` over k of ``scale·<rows_i, columns_k> + bias`` for every row i, ``[len(rows)]``.

    Works in tiles of rows so that the logits block and the reduction's one temporary stay
    within ``block_bytes`` (fp32), whatever the number of rows.
    """
    tile = max(1, block_bytes // (2 * 4 * max(1, columns.shape[0])))
    alpha, columns_t = float(scale), columns.T
    out = rows.new_empty(rows.shape[0])
    for start in range(0, rows.shape[0], tile):
        logits = torch.addmm(bias, rows[start:start + tile], columns_t, alpha=alpha)
        out[start:start + tile] = reduce(logits)
    return out


def clip_score(model: SiglipOutputs, generator: torch.Generator | None = None) -> Tensor:
    """DataComp's CLIP score of every example: the cosine similarity of its image and its text, ``[B]``."""
    return F.cosine_similarity(model.image, model.text, dim=1)


def random_batches(n: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """A random partition of ``range(n)`` into round(n / batch_size) batches (at least one) whose
    sizes differ by at most one: as near ``batch_size`` as the count allows, and no example in a
    much smaller batch than the others (a short last batch would flatter its examples)."""
    order = torch.randperm(n, generator=generator, device=generator.device)
    return list(order.tensor_split(max(1, round(n / batch_size))))


def neg_clip_loss(model: SiglipOutputs, generator: torch.Generator, batch_size: int = 32768, repeats: int = 10,
                  block_bytes: int = 256 * 2**20) -> Tensor:
    """negCLIPLoss (Wang et al., arXiv 2405.19547) of every example, ``[B]``: its CLIP score minus
    the contrastive normaliser of a random batch, averaged over ``repeats`` random batches:

        (1/K) Σ_k [ s_ii − (τ/2)·(log Σ_{j∈B_k} exp(s_ij/τ) + log Σ_{j∈B_k} exp(s_ji/τ)) ]

    i.e. −τ times the example's CLIP (softmax) loss in the batch, with s the cosine similarity and
    τ = 1/scale the model's own temperature. A pair that is as alike as its batch's negatives
    scores low even when its cosine is high. The defaults are the authors' (batches of 32,768,
    K = 10); ``docs/architecture.md`` says where this differs from their setting and why.
    """
    image, text = F.normalize(model.image, dim=1), F.normalize(model.text, dim=1)
    n = image.shape[0]
    repeats = 1 if round(n / batch_size) <= 1 else repeats  # one batch: every repeat gives the same
    scale = torch.as_tensor(model.scale, dtype=image.dtype, device=image.device).reshape(())
    zero = torch.zeros((), dtype=image.dtype, device=image.device)
    total = torch.zeros(n, dtype=image.dtype, device=image.device)
    for _ in range(repeats):
        for batch in random_batches(n, batch_size, generator):
            u, v = image[batch], text[batch]
            per_image = reduce_blocks(u, v, scale, zero, logsumexp_rows, block_bytes)  # over the batch's texts
            per_text = reduce_blocks(v, u, scale, zero, logsumexp_rows, block_bytes)  # over the batch's images
            total[batch] += torch.einsum("id,id->i", u, v) - (per_image + per_text) / (2 * scale)
    return total / repeats
