"""The Selector against a plain dense JEST, the paper's Figure 2 property, and bad input."""

from __future__ import annotations

import ast

import pytest
import torch
import torch.nn.functional as F
from dense_jest import (dense_algorithm1, dense_algorithm3, learnability_matrix, multinomial,
                        sigmoid_pair_matrix)
from open_clip.loss import SigLipLoss

from jestfilter import Selection, Selector, SiglipOutputs
from jestfilter.selection.losses import own_pair_logits, sigmoid_pair_loss


def random_model(B, d, seed, scale=10.0, bias=-10.0, noise=0.5):
    """SigLIP-like outputs: unit embeddings, each text near its own image."""
    g = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(B, d, generator=g), dim=1)
    text = F.normalize(image + noise * torch.randn(B, d, generator=g), dim=1)
    return SiglipOutputs(image, text, torch.tensor(scale), torch.tensor(bias))


def clustered_models(B=256, d=32, clusters=16, seed=0):
    """A learner that confuses examples within a cluster (costly negative pairs there) and a
    reference that tells every example apart: learnability is strongly non-diagonal."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(clusters, d, generator=g), dim=1)[torch.arange(B) % clusters]
    spread = 0.05 + 0.25 * torch.rand(B, 1, generator=g)
    image = F.normalize(centres + spread * torch.randn(B, d, generator=g) / d**0.5, dim=1)
    text = F.normalize(centres + spread * torch.randn(B, d, generator=g) / d**0.5, dim=1)
    ref_image = F.normalize(torch.randn(B, d, generator=g), dim=1)
    ref_noise = torch.rand(B, 1, generator=g) * torch.randn(B, d, generator=g) / d**0.5
    ref_text = F.normalize(ref_image + ref_noise, dim=1)
    scale, bias = torch.tensor(10.0), torch.tensor(-10.0)
    return SiglipOutputs(image, text, scale, bias), SiglipOutputs(ref_image, ref_text, scale, bias)


def test_pair_losses_sum_to_open_clip_siglip_loss():
    model = random_model(48, 16, seed=1, scale=7.0, bias=-3.0)
    logits = model.scale * model.image @ model.text.T + model.bias
    eye = torch.eye(48, dtype=torch.bool)
    pairs = torch.where(eye, sigmoid_pair_loss(logits, positive=True),
                        sigmoid_pair_loss(logits, positive=False))
    expected = SigLipLoss()(model.image, model.text, model.scale, model.bias) * 48
    torch.testing.assert_close(pairs.sum(), expected)
    torch.testing.assert_close(own_pair_logits(model), logits.diagonal())


@pytest.mark.parametrize("method", ["learnability", "hard_learner", "easy_reference"])
@pytest.mark.parametrize("strata", [1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_matches_dense_algorithm1(method, strata, seed):
    learner, reference = random_model(320, 24, seed), random_model(320, 24, seed + 100, scale=12.0)
    selector = Selector(method, filter_ratio=0.8, n_chunks=8, sampling="greedy", strata=strata,
                        block_bytes=8192)  # small tiles: exercises the row tiling
    A = learnability_matrix(learner, reference, method)
    expected = dense_algorithm1(A, b=64, n_chunks=8, strata=strata)
    assert torch.equal(selector.select(learner, reference), expected)


@pytest.mark.parametrize("method", ["learnability", "hard_learner", "easy_reference"])
@pytest.mark.parametrize("strata", [1, 2])
def test_softmax_loss_greedy_matches_dense_algorithm3(method, strata):
    learner, reference = random_model(160, 16, 3), random_model(160, 16, 4, scale=20.0, bias=0.0)
    selector = Selector(method, filter_ratio=0.8, n_chunks=4, sampling="greedy", strata=strata,
                        loss="softmax", block_bytes=4096)
    expected = dense_algorithm3(learner, reference, method, b=32, n_chunks=4, strata=strata)
    assert torch.equal(selector.select(learner, reference), expected)


@pytest.fixture
def one_thread():
    """Thousands of tiny selections: a second thread only adds contention on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_softmax_sampling_inclusion_frequencies_match_dense_sampler(one_thread):
    learner, reference = random_model(24, 8, 5, noise=1.0), random_model(24, 8, 6, noise=1.0)
    A = learnability_matrix(learner, reference, "learnability")
    runs, b = 1500, 8
    selector = Selector(filter_ratio=2 / 3, n_chunks=4, gain=0.5, seed=0)
    ours, dense = torch.zeros(24), torch.zeros(24)
    generator = torch.Generator().manual_seed(0)
    for step in range(runs):
        ours[selector.select(learner, reference, step=step)] += 1
        dense[dense_algorithm1(A, b, 4, gain=0.5, draw=multinomial, generator=generator)] += 1
    p_ours, p_dense = ours / runs, dense / runs
    assert ((p_dense > 0.1) & (p_dense < 0.9)).sum() >= 8  # a problem where sampling matters
    tolerance = 5 * (p_dense * (1 - p_dense) * 2 / runs).sqrt() + 0.01
    assert ((p_ours - p_dense).abs() <= tolerance).all(), (p_ours - p_dense).abs().max()


