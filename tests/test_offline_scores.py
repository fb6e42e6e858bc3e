"""The offline criteria (clip_score, negCLIPLoss) against a direct computation, and the top of a pool."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from jestfilter.embeddings import CachedEmbeddings
from jestfilter.scores import SCHEMA, shard_generator, shard_scores, top_fraction
from jestfilter.selection import SiglipOutputs
from jestfilter.selection.criteria import CRITERIA
from jestfilter.selection.losses import random_batches


def unnormalised_model(n: int, d: int = 8, seed: int = 0, scale: float = 20.0) -> SiglipOutputs:
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(n, d, generator=g) * 1.3  # not unit length: both scores normalise
    text = image + torch.randn(n, d, generator=g)
    return SiglipOutputs(image, text, torch.tensor(scale), torch.tensor(-4.0))


def direct_neg_clip_loss(image: torch.Tensor, text: torch.Tensor, scale: float) -> torch.Tensor:
    """−τ · the CLIP loss of each example in one batch (float64, dense, torch's cross-entropy)."""
    u, v = F.normalize(image.double(), dim=1), F.normalize(text.double(), dim=1)
    logits, labels = scale * u @ v.T, torch.arange(len(u))
    clip_loss = (F.cross_entropy(logits, labels, reduction="none") +
                 F.cross_entropy(logits.T, labels, reduction="none")) / 2
    return -clip_loss / scale


def test_clip_score_is_the_cosine_of_each_pair():
    model = unnormalised_model(30)
    expected = (F.normalize(model.image.double(), dim=1) * F.normalize(model.text.double(), dim=1)).sum(1)
    assert torch.allclose(CRITERIA["clip_score"].offline(model, None).double(), expected, atol=1e-6)


def test_neg_clip_loss_is_minus_tau_times_the_clip_loss_in_one_batch():
    model = unnormalised_model(50)
    got = CRITERIA["neg_clip_loss"].offline(model, torch.Generator().manual_seed(0))
    assert torch.allclose(got.double(), direct_neg_clip_loss(model.image, model.text, 20.0), atol=1e-5)
    # the CLIP score minus a normaliser that only grows with the batch's negatives
    assert (got < CRITERIA["clip_score"].offline(model, None)).all()


def test_neg_clip_loss_averages_over_random_batches():
    model, batch, repeats = unnormalised_model(50, seed=1), 16, 3
    got = CRITERIA["neg_clip_loss"].offline(model, torch.Generator().manual_seed(7), batch_size=batch,
                                             repeats=repeats)
    generator, expected = torch.Generator().manual_seed(7), torch.zeros(50, dtype=torch.float64)
    for _ in range(repeats):
        batches = random_batches(50, batch, generator)
        assert sorted(torch.cat(batches).tolist()) == list(range(50)) and {len(b) for b in batches} == {16, 17}
        for rows in batches:
            expected[rows] += direct_neg_clip_loss(model.image[rows], model.text[rows], 20.0)
    assert torch.allclose(got.double(), expected / repeats, atol=1e-5)


def test_shard_scores_are_seeded_by_shard_and_the_top_fraction_breaks_ties_by_shard_and_key():
    g = np.random.default_rng(0)
    image = g.standard_normal((40, 8)).astype(np.float16)
    cached = CachedEmbeddings([f"k{i:02d}" for i in range(40)], image, image + g.standard_normal((40, 8)).astype(np.float16),
                              20.0, -4.0)
    a = shard_scores(cached, "web/00001.tar", seed=3)
    assert a.schema == pl.Schema(SCHEMA) and a["learner_loss"].null_count() == 40
    assert a.equals(shard_scores(cached, "other/00001.tar", seed=3))  # the shard's name, not its folder
    assert torch.equal(torch.randperm(9, generator=shard_generator(3, "00001")),
                       torch.randperm(9, generator=shard_generator(3, "x/00001.tar")))
    tied = pl.DataFrame({"shard": ["b", "a", "a", "c"], "key": ["1", "2", "1", "0"], "clip_score": [0.5, 0.5, 0.9, 0.5]})
    assert top_fraction(tied, "clip_score", 0.75).select("shard", "key").rows() == [("a", "1"), ("a", "2"), ("b", "1")]
