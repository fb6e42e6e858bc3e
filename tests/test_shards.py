"""Reading img2dataset-style shards: patterns, key grouping, and every kind of damage."""

from pathlib import Path

import pytest
import webdataset as wds

from jestfilter.data import RawSample, Rejected, expand_shards, iter_samples
from jestfilter.data.shards import iter_shard


def test_brace_pattern_list_glob_and_directory_expand_to_the_same_shards(web_shards):
    paths = [str(p) for p in web_shards.paths]
    assert expand_shards(web_shards.pattern) == paths
    assert expand_shards([str(web_shards.folder / "web-000000.tar"), str(web_shards.folder / "web-00000[12].tar")]) == paths
    assert expand_shards(web_shards.folder) == paths


@pytest.mark.parametrize("pattern", ["nowhere/web-{000000..000009}.tar", "nowhere/*.tar"])
def test_a_pattern_matching_nothing_fails_at_once_with_one_line(pattern):
    with pytest.raises(FileNotFoundError) as error:
        expand_shards(pattern)
    assert pattern in str(error.value) and "\n" not in str(error.value)


def test_a_directory_without_shards_or_an_empty_list_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match="no .tar shard"):
        expand_shards(tmp_path)
    with pytest.raises(ValueError, match="no shard pattern"):
        expand_shards([])


def test_samples_come_back_with_every_member_byte_for_byte(web_shards):
    items = list(iter_samples(expand_shards(web_shards.pattern)))
    assert all(isinstance(item, RawSample) for item in items)
    assert {s.key: s.members for s in items} == web_shards.samples
    assert [Path(s.source_shard).name for s in items[:1]] == ["web-000000.tar"]


def test_a_dot_inside_the_key_does_not_split_the_sample(web_shards):
    keys = {s.key for s in iter_samples([str(web_shards.paths[1])])}
    assert "img.v1.2" in keys
    # webdataset's default rule splits at the first dot and would break this sample apart
    wds_keys = {s["__key__"].rsplit("/", 1)[-1] for s in wds.WebDataset(str(web_shards.paths[1]), shardshuffle=False)}
    assert "img.v1.2" not in wds_keys


def test_a_member_following_its_key_keeps_a_multi_part_extension(tmp_path):
    from conftest import write_members

    write_members(tmp_path / "a.tar", [("k.1.jpg", b"x"), ("k.1.ref.npy", b"y"), ("k.2.jpg", b"z")])
    samples = list(iter_shard(str(tmp_path / "a.tar")))
    assert [(s.key, s.members) for s in samples] == [("k.1", {"jpg": b"x", "ref.npy": b"y"}), ("k.2", {"jpg": b"z"})]


def test_every_kind_of_damage_is_rejected_with_its_reason_and_reading_goes_on(damaged_shards):
    items = list(iter_samples(expand_shards(damaged_shards.pattern)))
    rejected = {(Path(r.source_shard).name, r.key): r.reason for r in items if isinstance(r, Rejected)}
    # 000000019's image header parses, its pixels do not: the loader rejects it when decoding
    expected = dict(damaged_shards.expected)
    assert expected.pop(("damaged-000000.tar", "000000019")) == "corrupt_image"
    assert rejected == expected
    kept = {s.key: s.members for s in items if isinstance(s, RawSample)}
    assert kept.pop("000000019") and kept == damaged_shards.good


def test_a_key_seen_again_later_in_a_shard_is_rejected(tmp_path):
    from conftest import write_members

    write_members(tmp_path / "a.tar", [("a.txt", b"1"), ("b.txt", b"2"), ("a.txt", b"3")])
    items = list(iter_shard(str(tmp_path / "a.tar")))
    assert [type(i).__name__ for i in items] == ["RawSample", "RawSample", "Rejected"]
    assert items[2].reason == "duplicate_key"
