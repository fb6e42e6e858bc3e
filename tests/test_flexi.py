"""Flexi patch sizes: exact at the native size, PI-resize consistent, trainable, 1/4 of the tokens."""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F
from fashion_pairs import CLASSNAMES, TEMPLATES, captions, load_fashion_mnist, one_torch_thread, to_tensors  # noqa: F401

from jestfilter.config import BootstrapConfig
from jestfilter.models import (coarse_patch_size, coarse_view_warning, create_model, encode_image, flexi_patch_size,
                               forward_flops)
from jestfilter.train import make_optimizer, make_scheduler, train_step
from jestfilter.train.precision import compile_towers

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return create_model("jest-tiny")


@pytest.fixture(scope="module")
def pixels():
    bundle = create_model("jest-tiny")
    images, labels = load_fashion_mnist("test", 16)
    return to_tensors(bundle, images, captions(labels))[0]


def tokens_seen(model, run) -> int:
    """Sequence length entering the image transformer during ``run()``."""
    seen = []
    handle = model.visual.transformer.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    try:
        run()
    finally:
        handle.remove()
    return seen[0]


def test_native_patch_size_equals_open_clip_exactly(tiny, pixels):
    model = tiny.model
    with torch.no_grad():
        expected = model.encode_image(pixels)
        assert torch.equal(encode_image(model, pixels), expected)
        assert torch.equal(encode_image(model, pixels, patch_size=7), expected)
        assert torch.equal(encode_image(model, pixels, normalize=True), model.encode_image(pixels, normalize=True))


def test_coarse_patches_use_a_quarter_of_the_tokens_and_leave_the_model_alone(tiny, pixels):
    model = tiny.model
    before = {key: value.clone() for key, value in model.state_dict().items()}
    native = tokens_seen(model, lambda: encode_image(model, pixels))
    coarse = tokens_seen(model, lambda: encode_image(model, pixels, patch_size=14))
    assert (native - 1, coarse - 1) == (16, 4)  # 4x4 vs 2x2 patches, plus the class token
    assert encode_image(model, pixels, patch_size=14).shape == (16, 64)
    after = model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    with pytest.raises(ValueError, match="does not divide"):
        encode_image(model, pixels, patch_size=9)


def upsample_each_patch(pixels: torch.Tensor, patch: int, factor: int) -> torch.Tensor:
    """Resize every patch on its own (bicubic, as PI-resize assumes), keeping the patch grid."""
    n, channels, height, width = pixels.shape
    rows, cols = height // patch, width // patch
    patches = pixels.unfold(2, patch, patch).unfold(3, patch, patch).reshape(-1, 1, patch, patch)
    big = F.interpolate(patches, scale_factor=factor, mode="bicubic", antialias=True, align_corners=False)
    big = big.reshape(n, channels, rows, cols, patch * factor, patch * factor)
    return big.permute(0, 1, 2, 4, 3, 5).reshape(n, channels, height * factor, width * factor)


def test_pi_resize_gives_the_same_embedding_for_an_upsampled_image(tiny, pixels):
    # FlexiViT's PI-resize: a patch upsampled 2x, seen through the resampled 2x kernel, gives the
    # same token; with the same 4x4 grid the whole tower then agrees with the native forward.
    model = tiny.model
    upsampled = upsample_each_patch(pixels, patch=7, factor=2)
    with torch.no_grad():
        assert torch.allclose(encode_image(model, upsampled, patch_size=14), model.encode_image(pixels), atol=1e-4)


def test_coarse_gradients_reach_the_base_weights(tiny, pixels):
    model = tiny.model
    encode_image(model, pixels, patch_size=14, normalize=True)[:, 0].sum().backward()
    for parameter in (model.visual.conv1.weight, model.visual.positional_embedding, model.visual.class_embedding):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def logit_correlation(fine: torch.Tensor, coarse: torch.Tensor, texts: torch.Tensor) -> float:
    """Pearson correlation of the image-text logits computed from fine and from coarse patches."""
    a, b = (fine @ texts.T).flatten(), (coarse @ texts.T).flatten()
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


