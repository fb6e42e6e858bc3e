"""Reading img2dataset-style shards: patterns, key grouping, and every kind of damage."""

import bz2
import gzip
import lzma
import os
import threading
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
import webdataset as wds

from jestfilter.data import FilteredShardWriter, RawSample, Rejected, expand_shards, iter_samples
from jestfilter.data.shards import image_member, iter_shard


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


def test_a_url_scheme_webdataset_cannot_open_fails_at_once():
    with pytest.raises(ValueError, match="no reader for s3:// URLs"):
        expand_shards("s3://bucket/web-{000000..000009}.tar")
    assert expand_shards("pipe:cat web-{0..1}.tar") == ["pipe:cat web-0.tar", "pipe:cat web-1.tar"]


def test_pipe_urls_are_read_through_webdataset_and_a_failing_command_is_recorded(web_shards, tmp_path):
    items = list(iter_samples(expand_shards(f"pipe:cat {web_shards.paths[0]}")))
    assert len(items) == 20 and all(isinstance(i, RawSample) for i in items)
    failing = f"pipe:cat {tmp_path}/gone.tar 2>/dev/null"
    assert list(iter_samples([failing])) == [Rejected("", failing, "unreadable_shard")]


@pytest.mark.parametrize("where", ["member boundary", "inside a header"])
def test_a_tar_cut_where_tarfile_sees_a_clean_end_is_still_reported(web_shards, tmp_path, where):
    data = web_shards.paths[0].read_bytes()
    fifth = data.index(b"000000004.jpg")  # the 5th sample's first header
    cut = fifth if where == "member boundary" else fifth + 100
    (tmp_path / "cut.tar").write_bytes(data[:cut])
    items = list(iter_samples([str(tmp_path / "cut.tar")]))
    assert [i.key for i in items if isinstance(i, RawSample)] == ["000000000", "s0", "img.v0.2"]
    assert [(i.key, i.reason) for i in items if isinstance(i, Rejected)] == [
        ("long-0-" + "x" * 40, "truncated_tar"), ("", "truncated_tar")]


# --- hostile input (issue 11) ----------------------------------------------------------------

def accounted(items) -> Counter:
    """(shard file name, key, reason or None) of everything read, with how often each came."""
    return Counter((Path(i.source_shard).name, i.key, getattr(i, "reason", None)) for i in items)


def test_every_sample_of_the_hostile_shards_is_accounted_once_with_its_reason(hostile):
    from hostile_shards import DECODE_REASONS

    expected = Counter((s, k, None if r in DECODE_REASONS else r) for s, k, r in hostile.records)
    assert accounted(run_with_deadline(lambda: list(iter_samples(expand_shards(hostile.pattern))))) == expected


@pytest.mark.parametrize("name", ["..jpg", ".hidden.jpg", "../up.jpg", "/abs.jpg", "noext"])
def test_a_name_the_writer_would_refuse_is_rejected_at_read_time_and_reading_goes_on(tmp_path, name):
    from conftest import write_members

    write_members(tmp_path / "a.tar", [(name, b"\xff\xd8\xff"), ("ok.jpg", b"\xff\xd8\xff"), ("ok.txt", b"x")])
    items = list(iter_samples([str(tmp_path / "a.tar")]))
    assert [type(i).__name__ for i in items] == ["Rejected", "RawSample"]
    assert items[0].reason == "unsafe_member_name"
    FilteredShardWriter(tmp_path / "out").write(items[1])  # what is read, the writer takes


