"""The records that flow through the data plane."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch


@dataclass
class RawSample:
    """One sample as read from a tar: ``members`` maps extension (``"jpg"``, ``"txt"``, ...) to
    the member's bytes exactly as stored, so a kept sample can be written out unchanged."""

    key: str
    source_shard: str
    members: dict[str, bytes]


@dataclass
class Rejected:
    """A damaged sample (or, with ``key == ""``, a damaged shard) met while reading."""

    key: str
    source_shard: str
    reason: str


@dataclass
class SuperBatch:
    """``B`` decoded samples plus the raw samples they came from, in the same order.

    ``images`` are uint8 pixels (``[B, 3, s, s]``, or a list of ``[3, s, s]`` when sizes
    differ; see ``jestfilter.data.pixels``), ``texts`` token ids ``[B, context]``.
    ``rejected`` holds the damaged samples met since the previous super-batch, so every input
    sample of a pass appears in exactly one super-batch (as a sample or as a rejection).
    ``pass_index`` counts passes over the data, ``index`` super-batches within the pass;
    ``timings`` the seconds its loader worker spent on it (``read``, ``decode``, ``tokenise``).
    """

    images: torch.Tensor | list[torch.Tensor]
    texts: torch.Tensor
    samples: list[RawSample]
    rejected: list[Rejected] = field(default_factory=list)
    pass_index: int = 0
    index: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def pin_memory(self) -> "SuperBatch":
        """The same batch with its tensors in page-locked memory (DataLoader's ``pin_memory``)."""
        images = self.images.pin_memory() if isinstance(self.images, torch.Tensor) else \
            [image.pin_memory() for image in self.images]
        return dataclasses.replace(self, images=images, texts=self.texts.pin_memory())

    @classmethod
    def undecoded(cls, samples: list[RawSample], rejected: list[Rejected], pass_index: int = 0) -> "SuperBatch":
        """Samples as read, without pixels or tokens (for jobs that never run a model on them)."""
        return cls(torch.empty(0), torch.empty(0, dtype=torch.long), samples, rejected, pass_index)
