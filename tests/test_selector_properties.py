"""Properties of every selection: exact size, no duplicates, quotas, determinism, dtypes, devices."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from jestfilter import Selector, SiglipOutputs

METHODS = ["learnability", "hard_learner", "easy_reference", "uniform", "independent"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@st.composite
def problems(draw):
    """A super-batch and a Selector whose sizes fit it: b = strata·n_chunks·quota rows of B."""
    strata = draw(st.sampled_from([1, 2, 4]))
    n_chunks = draw(st.sampled_from([1, 2, 4, 8]))
    quota = draw(st.integers(1, 3))
    b = strata * n_chunks * quota
    B = strata * (b // strata + draw(st.integers(1, 12)))
    selector = Selector(method=draw(st.sampled_from(METHODS)), filter_ratio=1 - b / B,
                        n_chunks=n_chunks, strata=strata,
                        sampling=draw(st.sampled_from(["softmax", "greedy"])),
                        loss=draw(st.sampled_from(["sigmoid", "softmax"])),
                        gain=draw(st.sampled_from([0.5, 1.0, 100.0])),
                        seed=draw(st.integers(0, 2**32)), block_bytes=draw(st.sampled_from([64, 2**20])))
    seed = draw(st.integers(0, 1000))
    d = draw(st.integers(2, 16))
    return selector, model(B, d, seed), model(B, d, seed + 1), b


def model(B, d, seed):
    g = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(B, d, generator=g), dim=1)
    text = F.normalize(image + torch.randn(B, d, generator=g), dim=1)
    return SiglipOutputs(image, text, torch.tensor(10.0), torch.tensor(-10.0))


@settings(max_examples=60, deadline=None)
@given(problems(), st.integers(0, 10**6))
def test_selection_has_exact_size_no_duplicates_and_exact_quotas(problem, step):
    selector, learner, reference, b = problem
    indices = selector.select(learner, reference, step=step)
    B, strata = learner.image.shape[0], selector.strata
    assert indices.dtype == torch.long and indices.shape == (b,)
    assert indices.unique().numel() == b and 0 <= indices.min() and indices.max() < B
    # every chunk takes the same number of rows from every contiguous block of B/strata rows
    per_chunk = indices.view(selector.n_chunks, strata, -1)
    block = per_chunk // (B // strata)
    assert torch.equal(block, torch.arange(strata)[None, :, None].expand_as(block))


@settings(max_examples=25, deadline=None)
@given(problems(), st.integers(0, 10**6))
def test_same_seed_step_and_inputs_give_same_indices(problem, step):
    selector, learner, reference, _ = problem
    first = selector.select(learner, reference, step=step)
    again = Selector(**_constructor(selector)).select(learner, reference, step=step)
    assert torch.equal(first, selector.select(learner, reference, step=step))
    assert torch.equal(first, again)


def _constructor(selector):
    """The arguments that rebuild an equal Selector."""
    names = ["method", "filter_ratio", "n_chunks", "sampling", "gain", "seed", "strata", "loss",
             "block_bytes"]
    return {name: getattr(selector, name) for name in names}


@settings(max_examples=25, deadline=None)
@given(problems(), st.sampled_from([torch.float16, torch.bfloat16]))
def test_half_precision_inputs_are_scored_in_fp32(problem, dtype):
    selector, learner, reference, _ = problem
    low = [SiglipOutputs(m.image.to(dtype), m.text.to(dtype), m.scale.to(dtype), m.bias)
           for m in (learner, reference)]
    upcast = [SiglipOutputs(m.image.float(), m.text.float(), m.scale.float(), m.bias)
              for m in low]
    result, expected = selector.select_with_scores(*low), selector.select_with_scores(*upcast)
    scores = ("learner_loss", "reference_loss", "learnability", "scores")
    assert all(getattr(result, name) is None or getattr(result, name).dtype == torch.float32 for name in scores)
    assert torch.equal(result.indices, expected.indices)
    for got, want in zip(result[1:], expected[1:]):
        if want is not None:
            torch.testing.assert_close(got, want)


@settings(max_examples=20, deadline=None)
@given(problems())
def test_plain_tuples_work_like_siglip_outputs(problem):
    selector, learner, reference, _ = problem
    as_tuples = (tuple(learner), (reference.image, reference.text, 10.0, -10.0))
    assert torch.equal(selector.select(learner, reference), selector.select(*as_tuples))


@pytest.mark.parametrize("device", DEVICES)
def test_selection_runs_on_the_embeddings_device(device):
    learner, reference = model(256, 16, 0), model(256, 16, 1)
    on_device = [SiglipOutputs(m.image.to(device), m.text.to(device), m.scale, m.bias)
                 for m in (learner, reference)]
    result = Selector(sampling="greedy", filter_ratio=0.75).select_with_scores(*on_device)
    assert all(t.device.type == device for t in result)
    cpu = Selector(sampling="greedy", filter_ratio=0.75).select(learner, reference)
    assert torch.equal(result.indices.cpu(), cpu)
