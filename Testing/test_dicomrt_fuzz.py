"""A CI sample of the DICOM mutation test (Testing/fuzz/dicom_mutations.py runs the full count).

Every mutant of every kind must give a valid result or an InputError: no other exception, no hang past the
per-file limit, no result that breaks the invariants.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))
import dicom_mutations  # noqa: E402

SAMPLE = 40


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    dicom_mutations.make_case(folder / "case")
    return folder


@pytest.mark.parametrize("kind", dicom_mutations.KINDS)
def test_mutated_files_give_a_result_or_a_clear_error(kind, work):
    failures = []
    outcomes = dicom_mutations.run(kind, SAMPLE, seed=2026, time_limit_s=20.0, work=work, log=failures)
    bad = [f for f in failures if f[2] is not None]
    assert bad == [], bad
    assert outcomes["crash"] == outcomes["hang"] == outcomes["nonsense"] == 0
    assert outcomes["error"] > 0 and outcomes["same"] > 0  # the sample damages files and also spares some
    assert sum(outcomes[k] for k in ("same", "changed", "error")) == SAMPLE
