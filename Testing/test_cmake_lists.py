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


def test_top_level_cmake_follows_the_extension_template():
    """As Slicer's Utilities/Templates/Extensions/Default/CMakeLists.txt: its cmake_minimum_required, no
    EXTENSION_CATEGORY (the category is in the catalog entry), contributors as "Name (Affiliation)"."""
    text = (ROOT / "CMakeLists.txt").read_text()
    assert text.startswith("cmake_minimum_required(VERSION 3.28.0...3.28.0 FATAL_ERROR)\n")
    assert "EXTENSION_CATEGORY" not in text
    assert "add_subdirectory(SeedBrachyLib)" in text and "add_subdirectory(SeedBrachy)" in text
    contributors = re.search(r'set\(EXTENSION_CONTRIBUTORS "([^"]+)"\)', text).group(1)
    assert all(re.fullmatch(r"[^()]+ \([^()]+\)", c.strip()) for c in contributors.split(",")), contributors
    for variable in ("EXTENSION_HOMEPAGE", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS",
                     "EXTENSION_DEPENDS"):
        assert re.search(rf'set\({variable} "[^"]+"\)', text), variable
    for include in ("${Slicer_USE_FILE}", "${Slicer_EXTENSION_GENERATE_CONFIG}", "${Slicer_EXTENSION_CPACK}"):
        assert f"include({include})" in text


def test_extensions_index_checker_rules():
    """The rules of the ExtensionsIndex's scripts/check_description_files.py that can be checked offline:
    project name = description file name, repository name starts with "Slicer", extension name does not,
    https scm_url, LF line endings, a licence file, and icon and screenshot URLs that name files of this
    repository (raw.githubusercontent.com/<owner>/<repo>/<revision>/<path>)."""
    cmake = (ROOT / "CMakeLists.txt").read_text()
    entry_file = ROOT / "SeedBrachy.json"
    entry = json.loads(entry_file.read_text())
    assert b"\r" not in entry_file.read_bytes()
    project = re.search(r"project\s*\(\s*([^\s\)]+)", cmake).group(1)
    assert project == entry_file.stem == "SeedBrachy" and not project.lower().startswith("slicer")
    repo = entry["scm_url"].rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    assert repo.startswith("Slicer") and entry["scm_url"].startswith("https://")
    assert (ROOT / "LICENSE").is_file()
    owner = entry["scm_url"].split("/")[3]
    prefix = f"https://raw.githubusercontent.com/{owner}/{repo}/{entry['scm_revision']}/"
    icon = re.search(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', cmake).group(1)
    shots = re.search(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', cmake).group(1).split()
    for url in [icon, *shots]:
        assert url.startswith(prefix) and url.endswith(".png"), url
        path = ROOT / url[len(prefix):]
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", url


def test_extensions_index_entry_follows_the_catalog_schema():
    entry = json.loads((ROOT / "SeedBrachy.json").read_text())
    assert CATALOG_REQUIRED <= set(entry) <= CATALOG_KEYS
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.2.json#")
    assert entry["category"] == "Radiotherapy"
    assert entry["scm_url"].startswith("https://github.com/") and entry["scm_url"].endswith(".git")
    assert isinstance(entry["build_dependencies"], list) and 1 <= entry["tier"] <= 5
    homepage = re.search(r'set\(EXTENSION_HOMEPAGE "([^"]+)"\)', (ROOT / "CMakeLists.txt").read_text()).group(1)
    assert entry["scm_url"] == homepage + ".git"


def test_development_install_finds_the_library_as_slicer_sets_sys_path(tmp_path):
    """Slicer appends only the module file's folder to sys.path (qSlicerScriptedLoadableModuleFactory.cxx):
    with that path alone, the module's start-up code finds SeedBrachyLib in a source checkout (beside
    SeedBrachy/) and in an installed extension (inside the module folder), and adds nothing otherwise."""
    import shutil
    import subprocess
    import sys

    source = (ROOT / "SeedBrachy" / "SeedBrachy.py").read_text()
    finder = source[source.index("def _findSeedBrachyLib():"):source.index("_findSeedBrachyLib()\n")]
    probe = ("import os, sys\n" + finder + "found = _findSeedBrachyLib()\n"
             "import importlib.util\nprint(found, importlib.util.find_spec('SeedBrachyLib') is not None)\n")
    layouts = {"checkout": ("SeedBrachy", "."), "installed": ("qt-scripted-modules", "qt-scripted-modules"),
               "missing": ("lonely", None)}
    for name, (module_dir, lib_parent) in layouts.items():
        root = tmp_path / name
        (root / module_dir).mkdir(parents=True)
        (root / module_dir / "SeedBrachy.py").write_text(probe)
        if lib_parent is not None:
            shutil.copytree(ROOT / "SeedBrachyLib", root / lib_parent / "SeedBrachyLib",
                            ignore=shutil.ignore_patterns("__pycache__"))
        env = {"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"}
        module_file = root / module_dir / "SeedBrachy.py"
        code = f"import sys; sys.path.append({str(module_file.parent)!r}); __file__ = {str(module_file)!r}; " \
               "exec(open(__file__).read())"
        out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, env=env,
                             check=True)
        found, importable = out.stdout.split()
        assert importable == ("False" if lib_parent is None else "True"), (name, out.stdout, out.stderr)
        assert (found == "None") == (lib_parent is None), name
