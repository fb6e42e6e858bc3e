"""The most and least learnable examples a run met, with their image bytes, for the report."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch

from jestfilter.data.shards import caption_of, image_member
from jestfilter.data.types import RawSample, SuperBatch
from jestfilter.selection import Selection


@dataclass(order=True)
class Example:
    """One scored web sample kept for the report's grid of extremes."""

    learnability: float
    key: str = field(compare=False)
    caption: str = field(compare=False)
    image_bytes: bytes = field(compare=False, repr=False)
    source_shard: str = field(default="", compare=False)


class ExtremesTracker:
    """Keeps the n most and n least learnable examples seen, with their image bytes."""

    def __init__(self, n: int = 8):
        self.n = n
        self.most: list[Example] = []
        self.least: list[Example] = []

    def add(self, example: Example) -> None:
        """Consider one example (a sample seen again in a later pass is not listed twice)."""
        uid = (example.source_shard, example.key)
        if not any((kept.source_shard, kept.key) == uid for kept in (*self.most, *self.least)):
            self.most = sorted([*self.most, example], reverse=True)[: self.n]
            self.least = sorted([*self.least, example])[: self.n]

    def add_batch(self, samples: Sequence[RawSample], learnability: torch.Tensor) -> None:
        """Consider every sample of a super-batch with its learnability."""
        for sample, value in zip(samples, learnability.tolist()):
            self.add(Example(value, sample.key, caption_of(sample), sample.members[image_member(sample)],
                             sample.source_shard))

    def state_dict(self) -> dict:
        """Tensors and primitives only, so a checkpoint loads with ``weights_only=True``."""
        def pack(example: Example) -> dict:
            image = torch.frombuffer(bytearray(example.image_bytes), dtype=torch.uint8)
            return {"learnability": example.learnability, "key": example.key, "caption": example.caption,
                    "image": image, "source_shard": example.source_shard}
        return {"most": [pack(e) for e in self.most], "least": [pack(e) for e in self.least]}

    def load_state_dict(self, state: dict) -> None:
        def unpack(entry: dict) -> Example:
            return Example(entry["learnability"], entry["key"], entry["caption"], entry["image"].numpy().tobytes(),
                           entry.get("source_shard", ""))
        self.most = [unpack(e) for e in state["most"]]
        self.least = [unpack(e) for e in state["least"]]


class Extremes:
    """A sink that keeps the most and least learnable examples of every step (an
    ``ExtremesTracker``) and, at ``close()``, saves them to ``path`` for the report."""

    def __init__(self, path: str | os.PathLike | None = None, n: int = 8):
        self.tracker, self.path = ExtremesTracker(n), path

    def record(self, batch: SuperBatch, selection: Selection, step: int, unscored: Sequence = (),
               reasons: Mapping[int, str] | None = None) -> None:
        if selection.learnability is not None:
            self.tracker.add_batch(batch.samples, selection.learnability)

    def state_dict(self) -> dict:
        return {"extremes": self.tracker.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if "extremes" in state:
            self.tracker.load_state_dict(state["extremes"])

    def close(self) -> None:
        if self.path is not None:
            torch.save(self.tracker.state_dict(), self.path)
