"""Embeddings of whole shards by a model, cached as one ``<shard>.emb.npz`` per input shard.

This module owns the format: ``keys`` (str), ``image`` and ``text`` (fp16 ``[n, d]``, in key
order), the model's ``scale`` (exponentiated) and ``bias``, the model that made them (``model``:
``jestfilter.models.weights_digest``, a SHA-256 of its weights and preprocessing) and the shard
they were made from (``source``: its absolute path or URL, ``source_size`` and
``source_mtime_ns``; -1 for a URL).
``write_embeddings`` and ``read_embeddings`` are its one writer and reader; bootstrap's
reference cache and the ``embed``, ``score`` and ``dedup`` jobs all go through them.

A sample is (source shard, key): keys repeat across img2dataset downloads, so a file is only
ever used for the shard it was made from. The check is the path, size and modification time,
not a hash of the bytes: hashing would read every shard again at every start. A file made
from another shard of the same name (or from a shard rewritten since) is refused at lookup
and embedded again by ``build_cache``. Two shards sharing a base name in one run get files
named ``<stem>-<hash of the path>.emb.npz``.

The reference model is frozen, so its embeddings of the web data are computed once and looked
up by (shard, key) at every step (the paper caches reference embeddings, not scores, because
the batch a sample lands in is unknown in advance). A shard's file is written under a temporary
name and renamed, so its existence means the shard is done; rebuilding skips done shards.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter, OrderedDict
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from tqdm import tqdm

from jestfilter.data.atomic import atomic_write
from jestfilter.data.layout import shard_stem
from jestfilter.data.loader import decode as decode_samples, decode_on_device, group_super_batches
from jestfilter.data.pixels import decode_options
from jestfilter.data.shards import UnreadableShard, iter_readable_shard, shard_identity
from jestfilter.data.types import RawSample, SuperBatch
from jestfilter.errors import UsageError
from jestfilter.models import ModelBundle, embed, weights_digest
from jestfilter.selection import SiglipOutputs

SUFFIX = ".emb.npz"


class CachedEmbeddings(NamedTuple):
    """One shard's embeddings: keys in file order, fp16 ``[n, d]`` arrays, the model's scale and
    bias, and which shard they were made from (``shard_identity``)."""

    keys: list[str]
    image: np.ndarray
    text: np.ndarray
    scale: float
    bias: float
    source: str = ""
    source_size: int = -1
    source_mtime_ns: int = -1
    model: str = ""  # weights_digest of the model that made them ("" in files written before it was recorded)

    def made_from(self, shard: str) -> bool:
        """The file was made from ``shard`` as it is now."""
        return (self.source, self.source_size, self.source_mtime_ns) == shard_identity(shard)

    def as_outputs(self) -> SiglipOutputs:
        """All rows as fp32 tensors, as the Selector and the loss functions take them."""
        as_tensor = lambda rows: torch.from_numpy(rows.astype(np.float32))  # noqa: E731
        return SiglipOutputs(as_tensor(self.image), as_tensor(self.text), torch.tensor(self.scale),
                             torch.tensor(self.bias))


def write_embeddings(path: str | os.PathLike, embeddings: CachedEmbeddings) -> None:
    """Write one shard's file atomically (its existence means the shard is done)."""
    arrays = {"keys": np.array(embeddings.keys, dtype=str), "image": embeddings.image.astype(np.float16),
              "text": embeddings.text.astype(np.float16), "scale": np.float32(embeddings.scale),
              "bias": np.float32(embeddings.bias), "source": np.array(embeddings.source),
              "source_size": np.int64(embeddings.source_size), "source_mtime_ns": np.int64(embeddings.source_mtime_ns),
              "model": np.array(embeddings.model)}

    def save(tmp: str) -> None:
        with open(tmp, "wb") as file:
            np.savez(file, **arrays)

    atomic_write(path, save)


