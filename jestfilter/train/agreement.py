"""How well a cheap scoring view (Flexi patches, shorter captions) stands in for the full one."""

from __future__ import annotations

import torch


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two score vectors (ties broken by position)."""
    if a.numel() < 2:
        return float("nan")
    ranks = [torch.argsort(torch.argsort(x.double())).double() for x in (a.flatten(), b.flatten())]
    centred = [r - r.mean() for r in ranks]
    return float((centred[0] * centred[1]).sum() / (centred[0].norm() * centred[1].norm()))


def overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of the rows chosen in ``a`` that ``b`` chose too."""
    if a.numel() == 0:
        return float("nan")
    return len(set(a.tolist()) & set(b.tolist())) / a.numel()