def batch_learnability(A, indices):
    return A[indices][:, indices].sum().item()


def test_joint_selection_beats_independent_and_grows_with_chunks():
    """The paper's Figure 2: more chunks, more learnable batches; joint beats per-example."""
    learner, reference = clustered_models()
    A = learnability_matrix(learner, reference, "learnability")
    assert (A.sum() - A.diagonal().sum()) > 2 * A.diagonal().abs().sum()  # strongly non-diagonal

    def mean_learnability(n_chunks, method="learnability"):
        selector = Selector(method, filter_ratio=0.75, n_chunks=n_chunks, seed=3)
        return sum(batch_learnability(A, selector.select(learner, reference, step=step))
                   for step in range(8)) / 8

    by_chunks = [mean_learnability(n) for n in (1, 2, 4, 16)]
    assert by_chunks == sorted(by_chunks), by_chunks
    own_pair = mean_learnability(16, method="independent_own_pair")
    assert own_pair == pytest.approx(by_chunks[0], rel=0.1)  # the same per-example draw as one chunk
    assert by_chunks[-1] > 2 * own_pair
    assert by_chunks[-1] > mean_learnability(16, method="independent")  # joint beats the paper's per-example
    greedy = Selector(filter_ratio=0.75, sampling="greedy").select(learner, reference)
    assert batch_learnability(A, greedy) > 2 * own_pair


@pytest.mark.parametrize("loss", ["sigmoid", "softmax"])
def test_independent_scores_each_example_by_its_loss_in_the_super_batch(loss):
    """The paper's per-example baseline (Eq. 2): row + column sums of the pair matrix minus the diagonal."""
    learner, reference = random_model(48, 8, 11), random_model(48, 8, 12)
    if loss == "sigmoid":
        A = learnability_matrix(learner, reference, "learnability")
        dense = A.sum(dim=1) + A.sum(dim=0) - A.diagonal()
    else:
        def example_loss(model):  # CLIP loss of each example in the batch: −t·s_ii + ½(LSE row + LSE column)
            logits = model.scale * model.image @ model.text.T
            return -logits.diagonal() + 0.5 * (logits.logsumexp(dim=1) + logits.logsumexp(dim=0))
        dense = example_loss(learner) - example_loss(reference)
    result = Selector("independent", filter_ratio=0.75, sampling="greedy", loss=loss,
                      block_bytes=4096).select_with_scores(learner, reference)
    assert set(result.indices.tolist()) == set(dense.topk(12).indices.tolist())
    assert torch.allclose(result.scores, dense[result.indices], rtol=1e-4, atol=1e-4)
    assert (result.chunks == 0).all()


