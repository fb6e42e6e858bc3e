"""Every indexed vector within a cosine of each query: a faiss inner-product index, on the GPUs
faiss sees (``faiss-gpu-cu12``) or on the CPU (``faiss-cpu``).

faiss's GPU indexes have no range search, so on GPUs each query asks for its ``k`` nearest and
keeps those at or above the threshold; a query whose ``k`` nearest all match may have more
matches, and is asked again on the CPU copy with an exact range search. Either way the answer
is every match.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jestfilter.errors import UsageError

IVF_ABOVE = 1_000_000  # vectors; below it an exact flat index is fast enough
GPU_NEIGHBOURS = 64  # k of the GPU search; more matches than this fall back to the CPU


def import_faiss() -> Any:
    """The faiss module, or a one-line UsageError saying which package to install."""
    try:
        import faiss
    except ImportError:
        raise UsageError("faiss is not installed: pip install 'jestfilter[cpu]' (faiss-cpu) or 'jestfilter[gpu]' "
                         "(faiss-gpu-cu12), one of the two") from None
    return faiss


def gpus_seen() -> int:
    """How many GPUs the installed faiss can use (0 for faiss-cpu)."""
    faiss = import_faiss()
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


class NeighbourIndex:
    """An inner-product index over ``vectors`` (ids 0..n-1): flat (exact), or IVF for large sets;
    copied to every GPU faiss sees unless ``gpu=False``. ``k`` is the GPU search's neighbours."""

    def __init__(self, vectors: np.ndarray, kind: str = "auto", gpu: bool = True, k: int = GPU_NEIGHBOURS):
        faiss = import_faiss()
        n, dim = vectors.shape
        if kind == "flat" or (kind == "auto" and n <= IVF_ABOVE):
            self.cpu = faiss.IndexFlatIP(dim)
        else:
            lists = max(1, min(int(4 * np.sqrt(n)), n // 39))  # faiss wants ≥ 39 training points per list
            self.cpu = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
            self.cpu.train(vectors[np.random.default_rng(0).permutation(n)[: 256 * lists]])
            self.cpu.nprobe = min(lists, 16)
        self.cpu.add(vectors)
        self.k = min(k, n)
        self.gpu = faiss.index_cpu_to_all_gpus(self.cpu) if gpu and gpus_seen() > 0 else None

    def within(self, queries: np.ndarray, threshold: float, search: Any = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query: (ids, similarities) of every indexed vector with cosine ≥ ``threshold``.
        ``search``: the index to ask for k nearest first (default: the GPU copy, if any)."""
        search = self.gpu if search is None else search
        if search is None:
            return self._range(queries, threshold)
        sims, ids = search.search(queries, self.k)
        found = [(row_ids[row_sims >= threshold], row_sims[row_sims >= threshold])
                 for row_ids, row_sims in zip(ids, sims)]
        full = [q for q, (row_ids, _) in enumerate(found) if len(row_ids) == self.k]  # maybe more than k
        for q, answer in zip(full, self._range(queries[full], threshold) if full else []):
            found[q] = answer
        return found

    def _range(self, queries: np.ndarray, threshold: float) -> list[tuple[np.ndarray, np.ndarray]]:
        radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))  # faiss keeps sim > radius
        lims, sims, ids = self.cpu.range_search(queries, radius)
        return [(ids[lims[q]:lims[q + 1]], sims[lims[q]:lims[q + 1]]) for q in range(len(queries))]
