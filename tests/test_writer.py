"""Filtered shards: byte-for-byte round trip, complete shards only, resume, open_clip_train."""

import argparse
import json
from pathlib import Path

import pytest

from jestfilter.data import FilteredShardWriter, RawSample, expand_shards, iter_samples


def read_all(pattern):
    return list(iter_samples(expand_shards(pattern)))


def write_all(out, samples, **kw):
    writer = FilteredShardWriter(out, samples_per_shard=25, **kw)
    names = [writer.write(s) for s in samples]
    writer.close()
    return names


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_round_trip_keeps_every_byte_and_writes_sizes_and_success(web_shards, tmp_path):
    samples = read_all(web_shards.pattern)
    names = write_all(tmp_path, samples)
    assert names == ["filtered-000000.tar"] * 25 + ["filtered-000001.tar"] * 25 + ["filtered-000002.tar"] * 10
    assert json.loads((tmp_path / "sizes.json").read_text()) == {
        "filtered-000000.tar": 25, "filtered-000001.tar": 25, "filtered-000002.tar": 10}
    assert (tmp_path / "_SUCCESS").exists()
    again = read_all(str(tmp_path / "filtered-{000000..000002}.tar"))
    assert [(s.key, s.members) for s in again] == [(s.key, s.members) for s in samples]


def test_equal_input_gives_identical_tar_files(web_shards, tmp_path):
    samples = read_all(web_shards.pattern)
    write_all(tmp_path / "a", samples)
    write_all(tmp_path / "b", samples)
    assert files(tmp_path / "a") == files(tmp_path / "b")


def test_only_complete_shards_are_visible_while_writing(web_shards, tmp_path):
    writer = FilteredShardWriter(tmp_path, samples_per_shard=25)
    for sample in read_all(web_shards.pattern)[:30]:
        writer.write(sample)
    assert expand_shards(tmp_path) == [str(tmp_path / "filtered-000000.tar")]
    assert len(read_all(str(tmp_path))) == 25
    assert not (tmp_path / "sizes.json").exists() and not (tmp_path / "_SUCCESS").exists()


def test_a_sample_is_written_once_and_the_same_key_from_another_shard_is_written_too(web_shards, tmp_path):
    sample = read_all(web_shards.pattern)[0]
    namesake = RawSample(sample.key, "elsewhere.tar", {"jpg": b"\xff\xd8\xffother", "txt": b"other"})
    writer = FilteredShardWriter(tmp_path, samples_per_shard=25)
    first = writer.write(sample)
    assert writer.write(sample) == first  # the same (source shard, key): written once
    assert writer.write(namesake) != first  # never in the same tar: a reader would merge the two
    writer.close()
    assert json.loads((tmp_path / "sizes.json").read_text()) == {"filtered-000000.tar": 1, "filtered-000001.tar": 1}
    written = read_all(str(tmp_path / "filtered-{000000..000001}.tar"))
    assert [(s.key, s.members) for s in written] == [(sample.key, sample.members), (sample.key, namesake.members)]


def test_a_key_the_reader_would_join_to_the_previous_sample_starts_a_new_shard(tmp_path):
    writer = FilteredShardWriter(tmp_path, samples_per_shard=25)
    a = RawSample("img", "a.tar", {"jpg": b"\xff\xd8\xff1", "txt": b"one"})
    b = RawSample("img.v2", "b.tar", {"jpg": b"\xff\xd8\xff2", "txt": b"two"})
    assert writer.write(a) != writer.write(b)
    writer.close()
    assert [(s.key, s.members) for s in read_all(str(tmp_path))] == [(a.key, a.members), (b.key, b.members)]


def test_a_resumed_sink_still_writes_each_sample_once_and_both_namesakes(web_shards, tmp_path):
    from jestfilter.data import SuperBatch
    from jestfilter.sinks import FilteredOutput
    from jestfilter.sinks.filtered import selection_of

    samples = read_all(web_shards.pattern)[:6]
    namesakes = [RawSample(s.key, "second-download.tar", {**s.members, "txt": b"another caption"}) for s in samples]
    batch = SuperBatch.undecoded(samples + namesakes, [])
    sink = FilteredOutput(tmp_path, samples_per_shard=100, extremes=False)
    sink.record(batch, selection_of(range(3)), step=0)
    state = sink.state_dict()
    resumed = FilteredOutput(tmp_path, samples_per_shard=100, extremes=False)
    resumed.load_state_dict(state)
    resumed.record(batch, selection_of(range(12)), step=1)  # the first three again, and every namesake
    resumed.close()
    written = read_all(str(tmp_path))
    assert sorted((s.key, s.members["txt"]) for s in written) == sorted(
        (s.key, s.members["txt"]) for s in samples + namesakes)


