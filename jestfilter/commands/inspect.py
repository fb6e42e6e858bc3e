"""`jestfilter inspect PATTERN...`: count the samples of WebDataset shards and what is damaged."""

from __future__ import annotations

import argparse
import io
from collections import Counter

import PIL.Image
from tqdm import tqdm

HELP = "count samples per shard and damaged samples by reason (img2dataset-style shards)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("patterns", nargs="+", metavar="PATTERN",
                        help="shards: brace pattern (web/web-{000000..000039}.tar), glob, directory or URL")
    parser.add_argument("--decode", action="store_true",
                        help="also decode every image (finds images whose header is fine but pixels are not)")


def run(args: argparse.Namespace) -> int:
    from jestfilter.data.shards import CORRUPT_IMAGE, expand_shards, image_member, iter_samples
    from jestfilter.data.types import RawSample

    shards = expand_shards(args.patterns)
    good: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    damaged_shards: Counter[str] = Counter()
    for item in tqdm(iter_samples(shards), desc="reading", unit=" samples"):
        reason = getattr(item, "reason", None)
        if isinstance(item, RawSample) and args.decode and not _decodes(item.members[image_member(item)]):
            reason = CORRUPT_IMAGE
        if reason:
            reasons[reason] += 1
            damaged_shards[item.source_shard] += 1
        else:
            good[item.source_shard] += 1
    width = max(len(s) for s in shards)
    print(f"{'shard':<{width}}  samples  rejected")
    for shard in shards:
        print(f"{shard:<{width}}  {good[shard]:>7}  {damaged_shards[shard]:>8}")
    print(f"{len(shards)} shards, {sum(good.values())} samples, {sum(reasons.values())} rejected")
    for reason, count in reasons.most_common():
        print(f"  {reason}: {count}")
    return 0


def _decodes(data: bytes) -> bool:
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            image.load()
        return True
    except Exception:
        return False
