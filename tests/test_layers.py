"""The layering of docs/architecture.md, checked on the source: who may import whom, no sys.path
edits outside tests, and short modules."""
import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PROJECT = ("mano_jax", "hiu_jax", "datasets", "configs", "bench", "tests")
# package -> the project packages it may import
ALLOWED = {
    "mano_jax": set(),
    "hiu_jax": {"mano_jax"},
    "datasets": {"mano_jax", "hiu_jax"},
    "configs": set(),
}
SCRIPTS = ("train", "eval", "infer")  # the top-level command lines: nothing imports them
LIBRARY = ("mano_jax", "hiu_jax", "datasets")
MAX_MODULE_LINES = 600
MAX_SCRIPT_LINES = 400


def _sources(package):
    return sorted((REPO / package).rglob("*.py"))


def _imported_packages(path, top_level=PROJECT):
    """The names of `top_level` (default: the project's packages) that the file imports
    anywhere (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(n.split(".")[0] for n in names if n.split(".")[0] in top_level)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_the_layers_below(package):
    wrong = {}
    for path in _sources(package):
        extra = _imported_packages(path) - ALLOWED[package] - {package}
        if extra:
            wrong[str(path.relative_to(REPO))] = sorted(extra)
    assert not wrong, f"imports against the layering (docs/architecture.md): {wrong}"


@pytest.mark.parametrize("package", LIBRARY)
def test_library_never_imports_the_scripts(package):
    """train.py, eval.py and infer.py sit on top: the library they call never imports them."""
    wrong = {str(path.relative_to(REPO)): sorted(found) for path in _sources(package)
             if (found := _imported_packages(path, SCRIPTS))}
    assert not wrong, f"library modules import the top-level scripts {SCRIPTS}: {wrong}"


def test_configs_import_only_ml_collections_and_each_other():
    for path in _sources("configs"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in ("ml_collections", "configs", "__future__"), \
                    f"{path.relative_to(REPO)} imports {name}"


def test_no_sys_path_edits_outside_tests():
    offenders = []
    for path in sorted(REPO.glob("*.py")) + [p for d in ("mano_jax", "hiu_jax", "datasets",
                                                        "configs", "bench", "docs")
                                            for p in _sources(d)]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("insert", "append") and \
                    isinstance(node.value, ast.Attribute) and node.value.attr == "path" and \
                    isinstance(node.value.value, ast.Name) and node.value.value.id == "sys":
                offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"sys.path edited in {offenders} (scripts run from the repository root: " \
        "python -m bench.NAME; hiu_jax and mano_jax are installed)"


def test_modules_are_short():
    long = {str(p.relative_to(REPO)): n for package in ("mano_jax", "hiu_jax", "datasets")
            for p in _sources(package) if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    long.update({name: n for name in (f"{script}.py" for script in SCRIPTS)
                 if (n := len((REPO / name).read_text().splitlines())) >= MAX_SCRIPT_LINES})
    assert not long, f"modules over the size limits: {long}"
