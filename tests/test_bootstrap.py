"""End to end: `jestfilter bootstrap` on a tiny real demo, its outputs, resume, bad arguments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import open_clip
import polars as pl
import pytest
import torch

from jestfilter.cli import main
from jestfilter.data import RawSample, expand_shards, iter_samples
from jestfilter.datasets.demo import build_demo_data
from jestfilter.models import save_local_dir, start_model
from jestfilter.sinks import read_pool
from jestfilter.train.stall import weak_reference
from conftest import kept_keys

TINY = ["--precision", "fp32", "--steps", "12", "--reference-steps", "6", "--batch-size", "16", "--n-chunks", "4",
        "--eval-every", "6", "--checkpoint-every", "3", "--samples-per-shard", "50", "--workers", "0",
        "--no-progress"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return build_demo_data(root, curated=200, web=600, eval=100, samples_per_shard=100, progress=False)


def bootstrap_args(demo, out, *extra):
    return ["bootstrap", "--curated", demo.curated, "--web", demo.web, "--eval", str(demo.eval),
            "--out", str(out), *TINY, *extra]


def run_cli(*args, **kwargs):
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    return subprocess.run([sys.executable, "-m", "jestfilter", *args], capture_output=True, text=True,
                          env=env, **kwargs)



@pytest.fixture(scope="module")
def finished_run(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = run_cli(*bootstrap_args(demo, out, "--compare", "uniform"), preexec_fn=lambda: os.umask(0o022))
    assert result.returncode == 0, result.stderr[-2000:]
    return out, result


def pool_of(out: Path) -> pl.DataFrame:
    """Per web sample the run read unrejected: passes read, passes chosen (from the manifest)."""
    manifest = pl.read_parquet(out / "filtered" / "manifest.parquet")
    return (manifest.filter(pl.col("decision") != "rejected").group_by("source_shard", "key")
            .agg(pl.len().alias("passes"), (pl.col("decision") == "kept").sum().alias("chosen"),
                 pl.col("learnability").mean().alias("learnability"),
                 pl.col("pass").filter(pl.col("decision") == "kept").min().alias("first_chosen_pass")))


def written_samples(out: Path) -> dict[str, dict[str, bytes]]:
    """key → members of every sample in the filtered shards."""
    samples: dict[str, dict[str, bytes]] = {}
    for shard in sorted((out / "filtered").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, ext = member.name.rsplit(".", 1)
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return samples


def source_samples(demo) -> dict[str, dict[str, bytes]]:
    return {item.key: item.members for item in iter_samples(expand_shards(demo.web)) if isinstance(item, RawSample)}


def test_outputs_exist_and_load_with_their_own_tools(finished_run, demo):
    out, result = finished_run
    # models load as open_clip local-dir folders
    for name in ("reference", "final"):
        model = open_clip.create_model(f"local-dir:{out / name}")
        assert model.logit_bias is not None
    # metrics.json has the contract keys
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["reference"]["zeroshot_top1"] <= 1.0
    final = metrics["final"]
    manifest = pl.read_parquet(out / "filtered" / "manifest.parquet")
    assert final["examples_seen"] == (manifest["decision"] == "kept").sum()
    assert final["curve"][0][0] == 0 and final["curve"][-1][0] == final["examples_seen"]
    assert {"zeroshot_top1", "retrieval_r1"} <= set(final)
    assert "uniform" in metrics["compare"]
    # what other tools read: class-level R@1, passes over the web pool, costs, speed-ups
    for entry in (metrics["reference"], final, metrics["compare"]["uniform"]):
        assert 0.0 <= entry["retrieval_class_r1"] <= 1.0 and entry["web_passes"] >= 0.0
    assert final["web_passes"] == pytest.approx(final["rows_read"] / 600)  # 600 web samples in the pool
    costs = metrics["costs"]
    assert costs["reference_training_flops"] == metrics["reference"]["flops"] > 0
    assert costs["reference_embedding_flops"] > 0
    assert costs["total_flops"]["learnability"] == pytest.approx(
        final["flops"] + costs["reference_training_flops"] + costs["reference_embedding_flops"])
    assert costs["total_flops"]["uniform"] == metrics["compare"]["uniform"]["flops"]
    for method in ("learnability", "uniform"):
        speedup = metrics["speedup"][method]
        assert not speedup["reached"] or {"examples_ratio", "flops_ratio", "seconds_ratio"} <= set(speedup)
    # the report and its plots
    report = (out / "report" / "report.md").read_text()
    for png in ("curves.png", "scores.png", "extremes.png"):
        assert (out / "report" / png).stat().st_size > 1000 and png in report
    assert "report.md" in result.stdout and "uniform" in result.stdout


def test_manifest_covers_every_scored_sample_once_per_pass(finished_run):
    out, _ = finished_run
    manifest = pl.read_parquet(out / "filtered" / "manifest.parquet")
    assert manifest.group_by(["key", "pass"]).len()["len"].max() == 1
    per_step = manifest.filter(pl.col("decision") != "rejected").group_by("step").agg(
        (pl.col("decision") == "kept").sum().alias("kept"), pl.len().alias("scored")).sort("step")
    assert per_step.height == 12
    # b = 16 of every full super-batch of B = 80; the short one closing a pass keeps b in proportion,
    # rounded down to whole chunks of the sampler (4 here)
    for row in per_step.iter_rows(named=True):
        assert row["kept"] == (16 if row["scored"] == 80 else round(row["scored"] * 0.2) // 4 * 4)
    scored = manifest.filter(pl.col("decision") != "rejected")
    assert scored["learnability"].null_count() == 0
    assert ((scored["learner_loss"] - scored["reference_loss"] - scored["learnability"]).abs() < 1e-3).all()


def test_filtered_holds_the_samples_chosen_in_the_first_pass_byte_for_byte(finished_run, demo):
    """Default rule `first-pass`: filtered/ is what JEST chose while reading the web data the
    first time, about (1 − f) of it, not every sample chosen in some pass."""
    out, result = finished_run
    pool = pool_of(out)
    assert pool["passes"].max() > 1  # several passes over the web data, so the rule matters
    written = written_samples(out)
    assert set(written) == set(pool.filter(pl.col("first_chosen_pass") == 0)["key"])
    assert len(written) / pool.height == pytest.approx(0.2, abs=0.03)  # each full super-batch kept b of B
    assert len(written) < len(kept_keys(out))  # every sample chosen in any pass would be more
    sources = source_samples(demo)
    assert all(written[key] == sources[key] for key in written)  # bytes as read
    sizes = json.loads((out / "filtered" / "sizes.json").read_text())
    assert sum(sizes.values()) == len(written) and (out / "filtered" / "_SUCCESS").exists()
    table = read_pool(out / "filtered")  # the pool table says where each sample went
    assert set(table.filter(pl.col("output_shard").is_not_null())["key"]) == set(written)
    data = json.loads((out / "metrics.json").read_text())["data"]["filtered"]
    assert (data["rule"], data["pool"], data["written"]) == ("first-pass", pool.height, len(written))
    assert f"filtered/: {len(written):,} of the {pool.height:,} web samples read" in result.stdout


@pytest.mark.parametrize("rule", ["top", "all"])
def test_other_filtered_rules_write_the_best_by_mean_score_or_every_sample_chosen(rule, demo, shared_reference,
                                                                                  tmp_path):
    out = tmp_path / rule
    assert main(bootstrap_args(demo, out, "--filtered-rule", rule, "--compare", "none", "--reference",
                               shared_reference)) == 0
    pool = pool_of(out)
    written = written_samples(out)
    if rule == "top":  # (1 − f) of the pool, by mean learnability over the passes
        assert len(written) == round(0.2 * pool.height)
        chosen = pool.filter(pl.col("key").is_in(list(written)))
        others = pool.filter(~pl.col("key").is_in(list(written)))
        assert chosen["learnability"].min() >= others["learnability"].max() - 1e-4
    else:
        assert set(written) == set(pool.filter(pl.col("chosen") > 0)["key"])
    assert all(written[key] == members for key, members in source_samples(demo).items() if key in written)
    data = json.loads((out / "metrics.json").read_text())["data"]["filtered"]
    assert data["written"] == len(written) and data["fraction"] == pytest.approx(len(written) / pool.height)


def test_outputs_are_readable_by_group_and_others_under_umask_022(finished_run):
    out, _ = finished_run
    for path in [out / "reference", out / "final", out / "filtered", out / "report", *(out / "final").iterdir(),
                 *(out / "reference").iterdir(), out / "metrics.json", *(out / "filtered").glob("*.tar")]:
        mode = path.stat().st_mode
        assert mode & 0o044 == 0o044, f"{path} is {oct(mode)}"
        if path.is_dir():
            assert mode & 0o011 == 0o011, f"{path} is {oct(mode)}"


def test_checkpoints_are_removed_after_a_successful_run_unless_asked_to_keep_them(finished_run, demo,
                                                                                  shared_reference, tmp_path):
    out, _ = finished_run
    assert not (out / "checkpoints").exists() and not (out / "report-extremes.pt").exists()
    assert (out / "report" / "extremes.png").exists()
    kept = tmp_path / "kept"
    assert main(bootstrap_args(demo, kept, "--compare", "none", "--reference", shared_reference, "--steps", "3",
                               "--keep-checkpoints")) == 0
    assert (kept / "checkpoints" / "learnability.pt").exists() and (kept / "report-extremes.pt").exists()


def test_start_shows_the_plan_batch_sizes_and_a_line_per_evaluation(finished_run):
    run, result = finished_run
    out = result.stdout
    for stage in ("reference", "reference embeddings", "learnability", "uniform"):
        assert f". {stage} " in out
    assert "estimated time:" in out
    assert "b=16 trained on per step over 1 rank(s), 16 per rank (open_clip_train --batch-size 16)" in out
    assert "B=80" in out
    assert "loader: a loader worker reads a sample in" in out and "worker" in out.split("keeping up needs")[1]
    # a line for every evaluation of the curves, each with the time left in the run
    metrics = json.loads((run / "metrics.json").read_text())
    assert out.count("[learnability] step ") == len(metrics["final"]["curve"]) > 2
    assert out.count("[uniform] step ") == len(metrics["compare"]["uniform"]["curve"])
    assert "[learnability] step 12/12: zero-shot" in out and "left in the run" in out


def test_filtered_shards_are_read_by_open_clip_train(finished_run):
    out, _ = finished_run
    sizes = json.loads((out / "filtered" / "sizes.json").read_text())
    from argparse import Namespace

    from open_clip_train.data import get_wds_dataset

    shards = sorted(str(p) for p in (out / "filtered").glob("*.tar"))
    args = Namespace(train_data="::".join(shards), train_num_samples=None, train_data_upsampling_factors=None,
                     dataset_resampled=False, seed=0, workers=1, world_size=1, batch_size=8, distributed=False)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out / 'final'}")
    data = get_wds_dataset(args, preprocess, is_train=True, tokenizer=open_clip.get_tokenizer(f"local-dir:{out / 'final'}"))
    # open_clip_train takes the sample count from sizes.json and rounds it up to whole batches
    assert data.dataloader.num_samples == -(-sum(sizes.values()) // 8) * 8
    images, texts = next(iter(data.dataloader))
    assert images.shape[0] == 8 and texts.shape[0] == 8


def test_a_finished_run_is_not_redone(finished_run, demo):
    out, _ = finished_run
    before = (out / "final" / "open_clip_model.safetensors").stat().st_mtime_ns
    result = run_cli(*bootstrap_args(demo, out, "--compare", "uniform"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "final" / "open_clip_model.safetensors").stat().st_mtime_ns == before


def test_killed_run_resumes_to_the_same_kept_samples(demo, tmp_path, finished_run):
    reference_out, _ = finished_run
    out = tmp_path / "killed"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "jestfilter", *bootstrap_args(demo, out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    checkpoint = out / "checkpoints" / "learnability.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "metrics.json").exists(), "the run finished before it could be killed"
    result = run_cli(*bootstrap_args(demo, out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert kept_keys(out) == kept_keys(reference_out)
    assert written_samples(out) == written_samples(reference_out)
    a = json.loads((out / "metrics.json").read_text())["final"]
    b = json.loads((reference_out / "metrics.json").read_text())["final"]
    assert a["curve"] == b["curve"]


@pytest.mark.parametrize("args, message", [
    (["--curated", "x/{0..1}.tar"], "together"),
    (["--filter-ratio", "1.5"], "filter-ratio"),
    (["--steps", "0"], "steps"),
    (["--lr", "0"], "--lr must be positive"),
    (["--warmup", "1"], "--warmup"),
    (["--reference", "/some/folder"], "local-dir"),
    (["--config", "/no/such/config.json"], "config file not found"),
    (["--steps", "99999999999999999999"], "--steps must be at most 1,000,000,000"),
    (["--seed", "-1"], "--seed must be at least 0"),
    (["--flexi", "--flexi-patch-size", "0"], "--flexi-patch-size must be positive"),
    (["--gain", "nan"], "--gain must be a number"),
    (["--weight-decay", "nan"], "--weight-decay must be 0 or more"),
])
def test_bad_arguments_fail_fast_with_one_line(args, message, tmp_path, capsys):
    assert main(["bootstrap", "--out", str(tmp_path / "o"), *args]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1


def test_patterns_that_match_nothing_and_missing_eval_fail_fast(demo, tmp_path, capsys):
    assert main(["bootstrap", "--curated", str(tmp_path / "none-{0..3}.tar"), "--web", demo.web,
                 "--eval", str(demo.eval), "--out", str(tmp_path / "o")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["bootstrap", "--curated", demo.curated, "--web", demo.web, "--eval", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "eval" in capsys.readouterr().err


def test_config_file_sets_options_and_flags_win(tmp_path):
    from jestfilter.cli import build_parser
    from jestfilter.commands.bootstrap import config_from

    config = tmp_path / "run.toml"
    config.write_text('method = "easy_reference"\nsteps = 7\nfilter-ratio = 0.5\n')
    args = build_parser().parse_args(["bootstrap", "--config", str(config), "--steps", "9"])
    cfg = config_from(args)
    assert (cfg.train.method, cfg.train.steps, cfg.train.filter_ratio) == ("easy_reference", 9, 0.5)
    assert cfg.compare == ["uniform", "easy_reference"]  # the demo's default comparison
    flexi = config_from(build_parser().parse_args(["bootstrap", "--flexi", "--compare", "uniform,learnability"]))
    assert flexi.settings_for("learnability").flexi == "train" and flexi.settings_for("uniform").flexi == "off"
    assert flexi.reference_settings().flexi == "off"  # baselines and the reference at full resolution
    scoring = config_from(build_parser().parse_args(["bootstrap", "--flexi", "score"]))
    assert scoring.settings_for("learnability").flexi == "score"
    config.write_text("flexi = true\n")  # a config file from before Flexi had modes
    assert config_from(build_parser().parse_args(["bootstrap", "--config", str(config)])).train.flexi == "train"


@pytest.fixture(scope="module")
def shared_reference(finished_run):
    out, _ = finished_run
    return f"local-dir:{out / 'reference'}"


@pytest.mark.parametrize("method", ["uniform", "learnability", "independent", "hard_learner", "easy_reference",
                                    "reference_score"])
def test_every_criterion_finishes_with_a_report_and_no_nan_scores(method, demo, shared_reference, tmp_path):
    out = tmp_path / method
    args = bootstrap_args(demo, out, "--method", method, "--compare", "none", "--reference", shared_reference,
                          "--steps", "4", "--eval-every", "4")
    assert main(args) == 0
    assert (out / "report" / "report.md").exists()
    manifest = pl.read_parquet(out / "filtered" / "manifest.parquet")
    for column in ("learner_loss", "reference_loss", "learnability"):
        assert manifest[column].is_nan().sum() == 0, column  # not computed: null, never NaN
    scored = manifest.filter(pl.col("decision") != "rejected")
    learner_scored = method in ("learnability", "independent", "hard_learner")
    assert (scored["learner_loss"].null_count() == 0) == learner_scored


def test_reference_and_learner_start_from_different_weights_every_learner_alike(demo, tmp_path):
    from jestfilter.cli import build_parser
    from jestfilter.commands.bootstrap import config_from
    from jestfilter.pipeline import Bootstrap

    job = Bootstrap(config_from(build_parser().parse_args(bootstrap_args(demo, tmp_path / "o"))))
    reference, learner, other_method = (job.new_model(role).model.state_dict()
                                        for role in ("reference", "learner", "learner"))
    weights = [name for name, value in learner.items() if value.dim() >= 2]
    assert all(not torch.equal(reference[name], learner[name]) for name in weights)
    assert all(torch.equal(learner[name], other_method[name]) for name in learner)


@pytest.mark.parametrize("text, message", [
    ('steps = "10"\n', 'steps must be a whole number, got \'10\''),
    ("filter-ratio = true\n", "filter_ratio must be a number, got True"),
    ("web = 5\n", "web must be a list of strings or none, got 5"),
    ('[train]\nseed = 1.5\n', "[train]: seed must be a whole number, got 1.5"),
    ('train = 3\n', "train must be a table"),
    ('web = "pipe:curl -s https://example.com/x.tar"\n', "web runs a shell command"),
])
def test_a_config_file_with_wrong_types_or_a_pipe_fails_with_one_line(tmp_path, capsys, text, message):
    config = tmp_path / "run.toml"
    config.write_text(text)
    assert main(["bootstrap", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and str(config) in error and "\n" not in error, error


@pytest.mark.parametrize("web", [
    "{{pipe:touch PWNED; cat {shard},{shard}}}",  # a brace turns the pattern into a command and a path
    "{shard}::pipe:touch PWNED; cat {shard}",  # so does webdataset's '::' list
    "http://127.0.0.1:9/x.tar'; touch PWNED; echo '",  # webdataset runs curl 'URL' in a shell
    " pipe:touch PWNED; cat {shard}",  # a leading space: a path that is not there
])
def test_a_config_file_runs_no_shell_command_without_allow_pipe(web, demo, shared_reference, tmp_path, monkeypatch,
                                                                capsys):
    config = tmp_path / "run.toml"
    config.write_text(f"web = {json.dumps(web.format(shard=expand_shards(demo.web)[0]))}\n")
    monkeypatch.chdir(tmp_path)  # where the command would leave its file
    assert main(["bootstrap", "--config", str(config), "--curated", demo.curated, "--eval", str(demo.eval),
                 "--out", str(tmp_path / "o"), "--reference", shared_reference, *TINY, "--compare", "none"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("jestfilter bootstrap: error: ") and "\n" not in error, error
    assert not (tmp_path / "PWNED").exists()


def test_a_config_file_with_a_number_beyond_any_run_fails_at_once_with_one_line(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text("steps = 99999999999999999999\n")  # looped in the plan's count of evaluations
    assert main(["bootstrap", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "jestfilter bootstrap: error: --steps must be at most 1,000,000,000, got 99999999999999999999"


def test_a_config_file_may_run_a_pipe_only_when_it_says_so(tmp_path):
    from jestfilter.cli import build_parser
    from jestfilter.commands.bootstrap import config_from

    config = tmp_path / "run.toml"
    config.write_text('allow-pipe = true\nweb = ["pipe:cat web/00000.tar"]\ncurated = "c.tar"\neval = "e"\n')
    cfg = config_from(build_parser().parse_args(["bootstrap", "--config", str(config)]))
    assert cfg.web == ["pipe:cat web/00000.tar"]
    flags = build_parser().parse_args(["bootstrap", "--web", "pipe:cat web/00000.tar"])  # your own command line
    assert config_from(flags).web == ["pipe:cat web/00000.tar"]


def run_folder(out: Path) -> dict[str, bytes]:
    """Every file of a run's outputs and checkpoints (not its reference cache, which holds
    whatever shards the last command embedded)."""
    return {str(p.relative_to(out)): p.read_bytes() for part in ("filtered", "checkpoints", "runs", "final")
            for p in sorted((out / part).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def interrupted(demo, shared_reference, tmp_path_factory):
    """A run whose learner holds a checkpoint and no result, as one killed after a checkpoint,
    on its own copy of the web shards."""
    import shutil

    root = tmp_path_factory.mktemp("interrupted")
    web = shutil.copytree(Path(expand_shards(demo.web)[0]).parent, root / "web")
    args = ["--web", str(web / "*.tar"), "--reference", shared_reference, "--compare", "none"]
    assert main([*bootstrap_args(demo, root / "run"), *args, "--keep-checkpoints"]) == 0
    (root / "run" / "runs" / "learnability.json").unlink()
    (root / "run" / "metrics.json").unlink()
    return root, args


@pytest.mark.parametrize("change, message", [
    ("another rule", "rule 'first-pass', not 'top'"),
    ("another web folder", "where this run reads"),
    ("a rewritten shard", "changed since the checkpoint read it"),
])
def test_a_resume_on_other_data_or_another_rule_is_refused_with_one_line_and_leaves_the_output(
        interrupted, demo, tmp_path, capsys, change, message):
    import shutil

    root, args = interrupted
    out = shutil.copytree(root / "run", tmp_path / "run")
    before = run_folder(out)
    shard = root / "web" / "00001.tar"
    stat = shard.stat()
    if change == "another rule":
        args = [*args, "--filtered-rule", "top"]
    elif change == "another web folder":  # the same bytes, somewhere else
        args = [*args, "--web", str(shutil.copytree(root / "web", tmp_path / "web") / "*.tar")]
    else:
        os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        status = main([*bootstrap_args(demo, out), *args])
    finally:
        os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and error[-1].startswith("jestfilter bootstrap: error: cannot resume: ") and message in error[-1]
    assert run_folder(out) == before


def test_a_run_killed_before_its_first_checkpoint_resumes(demo, finished_run, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    args = [*bootstrap_args(demo, out), "--checkpoint-every", "100"]  # no periodic checkpoint before the end
    process = subprocess.Popen([sys.executable, "-m", "jestfilter", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)
    second_shard = out / "filtered" / "filtered-000001.tar"
    deadline = time.time() + 300
    while not second_shard.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert second_shard.exists() and not (out / "metrics.json").exists()
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    reference_out, _ = finished_run
    assert kept_keys(out) == kept_keys(reference_out)
    assert written_samples(out) == written_samples(reference_out)


def test_web_shards_that_give_no_sample_end_the_run_with_one_line(demo, shared_reference, tmp_path, capsys):
    for name in ("a.tar", "b.tar"):
        (tmp_path / name).write_bytes(b"")
    assert main([*bootstrap_args(demo, tmp_path / "out"), "--web", str(tmp_path / "*.tar"),
                 "--reference", shared_reference, "--compare", "none"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("jestfilter bootstrap: error: a whole pass over the 2 shard(s) gave no usable sample "
                            "(rejected: 2 empty_shard)"), error


def test_a_reference_too_weak_to_select_with_is_named_at_start(demo, tmp_path, capsys):
    untrained = tmp_path / "untrained"
    save_local_dir(start_model("jest-tiny", seed=0, batch_size=16), untrained)
    assert main(bootstrap_args(demo, tmp_path / "run", "--compare", "none", "--reference", f"local-dir:{untrained}",
                               "--steps", "2", "--eval-every", "2")) == 0
    assert "WARNING: the reference's zero-shot accuracy" in capsys.readouterr().out


def test_only_a_reference_under_twice_chance_is_called_weak():
    assert weak_reference(0.174, 0.1)  # the suite's clip art, seed 3: JEST lost to uniform behind it
    assert weak_reference(0.258, 0.1) is None  # seed 2's reference: JEST level with uniform
    assert weak_reference(0.736, 0.1) is None and weak_reference(None, 0.1) is None
