"""The numbers a bootstrap run reports: interpolated time to reach uniform, and its costs."""

import pytest

from jestfilter.results import costs, reach, reference_behind, speedups


def run(curve, flops_per_example=2.0, seconds_per_example=0.01, final=None):
    """A run summary whose evaluations are (examples, zero-shot) points."""
    return {"curve": [list(p) for p in curve], "flops_curve": [[x * flops_per_example, y] for x, y in curve],
            "time_curve": [[x * seconds_per_example, y] for x, y in curve],
            "zeroshot_top1": final if final is not None else curve[-1][1], "flops": curve[-1][0] * flops_per_example}


def test_reach_interpolates_between_the_evaluations_around_the_crossing():
    curve = [(0, 0.1), (100, 0.5), (200, 0.7), (300, 0.8)]
    assert reach(run(curve), 0.6) == pytest.approx({"examples": 150, "flops": 300, "seconds": 1.5})
    assert reach(run(curve), 0.1) == {"examples": 0, "flops": 0, "seconds": 0}
    assert reach(run(curve), 0.9) is None


def test_speedups_are_uniforms_cost_over_the_methods_to_reach_uniforms_final_accuracy():
    uniform = run([(0, 0.1), (1000, 0.5), (2000, 0.6)])
    jest = run([(0, 0.1), (400, 0.55), (800, 0.65)], flops_per_example=6.0, seconds_per_example=0.02)
    never = run([(0, 0.1), (2000, 0.4)])
    jest["train_seconds"], uniform["train_seconds"], never["train_seconds"] = 16.0, 20.0, 20.0
    runs = {"uniform": uniform, "learnability": jest, "hard_learner": never}
    cost = {"total_flops": {"uniform": uniform["flops"], "learnability": jest["flops"] + 2400.0},
            "total_seconds": {"uniform": 20.0, "learnability": 16.0 + 8.0}}
    result = speedups(runs, cost)
    assert result["uniform"]["examples_ratio"] == pytest.approx(1.0)
    jest_at = result["learnability"]
    assert jest_at["examples"] == pytest.approx(600)  # halfway from 0.55 to 0.65
    assert jest_at["examples_ratio"] == pytest.approx(2000 / 600)
    assert jest_at["flops_ratio"] == pytest.approx(4000 / 3600)
    assert jest_at["flops_ratio_with_reference"] == pytest.approx(4000 / 6000)
    assert jest_at["seconds_ratio"] == pytest.approx(20 / 12)
    assert jest_at["seconds_ratio_with_reference"] == pytest.approx(20 / 20)
    assert result["hard_learner"] == {"reached": False}


def test_costs_put_the_reference_on_its_own_lines_and_in_the_totals_of_the_methods_using_it():
    runs = {"uniform": {"flops": 100.0, "train_seconds": 10.0}, "learnability": {"flops": 250.0, "train_seconds": 30.0}}
    cost = costs(runs, reference={"flops": 60.0, "train_seconds": 6.0}, embedding={"flops": 40.0, "seconds": 2.0},
                 needs_reference={"uniform": False, "learnability": True})
    assert cost == {"reference_training_flops": 60.0, "reference_training_seconds": 6.0,
                    "reference_embedding_flops": 40.0, "reference_embedding_seconds": 2.0,
                    "total_flops": {"uniform": 100.0, "learnability": 350.0},
                    "total_seconds": {"uniform": 10.0, "learnability": 38.0}}


def test_break_even_is_the_reference_over_the_seconds_each_step_saves():
    from jestfilter.results import break_even

    def run(per_step, curve):
        return {"seconds_per_step": per_step, "train_seconds": per_step * 600, "curve": curve}

    runs = {"uniform": run(0.1, []), "learnability": run(0.15, []), "easy_reference": run(0.3, [])}
    cost = {"total_seconds": {"uniform": 60.0, "learnability": 90.0 + 30.0, "easy_reference": 180.0 + 30.0},
            "reference_embedding_seconds": 10.0}
    speedup = {"learnability": {"reached": True, "examples_ratio": 3.0},
               "easy_reference": {"reached": True, "examples_ratio": 2.0}, "uniform": {"reached": True}}
    even = break_even(runs, cost, speedup)
    # 3 × 0.1 − 0.15 = 0.15 s saved a step: 30 s repaid after 200 steps, the embedding's 10 s after 67
    assert even["learnability"]["learner_steps"] == pytest.approx(200)
    assert even["learnability"]["learner_steps_reused_reference"] == pytest.approx(66.67, abs=0.01)
    assert even["easy_reference"]["learner_steps"] is None  # 2 × 0.1 < 0.3: never repaid
    assert "uniform" not in even


def test_a_reference_more_than_five_points_below_uniform_gets_a_note():
    learned = {"zeroshot_top1": 0.284}
    runs = {"learnability": {"zeroshot_top1": 0.199}, "uniform": learned}
    assert "11.0 points below uniform" in reference_behind({"zeroshot_top1": 0.174}, runs, "learnability")
    assert reference_behind({"zeroshot_top1": 0.258}, {**runs, "uniform": {"zeroshot_top1": 0.286}},
                            "learnability") is None  # 2.8 below: JEST was level with uniform there
    assert reference_behind({"zeroshot_top1": 0.174}, {**runs, "uniform": {**learned, "stalled": True}},
                            "learnability") is None  # nothing is claimed against a stalled uniform
    assert reference_behind({"zeroshot_top1": 0.174}, runs, "uniform") is None
    assert reference_behind({"zeroshot_top1": 0.174}, {"learnability": runs["learnability"]}, "learnability") is None
