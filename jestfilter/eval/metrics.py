"""Zero-shot classification and retrieval metrics on L2-normalised embeddings.

Exact search over an eval set (a few thousand vectors) is one matrix product and an argmax
per block of queries: plain torch, no index needed."""

from __future__ import annotations

import numpy as np
import torch

QUERY_BLOCK = 4096  # queries per similarity block: 4096 × n floats at a time


def zeroshot_top1(image_embeddings: np.ndarray, class_embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Share of images whose most similar class embedding is their own class."""
    predictions = (image_embeddings @ class_embeddings.T).argmax(axis=1)
    return float((predictions == labels).mean())


def nearest(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """For each query, the index of the most similar database item (inner product); ties go to the first."""
    base = torch.from_numpy(np.ascontiguousarray(database, dtype=np.float32))
    found = [torch.from_numpy(np.ascontiguousarray(queries[start:start + QUERY_BLOCK], dtype=np.float32))
             .matmul(base.T).argmax(dim=1) for start in range(0, len(queries), QUERY_BLOCK)]
    return torch.cat(found).numpy() if found else np.empty(0, dtype=np.int64)


def retrieval_r1(queries: np.ndarray, database: np.ndarray, captions: list[str]) -> float:
    """Per-item Recall@1 when query i and database item i belong to sample i (the COCO protocol).

    A hit counts as correct when its sample's caption equals the query's caption, so duplicate
    captions are all correct answers; where captions repeat a lot (class-templated data) use
    ``retrieval_class_r1``.
    """
    caption_ids = _caption_ids(captions)
    return float((caption_ids[nearest(queries, database)] == caption_ids).mean())


def retrieval_class_r1(queries: np.ndarray, database: np.ndarray, labels: np.ndarray) -> float:
    """Class-level Recall@1: a hit is any database item of the query's own class."""
    return float((labels[nearest(queries, database)] == labels).mean())


def _caption_ids(captions: list[str]) -> np.ndarray:
    """Equal strings get equal ids."""
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(caption, len(ids)) for caption in captions])
