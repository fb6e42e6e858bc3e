"""Optimiser groups, schedule, the SigLIP step on real pairs, and checkpoint resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fashion_pairs import CLASSNAMES, TEMPLATES, captions, load_fashion_mnist, one_torch_thread, to_tensors  # noqa: F401

from jestfilter.eval import zeroshot_top1
from jestfilter.models import create_model, encode_image
from jestfilter.train import (
    MAX_LOGIT_SCALE,
    flexi_embed,
    load_checkpoint,
    make_optimizer,
    make_scheduler,
    save_checkpoint,
    train_step,
)

BATCH = 64

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pairs():
    """Preprocessed Fashion-MNIST train pairs and test images (one tokenizer/preprocess for all tiny models)."""
    bundle = create_model("jest-tiny")
    images, labels = load_fashion_mnist("train", BATCH * 150)
    test_images, test_labels = load_fashion_mnist("test", 500)
    return to_tensors(bundle, images, captions(labels)), to_tensors(bundle, test_images, [])[0], test_labels


def tiny_training(seed: int, total_steps: int):
    torch.manual_seed(seed)
    bundle = create_model("jest-tiny")
    optimizer = make_optimizer(bundle.model, lr=2e-3, weight_decay=1e-4)
    return bundle, optimizer, make_scheduler(optimizer, total_steps)


def run_steps(model, optimizer, scheduler, pairs, steps, first_step=0, **kwargs) -> list[float]:
    (pixels, texts), _, _ = pairs
    batches = [slice(i * BATCH, (i + 1) * BATCH) for i in range(first_step, first_step + steps)]
    return [train_step(model, optimizer, scheduler, pixels[b], texts[b], **kwargs) for b in batches]


def test_training_on_real_pairs_lowers_the_loss_and_learns_zero_shot(pairs):
    bundle, optimizer, scheduler = tiny_training(seed=0, total_steps=150)
    losses = run_steps(bundle.model, optimizer, scheduler, pairs, 150)
    assert np.mean(losses[-20:]) < 0.6 * losses[0]
    _, test_pixels, test_labels = pairs
    model = bundle.model.eval()
    with torch.no_grad():
        images = model.encode_image(test_pixels, normalize=True).numpy()
        prompts = bundle.tokenizer([TEMPLATES[0].format(name) for name in CLASSNAMES])
        classes = model.encode_text(prompts, normalize=True).numpy()
    assert zeroshot_top1(images, classes, test_labels) > 0.4  # chance is 0.1


def test_logit_scale_is_clamped_to_ln_100(pairs):
    bundle, optimizer, scheduler = tiny_training(seed=0, total_steps=10)
    with torch.no_grad():
        bundle.model.logit_scale.fill_(6.0)
    run_steps(bundle.model, optimizer, scheduler, pairs, 1)
    assert bundle.model.logit_scale.item() == pytest.approx(MAX_LOGIT_SCALE)


def test_grad_clip_norm_zero_turns_clipping_off(pairs):
    """--grad-clip-norm 0 updates as if there were no limit; a small limit shrinks the update."""
    def weights_after(max_grad_norm: float) -> torch.Tensor:
        bundle, optimizer, scheduler = tiny_training(seed=0, total_steps=10)
        run_steps(bundle.model, optimizer, scheduler, pairs, 3, max_grad_norm=max_grad_norm)
        return torch.cat([p.detach().flatten() for p in bundle.model.parameters()])

    off, unlimited, tight = weights_after(0.0), weights_after(1e9), weights_after(1e-3)
    assert torch.equal(off, unlimited)
    assert not torch.allclose(off, tight)


def test_flexi_step_encodes_the_second_half_at_the_coarse_patch_size(pairs):
    bundle, optimizer, scheduler = tiny_training(seed=0, total_steps=10)
    (pixels, texts), _, _ = pairs
    model = bundle.model.eval()
    with torch.no_grad():
        outputs = flexi_embed(model, pixels[:8], texts[:8], flexi_patch_size=14)
        assert torch.equal(outputs.image[:4], encode_image(model, pixels[:4], normalize=True))
        assert torch.equal(outputs.image[4:], encode_image(model, pixels[4:8], 14, normalize=True))
        assert torch.allclose(outputs.text, model.encode_text(texts[:8], normalize=True), atol=1e-6)
    loss = run_steps(model, optimizer, scheduler, pairs, 1, flexi_patch_size=14)[0]
    assert math.isfinite(loss)


def test_checkpoint_resume_is_bit_identical_to_an_uninterrupted_run(pairs, tmp_path):
    uninterrupted, optimizer, scheduler = tiny_training(seed=0, total_steps=20)
    run_steps(uninterrupted.model, optimizer, scheduler, pairs, 5)
    path = save_checkpoint(tmp_path / "ckpt.pt", uninterrupted.model, optimizer, scheduler, step=5, extra={"seen": 320})
    run_steps(uninterrupted.model, optimizer, scheduler, pairs, 5, first_step=5)

    resumed, optimizer2, scheduler2 = tiny_training(seed=1, total_steps=20)  # other init: all must come from the file
    step, extra = load_checkpoint(path, resumed.model, optimizer2, scheduler2)
    assert (step, extra) == (5, {"seen": 320})
    run_steps(resumed.model, optimizer2, scheduler2, pairs, 5, first_step=step)

    expected, actual = uninterrupted.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    assert scheduler2.get_last_lr() == scheduler.get_last_lr()
    assert set(torch.load(path, weights_only=True)) == {"model", "optimizer", "scheduler", "step", "extra"}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind


def test_checkpoint_errors_are_clear(tmp_path):
    bundle, optimizer, scheduler = tiny_training(seed=0, total_steps=10)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt", bundle.model)
    path = save_checkpoint(tmp_path / "weights-only.pt", bundle.model)
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(path, bundle.model, optimizer)


def test_schedule_warms_up_then_follows_a_cosine_to_the_floor():
    parameter = torch.nn.Parameter(torch.zeros(2, 2))
    optimizer = torch.optim.AdamW([parameter], lr=1.0)
    scheduler = make_scheduler(optimizer, total_steps=100, warmup_fraction=0.1, floor=0.05)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    rates.append(optimizer.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)  # linear warm-up over 10 steps
    assert all(a < b for a, b in zip(rates[:9], rates[1:10]))
    assert all(a > b for a, b in zip(rates[10:99], rates[11:100]))
    assert rates[55] == pytest.approx(0.05 + 0.95 * 0.5)  # halfway through the cosine
    assert rates[100] == pytest.approx(0.05)
    with pytest.raises(ValueError):
        make_scheduler(optimizer, total_steps=0)


def test_weight_decay_spares_biases_norms_and_logit_parameters():
    torch.manual_seed(0)
    model = create_model("jest-tiny").model
    optimizer = make_optimizer(model, lr=0.1, weight_decay=0.5, betas=(0.9, 0.95))
    assert optimizer.defaults["betas"] == (0.9, 0.95)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only weight decay can move a parameter
    optimizer.step()
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    spared = {"logit_scale", "logit_bias", "visual.class_embedding", "visual.ln_pre.weight", "visual.ln_pre.bias",
              "ln_final.weight", "transformer.resblocks.0.attn.in_proj_bias", "transformer.resblocks.0.mlp.c_fc.bias"}
    decayed = {"visual.conv1.weight", "visual.proj", "text_projection", "token_embedding.weight",
               "transformer.resblocks.0.attn.in_proj_weight", "visual.transformer.resblocks.1.mlp.c_proj.weight"}
    assert not spared & moved
    assert decayed <= moved


@pytest.mark.parametrize("lr", [2e-3, 0.1])
def test_weight_decay_is_decoupled_from_the_learning_rate(lr):
    """The paper's 1e-4 (big_vision): each step shrinks a weight by 1 − 1e-4 × the schedule's factor."""
    torch.manual_seed(0)
    model = create_model("jest-tiny").model
    optimizer = make_optimizer(model, lr=lr, weight_decay=1e-4)
    scheduler = make_scheduler(optimizer, total_steps=100, warmup_fraction=0.1)
    weight = model.visual.conv1.weight
    for step in range(3):
        before = weight.detach().clone()
        factor = scheduler.get_last_lr()[0] / lr
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
        scheduler.step()
        torch.testing.assert_close(weight.detach(), before * (1 - 1e-4 * factor), rtol=0, atol=1e-9)
