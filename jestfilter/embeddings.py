"""Embeddings of whole shards by a model, cached as one ``<shard>.emb.npz`` per input shard.

This module owns the format: ``keys`` (str), ``image`` and ``text`` (fp16 ``[n, d]``, in key
order), the model's ``scale`` (exponentiated) and ``bias``. ``write_embeddings`` and
``read_embeddings`` are its one writer and reader; bootstrap's reference cache and the
``embed``, ``score`` and ``dedup`` jobs all go through them.

The reference model is frozen, so its embeddings of the web data are computed once and looked
up by (shard, key) at every step (the paper caches reference embeddings, not scores, because
the batch a sample lands in is unknown in advance). A shard's file is written under a temporary
name and renamed, so its existence means the shard is done; rebuilding skips done shards.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from tqdm import tqdm

from jestfilter.data.atomic import atomic_write
from jestfilter.data.layout import shard_stem
from jestfilter.data.loader import decode, group_super_batches
from jestfilter.data.shards import expand_shards, iter_samples
from jestfilter.data.types import RawSample
from jestfilter.errors import UsageError
from jestfilter.models import ModelBundle, embed
from jestfilter.selection import SiglipOutputs

SUFFIX = ".emb.npz"


class CachedEmbeddings(NamedTuple):
    """One shard's embeddings: keys in file order, fp16 ``[n, d]`` arrays, the model's scale and bias."""

    keys: list[str]
    image: np.ndarray
    text: np.ndarray
    scale: float
    bias: float

    def as_outputs(self) -> SiglipOutputs:
        """All rows as fp32 tensors, as the Selector and the loss functions take them."""
        as_tensor = lambda rows: torch.from_numpy(rows.astype(np.float32))  # noqa: E731
        return SiglipOutputs(as_tensor(self.image), as_tensor(self.text), torch.tensor(self.scale),
                             torch.tensor(self.bias))


def write_embeddings(path: str | os.PathLike, embeddings: CachedEmbeddings) -> None:
    """Write one shard's file atomically (its existence means the shard is done)."""
    arrays = {"keys": np.array(embeddings.keys, dtype=str), "image": embeddings.image.astype(np.float16),
              "text": embeddings.text.astype(np.float16), "scale": np.float32(embeddings.scale),
              "bias": np.float32(embeddings.bias)}

    def save(tmp: str) -> None:
        with open(tmp, "wb") as file:
            np.savez(file, **arrays)

    atomic_write(path, save)


def read_embeddings(path: str | os.PathLike) -> CachedEmbeddings:
    """Read one shard's file (written by ``write_embeddings``)."""
    with np.load(path) as data:
        return CachedEmbeddings(data["keys"].tolist(), data["image"], data["text"], float(data["scale"]),
                                float(data["bias"]))


def load_embeddings(cache_dir: str | os.PathLike, shard: str) -> CachedEmbeddings:
    """The embeddings of ``shard`` in ``cache_dir``, or FileNotFoundError."""
    path = cache_path(cache_dir, shard)
    if not path.exists():
        raise FileNotFoundError(f"no embeddings for shard {shard} in {cache_dir}")
    return read_embeddings(path)


def cached_shards(cache_dir: str | os.PathLike) -> list[str]:
    """The shard names an embedding folder covers (``web-000001.emb.npz`` → ``web-000001``)."""
    folder = Path(cache_dir)
    if not folder.is_dir():
        raise UsageError(f"embedding folder {cache_dir} does not exist")
    stems = sorted(p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}"))
    if not stems:
        raise UsageError(f"embedding folder {cache_dir} holds no *{SUFFIX} file")
    return stems


def cache_path(cache_dir: str | os.PathLike, shard: str) -> Path:
    return Path(cache_dir) / f"{shard_stem(shard)}{SUFFIX}"


