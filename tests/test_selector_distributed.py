"""Distributed selection (group=) equals the single-process Selector with strata=world."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from jestfilter import Selector, SiglipOutputs

ROWS, WORLD = 256, 2
CONFIGS = {
    "learnability softmax sampling": dict(filter_ratio=0.75, n_chunks=8),
    "learnability greedy": dict(filter_ratio=0.75, n_chunks=8, sampling="greedy"),
    "easy_reference strata=world": dict(method="easy_reference", filter_ratio=0.75, n_chunks=4,
                                        strata=WORLD),
    "softmax loss": dict(filter_ratio=0.75, n_chunks=4, loss="softmax", block_bytes=4096),
    "uniform": dict(method="uniform", filter_ratio=0.5),
    "independent (super-batch scores from every rank's rows)": dict(method="independent", filter_ratio=0.75,
                                                                     sampling="greedy"),
}


def models():
    g = torch.Generator().manual_seed(0)
    out = []
    for scale in (10.0, 14.0):
        image = F.normalize(torch.randn(ROWS, 16, generator=g), dim=1)
        text = F.normalize(image + torch.randn(ROWS, 16, generator=g), dim=1)
        out.append(SiglipOutputs(image, text, torch.tensor(scale), torch.tensor(-10.0)))
    return out


def test_ranks_choose_what_one_process_with_strata_world_chooses(tmp_path):
    tests = Path(__file__).parent
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={WORLD}", str(tests / "distributed_selection.py"), str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": f"{tests}{os.pathsep}{tests.parent}"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    per_rank = ROWS // WORLD
    for name, options in CONFIGS.items():
        single = Selector(**{**options, "strata": WORLD}).select_with_scores(*models(), step=7)
        for rank, results in enumerate(ranks):
            local_indices, learner_loss = results[name]
            mine = single.indices[(single.indices // per_rank) == rank] - rank * per_rank
            assert local_indices == mine.tolist(), (name, rank)
            expected_loss = single.learner_loss[rank * per_rank:(rank + 1) * per_rank]
            torch.testing.assert_close(torch.tensor(learner_loss), expected_loss)
