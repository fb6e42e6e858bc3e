"""The inspect job: count the samples of shards and what is damaged, by reason, without a model."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from tqdm import tqdm

from jestfilter.data.pixels import image_reason, open_image
from jestfilter.data.shards import expand_shards, image_member, iter_samples
from jestfilter.data.types import RawSample


@dataclass
class ShardReport:
    """Good samples per shard, rejected ones per shard and by reason."""

    shards: list[str]
    good: Counter = field(default_factory=Counter)
    damaged: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)

    def lines(self) -> list[str]:
        width = max(len(s) for s in self.shards)
        lines = [f"{'shard':<{width}}  samples  rejected"]
        lines += [f"{shard:<{width}}  {self.good[shard]:>7}  {self.damaged[shard]:>8}" for shard in self.shards]
        lines.append(f"{len(self.shards)} shards, {sum(self.good.values())} samples, "
                     f"{sum(self.reasons.values())} rejected")
        return lines + [f"  {reason}: {count}" for reason, count in self.reasons.most_common()]


def inspect_shards(patterns: Sequence[str], decode: bool = False, progress: bool = True) -> ShardReport:
    """Read every sample of the shards; with ``decode`` also decode every image."""
    report = ShardReport(expand_shards(patterns))
    for item in tqdm(iter_samples(report.shards), desc="reading", unit=" samples", disable=not progress):
        reason = getattr(item, "reason", None)
        if isinstance(item, RawSample) and decode:
            reason = _decode_problem(item.members[image_member(item)])
        if reason:
            report.reasons[reason] += 1
            report.damaged[item.source_shard] += 1
        else:
            report.good[item.source_shard] += 1
    return report


def _decode_problem(data: bytes) -> str | None:
    try:
        with open_image(data) as image:
            image.load()
        return None
    except Exception as error:
        return image_reason(error)
