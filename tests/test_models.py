"""Model factory: named configs, SigLIP init, local-dir folders that open_clip itself loads."""

from __future__ import annotations

import json
import math

import open_clip
import pytest
import torch
from fashion_pairs import captions, load_fashion_mnist, one_torch_thread, to_tensors  # noqa: F401
from safetensors.torch import load_file

from jestfilter.models import (
    OUR_MODELS,
    create_model,
    embed,
    encode_text,
    logit_bias_for_batch,
    save_local_dir,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("jest-tiny")


@pytest.fixture(scope="module")
def batch(tiny):
    images, labels = load_fashion_mnist("test", 8)
    return to_tensors(tiny, images, captions(labels))


def test_our_configs_are_registered_and_offline():
    assert {"jest-tiny", "jest-small", "jest-b16"} <= set(OUR_MODELS)
    for name in OUR_MODELS:
        assert name in open_clip.list_models()
        assert "siglip" not in name.lower()  # that would make open_clip fetch an HF tokenizer
        assert isinstance(open_clip.get_tokenizer(name), open_clip.SimpleTokenizer)


def test_tiny_model_shapes_and_siglip_init(tiny, batch):
    images, texts = batch
    assert images.shape == (8, 3, 28, 28) and texts.shape == (8, 16)
    assert tiny.model.logit_scale.exp().item() == pytest.approx(10.0)
    assert tiny.model.logit_bias.item() == -10.0
    outputs = embed(tiny.model, images, texts)
    assert outputs.image.shape == outputs.text.shape == (8, 64)
    assert torch.allclose(outputs.image.norm(dim=-1), torch.ones(8))
    # open_clip's forward; our text tower skips the padding after the longest caption, which
    # changes nothing but the rounding of the smaller matrix products
    for mine, open_clips in zip(outputs, tiny.model(images, texts)):
        assert torch.allclose(mine, open_clips, atol=1e-6)


def test_text_tower_on_fewer_positions_is_exact_for_padding_and_cuts_long_captions():
    torch.manual_seed(0)
    bundle = create_model("jest-tiny")
    model = bundle.model
    short, long = "a photo of a dress", "a long caption of a dress with many words that fills every position here"
    texts = bundle.tokenizer([short, long])
    assert texts[0, -1] == 0 and texts[1, -1] != 0  # the short one is padded, the long one fills the context
    with torch.no_grad():
        whole = model.encode_text(texts, normalize=True)
        assert torch.allclose(encode_text(model, texts[:1], normalize=True), whole[:1], atol=1e-6)
        cut = encode_text(model, texts, normalize=True, context=8)
    assert torch.allclose(cut[0], whole[0], atol=1e-6)  # 7 tokens fit in 8: unchanged
    assert not torch.allclose(cut[1], whole[1], atol=1e-3)  # cut: an approximation
    # the cut caption equals what the tower gives for the caption tokenised to 8 tokens
    eight = open_clip.SimpleTokenizer(context_length=8)([long])
    with torch.no_grad():
        assert torch.allclose(cut[1], encode_text(model, eight, normalize=True)[0], atol=1e-6)


def test_batch_sized_bias_makes_positives_the_expected_share():
    bundle = create_model("jest-tiny", bias_for_batch_size=64)
    assert torch.sigmoid(bundle.model.logit_bias).item() == pytest.approx(1 / 64)
    assert logit_bias_for_batch(64) == pytest.approx(-math.log(63))
    with pytest.raises(ValueError):
        logit_bias_for_batch(1)


def test_open_clip_names_get_siglip_init():
    bundle = create_model("RN50", force_image_size=32)
    assert bundle.model.logit_bias.item() == -10.0
    assert bundle.model.logit_scale.exp().item() == pytest.approx(10.0)
    assert bundle.model.jest_model_cfg["vision_cfg"]["image_size"] == 32
    images, texts = torch.randn(2, 3, 32, 32), bundle.tokenizer(["a cat", "a dog"])
    with torch.no_grad():  # embed works for any open_clip image tower, not only ViTs
        for mine, open_clips in zip(embed(bundle.model, images, texts), bundle.model(images, texts)):
            assert torch.allclose(mine, open_clips, atol=1e-6)


def test_unknown_name_is_a_one_line_error():
    with pytest.raises(ValueError, match="unknown model 'jest-huge'") as error:
        create_model("jest-huge")
    assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError):
        create_model("local-dir:/nonexistent/model")


def test_local_dir_loads_in_open_clip_with_identical_outputs(tiny, batch, tmp_path):
    images, _ = batch
    path = save_local_dir(tiny, tmp_path / "reference")
    assert sorted(p.name for p in path.iterdir()) == ["open_clip_config.json", "open_clip_model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["reference"]  # no temporary folder left behind
    config = json.loads((path / "open_clip_config.json").read_text())
    assert config["model_cfg"]["vision_cfg"]["patch_size"] == 7
    assert config["preprocess_cfg"]["size"] == [28, 28]

    weights = load_file(path / "open_clip_model.safetensors")  # safetensors: no pickle involved
    assert weights.keys() == tiny.model.state_dict().keys()

    model = open_clip.create_model(f"local-dir:{path}").eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{path}")
    texts = ["a photo of a sandal.", "a picture of a bag."]
    assert torch.equal(tokenizer(texts), tiny.tokenizer(texts))
    with torch.no_grad():
        for mine, loaded in zip(tiny.model(images, tiny.tokenizer(texts * 4)), model(images, tokenizer(texts * 4))):
            assert torch.equal(mine, loaded)

    ours = create_model(f"local-dir:{path}")
    assert ours.model.jest_model_cfg == config["model_cfg"]


def test_save_replaces_an_existing_folder(tiny, tmp_path):
    save_local_dir(tiny, tmp_path / "m")
    other = create_model("jest-tiny")
    save_local_dir(other.model, tmp_path / "m")
    loaded = create_model(f"local-dir:{tmp_path / 'm'}")
    assert torch.equal(loaded.model.logit_bias, other.model.logit_bias)
    assert torch.equal(loaded.model.visual.conv1.weight, other.model.visual.conv1.weight)
    assert not torch.equal(loaded.model.visual.conv1.weight, tiny.model.visual.conv1.weight)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_saving_a_model_we_did_not_build_is_refused(tmp_path):
    model = open_clip.create_model("jest-tiny")  # open_clip's factory: the resolved config is not kept
    with pytest.raises(ValueError, match="config is unknown"):
        save_local_dir(model, tmp_path / "m")
