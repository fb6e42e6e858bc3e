"""The records that flow through the data plane."""

from __future__ import annotations

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

    ``rejected`` holds the damaged samples met since the previous super-batch, so every input
    sample of a pass appears in exactly one super-batch (as a sample or as a rejection).
    ``pass_index`` counts passes over the data, ``index`` super-batches within the pass.
    """

    images: torch.Tensor
    texts: torch.Tensor
    samples: list[RawSample]
    rejected: list[Rejected] = field(default_factory=list)
    pass_index: int = 0
    index: int = 0

    def __len__(self) -> int:
        return len(self.samples)

    @classmethod
    def undecoded(cls, samples: list[RawSample], rejected: list[Rejected], pass_index: int = 0) -> "SuperBatch":
        """Samples as read, without pixels or tokens (for jobs that never run a model on them)."""
        return cls(torch.empty(0), torch.empty(0, dtype=torch.long), samples, rejected, pass_index)