@torch.no_grad()
def embed_shard(bundle: ModelBundle, shard: str, out_path: str | os.PathLike, batch_size: int = 256) -> int:
    """Embed every decodable sample of ``shard`` and write them to ``out_path``; returns the count."""
    model = bundle.model
    model.eval()
    device = model.logit_scale.device
    keys, images, texts = [], [], []
    # Read the shard directly: SuperBatchLoader splits its shard list by RANK/WORLD_SIZE, which
    # would leave a one-shard list empty on every rank but 0 under torchrun or SLURM.
    for samples, rejected in group_super_batches(iter_samples([shard]), batch_size):
        pixels, tokens, samples, _ = decode(samples, rejected, bundle.tokenizer)
        if not samples:
            continue
        # the same preprocessing as the training loop's, so cached embeddings match it exactly
        outputs = embed(model, bundle.preprocess.to_model(pixels, device), tokens.to(device))
        keys += [sample.key for sample in samples]
        images.append(outputs.image.half().cpu().numpy())
        texts.append(outputs.text.half().cpu().numpy())
    bias = model.logit_bias
    dim = images[0].shape[1] if images else 0
    write_embeddings(out_path, CachedEmbeddings(
        keys,
        np.concatenate(images) if images else np.zeros((0, dim), np.float16),
        np.concatenate(texts) if texts else np.zeros((0, dim), np.float16),
        model.logit_scale.exp().item(),
        0.0 if bias is None else bias.item(),  # softmax CLIP models have none
    ))
    return len(keys)


def build_cache(bundle: ModelBundle, patterns: str | Sequence[str], cache_dir: str | os.PathLike,
                batch_size: int = 256, progress: bool = True) -> "EmbeddingCache":
    """Embed every shard of ``patterns`` not yet in ``cache_dir``; returns the cache."""
    shards = expand_shards(patterns)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    todo = [shard for shard in shards if not cache_path(cache_dir, shard).exists()]
    for shard in tqdm(todo, desc="reference embeddings", unit="shard", disable=not progress or not todo):
        embed_shard(bundle, shard, cache_path(cache_dir, shard), batch_size)
    return EmbeddingCache(cache_dir)


class EmbeddingCache:
    """Looks up cached embeddings for the samples of a super-batch (a few shards kept in memory)."""

    def __init__(self, cache_dir: str | os.PathLike, max_open_shards: int = 256):
        self.cache_dir = Path(cache_dir)
        self.max_open_shards = max_open_shards
        self._open: OrderedDict[str, tuple[dict[str, int], CachedEmbeddings]] = OrderedDict()

    def _shard(self, shard: str):
        stem = shard_stem(shard)
        if stem in self._open:
            self._open.move_to_end(stem)
            return self._open[stem]
        cached = load_embeddings(self.cache_dir, shard)
        entry = ({key: row for row, key in enumerate(cached.keys)}, cached)
        self._open[stem] = entry
        if len(self._open) > self.max_open_shards:
            self._open.popitem(last=False)
        return entry

    def rows(self, shards: Sequence[str]) -> int:
        """How many samples of ``shards`` the cache holds embeddings of."""
        return sum(len(load_embeddings(self.cache_dir, shard).keys) for shard in shards)

    def check_model(self, shards: Sequence[str], model: torch.nn.Module) -> None:
        """Refuse a cache written by another model: its stored scale and bias must be the model's."""
        _, cached = self._shard(shards[0])
        scale, bias = cached.scale, cached.bias
        own_scale = model.logit_scale.detach().exp().item()
        own_bias = 0.0 if model.logit_bias is None else model.logit_bias.detach().item()
        if abs(scale - own_scale) > 1e-3 * scale or abs(bias - own_bias) > 1e-3 * max(1.0, abs(bias)):
            raise ValueError(f"the embeddings in {self.cache_dir} were made by another model (scale {scale:.4g}, "
                             f"bias {bias:.4g}; this reference: {own_scale:.4g}, {own_bias:.4g})")

    def lookup(self, samples: Sequence[RawSample], device: torch.device | str = "cpu") -> SiglipOutputs:
        """fp32 embeddings of ``samples`` (in order) with the model's scale and bias."""
        images, texts, scale, bias = [], [], 1.0, 0.0
        for sample in samples:
            rows, cached = self._shard(sample.source_shard)
            if sample.key not in rows:
                raise KeyError(f"sample {sample.key} of {sample.source_shard} is not in the embedding cache")
            images.append(cached.image[rows[sample.key]])
            texts.append(cached.text[rows[sample.key]])
            scale, bias = cached.scale, cached.bias
        as_tensor = lambda rows: torch.from_numpy(np.stack(rows)).to(device=device, dtype=torch.float32)  # noqa: E731
        return SiglipOutputs(as_tensor(images), as_tensor(texts), torch.tensor(scale, device=device),
                            torch.tensor(bias, device=device))
