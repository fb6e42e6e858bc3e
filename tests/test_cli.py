import subprocess
import sys

from jestfilter.cli import command_modules, main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "jestfilter", *args], capture_output=True, text=True)


def test_help_lists_every_discovered_subcommand():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in command_modules():
        assert name in result.stdout


def test_every_subcommand_has_help_text_and_entry_points():
    for name, module in command_modules().items():
        assert module.HELP and module.HELP[0].islower(), name
        assert callable(module.add_arguments) and callable(module.run), name


def test_unknown_subcommand_fails_with_usage_error():
    result = run_cli("no-such-command")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_info_reports_the_pinned_stack(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "open_clip_torch" in out and "webdataset" in out
    assert "not installed" not in out


HEAVY = ("torch", "open_clip", "torchvision", "polars", "numpy", "webdataset", "faiss", "PIL", "matplotlib")


def test_help_and_version_of_every_command_load_no_heavy_library_and_take_under_5_cpu_seconds():
    """`--help` must answer on a busy machine: no command imports torch and friends to build its flags."""
    commands = [["--version"], ["--help"]] + [[name, "--help"] for name in command_modules()]
    probe = ("import resource, sys\n"
             "from jestfilter.cli import main\n"
             "for argv in %r:\n"
             "    try:\n"
             "        main(argv)\n"
             "    except SystemExit as done:\n"
             "        assert done.code == 0, (argv, done.code)\n"
             "print(sorted(m for m in %r if m in sys.modules))\n"
             "usage = resource.getrusage(resource.RUSAGE_SELF)\n"
             "print(usage.ru_utime + usage.ru_stime)\n") % (commands, HEAVY)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    *_, loaded, cpu_seconds = result.stdout.strip().splitlines()
    assert loaded == "[]", f"--help imported {loaded}"
    assert float(cpu_seconds) < 5.0


def test_every_flag_of_every_command_shows_its_default_in_help():
    import argparse

    from jestfilter.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        for action in parser._actions:
            if not action.option_strings or action.required or isinstance(action, argparse._HelpAction):
                continue
            assert "default" in action.help, f"{name} {action.option_strings[0]}: {action.help!r}"
            assert "default: None" not in action.help and "default: )" not in action.help, (name, action.help)


def test_no_command_prints_the_help_and_exits_2_without_running_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "bootstrap" in out and "COMMAND" in out
    assert list(tmp_path.iterdir()) == []  # no demo started in ./runs


def test_bootstrap_with_no_arguments_runs_the_default_config():
    """`python -m jestfilter bootstrap` and `run_bootstrap(BootstrapConfig())` are the same demo run:
    every default is written once, on the dataclass, and the CLI takes it from there."""
    from jestfilter.cli import build_parser
    from jestfilter.commands.bootstrap import config_from
    from jestfilter.config import BootstrapConfig, TrainSettings

    cli = config_from(build_parser().parse_args(["bootstrap"]))
    assert cli == BootstrapConfig()
    assert cli.compare == ["uniform", "easy_reference"] and cli.train == TrainSettings()
    given = config_from(build_parser().parse_args(["bootstrap", "--curated", "c", "--web", "w", "--eval", "e"]))
    assert given.compare == []
