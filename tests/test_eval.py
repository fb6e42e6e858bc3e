"""Eval directory reading, zero-shot and retrieval metrics, against brute-force numpy."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import open_clip
import pytest
import torch
import webdataset as wds
from fashion_pairs import CLASSNAMES, TEMPLATES, captions, load_fashion_mnist, one_torch_thread  # noqa: F401
from PIL import Image

from jestfilter.eval import DEFAULT_TEMPLATES, evaluate, load_eval_set, retrieval_class_r1, retrieval_r1, zeroshot_top1
from jestfilter.cli import main
from jestfilter.models import create_model, save_local_dir

N_EVAL = 120

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def write_shard(path, samples: list[dict]) -> None:
    with wds.TarWriter(str(path)) as writer:
        for sample in samples:
            writer.write(sample)


def fashion_samples(count: int, offset: int = 0) -> tuple[list[dict], np.ndarray, list[str]]:
    images, labels = load_fashion_mnist("test", offset + count)
    images, labels = images[offset:], labels[offset:]
    texts = [captions([label], TEMPLATES[i % 2])[0] for i, label in enumerate(labels)]
    samples = [
        {"__key__": f"{offset + i:06d}", "jpg": jpeg(image), "txt": text, "cls": str(label)}
        for i, (image, label, text) in enumerate(zip(images, labels, texts))
    ]
    return samples, labels, texts


def image_bytes(folder) -> list[bytes]:
    """The JPEG bytes of every eval sample, in the order the eval set reads them."""
    shards = sorted(str(path) for path in folder.glob("*.tar"))
    return [sample["jpg"] for sample in wds.DataPipeline(wds.SimpleShardList(shards), wds.tarfile_to_samples())]


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    samples, _, _ = fashion_samples(N_EVAL)
    write_shard(folder / "eval-000000.tar", samples[: N_EVAL // 2])
    write_shard(folder / "eval-000001.tar", samples[N_EVAL // 2 :])
    (folder / "classnames.txt").write_text("\n".join(CLASSNAMES) + "\n")
    (folder / "templates.txt").write_text("\n".join(TEMPLATES) + "\n")
    return folder


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("jest-tiny")


def test_reads_every_sample_with_its_caption_and_class(eval_dir):
    eval_set = load_eval_set(eval_dir)
    _, labels, texts = fashion_samples(N_EVAL)
    assert len(eval_set) == N_EVAL
    assert eval_set.captions == texts
    assert np.array_equal(eval_set.labels, labels)
    assert eval_set.classnames == CLASSNAMES
    assert eval_set.templates == TEMPLATES
    assert not eval_set.rejected


def test_default_templates_and_damaged_samples_counted(tmp_path):
    samples, _, _ = fashion_samples(6)
    del samples[1]["cls"]
    samples[2]["jpg"] = b"not an image"
    samples[5]["jpg"] = b"\xff\xd8\xff" + bytes(10)  # starts like a JPEG, decodes to nothing
    samples[3]["cls"] = "42"
    del samples[4]["txt"]
    write_shard(tmp_path / "a.tar", samples)
    write_shard(tmp_path / "b.tar", fashion_samples(3, offset=10)[0])
    with tarfile.open(tmp_path / "b.tar") as tar:
        cut = next(member.offset_data for member in tar.getmembers() if member.name.startswith("000012."))
    (tmp_path / "b.tar").write_bytes((tmp_path / "b.tar").read_bytes()[: cut + 100])  # inside the 3rd sample
    (tmp_path / "classnames.txt").write_text("\n".join(CLASSNAMES))
    eval_set = load_eval_set(tmp_path)
    assert len(eval_set) == 3  # sample 0 of a.tar, the two whole samples of b.tar
    assert eval_set.templates == DEFAULT_TEMPLATES
    assert eval_set.rejected == {  # the data plane's reasons (docs/data.md), and the class index's own
        "missing_class": 1,
        "corrupt_image": 2,  # one found by the data plane's signature check, one by decoding
        "class_out_of_range": 1,
        "missing_caption": 1,
        "truncated_tar": 2,  # the sample being read when b.tar broke off, and the shard's damage
    }


def test_an_image_announcing_too_many_pixels_is_not_decoded(tmp_path):
    from hostile_shards import png_header_only

    samples, _, _ = fashion_samples(2)
    samples[0].pop("jpg")
    samples[0]["png"] = png_header_only(30_000, 30_000)  # 900 megapixels if decoded
    write_shard(tmp_path / "a.tar", samples)
    (tmp_path / "classnames.txt").write_text("\n".join(CLASSNAMES))
    eval_set = load_eval_set(tmp_path)
    assert len(eval_set) == 1 and eval_set.rejected == {"image_too_large": 1}


@pytest.mark.parametrize("problem", ["missing", "no shards", "no classnames"])
def test_bad_eval_directory_is_one_line_error(tmp_path, problem):
    folder = tmp_path / "eval"
    if problem != "missing":
        folder.mkdir()
        (folder / "classnames.txt").write_text("a\nb\n")
    if problem == "no classnames":
        write_shard(folder / "a.tar", fashion_samples(2)[0])
        (folder / "classnames.txt").unlink()
    with pytest.raises(FileNotFoundError) as error:
        load_eval_set(folder)
    message = str(error.value)
    assert "\n" not in message and str(folder) in message


def brute_force_metrics(image: np.ndarray, text: np.ndarray, classes: np.ndarray, labels, texts) -> dict:
    """Plain numpy: argmax over full similarity matrices, captions compared as strings."""
    similarity = image @ text.T
    i2t = np.mean([texts[similarity[i].argmax()] == texts[i] for i in range(len(texts))])
    t2i = np.mean([texts[similarity[:, j].argmax()] == texts[j] for j in range(len(texts))])
    class_r1 = (np.mean(labels[similarity.argmax(1)] == labels) + np.mean(labels[similarity.argmax(0)] == labels)) / 2
    return {"zeroshot_top1": np.mean((image @ classes.T).argmax(1) == labels), "i2t": i2t, "t2i": t2i,
            "class_r1": class_r1}


def test_evaluate_matches_brute_force_on_a_random_model(eval_dir, tiny):
    eval_set = load_eval_set(eval_dir)
    metrics = evaluate(tiny, eval_set, batch_size=32)
    model = tiny.model
    with torch.no_grad():
        # open_clip's own eval transform on PIL images: the reference our batched preprocessing must match
        transform = open_clip.image_transform(28, is_train=False)
        pixels = torch.stack([transform(Image.open(io.BytesIO(data)).convert("RGB")) for data in image_bytes(eval_dir)])
        image = model.encode_image(pixels, normalize=True).numpy()
        text = model.encode_text(tiny.tokenizer(eval_set.captions), normalize=True).numpy()
        prompts = tiny.tokenizer([t.format(c) for c in CLASSNAMES for t in TEMPLATES])
        classes = model.encode_text(prompts, normalize=True).reshape(len(CLASSNAMES), len(TEMPLATES), -1).mean(1)
        classes = torch.nn.functional.normalize(classes, dim=-1).numpy()
    expected = brute_force_metrics(image, text, classes, eval_set.labels, eval_set.captions)
    assert metrics["zeroshot_top1"] == pytest.approx(expected["zeroshot_top1"])
    assert metrics["retrieval_i2t_r1"] == pytest.approx(expected["i2t"])
    assert metrics["retrieval_t2i_r1"] == pytest.approx(expected["t2i"])
    assert metrics["retrieval_r1"] == pytest.approx((expected["i2t"] + expected["t2i"]) / 2)
    assert metrics["retrieval_class_r1"] == pytest.approx(expected["class_r1"])


def test_eval_set_is_decoded_once_and_reused(eval_dir, tiny):
    eval_set = load_eval_set(eval_dir)
    first = evaluate(tiny, eval_set)
    pixels = eval_set.images
    assert pixels.dtype == torch.uint8  # decoded once, resized and normalised per model on its device
    assert evaluate(tiny, eval_set) == first
    assert eval_set.images is pixels
    assert evaluate(tiny, eval_dir) == first
    assert evaluate(tiny, eval_set, patch_size=7) == first  # 7 is jest-tiny's own patch size


def one_hot_rows(indices: np.ndarray, dim: int) -> np.ndarray:
    return np.eye(dim, dtype=np.float32)[indices]


def test_zeroshot_is_perfect_when_images_point_at_their_class_and_chance_when_random():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=4000)
    classes = one_hot_rows(np.arange(10), 16)
    images = one_hot_rows(labels, 16) + 0.1 * rng.standard_normal((4000, 16)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    assert zeroshot_top1(images, classes, labels) == 1.0
    random_images = rng.standard_normal((4000, 16)).astype(np.float32)
    assert zeroshot_top1(random_images, classes, labels) == pytest.approx(0.1, abs=0.025)


def test_retrieval_counts_any_sample_with_the_same_caption_as_correct():
    # Image 0 is nearest to text 1; both samples carry the same caption, so the hit is right.
    images = one_hot_rows(np.array([1, 0, 2]), 4)
    texts = one_hot_rows(np.array([0, 1, 2]), 4)
    assert retrieval_r1(images, texts, ["a cat", "a cat", "a dog"]) == 1.0
    assert retrieval_r1(texts, images, ["a cat", "a cat", "a dog"]) == 1.0
    assert retrieval_r1(images, texts, ["a cat", "a kitten", "a dog"]) == pytest.approx(1 / 3)


def test_class_level_retrieval_of_a_perfect_and_a_random_model():
    """On class-templated captions a per-item hit needs the very same string; a class hit does not."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 2000)
    perfect = one_hot_rows(labels, 16)  # every image sits on its class's text embeddings
    perfect_texts = perfect + 1e-3 * rng.standard_normal(perfect.shape).astype(np.float32)
    assert retrieval_class_r1(perfect, perfect_texts, labels) == 1.0
    assert retrieval_class_r1(perfect_texts, perfect, labels) == 1.0
    random_images, random_texts = (rng.standard_normal((2000, 16)).astype(np.float32) for _ in range(2))
    assert retrieval_class_r1(random_images, random_texts, labels) == pytest.approx(0.1, abs=0.03)
    captions = [f"a photo of class {label} #{rng.integers(20)}" for label in labels]  # ~20 phrasings a class
    assert retrieval_r1(perfect, perfect_texts, captions) < 0.2  # the per-item protocol is ill-posed here


def test_evaluate_command_prints_the_metrics_of_a_saved_model(eval_dir, tiny, tmp_path, capsys):
    save_local_dir(tiny, tmp_path / "final")
    assert main(["evaluate", "--model", f"local-dir:{tmp_path / 'final'}", "--eval", str(eval_dir)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["samples"] == N_EVAL and printed["rejected"] == {}
    assert {key: printed[key] for key in evaluate(tiny, eval_dir)} == evaluate(tiny, eval_dir)


def test_evaluate_command_bad_eval_dir_is_one_line_and_status_2(tmp_path, capsys):
    assert main(["evaluate", "--model", "jest-tiny", "--eval", str(tmp_path / "nothing")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "eval directory not found" in error