def test_co_training_makes_coarse_embeddings_track_fine_ones(tiny):
    # Measured over 3 seeds at 150 steps: logit correlation 0.89-0.92 and coarse zero-shot
    # 0.67 with co-training; 0.22-0.64 and 0.11-0.30 when trained at the native size only.
    images, labels = load_fashion_mnist("train", 64 * 150)
    train_pixels, train_texts = to_tensors(tiny, images, captions(labels))
    model = tiny.model
    optimizer = make_optimizer(model, lr=2e-3, weight_decay=1e-4)
    scheduler = make_scheduler(optimizer, total_steps=150)
    for start in range(0, len(labels), 64):
        batch = slice(start, start + 64)
        train_step(model, optimizer, scheduler, train_pixels[batch], train_texts[batch], flexi_patch_size=14)
    model.eval()
    test_images, test_labels = load_fashion_mnist("test", 300)
    test_pixels, test_texts = to_tensors(tiny, test_images, captions(test_labels))
    with torch.no_grad():
        fine = encode_image(model, test_pixels, normalize=True)
        coarse = encode_image(model, test_pixels, patch_size=14, normalize=True)
        texts = model.encode_text(test_texts, normalize=True)
        classes = model.encode_text(tiny.tokenizer([TEMPLATES[0].format(c) for c in CLASSNAMES]), normalize=True)
    assert logit_correlation(fine, coarse, texts) > 0.8
    coarse_top1 = ((coarse @ classes.T).argmax(dim=1).numpy() == test_labels).mean()
    assert coarse_top1 > 0.5  # chance is 0.1


def test_flop_counts_match_the_analytic_vit_count_and_shrink_with_coarse_patches():
    model = create_model("jest-b16").model
    native, coarse = forward_flops(model), forward_flops(model, patch_size=32)
    width, layers, tokens = 768, 12, 16 * 16 + 1
    per_layer = tokens * 12 * width**2 * 2 + 2 * tokens**2 * width * 2  # projections + MLP, QK^T and AV
    analytic = layers * per_layer + 256 * (3 * 16 * 16) * width * 2 + width * 768 * 2  # + patch conv + proj
    assert native.image == pytest.approx(analytic, rel=0.01)
    assert native.text == forward_flops(model, patch_size=32).text
    assert 0.24 < coarse.image / native.image < 0.28  # the paper: 72% fewer FLOPs at p=32
    assert native.image_fraction > 0.75  # the image tower dominates, as in the paper's ViT-B/16


@pytest.mark.parametrize("size, patch, coarse", [(28, 7, 14), (28, 4, 7), (224, 16, 32), (256, 16, 32)])
def test_default_coarse_patch_divides_the_image_near_twice_the_native_patch(size, patch, coarse):
    model = open_clip.create_model("jest-tiny", force_image_size=size)
    model.visual.patch_size = (patch, patch)
    assert coarse_patch_size(model) == coarse


def test_compiled_towers_keep_their_parameter_names():
    bundle = create_model("jest-tiny")
    before = set(bundle.model.state_dict())
    compile_towers(bundle.model)
    assert set(bundle.model.state_dict()) == before  # checkpoints and local-dir folders load either way


def test_flexi_warns_when_the_coarse_view_keeps_fewer_than_16_tokens():
    default = create_model(BootstrapConfig().model).model  # jest-tiny: 28 px in 7-px patches, coarse 14 → 2×2
    caution = coarse_view_warning(default, flexi_patch_size(default, "score"))
    assert caution is not None and "jest-tiny-p4" in caution  # the user is told what to use instead
    p4 = create_model("jest-tiny-p4").model  # 4-px patches: coarse 7 → 4×4 = 16 tokens
    assert coarse_view_warning(p4, flexi_patch_size(p4, "train")) is None
    assert flexi_patch_size(default, "off") is None and coarse_view_warning(default, None) is None
