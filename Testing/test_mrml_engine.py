"""The module's numba offer (SeedBrachyLib.mrml.engine) on slicer-core: asked only when numba is missing,
installed through slicer.packaging where Slicer has it, and a refusal or failure leaves the numpy engine."""

import sys
import types
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")

from SeedBrachyLib import kernel  # noqa: E402
from SeedBrachyLib.mrml import engine  # noqa: E402

REQUIREMENTS = Path(__file__).resolve().parents[1] / "SeedBrachy" / "Resources" / "requirements.txt"


@pytest.fixture
def calls(monkeypatch):
    """Record the questions and installs; no slicer.packaging unless a test adds one."""
    record = {"asked": [], "installed": []}
    monkeypatch.setitem(sys.modules, "slicer.packaging", None)  # import fails: Slicer before 5.11

    def ask(text):
        record["asked"].append(text)
        return record.get("answer", False)

    def install(requirements):
        record["installed"].append(requirements)
        if record.get("fail"):
            raise RuntimeError("no network")

    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", ask, raising=False)
    monkeypatch.setattr(slicer.util, "pip_install", install, raising=False)
    return record


def _without_numba(monkeypatch):
    monkeypatch.setattr(kernel, "numba_kernels", lambda: None)


def test_requirement_is_the_shipped_numba_line():
    assert engine.numba_requirement(REQUIREMENTS) == ["numba>=0.58"]


def test_nothing_asked_when_numba_is_there(calls):
    pytest.importorskip("numba")
    assert engine.ensure_dose_engine(REQUIREMENTS).startswith("compiled")
    assert calls["asked"] == [] and calls["installed"] == []


@pytest.mark.parametrize("answer, fail, installed", [(False, False, []), (True, False, [["numba>=0.58"]]),
                                                     (True, True, [["numba>=0.58"]])])
def test_older_slicer_asks_and_numpy_runs_when_declined_or_failed(monkeypatch, calls, answer, fail, installed):
    _without_numba(monkeypatch)
    calls.update(answer=answer, fail=fail)
    assert engine.ensure_dose_engine(REQUIREMENTS).startswith("numpy")
    assert calls["asked"] == [engine.INSTALL_QUESTION]
    assert calls["installed"] == installed


def test_slicer_packaging_is_used_where_it_exists(monkeypatch, calls):
    _without_numba(monkeypatch)
    ensured = []
    packaging = types.ModuleType("slicer.packaging")
    packaging.pip_ensure = lambda requirements, requester: ensured.append((requirements, requester))
    monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    monkeypatch.setattr(slicer, "packaging", packaging, raising=False)
    assert engine.ensure_dose_engine(REQUIREMENTS).startswith("numpy")
    assert ensured == [(["numba>=0.58"], "SeedBrachy")] and calls["asked"] == []
