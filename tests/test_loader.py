"""Super-batches: decoding, order, determinism across workers, passes and resume."""

from collections import Counter

import pytest
from pathlib import Path

import torch
from conftest import fashion_mnist

from jestfilter.data import SuperBatchLoader


def keys(batches):
    return [s.key for b in batches for s in b.samples]


def test_super_batches_hold_decoded_pixels_and_tokens_aligned_with_raw_samples(web_shards, tokenizer):
    batches = list(SuperBatchLoader(web_shards.pattern, 16, tokenizer))
    assert [len(b) for b in batches] == [16, 16, 16, 12]  # 60 samples, the last batch takes the rest
    first = batches[0]
    assert first.images.shape == (16, 3, 28, 28) and first.images.dtype == torch.uint8  # resized on the device
    assert first.texts.shape == (16, 16) and first.texts.dtype == torch.long
    captions = [s.members["txt"].decode() for s in first.samples]
    assert torch.equal(first.texts, tokenizer(captions))
    assert sorted(keys(batches)) == sorted(web_shards.samples)  # each sample once
    assert [b.index for b in batches] == [0, 1, 2, 3]


def test_two_workers_give_exactly_the_single_process_stream(web_shards, tokenizer):
    def run(workers):
        return list(SuperBatchLoader(web_shards.pattern, 7, tokenizer, workers=workers,
                                     shuffle_buffer=25, seed=3))

    alone, pooled = run(0), run(2)
    assert keys(alone) == keys(pooled)
    assert all(torch.equal(a.images, b.images) for a, b in zip(alone, pooled))


def test_shuffling_is_seeded(web_shards, tokenizer):
    def order(seed):
        return keys(SuperBatchLoader(web_shards.pattern, 10, tokenizer, shuffle_buffer=30, seed=seed))

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert sorted(order(1)) == sorted(web_shards.samples)
    plain = keys(SuperBatchLoader(web_shards.pattern, 10, tokenizer))
    assert order(1) != plain


def test_several_passes_are_numbered_and_reshuffled(web_shards, tokenizer):
    batches = list(SuperBatchLoader(web_shards.pattern, 20, tokenizer, shuffle_buffer=30, passes=2))
    assert [b.pass_index for b in batches] == [0, 0, 0, 1, 1, 1]
    first, second = keys(batches[:3]), keys(batches[3:])
    assert sorted(first) == sorted(second) and first != second


def test_resuming_from_state_dict_continues_the_same_stream(web_shards, tokenizer):
    def loader():
        return SuperBatchLoader(web_shards.pattern, 8, tokenizer, workers=2, shuffle_buffer=20,
                                seed=5, passes=2)

    whole = [(b.pass_index, b.index, [s.key for s in b.samples]) for b in loader()]
    interrupted = loader()
    seen = []
    for batch in interrupted:
        seen.append((batch.pass_index, batch.index, [s.key for s in batch.samples]))
        if len(seen) == 11:  # in the second pass, at an odd position (the other worker's turn)
            break
    state = interrupted.state_dict()
    resumed = loader()
    resumed.load_state_dict(state)
    seen += [(b.pass_index, b.index, [s.key for s in b.samples]) for b in resumed]
    assert seen == whole
    assert resumed.state_dict()["pass"] == 2


def test_damaged_input_ends_in_rejections_and_the_pass_completes(damaged_shards, tokenizer):
    loader = SuperBatchLoader(damaged_shards.pattern, 4, tokenizer, workers=2)
    batches = list(loader)
    rejected = {(Path(r.source_shard).name, r.key): r.reason for b in batches for r in b.rejected}
    assert rejected == damaged_shards.expected  # including the image that fails only at decode
    assert loader.rejections == Counter(damaged_shards.expected.values())
    assert sorted(keys(batches)) == sorted(damaged_shards.good)
    assert all(len(b.images) == len(b.samples) == len(b.texts) for b in batches)


def test_a_bad_pattern_or_resume_state_fails_with_one_line(web_shards, tokenizer, tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError):
        SuperBatchLoader(str(tmp_path / "x-{0..3}.tar"), 4, tokenizer)
    loader = SuperBatchLoader(web_shards.pattern, 4, tokenizer)
    state = SuperBatchLoader(web_shards.pattern, 5, tokenizer).state_dict()
    with pytest.raises(ValueError, match="batch_size was 5, now 4"):
        loader.load_state_dict(state)