def read_embeddings(path: str | os.PathLike, arrays: bool = True) -> CachedEmbeddings:
    """Read one shard's file (written by ``write_embeddings``); ``arrays=False`` reads only the
    keys, the scale and bias and what the file was made from and by (the embeddings come back
    empty), cheaply."""
    with np.load(path) as data:
        made = {name: data[name].item() for name in ("source", "source_size", "source_mtime_ns", "model")
                if name in data}
        scale, bias = float(data["scale"]), float(data["bias"])
        if not arrays:
            return CachedEmbeddings(data["keys"].tolist(), np.empty((0, 0)), np.empty((0, 0)), scale, bias, **made)
        return CachedEmbeddings(data["keys"].tolist(), data["image"], data["text"], scale, bias, **made)


def load_embeddings(cache_dir: str | os.PathLike, shard: str, path: Path | None = None) -> CachedEmbeddings:
    """The embeddings of ``shard`` in ``cache_dir`` (in ``path`` when given), or
    FileNotFoundError. ``shard`` given as a path or URL (not a bare name from
    ``cached_shards``) must be the shard the file was made from, else ValueError."""
    path = path or cache_file(cache_dir, shard)
    if not path.exists():
        raise FileNotFoundError(f"no embeddings for shard {shard} in {cache_dir}")
    cached = read_embeddings(path)
    if shard != shard_stem(shard) and not cached.made_from(shard):
        made = f"{cached.source} ({cached.source_size:,} bytes)" if cached.source else "an unknown shard"
        raise ValueError(f"{path} was made from {made}, not from {shard} as it is now: embed it again "
                         "(jestfilter embed, or delete the file)")
    return cached


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


def cache_paths(cache_dir: str | os.PathLike, shards: Sequence[str]) -> dict[str, Path]:
    """Each shard's file: ``<stem>.emb.npz``, or ``<stem>-<hash>.emb.npz`` for shards sharing a stem."""
    stems = Counter(shard_stem(shard) for shard in shards)
    return {shard: cache_path(cache_dir, shard) if stems[shard_stem(shard)] == 1 else _hashed_path(cache_dir, shard)
            for shard in shards}


def cache_file(cache_dir: str | os.PathLike, shard: str) -> Path:
    """The file holding ``shard``'s embeddings, found without the run's shard list: the
    ``<stem>-<hash>.emb.npz`` of a run that had two shards of that name, else ``<stem>.emb.npz``."""
    hashed = _hashed_path(cache_dir, shard)
    return hashed if shard != shard_stem(shard) and hashed.exists() else cache_path(cache_dir, shard)


def _hashed_path(cache_dir: str | os.PathLike, shard: str) -> Path:
    digest = hashlib.sha1(shard_identity(shard)[0].encode()).hexdigest()[:10]
    return Path(cache_dir) / f"{shard_stem(shard)}-{digest}{SUFFIX}"


@torch.no_grad()
def embed_shard(bundle: ModelBundle, shard: str, out_path: str | os.PathLike, batch_size: int = 256,
                model_digest: str | None = None, decode: str = "auto") -> int:
    """Embed every decodable sample of ``shard`` and write them to ``out_path``; returns the count.
    A shard that gives nothing at all (missing, not a file, not a tar) raises ``UnreadableShard``
    and writes nothing: an empty file would say the shard was done. ``model_digest``: the
    model's ``weights_digest``, when the caller embeds many shards with it (else computed here).
    ``decode``: as the training run's ``--decode`` (``jestfilter.data.options.DECODES``), so the cache
    sees the loop's pixels."""
    model = bundle.model
    model_digest = model_digest or weights_digest(model)
    model.eval()
    device = model.logit_scale.device
    image_size, defer_jpeg = decode_options(decode, device, bundle.preprocess.size)
    identity = shard_identity(shard)  # before reading: a shard rewritten meanwhile no longer matches
    keys, images, texts = [], [], []
    # Read the shard directly: SuperBatchLoader splits its shard list by RANK/WORLD_SIZE, which
    # would leave a one-shard list empty on every rank but 0 under torchrun or SLURM.
    for samples, rejected in group_super_batches(iter_readable_shard(shard), batch_size):
        batch = SuperBatch(*decode_samples(samples, rejected, bundle.tokenizer, image_size=image_size,
                                          defer_jpeg=defer_jpeg))
        batch = decode_on_device(batch, device) if defer_jpeg else batch
        pixels, tokens, samples = batch.images, batch.texts, batch.samples
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
        *identity,
        model_digest,
    ))
    return len(keys)


