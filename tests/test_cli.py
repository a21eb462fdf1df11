"""The command line: one entry, help for every verb, clean errors."""

import subprocess
import sys

import pytest

from veer.cli import VERBS, main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "veer", *args], capture_output=True, text=True, timeout=120)


def test_top_level_help_lists_every_verb():
    out = run_cli("--help")
    assert out.returncode == 0
    for verb in VERBS:
        assert verb in out.stdout


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([verb, "--help"])
    assert exit_.value.code == 0
    assert f"python -m veer {verb}" in capsys.readouterr().out


def test_unknown_verb_is_one_clear_line():
    out = run_cli("frobnicate")
    assert out.returncode == 2
    assert "unknown verb 'frobnicate'" in out.stderr and "Traceback" not in out.stderr
