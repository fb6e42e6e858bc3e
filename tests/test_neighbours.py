"""The dedup index: every match within the threshold, whether found by range search (CPU) or by
k nearest with the exact fallback that GPU indexes need; retrieval by plain torch."""

from __future__ import annotations

import numpy as np
import pytest

from jestfilter.eval.metrics import nearest
from jestfilter.jobs.neighbours import NeighbourIndex, import_faiss


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def as_sets(found):
    return [dict(zip(ids.tolist(), np.round(sims, 5).tolist())) for ids, sims in found]


@pytest.mark.parametrize("k", [2, 5, 200])
def test_k_nearest_with_fallback_finds_exactly_what_range_search_finds(k):
    base = unit_rows(300, 16, 0)
    base[100:110] = base[100]  # a group of 10 copies: more matches than a small k
    queries = np.concatenate([base[95:115], unit_rows(20, 16, 1)])
    index = NeighbourIndex(base, "flat", gpu=False, k=k)
    exact = index.within(queries, 0.9)
    assert as_sets(index.within(queries, 0.9, search=index.cpu)) == as_sets(exact)
    assert len(exact[5][0]) == 10 and all(sims.min() >= 0.9 for _, sims in exact if len(sims))


def test_an_index_goes_to_the_gpus_only_when_faiss_sees_some():
    index = NeighbourIndex(unit_rows(50, 8, 2), "flat")
    assert (index.gpu is not None) == (import_faiss().get_num_gpus() > 0)


def test_nearest_is_the_argmax_of_the_similarities_over_blocks(monkeypatch):
    import jestfilter.eval.metrics as metrics

    monkeypatch.setattr(metrics, "QUERY_BLOCK", 7)  # several blocks and a short last one
    queries, base = unit_rows(30, 8, 3), unit_rows(40, 8, 4)
    assert (nearest(queries, base) == (queries @ base.T).argmax(axis=1)).all()