def build_cache(bundle: ModelBundle, shards: Sequence[str], cache_dir: str | os.PathLike,
                batch_size: int = 256, progress: bool = True, rank: int = 0, world_size: int = 1,
                decode: str = "auto") -> "EmbeddingCache":
    """Embed every shard (``expand_shards``'s list) whose file in ``cache_dir`` is missing or was
    made from another shard (this rank's share: every ``world_size``-th of the sorted list);
    returns the cache of all of them. Shards that cannot be read are left out: the run records them."""
    cache = EmbeddingCache(cache_dir, shards)
    cache.cache_dir.mkdir(parents=True, exist_ok=True)
    todo = [shard for shard in sorted(shards)[rank::world_size] if not cache.holds(shard)]
    unreadable = []
    digest = weights_digest(bundle) if todo else None
    for shard in tqdm(todo, desc="reference embeddings", unit="shard", disable=not progress or not todo):
        try:
            embed_shard(bundle, shard, cache.path(shard), batch_size, digest, decode)
        except UnreadableShard as error:
            unreadable.append(str(error))
    if unreadable:
        print(f"{len(unreadable)} shard(s) could not be read, e.g. {unreadable[0]}: the manifest records them",
              file=sys.stderr)
    return cache


class EmbeddingCache:
    """Looks up cached embeddings for the samples of a super-batch (a few shards kept in memory).

    ``shards``: the run's shard list, so shards sharing a base name find their own files
    (see ``cache_paths``); without it each shard's file is ``<stem>.emb.npz``. A file made from
    another shard than the sample's is refused (ValueError), never used."""

    def __init__(self, cache_dir: str | os.PathLike, shards: Sequence[str] = (), max_open_shards: int = 256):
        self.cache_dir = Path(cache_dir)
        self.paths = cache_paths(self.cache_dir, shards)
        self.max_open_shards = max_open_shards
        self._open: OrderedDict[str, tuple[dict[str, int], CachedEmbeddings]] = OrderedDict()

    def path(self, shard: str) -> Path:
        return self.paths.get(shard) or cache_file(self.cache_dir, shard)

    def holds(self, shard: str) -> bool:
        """The cache has a file made from ``shard`` as it is now."""
        path = self.path(shard)
        return path.exists() and read_embeddings(path, arrays=False).made_from(shard)

    def _shard(self, shard: str):
        if shard in self._open:
            self._open.move_to_end(shard)
            return self._open[shard]
        cached = load_embeddings(self.cache_dir, shard, self.path(shard))
        entry = ({key: row for row, key in enumerate(cached.keys)}, cached)
        self._open[shard] = entry
        if len(self._open) > self.max_open_shards:
            self._open.popitem(last=False)
        return entry

    def rows(self, shards: Sequence[str]) -> int:
        """How many samples of ``shards`` the cache holds embeddings of (an unreadable shard has none)."""
        return sum(len(read_embeddings(self.path(shard), arrays=False).keys) for shard in shards
                   if self.path(shard).exists())

    def check_model(self, shards: Sequence[str], model: torch.nn.Module) -> None:
        """Refuse (``ValueError``) a cache any file of which another model wrote: the file's
        ``weights_digest`` must be the model's. A file written before the digest was recorded
        is held to the weaker test it had then: the model's logit scale and bias."""
        own = weights_digest(model)
        own_scale = model.logit_scale.detach().exp().item()
        own_bias = 0.0 if model.logit_bias is None else model.logit_bias.detach().item()
        for shard in shards:
            path = self.path(shard)
            if not path.exists():
                continue  # a shard that could not be read: nothing will be looked up
            cached = read_embeddings(path, arrays=False)
            scale, bias = cached.scale, cached.bias
            if cached.model and cached.model != own:
                raise ValueError(f"{path} was made by another model (weights {cached.model[:12]}, this reference's "
                                 f"{own[:12]}): embed the web shards with this reference (or leave out the cache)")
            if not cached.model and (abs(scale - own_scale) > 1e-3 * scale
                                     or abs(bias - own_bias) > 1e-3 * max(1.0, abs(bias))):
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
