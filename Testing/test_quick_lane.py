"""The quick lane (``make test-quick``) names tests that exist: a renamed or deleted test would otherwise drop
out of it silently, and with it the lane's cover of a room."""

import ast
from pathlib import Path

from conftest import QUICK_TESTS, SLOW_TESTS

HERE = Path(__file__).resolve().parent


def test_every_quick_test_exists_and_every_room_is_in_the_lane():
    files = {}
    for prefix in QUICK_TESTS:
        file, _, name = prefix.partition("::")
        if file not in files:
            assert (HERE / file).is_file(), f"QUICK_TESTS names {file}, which is not in Testing/"
            files[file] = {n.name for n in ast.walk(ast.parse((HERE / file).read_text()))
                           if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
        assert not name or name in files[file], f"QUICK_TESTS names {prefix}: no such test in {file}"
    rooms = ("dose", "dvh", "planning", "postimplant_detection", "postimplant_registration", "dicomrt", "cli",
             "module_ui", "mrml", "report", "cohort", "import_rules", "cmake_lists", "settings")
    assert all(any(room in file for file in files) for room in rooms), sorted(files)
    assert len(QUICK_TESTS) >= 30 and SLOW_TESTS
