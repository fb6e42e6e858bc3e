"""Threads and workers chosen from the cores: torch's default pool on a busy box made a step
5.6× slower than one thread (issue 13)."""

from __future__ import annotations

import pytest
import torch

from jestfilter import machine
from jestfilter.cli import main


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(machine, "cores_per_rank", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_torch_gets_the_cores_the_loader_workers_leave_and_says_so(four_cores, capsys):
    assert machine.configure(torch.device("cpu"), None, None) == (1, 3)
    assert torch.get_num_threads() == 3
    assert "3 torch threads (4 cores − 1 loader worker)" in capsys.readouterr().out
    assert machine.configure(torch.device("cpu"), 3, None) == (3, 1)  # never fewer than one
    assert machine.configure(torch.device("cuda"), None, None)[0] == 2  # on a GPU, decoding needs the cores


def test_threads_flag_and_omp_num_threads_win(four_cores, monkeypatch):
    assert machine.configure(torch.device("cpu"), 1, 2) == (1, 2) and torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert machine.configure(torch.device("cpu"), 1, None) == (1, 1)


def test_bootstrap_and_train_take_threads_and_refuse_zero(capsys):
    for command in ("bootstrap", "train"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--threads" in capsys.readouterr().out
    assert main(["bootstrap", "--threads", "0", "--out", "unused"]) == 2
    assert "--threads must be positive" in capsys.readouterr().err
