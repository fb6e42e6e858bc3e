"""`jestfilter inspect`: per-shard counts and rejections by reason; bad patterns exit 2."""

import subprocess
import sys
from collections import Counter

from jestfilter.cli import main


def test_inspect_counts_samples_per_shard_and_damage_by_reason(damaged_shards, capsys):
    assert main(["inspect", "--decode", damaged_shards.pattern]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0].rsplit("/", 1)[-1]: line.split()[1:] for line in out.splitlines() if ".tar" in line}
    per_shard = Counter(shard for shard, _ in damaged_shards.expected)
    assert per_shard["damaged-000000.tar"] == 12  # including 000000019, found by --decode
    for shard, good in [("damaged-000000.tar", 5), ("damaged-000001.tar", 3), ("damaged-000003.tar", 0)]:
        assert lines[shard] == [str(good), str(per_shard[shard])]
    total = len(damaged_shards.good)
    assert f"5 shards, {total} samples, {len(damaged_shards.expected)} rejected" in out
    for reason, count in Counter(damaged_shards.expected.values()).items():
        assert f"  {reason}: {count}\n" in out


def test_inspect_without_decode_does_not_see_pixel_damage(damaged_shards, capsys):
    assert main(["inspect", damaged_shards.pattern]) == 0
    assert f"{len(damaged_shards.good) + 1} samples" in capsys.readouterr().out


def test_a_pattern_matching_nothing_exits_2_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "jestfilter", "inspect", str(tmp_path / "web-{0..9}.tar")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "matches no file" in result.stderr
