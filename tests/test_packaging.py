"""Installing the project claims no generic name in a user's site-packages: the wheel holds the
two libraries, hiu_jax and mano_jax, and nothing else, so it installs beside HuggingFace
`datasets` (stood in for by a one-file distribution of that name; no network) and both import.
`datasets/`, `configs/` and `bench/` stay in the repository, imported from its root."""
import base64
import hashlib
import json
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
INSTALLED = {"hiu_jax", "mano_jax"}
STAND_IN = "stand-in for HuggingFace datasets"


def _pip(*args, timeout=120):
    r = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    """The project's wheel, built offline from a copy of the checkout (pip builds in the source
    tree: the copy keeps build/ and *.egg-info out of it). The copy holds every top-level file and
    every top-level package, so that the wheel could claim any of them."""
    src = tmp_path_factory.mktemp("src")
    for path in REPO.iterdir():
        if path.name.startswith("."):
            continue
        if path.is_file():
            shutil.copy(path, src / path.name)
        elif (path / "__init__.py").is_file():
            shutil.copytree(path, src / path.name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), str(src))
    (built,) = out.glob("hiu_jax-*.whl")
    return built


def _top_level(files) -> set:
    return {f.split("/")[0] for f in files if not f.split("/")[0].endswith(".dist-info")}


def test_wheel_holds_hiu_jax_and_mano_jax_only(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (dist_info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
        record = [line.split(",")[0] for line in z.read(f"{dist_info}/RECORD").decode().splitlines()]
        top_level = set(z.read(f"{dist_info}/top_level.txt").decode().split())
    assert _top_level(names) == INSTALLED
    assert _top_level(record) == INSTALLED
    assert top_level == INSTALLED
    # ... and all of them: every module of the two libraries is in the wheel.
    sources = {str(p.relative_to(REPO)) for package in INSTALLED
               for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts}
    assert sources <= set(names), sorted(sources - set(names))


def _stand_in_wheel(directory: pathlib.Path) -> pathlib.Path:
    """A minimal distribution named `datasets` (top-level package `datasets`), as a wheel."""
    files = {
        "datasets/__init__.py": f"STAND_IN = {STAND_IN!r}\n",
        "datasets-99.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: datasets\nVersion: 99.0\n",
        "datasets-99.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\n"
                                         "Root-Is-Purelib: true\nTag: py3-none-any\n",
        "datasets-99.0.dist-info/top_level.txt": "datasets\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    record.append("datasets-99.0.dist-info/RECORD,,")
    path = directory / "datasets-99.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr("datasets-99.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


_CHILD = """
import importlib.metadata, json, pkgutil, sys
site = sys.argv[1]
sys.path.insert(0, site)
import datasets, hiu_jax, mano_jax
from hiu_jax import geometry, losses, metrics, models, runs  # no module of ours needs `datasets`
out = {"files": {m.__name__: m.__file__ for m in (datasets, hiu_jax, mano_jax)},
       "stand_in": getattr(datasets, "STAND_IN", None),
       "hiu_jax": sorted(m.name for m in pkgutil.iter_modules(hiu_jax.__path__)),
       "dists": {d.metadata["Name"]: sorted(str(f) for f in d.files)
                 for d in importlib.metadata.distributions(path=[site])}}
print(json.dumps(out))
"""


def test_installs_beside_a_datasets_distribution_and_both_import(wheel, tmp_path):
    site = tmp_path / "site"
    # Ours first: had it a `datasets` package, pip would then skip the stand-in's ("already
    # exists") and `import datasets` below would find ours.
    for package in (wheel, _stand_in_wheel(tmp_path)):
        r = _pip("install", "--no-deps", "--no-index", "--target", str(site), str(package))
        assert "already exists" not in r.stderr, r.stderr
    # -I: neither the repository (the working directory) nor PYTHONPATH is on sys.path.
    r = subprocess.run([sys.executable, "-I", "-c", _CHILD, str(site)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.splitlines()[-1])
    for name, path in out["files"].items():
        assert pathlib.Path(path).is_relative_to(site), (name, path)
    assert out["stand_in"] == STAND_IN
    assert "models" in out["hiu_jax"]
    assert {n.lower().replace("_", "-") for n in out["dists"]} == {"hiu-jax", "datasets"}
    ours = next(files for name, files in out["dists"].items() if name != "datasets")
    assert _top_level(ours) == INSTALLED


# A bench or docs script run as `python bench/NAME.py` has bench/ on sys.path instead of the
# repository root, and `datasets`, `configs` and `bench` (not installed) do not import.
_PATH_RUN = re.compile(r"python3?\s+(bench|docs)/\w+\.py|[\"'](bench|docs)/\w+\.py[\"']\s*,")


def test_bench_and_docs_scripts_are_run_as_modules():
    texts = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    texts += [p for d in ("bench", "docs", "tests") for p in sorted((REPO / d).rglob("*.py"))
              if p != pathlib.Path(__file__).resolve()]
    wrong = [f"{p.relative_to(REPO)}: {m.group(0)}" for p in texts
             for m in _PATH_RUN.finditer(p.read_text())]
    assert not wrong, f"run these as `python -m bench.NAME` / `python -m docs.NAME`: {wrong}"
    for package in ("bench", "docs"):  # regular packages: found in the root before site-packages
        assert (REPO / package / "__init__.py").is_file()