@pytest.mark.parametrize("stop_after", [10, 30, 50])  # in shard 0; shard 0 finished since; at a boundary
def test_resuming_from_state_dict_gives_the_uninterrupted_output(web_shards, tmp_path, stop_after):
    samples = read_all(web_shards.pattern)
    write_all(tmp_path / "whole", samples)

    out = tmp_path / "resumed"
    crashed = FilteredShardWriter(out, samples_per_shard=25)
    for sample in samples[:stop_after]:
        crashed.write(sample)
    state = crashed.state_dict()
    for sample in samples[stop_after:stop_after + 22]:  # written after the checkpoint, then "killed"
        crashed.write(sample)
    crashed._file.flush()

    writer = FilteredShardWriter(out, samples_per_shard=25)
    writer.load_state_dict(state)
    for sample in samples[stop_after - 5:]:  # the job may repeat a few samples: written once
        writer.write(sample)
    writer.close()
    assert files(out) == files(tmp_path / "whole")


def test_a_fresh_writer_refuses_a_folder_holding_output(web_shards, tmp_path):
    write_all(tmp_path, read_all(web_shards.pattern)[:3])
    writer = FilteredShardWriter(tmp_path)
    with pytest.raises(ValueError, match="already holds output"):
        writer.write(read_all(web_shards.pattern)[5])


def test_open_clip_train_reads_the_shards_and_counts_them_from_sizes_json(web_shards, tmp_path, preprocess, tokenizer):
    from open_clip_train.data import get_dataset_size, get_wds_dataset

    # webdataset's own key rule (first dot) would split a dotted key, so keep those out here
    kept = [s for s in read_all(web_shards.pattern) if "." not in s.key][:28]
    write_all(tmp_path, kept)
    pattern = str(tmp_path / "filtered-{000000..000001}.tar")
    args = argparse.Namespace(train_data=pattern, val_data=pattern, train_num_samples=None, val_num_samples=None,
                              dataset_resampled=False, train_data_upsampling_factors=None, seed=0, workers=0,
                              world_size=1, batch_size=4)
    assert get_dataset_size(pattern) == (28, 2)  # from sizes.json
    train = get_wds_dataset(args, preprocess, is_train=True, tokenizer=tokenizer)
    assert train.dataloader.num_samples == 28 and train.dataloader.num_batches == 7
    val = get_wds_dataset(args, preprocess, is_train=False, tokenizer=tokenizer)
    images, texts = zip(*val.dataloader)
    assert sum(len(batch) for batch in images) == len(kept)
    assert images[0].shape == (4, 3, 28, 28) and texts[0].shape == (4, 16)


@pytest.mark.parametrize("key", ["../evil", "sub/key", ".hidden", ""])
def test_a_key_that_would_become_a_path_is_refused(tmp_path, key):
    with pytest.raises(ValueError, match="unsafe sample key"):
        FilteredShardWriter(tmp_path).write(RawSample(key, "in.tar", {"txt": b"x"}))


def checkpointed_sink(web_shards, folder):
    from jestfilter.data import SuperBatch
    from jestfilter.sinks import FilteredOutput
    from jestfilter.sinks.filtered import selection_of

    sink = FilteredOutput(folder, samples_per_shard=4, extremes=False)
    sink.manifest.rows_per_part = 10
    samples = read_all(web_shards.pattern)
    for step in range(3):
        batch = SuperBatch.undecoded(samples[step * 10:(step + 1) * 10], [])
        sink.record(batch, selection_of(range(0, 10, 2)), step=step)
    return sink.state_dict()


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[700] ^= 1  # inside the first member's bytes: the size stays, the tar still reads
    path.write_bytes(bytes(data))


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage, settings, message", [
    (lambda f: (f / "manifest.parquet" / "part-00001.parquet").unlink(), {}, "part-00001.parquet is missing"),
    (lambda f: (f / "filtered-000000.tar").unlink(), {}, "filtered-000000.tar is missing"),
    (lambda f: (f / "filtered-000001.tar").write_bytes(b"x" * 10240), {}, "filtered-000001.tar holds 10,240 bytes"),
    (lambda f: flip_a_byte(f / "filtered-000001.tar"), {}, "filtered-000001.tar is not the file the checkpoint saw"),
    (lambda f: None, {"rule": "first-pass"}, "rule 'all', not 'first-pass'"),
    (lambda f: None, {"samples_per_shard": 5}, "4 samples per shard, not 5"),
])
def test_resuming_a_folder_that_lost_what_the_checkpoint_counts_on_is_refused(web_shards, tmp_path, damage, settings,
                                                                              message):
    from jestfilter.sinks import FilteredOutput

    state = checkpointed_sink(web_shards, tmp_path)
    damage(tmp_path)
    before = folder_bytes(tmp_path)
    with pytest.raises(ValueError, match=message) as error:
        FilteredOutput(tmp_path, **{"samples_per_shard": 4, **settings}, extremes=False).load_state_dict(state)
    assert "cannot resume" in str(error.value) and "\n" not in str(error.value)
    assert folder_bytes(tmp_path) == before  # refused before anything was changed
