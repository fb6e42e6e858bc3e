"""A run that is not learning says so: a warning line, ``stalled`` in its summary, and no
speed-up claimed against a stalled baseline."""

from __future__ import annotations

import pytest
import torch

from jestfilter.config import TrainSettings
from jestfilter.datasets.demo import build_demo_data
from jestfilter.eval import evaluate, load_eval_set
from jestfilter.models import start_model
from jestfilter.results import speedups
from jestfilter.train.loop import OnlineTrainer
from jestfilter.train.stall import not_learning


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo_data(tmp_path_factory.mktemp("demo"), curated=400, web=100, eval=200, samples_per_shard=100,
                           progress=False)


def train(demo, tmp_path, lr: float, steps: int = 90) -> dict:
    torch.manual_seed(0)
    settings = TrainSettings(steps=steps, batch_size=32, lr=lr, method="uniform", workers=0, threads=1,
                             shuffle_buffer=400, eval_every=30, checkpoint_every=1000)
    bundle = start_model("jest-tiny", seed=0, batch_size=32)
    eval_set = load_eval_set(demo.eval)
    trainer = OnlineTrainer(bundle, demo.curated, settings, checkpoint=tmp_path / "ckpt.pt",
                            evaluate=lambda b: evaluate(b, eval_set), progress=False, name="probe")
    return trainer.run()


def test_a_run_that_cannot_learn_warns_and_is_marked_stalled(demo, tmp_path, capsys):
    summary = train(demo, tmp_path, lr=1e-9)
    assert summary["stalled"] is True
    assert "within 1.5× chance" in summary["stalled_reason"] or "loss has not fallen" in summary["stalled_reason"]
    assert "WARNING: probe is not learning: after 30 of 90 steps" in capsys.readouterr().out


def test_a_run_that_learns_is_not_marked_stalled(demo, tmp_path, capsys):
    summary = train(demo, tmp_path, lr=2e-3)
    assert summary["stalled"] is False and "stalled_reason" not in summary
    assert summary["zeroshot_top1"] > 1.5 * summary["chance"]
    assert "not learning" not in capsys.readouterr().out


def test_accuracy_near_chance_or_a_flat_loss_is_not_learning():
    falling = [5.0 - 0.01 * i for i in range(100)]
    assert not_learning(0.12, 0.1, falling) is not None  # within 1.5× chance
    assert not_learning(0.40, 0.1, falling) is None
    assert "loss has not fallen" in not_learning(0.40, 0.1, [5.0] * 100)
    assert not_learning(None, None, falling) is None  # not evaluated: the loss decides


def test_no_speed_up_is_claimed_against_a_stalled_uniform_run():
    run = {"zeroshot_top1": 0.1, "curve": [[0, 0.1], [100, 0.1]], "flops_curve": [[0, 0.1], [1, 0.1]],
           "time_curve": [[0, 0.1], [1, 0.1]], "flops": 1.0, "train_seconds": 1.0}
    jest = {**run, "zeroshot_top1": 0.7, "curve": [[0, 0.1], [100, 0.7]], "stalled": False}
    result = speedups({"learnability": jest, "uniform": {**run, "stalled": True}})
    assert result["learnability"] == {"reached": False, "baseline_stalled": True}
