"""House rules on imports: only the MRML bridge and the module touch Slicer; production never uses synthetic/demo."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "SeedBrachyLib"
#: Packages that may import slicer (and vtk's Slicer classes): the bridge. qt only in the module.
SLICER_ALLOWED = ("mrml",)
#: Test-and-demo-only packages.
NOT_FOR_PRODUCTION = ("synthetic", "demo")


def _imports(path, text=None):
    """Absolute module names (and SeedBrachyLib sub-packages) imported by ``path`` (or by ``text`` placed there)."""
    tree = ast.parse(path.read_text() if text is None else text)
    rel = path.relative_to(LIB).parts
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.add(node.module or "")
            else:  # resolve relative imports against the file's package
                base = list(rel[:-1])[: len(rel) - node.level]
                module = ".".join(["SeedBrachyLib", *base] + ([node.module] if node.module else []))
                names.add(module)
                if not node.module:
                    names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _lib_files(exclude_top):
    for path in LIB.rglob("*.py"):
        top = path.relative_to(LIB).parts[0]
        if top not in exclude_top:
            yield path


def test_only_the_bridge_imports_slicer_or_qt():
    offenders = []
    for path in _lib_files(SLICER_ALLOWED + NOT_FOR_PRODUCTION):
        for name in _imports(path):
            if name.split(".")[0] in ("slicer", "qt", "ctk"):
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    for path in (LIB / "mrml").rglob("*.py"):
        offenders += [f"{path.relative_to(ROOT)}: {n}" for n in _imports(path) if n.split(".")[0] in ("qt", "ctk")]
    assert not offenders, offenders


def test_production_never_imports_synthetic_or_demo():
    offenders = []
    for path in _lib_files(NOT_FOR_PRODUCTION):
        if path.name == "cli.py" or path.parent.name == "cli":
            continue  # the command line runs the demo on request (lazy import inside `seedbrachy demo`)
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "SeedBrachyLib" and len(parts) > 1 and parts[1] in NOT_FOR_PRODUCTION:
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    module = ROOT / "SeedBrachy" / "SeedBrachy.py"
    tree = ast.parse(module.read_text())
    test_class = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SeedBrachyTest")
    test_lines = range(test_class.lineno, test_class.end_lineno + 1)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.lineno not in test_lines:
            parts = node.module.split(".")
            if parts[0] == "SeedBrachyLib" and len(parts) > 1 and parts[1] in NOT_FOR_PRODUCTION:
                offenders.append(f"SeedBrachy.py line {node.lineno}: {node.module}")
    assert not offenders, offenders


def test_rule_checker_sees_a_violation():
    """The checker itself: planted imports in a pure module are resolved to what they import."""
    names = _imports(LIB / "planning" / "planted.py", "import slicer\nfrom ..synthetic import phantom\n"
                                                     "from .. import demo\n")
    assert {"slicer", "SeedBrachyLib.synthetic", "SeedBrachyLib.demo"} <= names