def test_selection_carries_each_examples_own_pair_diagnostics():
    learner, reference = random_model(64, 8, 7), random_model(64, 8, 8)
    result = Selector(filter_ratio=0.75, n_chunks=4).select_with_scores(learner, reference)
    assert isinstance(result, Selection) and result.indices.dtype == torch.long
    torch.testing.assert_close(result.learner_loss, sigmoid_pair_matrix(learner).diagonal())
    torch.testing.assert_close(result.reference_loss, sigmoid_pair_matrix(reference).diagonal())
    torch.testing.assert_close(result.learnability, result.learner_loss - result.reference_loss)
    assert all(t.dtype == torch.float32 and t.shape == (64,) for t in result[1:4])
    # each chosen example's chunk, and the conditional score it was drawn by (greedy: the chunk's best)
    assert result.chunks.tolist() == [c for c in range(4) for _ in range(4)]
    A = learnability_matrix(learner, reference, "learnability")
    greedy = Selector(filter_ratio=0.75, n_chunks=4, sampling="greedy").select_with_scores(learner, reference)
    first = greedy.indices[:4]
    torch.testing.assert_close(greedy.scores[:4], A.diagonal()[first])
    second = greedy.indices[4:8]
    expected = A.diagonal()[second] + A[second][:, first].sum(dim=1) + A[first][:, second].sum(dim=0)
    torch.testing.assert_close(greedy.scores[4:8], expected, rtol=1e-4, atol=1e-4)


def test_missing_model_allowed_only_when_its_criterion_ignores_it():
    learner = random_model(64, 8, 9)
    hard = Selector("hard_learner", filter_ratio=0.75, n_chunks=4).select_with_scores(learner, None)
    assert hard.indices.numel() == 16 and hard.learner_loss.shape == (64,)
    assert hard.reference_loss is None and hard.learnability is None  # not computed: None, never NaN
    easy = Selector("easy_reference", filter_ratio=0.75, n_chunks=4, sampling="greedy")
    expected = dense_algorithm1(-sigmoid_pair_matrix(learner), 16, 4)
    assert torch.equal(easy.select(None, learner), expected)
    assert Selector("uniform", filter_ratio=0.75).select(None, learner).numel() == 16
    assert Selector("uniform", filter_ratio=0.75).select(None, None, rows=64).numel() == 16
    with pytest.raises(ValueError, match="needs the reference"):
        Selector(filter_ratio=0.75, n_chunks=4).select(learner, None)


def test_uniform_draws_every_example_equally_often(one_thread):
    model = random_model(40, 8, 10)
    selector = Selector("uniform", filter_ratio=0.5, sampling="greedy")
    counts = torch.zeros(40)
    for step in range(400):
        counts[selector.select(model, model, step=step)] += 1
    assert (counts / 400 - 0.5).abs().max() < 5 * (0.25 / 400) ** 0.5


def test_different_steps_draw_different_batches():
    learner, reference = random_model(64, 8, 11, noise=2.0), random_model(64, 8, 12, noise=2.0)
    selector = Selector(filter_ratio=0.75, n_chunks=4)
    batches = {tuple(selector.select(learner, reference, step=s).sort().values.tolist())
               for s in range(5)}
    assert len(batches) > 1


def test_divisibility_error_says_what_to_change():
    model = random_model(1250, 4, 13)
    with pytest.raises(ValueError) as error:
        Selector(filter_ratio=0.8).select(model, model)
    message = str(error.value)
    assert "b=250" in message and "n_chunks=16" in message and "\n" not in message
    suggested = int(message.split("super-batch of B=")[1].split()[0])
    fixed = random_model(suggested, 4, 14)
    assert Selector(filter_ratio=0.8).select(fixed, fixed).numel() == round(suggested * 0.2)
    for n_chunks in ast.literal_eval(message.split("n_chunks in ")[1]):
        assert Selector(filter_ratio=0.8, n_chunks=n_chunks).select(model, model).numel() == 250


def bad_inputs():
    good = random_model(64, 8, 15)
    nan_image = good.image.clone()
    nan_image[3, 2] = float("nan")
    inf_text = good.text.clone()
    inf_text[0, 0] = float("inf")
    return {
        "shape mismatch": (dict(), (good.image, good.text[:, :4], 10.0, -10.0), good),
        "batch mismatch": (dict(), good, random_model(32, 8, 16)),
        "1-D embeddings": (dict(), (good.image[:, 0], good.text[:, 0], 10.0, -10.0), good),
        "3-D embeddings": (dict(), (good.image[None], good.text[None], 10.0, -10.0), good),
        "not a 4-tuple": (dict(), (good.image, good.text), good),
        "NaN embeddings": (dict(), good._replace(image=nan_image), good),
        "Inf embeddings": (dict(), good, good._replace(text=inf_text)),
        "non-finite scale": (dict(), good._replace(scale=float("inf")), good),
        "too few examples": (dict(n_chunks=16), random_model(20, 8, 17), random_model(20, 8, 18)),
        "not divisible": (dict(n_chunks=5), good, good),
        "strata do not split": (dict(n_chunks=1, strata=3, filter_ratio=0.5), good, good),
        "both models missing": (dict(), None, None),
        "negative step": (dict(step=-1), good, good),
    }


