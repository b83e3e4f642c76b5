"""The Slicer build lists every Python file and resource; the ExtensionsIndex entry follows the catalog schema."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Keys allowed by slicer-extension-catalog-entry-schema-v1.0.2.json (Slicer/Schemas); required ones below.
CATALOG_KEYS = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                "dicom_support_rule", "build_subdirectory", "enabled", "tier"}
CATALOG_REQUIRED = {"$schema", "category", "scm_url"}


def _cmake_list(cmake_file, variable):
    """Entries of ``set(<variable> ...)`` in a CMakeLists file, with ${MODULE_NAME} expanded."""
    text = cmake_file.read_text()
    module = re.search(r"set\(MODULE_NAME\s+(\S+)\)", text).group(1)
    body = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S).group(1)
    return {entry.replace("${MODULE_NAME}", module) for entry in body.split()}


def _files(folder, pattern):
    return {str(p.relative_to(folder)) for p in folder.rglob(pattern)
            if p.is_file() and "__pycache__" not in p.parts}


def test_lib_build_installs_every_python_file_and_seed_model():
    """The Lib's CMake globs *.py and data/*.json; every data file on disk matches the glob and pip ships it."""
    lib = ROOT / "SeedBrachyLib"
    text = (lib / "CMakeLists.txt").read_text()
    assert re.search(r"file\(GLOB_RECURSE MODULE_PYTHON_SCRIPTS RELATIVE \$\{CMAKE_CURRENT_SOURCE_DIR\}"
                     r" CONFIGURE_DEPENDS \*\.py\)", text)
    assert re.search(r"file\(GLOB_RECURSE MODULE_PYTHON_RESOURCES RELATIVE \$\{CMAKE_CURRENT_SOURCE_DIR\}"
                     r" CONFIGURE_DEPENDS data/\*\.json\)", text)
    assert "SCRIPTS ${MODULE_PYTHON_SCRIPTS}" in text and "RESOURCES ${MODULE_PYTHON_RESOURCES}" in text
    assert "WITH_SUBDIR" in text
    data = _files(lib, "data/**/*")
    assert data and all(f.endswith(".json") for f in data), f"data files the glob would miss: {sorted(data)}"
    package_data = (ROOT / "pyproject.toml").read_text()
    assert 'SeedBrachyLib = ["data/sources/*.json"]' in package_data
    assert {f.split("/")[1] for f in data} == {"sources"}


def test_every_module_script_and_resource_is_listed():
    module = ROOT / "SeedBrachy"
    cmake = module / "CMakeLists.txt"
    scripts = _cmake_list(cmake, "MODULE_PYTHON_SCRIPTS")
    resources = _cmake_list(cmake, "MODULE_PYTHON_RESOURCES")
    assert _files(module, "*.py") - {f for f in _files(module, "*.py") if f.startswith("Testing/")} <= scripts
    on_disk = _files(module / "Resources", "*")
    assert {f"Resources/{f}" for f in on_disk} <= resources, sorted({f"Resources/{f}" for f in on_disk} - resources)
    assert all((module / f).is_file() for f in scripts | resources)
    text = cmake.read_text()
    assert "WITH_GENERIC_TESTS" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def test_top_level_cmake_adds_the_lib_and_the_module():
    text = (ROOT / "CMakeLists.txt").read_text()
    assert "add_subdirectory(SeedBrachyLib)" in text and "add_subdirectory(SeedBrachy)" in text
    assert 'set(EXTENSION_CATEGORY "Radiotherapy")' in text


def test_extensions_index_entry_follows_the_catalog_schema():
    entry = json.loads((ROOT / "SeedBrachy.json").read_text())
    assert CATALOG_REQUIRED <= set(entry) <= CATALOG_KEYS
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert entry["category"] == "Radiotherapy"
    assert entry["scm_url"].startswith("https://github.com/") and entry["scm_url"].endswith(".git")
    assert isinstance(entry["build_dependencies"], list) and 1 <= entry["tier"] <= 5
    homepage = re.search(r'set\(EXTENSION_HOMEPAGE "([^"]+)"\)', (ROOT / "CMakeLists.txt").read_text()).group(1)
    assert entry["scm_url"] == homepage + ".git"
