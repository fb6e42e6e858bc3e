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