@pytest.mark.parametrize("case", list(bad_inputs()))
def test_bad_input_raises_one_line_value_error(case):
    options, learner, reference = bad_inputs()[case]
    step = options.pop("step", 0)
    options = {"filter_ratio": 0.75, "n_chunks": 4, **options}
    with pytest.raises(ValueError) as error:
        Selector(**options).select(learner, reference, step=step)
    assert str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("options", [
    dict(method="best"), dict(sampling="top"), dict(loss="hinge"), dict(filter_ratio=0.0),
    dict(filter_ratio=1.0), dict(filter_ratio=-0.5), dict(n_chunks=0), dict(strata=0),
    dict(gain=0.0), dict(gain=float("nan")), dict(seed=-1), dict(block_bytes=0),
])
def test_bad_constructor_argument_raises_one_line_value_error(options):
    with pytest.raises(ValueError) as error:
        Selector(**options)
    assert str(error.value) and "\n" not in str(error.value)


def test_given_b_the_selector_plans_the_run_once():
    plan = Selector("learnability", filter_ratio=0.8, n_chunks=16, batch_size=64, strata=2)
    assert plan.super_batch == 320  # B = b / (1 − f), read over both ranks
    assert plan.keep(320) == 64  # a full super-batch keeps exactly b
    assert plan.keep(200) == 32  # a short one keeps its share in whole chunks × ranks
    assert plan.keep(100) == 0  # too short for one chunk per rank: nothing
    uniform = Selector("uniform", filter_ratio=0.8, batch_size=64)
    assert uniform.super_batch == 64 and uniform.keep(64) == 64  # reads nothing beyond b
    assert torch.equal(uniform.select(None, None, rows=64), torch.arange(64))
    with pytest.raises(ValueError, match="multiple of 32") as error:
        Selector("learnability", n_chunks=16, batch_size=48, strata=2)
    assert "\n" not in str(error.value)
    assert Selector("independent", n_chunks=16, batch_size=48).super_batch == 240  # per-example: no chunks


def test_a_short_super_batch_keeps_whole_chunks_and_can_keep_none():
    learner, reference = random_model(200, 8, 1), random_model(200, 8, 2)
    selector = Selector("learnability", filter_ratio=0.8, n_chunks=4, batch_size=64, sampling="greedy")
    assert selector.select(learner, reference).numel() == 40  # round(200 · 0.2) in whole chunks of 4
    assert selector.select(random_model(12, 8, 1), random_model(12, 8, 2)).numel() == 0


def test_every_criterion_is_described_once_and_drives_the_selector():
    from jestfilter.selection.criteria import CRITERIA, OFFLINE_SCORES, ONLINE

    assert sorted(ONLINE + OFFLINE_SCORES) == sorted(CRITERIA)
    for name in OFFLINE_SCORES:  # a score of the whole pool, not a choice inside a super-batch
        with pytest.raises(ValueError, match="offline"):
            Selector(name)
    learner, reference = random_model(40, 8, 1), random_model(40, 8, 2)
    for name in ONLINE:
        c = CRITERIA[name]
        selector = Selector(name, filter_ratio=0.5, n_chunks=4)
        chosen = selector.select(learner if c.needs_learner else None, reference if c.needs_reference else None,
                                 rows=40)
        assert chosen.numel() == 20 and chosen.unique().numel() == 20, name
        assert selector.n_chunks == (4 if c.joint else 1), name


def test_reference_score_keeps_the_pairs_the_reference_finds_most_alike():
    reference = random_model(64, 8, 5)
    chosen = Selector("reference_score", filter_ratio=0.75, sampling="greedy").select(None, reference)
    similarity = (reference.image * reference.text).sum(dim=1)  # the CLIP score of each own pair
    assert set(chosen.tolist()) == set(similarity.topk(16).indices.tolist())