def test_only_the_named_samples_are_read_with_workers_and_over_passes(web_shards, tokenizer):
    # (shard name, key) of five samples, e.g. what an offline filter kept
    chosen = {("web-000000", "000000000"), ("web-000000", "s0"), ("web-000001", "000100004"),
              ("web-000002", "000200009"), ("web-000002", "long-2-" + "x" * 40)}
    loader = SuperBatchLoader(web_shards.pattern, 3, tokenizer, workers=2, shuffle_buffer=10, seed=1,
                              passes=2, only=chosen)
    batches = list(loader)
    read = [(Path(s.source_shard).stem, s.key) for b in batches for s in b.samples]
    assert len(read) == 2 * len(chosen) and set(read) == chosen
    assert Counter(b.pass_index for b in batches) == Counter({0: 2, 1: 2})  # 3 + 2 a pass


class Sizes:
    """Rows of the n-th super-batch: 8, then 4 from the fourth on (a picklable schedule)."""

    def __call__(self, n):
        return 8 if n < 3 else 4

    def __repr__(self):
        return "Sizes()"


def test_a_batch_size_schedule_sets_each_super_batch_and_survives_a_resume(web_shards, tokenizer):
    def loader():
        return SuperBatchLoader(web_shards.pattern, Sizes(), tokenizer, workers=2, shuffle_buffer=20, seed=5,
                                passes=2)

    whole = [(b.pass_index, b.index, [s.key for s in b.samples]) for b in loader()]
    assert [len(keys) for _, _, keys in whole] == [8, 8, 8] + [4] * 9 + [4] * 15
    interrupted, seen = loader(), []
    for batch in interrupted:
        seen.append((batch.pass_index, batch.index, [s.key for s in batch.samples]))
        if len(seen) == 14:  # the second pass, with the sizes of the run's 15th super-batch on
            break
    resumed = loader()
    resumed.load_state_dict(interrupted.state_dict())
    seen += [(b.pass_index, b.index, [s.key for s in b.samples]) for b in resumed]
    assert seen == whole


def test_each_caption_is_tokenised_once_over_all_passes(web_shards, tokenizer):
    calls = []

    def counting(texts):
        calls.extend(texts)
        return tokenizer(texts)

    batches = list(SuperBatchLoader(web_shards.pattern, 16, counting, passes=3))
    captions = [s.members["txt"].decode() for b in batches for s in b.samples]
    assert sorted(calls) == sorted(set(captions))  # 3 passes, each distinct caption once
    assert all(torch.equal(b.texts, tokenizer([s.members["txt"].decode() for s in b.samples])) for b in batches)


def test_workers_report_the_seconds_spent_reading_decoding_and_tokenising(web_shards, tokenizer):
    loader = SuperBatchLoader(web_shards.pattern, 16, tokenizer, workers=2)
    batches = list(loader)
    assert all(set(b.timings) == {"read", "decode", "tokenise"} for b in batches)
    assert loader.timings["decode"] == pytest.approx(sum(b.timings["decode"] for b in batches))
    assert loader.state_dict()["timings"] == dict(loader.timings)


def test_buffer_shuffle_is_a_seeded_permutation_that_mixes_beyond_the_buffer():
    import random

    from jestfilter.data.loader import buffer_shuffle

    items = list(range(100))
    once = list(buffer_shuffle(iter(items), 10, random.Random("s")))
    assert sorted(once) == items and once != items
    assert once == list(buffer_shuffle(iter(items), 10, random.Random("s")))
    assert once != list(buffer_shuffle(iter(items), 10, random.Random("t")))
    assert max(once[:10]) < 20  # a buffer of 10 holds only the first items at the start


def test_a_buffer_spanning_few_shards_is_pointed_out(web_shards, tokenizer):
    """Shards are often ordered (img2dataset keeps its input's order): a buffer that spans only
    a shard or two would hand out ordered batches."""
    import json

    folder = web_shards.paths[0].parent
    per_shard = len(web_shards.samples) // len(web_shards.paths)
    (folder / "sizes.json").write_text(json.dumps({p.name: per_shard for p in web_shards.paths}))
    try:
        small = SuperBatchLoader(web_shards.pattern, 4, tokenizer, shuffle_buffer=per_shard)
        assert "spans about 1.0 shards" in small.mixing_note()
        assert SuperBatchLoader(web_shards.pattern, 4, tokenizer, shuffle_buffer=4 * per_shard).mixing_note() is None
    finally:
        (folder / "sizes.json").unlink()


