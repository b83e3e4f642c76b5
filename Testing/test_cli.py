"""The seedbrachy command: version, outputs refused before any computation, exit codes."""

from __future__ import annotations

import time

import pytest

from SeedBrachyLib import __version__
from SeedBrachyLib.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"seedbrachy {__version__}"


def test_demo_out_naming_a_file_fails_at_once(tmp_path, capsys):
    target = tmp_path / "scene.mrb"
    target.write_text("mine")
    t0 = time.perf_counter()
    assert main(["demo", "--quiet", "--out", str(target)]) == 2
    assert time.perf_counter() - t0 < 5.0  # refused before the case is computed
    assert "is a file" in capsys.readouterr().err
    assert target.read_text() == "mine"


def test_demo_refuses_an_existing_scene_without_force(tmp_path, capsys):
    (tmp_path / "SeedBrachyDemo.mrb").write_text("an earlier scene")
    assert main(["demo", "--quiet", "--out", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "SeedBrachyDemo.mrb").read_text() == "an earlier scene"
