"""Plain dense JEST (the paper's Algorithms 1 and 3): builds the full B×B matrix.

Kept apart from the library on purpose: the tests check the Selector's accumulator form
against it, and tools/bench_selector.py times it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

WEIGHTS = {"learnability": (1.0, -1.0), "hard_learner": (1.0, 0.0), "easy_reference": (0.0, -1.0)}


def sigmoid_pair_matrix(model) -> torch.Tensor:
    """l_ij = -logsigmoid(y_ij·logit_ij), as open_clip's SigLipLoss writes it."""
    image, text, scale, bias = model
    logits = scale * image.float() @ text.float().T + bias
    labels = 2 * torch.eye(len(logits), device=logits.device) - 1
    return -F.logsigmoid(labels * logits)


def learnability_matrix(learner, reference, method: str) -> torch.Tensor:
    w_learner, w_reference = WEIGHTS[method]
    return w_learner * sigmoid_pair_matrix(learner) + w_reference * sigmoid_pair_matrix(reference)


def greedy(logits, k, strata, generator=None):
    blocks = logits.view(strata, -1)
    return torch.cat([block.topk(k).indices + s * blocks.shape[1] for s, block in enumerate(blocks)])


def multinomial(logits, k, strata, generator):
    """Sequential draws without replacement from softmax(logits), per stratum."""
    blocks = logits.view(strata, -1)
    return torch.cat([torch.multinomial(torch.softmax(block, 0), k, generator=generator)
                      + s * blocks.shape[1] for s, block in enumerate(blocks)])


def dense_algorithm1(A, b, n_chunks, strata=1, gain=1.0, draw=greedy, generator=None):
    """Algorithm 1: chunk after chunk, each by A_ii + Σ_{k chosen}(A_ik + A_ki)."""
    chosen = torch.zeros(len(A), dtype=torch.bool, device=A.device)
    picks = []
    for _ in range(n_chunks):
        mask = chosen.to(A.dtype)
        conditional = A.diagonal() + A @ mask + A.T @ mask
        conditional[chosen] = float("-inf")
        new = draw(gain * conditional, b // n_chunks // strata, strata, generator)
        chosen[new] = True
        picks.append(new)
    return torch.cat(picks)


def dense_algorithm3(learner, reference, method, b, n_chunks, strata=1):
    """Algorithm 3 (softmax loss), greedy, with each model's own embeddings and scale."""
    terms = [(w, model) for w, model in zip(WEIGHTS[method], (learner, reference)) if w]
    logits = [(w, model[2] * model[0] @ model[1].T) for w, model in terms]
    own = sum(-w * m.diagonal() for w, m in logits)
    chosen = torch.zeros(len(own), dtype=torch.bool)
    picks = []
    for chunk in range(n_chunks):
        conditional = own.clone()
        if chunk:
            for w, m in logits:
                rows = torch.logsumexp(m.masked_fill(~chosen[None, :], float("-inf")), dim=1)
                cols = torch.logsumexp(m.masked_fill(~chosen[:, None], float("-inf")), dim=0)
                conditional += w * 0.5 * (rows + cols)
        conditional[chosen] = float("-inf")
        new = greedy(conditional, b // n_chunks // strata, strata)
        chosen[new] = True
        picks.append(new)
    return torch.cat(picks)
