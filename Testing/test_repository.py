"""What the repository tracks: no local set-up leaks into a clean clone."""

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _tracked():
    """(mode, path) of every file git tracks; skips outside a git checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return [(line.split()[0], line.split("\t", 1)[1])
            for line in out.splitlines()]


def test_no_symlinks_and_no_virtualenv_tracked():
    """A tracked symlink (mode 120000) points at one machine's paths: a
    tracked '.venv -> /work/main/.venv' made a clean clone's 'make' fail
    and, on checkout, replaced each worktree's ignored venv by the link."""
    tracked = _tracked()
    assert [p for m, p in tracked if m == "120000"] == []
    assert [p for _, p in tracked
            if p == ".venv" or p.startswith(".venv/")] == []


def test_gitignore_ignores_a_venv_link_too():
    """'.venv/' ignores only a directory; '.venv' also a symlink."""
    lines = (ROOT / ".gitignore").read_text().split()
    assert ".venv" in lines