def test_the_shuffle_buffer_is_bounded_in_bytes_as_well_as_in_samples(web_shards, tokenizer, monkeypatch):
    import random

    from jestfilter.data import RawSample, iter_samples
    from jestfilter.data.loader import buffer_shuffle, pass_shards

    sizes = [random.Random(i).choice([10, 1_000, 40_000]) for i in range(300)]
    samples = [RawSample(str(i), "s", {"jpg": bytes(n)}) for i, n in enumerate(sizes)]
    read = 0

    def source():
        nonlocal read
        for sample in samples:
            read += 1
            yield sample

    out, most = [], 0
    for sample in buffer_shuffle(source(), 1_000, random.Random(0), max_bytes=100_000):
        out.append(sample)
        most = max(most, sum(sizes[:read]) - sum(len(s.members["jpg"]) for s in out))
    assert sorted(int(s.key) for s in out) == list(range(300)) and most <= 100_000 + max(sizes)  # one being read
    # the cap reaches the loader's workers through the environment: at 1 byte nothing is held
    monkeypatch.setenv("JESTFILTER_SHUFFLE_BUFFER_BYTES", "1")
    loader = SuperBatchLoader(web_shards.pattern, 8, tokenizer, workers=2, shuffle_buffer=16, seed=3)
    keys = [s.key for batch in loader for s in batch.samples]
    in_order = [s.key for shard in pass_shards(loader.shards, 3, 0, True)
                for s in iter_samples([shard]) if isinstance(s, RawSample)]
    assert keys == in_order


@pytest.mark.parametrize("text", ["[]", '"x"', "3", '{"web-000000.tar": "20"}', "{"])
def test_a_sizes_json_that_is_not_a_table_of_counts_is_ignored(web_shards, tokenizer, tmp_path, text):
    import shutil

    folder = Path(shutil.copytree(web_shards.folder, tmp_path / "web"))
    (folder / "sizes.json").write_text(text)
    assert SuperBatchLoader(str(folder / "*.tar"), 4, tokenizer, shuffle_buffer=2).mixing_note() is None


def test_a_super_batch_is_handed_out_as_soon_as_a_sample_follows_it():
    """Only one group's raw bytes are held: group k goes out when group k+1's first sample comes,
    not when group k+1 is full; rejections after the last sample still join the last group."""
    from jestfilter.data import RawSample, Rejected
    from jestfilter.data.loader import group_super_batches

    items = [RawSample(str(i), "s", {}) for i in range(10)] + [Rejected("x", "s", "corrupt_image")]
    read = 0

    def source():
        nonlocal read
        for item in items:
            read += 1
            yield item

    seen = []
    for samples, rejected in group_super_batches(source(), 4):
        seen.append((read, [s.key for s in samples], [r.key for r in rejected]))
    assert seen == [(5, ["0", "1", "2", "3"], []), (9, ["4", "5", "6", "7"], []), (11, ["8", "9"], ["x"])]


def test_workers_decode_large_jpegs_for_the_models_size_and_png_as_stored(tmp_path, tokenizer):
    import io

    import PIL.Image
    import webdataset as wds

    from jestfilter.data.pixels import decode_image

    images, _ = fashion_mnist(6)
    expected = {}
    with wds.TarWriter(str(tmp_path / "big-0.tar"), mtime=0) as sink:
        for i, (fmt, side) in enumerate([("JPEG", 256), ("JPEG", 256), ("PNG", 256), ("JPEG", 40), ("JPEG", 256),
                                         ("WEBP", 100)]):
            out = io.BytesIO()
            PIL.Image.fromarray(images[i]).convert("RGB").resize((side, side)).save(out, format=fmt)
            ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[fmt]
            sink.write({"__key__": f"{i:04d}", ext: out.getvalue(), "txt": b"a photo"})
            expected[f"{i:04d}"] = out.getvalue()
    batches = list(SuperBatchLoader(str(tmp_path / "big-0.tar"), 6, tokenizer, workers=2, image_size=28))
    sides = {s.key: image.shape[-1] for b in batches for s, image in zip(b.samples, b.images)}
    assert sides == {"0000": 32, "0001": 32, "0002": 256, "0003": 40, "0004": 32, "0005": 100}
    for b in batches:
        for sample, image in zip(b.samples, b.images):
            assert torch.equal(image, decode_image(expected[sample.key], 28))


def test_jpegs_left_for_the_device_decode_there_and_a_corrupt_one_is_still_rejected(damaged_shards, tokenizer):
    from jestfilter.data.loader import decode_on_device

    plain = list(SuperBatchLoader(damaged_shards.pattern, 4, tokenizer))
    deferred = [decode_on_device(b, "cpu") for b in SuperBatchLoader(damaged_shards.pattern, 4, tokenizer,
                                                                      workers=2, defer_jpeg=True)]
    rejected = {(Path(r.source_shard).name, r.key): r.reason for b in deferred for r in b.rejected}
    assert rejected == damaged_shards.expected  # the JPEG cut short fails on the device, not in the worker
    assert sorted(keys(deferred)) == sorted(keys(plain)) == sorted(damaged_shards.good)
    pixels = {s.key: (image, text) for b in plain for s, image, text in zip(b.samples, b.images, b.texts)}
    for b in deferred:
        assert len(b.images) == len(b.samples) == len(b.texts)
        for sample, image, text in zip(b.samples, b.images, b.texts):
            assert torch.equal(image, pixels[sample.key][0]) and torch.equal(text, pixels[sample.key][1])