def run_with_deadline(function, seconds: float = 20):
    """``function()`` in a daemon thread; the test fails (instead of hanging) when it blocks."""
    result = []
    thread = threading.Thread(target=lambda: result.append(function()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked"
    return result[0]


def test_a_fifo_or_device_named_like_a_shard_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo.tar")
    (tmp_path / "zero.tar").symlink_to("/dev/zero")
    items = run_with_deadline(lambda: list(iter_samples(expand_shards(tmp_path))))
    assert [(Path(i.source_shard).name, i.reason) for i in items] == [("fifo.tar", "not_a_file"),
                                                                     ("zero.tar", "not_a_file")]


def test_a_gzip_bomb_is_skipped_in_bounded_memory(hostile):
    bomb = hostile.folder / "hostile-000008.tar"  # 80 MiB of zeros in one member, 84 KB on disk
    tracemalloc.start()
    items = list(iter_samples([str(bomb)]))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [(i.key, getattr(i, "reason", None)) for i in items] == [
        ("000800000", None), ("000800001", "member_too_large"), ("000800002", None)]
    assert peak < 8 << 20


def test_the_sample_size_cap_is_set_by_the_environment(web_shards, monkeypatch):
    sizes = {key: sum(map(len, members.values())) for key, members in web_shards.samples.items()}
    cap = sorted(sizes.values())[len(sizes) // 2]
    monkeypatch.setenv("JESTFILTER_MAX_SAMPLE_BYTES", str(cap))
    items = list(iter_samples([str(web_shards.paths[0])]))
    assert {i.key for i in items if getattr(i, "reason", None) == "member_too_large"} == {
        i.key for i in items if sizes[i.key] > cap} != set()
    monkeypatch.setenv("JESTFILTER_MAX_SAMPLE_BYTES", "-1")
    with pytest.raises(ValueError, match="JESTFILTER_MAX_SAMPLE_BYTES"):
        list(iter_samples([str(web_shards.paths[0])]))


def test_an_image_announcing_too_many_pixels_is_never_decoded(web_shards, tokenizer, monkeypatch):
    from hostile_shards import png_header_only
    from jestfilter.data.pixels import BadImage, announced_size, check_size, open_image
    from jestfilter.data.loader import decode

    bomb = png_header_only(13_000, 13_000)  # 169 million pixels: 500 MB decoded
    for check in (check_size, open_image):
        with pytest.raises(BadImage) as error:
            check(bomb)
        assert error.value.reason == "image_too_large"
    samples = [s for s in iter_samples([str(web_shards.paths[0])])][:7]  # JPEG, PNG and WebP
    assert {announced_size(s.members[image_member(s)]) for s in samples} == {(28, 28)}
    monkeypatch.setenv("JESTFILTER_MAX_IMAGE_PIXELS", str(27 * 27))
    _, _, kept, rejected = decode(samples, [], tokenizer)
    assert kept == [] and {r.reason for r in rejected} == {"image_too_large"}
    monkeypatch.setenv("JESTFILTER_MAX_IMAGE_PIXELS", str(28 * 28))
    assert len(decode(samples, [], tokenizer)[2]) == 7


@pytest.mark.parametrize("compress", ["gzip", "bz2", "xz", None])
def test_garbage_after_a_complete_tar_keeps_every_sample(web_shards, tmp_path, compress):
    data = web_shards.paths[0].read_bytes()
    if compress:
        data = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[compress](data)
    (tmp_path / "g.tar").write_bytes(data + os.urandom(512))
    items = list(iter_samples([str(tmp_path / "g.tar")]))
    assert [i.key for i in items if isinstance(i, RawSample)] == [i.key for i in iter_samples([str(web_shards.paths[0])])]
    noted = [] if compress in ("bz2", "xz") else [("", "trailing_garbage")]  # those decompressors ignore it
    assert [(i.key, i.reason) for i in items if isinstance(i, Rejected)] == noted


def test_a_compressed_tar_cut_inside_a_member_keeps_the_samples_before(web_shards, tmp_path):
    data = web_shards.paths[0].read_bytes()
    (tmp_path / "c.tar").write_bytes(gzip.compress(data[: data.index(b"000000004.jpg") + 700]))
    items = list(iter_samples([str(tmp_path / "c.tar")]))
    assert [i.key for i in items if isinstance(i, RawSample)] == ["000000000", "s0", "img.v0.2", "long-0-" + "x" * 40]
    assert [(i.key, i.reason) for i in items if isinstance(i, Rejected)] == [
        ("000000004", "truncated_tar"), ("", "truncated_tar")]


def test_links_devices_and_folders_inside_a_tar_reject_their_sample(hostile):
    items = list(iter_shard(str(hostile.folder / "hostile-000000.tar")))
    reasons = {i.key: i.reason for i in items if isinstance(i, Rejected)}
    assert reasons["000000005"] == "special_member"  # a sample made only of symlinks is still recorded
    assert reasons["000000006"] == reasons["000000007"] == reasons["000000008"] == "special_member"


def test_a_named_shard_that_is_not_there_is_kept_for_the_manifest_and_a_list_of_nothing_fails(web_shards, tmp_path):
    names = [str(web_shards.paths[0]), str(tmp_path / "gone.tar")]
    assert expand_shards(names) == names  # read as missing_shard; the run goes on
    pattern = str(web_shards.folder / "web-{000000..000003}.tar")  # 000003 does not exist
    assert expand_shards(expand_shards(pattern)) == expand_shards(pattern)  # an expanded list expands to itself
    assert list(iter_samples([names[1]])) == [Rejected("", names[1], "missing_shard")]
    with pytest.raises(FileNotFoundError, match="match no file"):
        expand_shards([str(tmp_path / "a.tar"), str(tmp_path / "b.tar")])
    with pytest.raises(FileNotFoundError, match="matches no file"):
        expand_shards([str(web_shards.paths[0]), str(tmp_path / "*.tar")])  # a glob must match


def test_docs_data_md_lists_every_reason_with_what_to_do():
    from jestfilter.data import shards
    from jestfilter.datasets import url_check
    from jestfilter.jobs.filter import MISSING_SCORE
    from jestfilter.jobs.select import MISSING_EMBEDDING
    from jestfilter.train.loop import SHORT_SUPER_BATCH

    docs = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text()
    reasons = [v for k, v in vars(shards).items() if k.isupper() and isinstance(v, str) and not k.endswith("EXTENSION")]
    reasons += [url_check.NOT_HTTP, url_check.BAD_URL, url_check.UNRESOLVABLE_HOST, url_check.PRIVATE_ADDRESS,
                MISSING_SCORE, MISSING_EMBEDDING, SHORT_SUPER_BATCH, "dedup_exact", "dedup_near", "dedup_eval"]
    assert len(reasons) > 25
    assert [r for r in reasons if f"`{r}`" not in docs] == []


def test_each_expanded_name_is_a_url_or_a_path_on_its_own_and_a_url_a_shell_would_cut_is_refused(web_shards):
    from jestfilter.data.shards import shell_commands

    shard = str(web_shards.paths[0])
    assert expand_shards(f"{shard}::pipe:cat {shard}") == [shard, f"pipe:cat {shard}"]
    assert shell_commands([f"{{pipe:touch x; cat {shard},{shard}}}"]) == [f"pipe:touch x; cat {shard}"]
    assert shell_commands([f"{shard}::pipe:cat {shard}"]) == [f"pipe:cat {shard}"]
    assert shell_commands([f" pipe:cat {shard}"]) == []  # a path with a leading space, never a pipe
    with pytest.raises(FileNotFoundError, match="matches no file"):
        expand_shards(f" pipe:cat {shard}")
    with pytest.raises(ValueError, match="quote"):  # webdataset runs curl 'URL' in a shell
        expand_shards("http://127.0.0.1:9/x.tar'; touch PWNED; echo '")
    with pytest.raises(ValueError, match="lower case"):  # webdataset's pipe: reader asserts it
        expand_shards(f"PIPE:cat {shard}")


def test_a_shard_named_twice_is_read_once(web_shards, tmp_path, monkeypatch):
    paths = [str(p) for p in web_shards.paths]
    link = tmp_path / "link.tar"
    link.symlink_to(paths[0])
    monkeypatch.chdir(web_shards.folder)
    again = ["./" + web_shards.paths[0].name, str(link), web_shards.pattern, paths[0]]
    assert expand_shards([paths[0], *again]) == paths
    assert expand_shards([str(tmp_path / "gone.tar"), str(tmp_path / "x" / ".." / "gone.tar"), paths[1]]) == [
        str(tmp_path / "gone.tar"), paths[1]]


def test_a_member_name_that_is_not_utf8_is_rejected_at_read_time_with_a_storable_key(web_shards, tmp_path):
    import io
    import tarfile

    from jestfilter.data import Manifest, SuperBatch, read_manifest

    samples = [s for s in iter_samples([str(web_shards.paths[0])])][:3]
    path = tmp_path / "latin1.tar"  # GNU tar keeps the name's bytes; tarfile reads é (0xe9) back as \udce9
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") as tar:
        for i, sample in enumerate(samples):
            key = "caf\udce9" if i == 1 else sample.key
            for ext, data in sorted(sample.members.items()):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    items = list(iter_samples([str(path)]))
    assert [type(i).__name__ for i in items] == ["RawSample", "Rejected", "RawSample"]
    assert (items[1].key, items[1].reason) == ("caf\\udce9", "member_name_not_utf8")
    manifest = Manifest(tmp_path / "out")
    manifest.record(SuperBatch.undecoded([items[0], items[2]], [items[1]]), step=0, kept=[0])
    manifest.close()
    assert read_manifest(tmp_path / "out")["reason"].to_list() == [None, None, "member_name_not_utf8"]


def test_reading_stops_soon_after_the_end_of_archive_blocks(web_shards, tmp_path):
    import time

    zeros = tmp_path / "zeros.tar"
    with open(zeros, "wb") as file:
        file.truncate(20 << 30)  # 20 GB of zeros, sparse: read to its end it takes a minute
    started = time.perf_counter()
    assert [(r.key, r.reason) for r in iter_samples([str(zeros)])] == [("", "empty_shard"), ("", "trailing_garbage")]
    endless = f"pipe:cat {web_shards.paths[0]}; cat /dev/zero"  # a complete tar, then zeros without end
    items = list(iter_samples([endless]))
    assert time.perf_counter() - started < 20
    assert sum(isinstance(i, RawSample) for i in items) == 20
    assert [(r.key, r.reason) for r in items if isinstance(r, Rejected)] == [("", "trailing_garbage")]


def test_extensions_match_in_any_case_for_captions_as_for_images(web_shards, tmp_path):
    from conftest import write_members

    sample = next(s for s in iter_samples([str(web_shards.paths[0])]) if "jpg" in s.members)
    image, caption = sample.members["jpg"], sample.members["txt"]
    write_members(tmp_path / "upper.tar", [("a.JPG", image), ("a.TXT", caption),
                                           ("b.jpg", image), ("b.txt", caption), ("b.TXT", caption)])
    items = list(iter_samples([str(tmp_path / "upper.tar")]))
    assert isinstance(items[0], RawSample) and items[0].members == {"JPG": image, "TXT": caption}
    assert (items[1].key, items[1].reason) == ("b", "duplicate_member")  # two captions
