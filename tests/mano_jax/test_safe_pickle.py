"""Tests for mano_jax.safe_pickle, the one unpickler of MANO files and dataset pickles.

Hostile pickles are loaded in a subprocess: a loader that let one through would crash the
process (forged pointers in an object array), so the test checks the exit status as well as the
message. Each payload is built with the stock pickler from a `__reduce__` that names NumPy's real
reconstruction functions, exactly as an attacker would write it.
"""
from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from mano_jax import safe_pickle
from mano_jax.safe_pickle import CorruptPickleError, UnsafePickleError

REPO_ROOT = Path(__file__).resolve().parents[2]
FORGED = b"\x41" * 16  # two "pointers" 0x4141414141414141 as the data of an object array
RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]
SCALAR = np.float64(0.0).__reduce__()[0]
FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]


class _Reduce:
    """Pickles as whatever `__reduce__` tuple it is given."""

    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


def _object_array(data=FORGED, version=True):
    """ndarray BUILD state with an object dtype and raw bytes (the core attack)."""
    state = (np.dtype("O"), False, data)
    return _Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"),
                   ((1, (2,)) + state) if version else ((2,) + state))


def _forged_dtype(spec, flags, fields=None, names=None, elsize=-1, alignment=-1):
    """A dtype whose BUILD state sets other flags than NumPy's (e.g. 'no list pickling')."""
    return _Reduce(np.dtype, (spec, False, True),
                   (3, "|", None, names, fields, elsize, alignment, flags))


def _array_of(dtype, shape=(2,), data=FORGED):
    return _Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, shape, dtype, False, data))


class _State:
    """Pickles as NEWOBJ of `cls` with `state` (how chumpy and SciPy objects pickle)."""

    def __init__(self, state):
        self.__dict__.update(state)


_NAMES = {}  # our stand-in class -> the global it is written as


def _named(name):
    """A _State subclass that `dumps` writes as the global `name` (chumpy is not installed)."""
    cls = type(name.rpartition(".")[2], (_State,), {})
    _NAMES[cls] = name
    return cls


class _NamingPickler(pickle._Pickler):
    def save_global(self, obj, name=None):
        if obj in _NAMES:
            module, _, qualname = _NAMES[obj].rpartition(".")
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("ascii"))
            self.memoize(obj)
            return
        super().save_global(obj, name)


def dumps(value, protocol=2) -> bytes:
    buffer = io.BytesIO()
    _NamingPickler(buffer, protocol=protocol).dump(value)
    return buffer.getvalue()


HOSTILE = {
    "ndarray_setstate_object": _object_array(),
    "ndarray_setstate_object_py2_str": _object_array(FORGED.decode("latin-1"), version=False),
    "frombuffer_object": _Reduce(FROMBUFFER, (bytearray(FORGED), np.dtype("O"), (2,), "C")),
    "ndarray_direct_call": _Reduce(np.ndarray, ((2,), np.dtype("O"), FORGED)),
    "scalar_object": _Reduce(SCALAR, (np.dtype("O"), FORGED[:8])),
    "float_dtype_forged_flags": _array_of(_forged_dtype("f8", 0x3F)),
    "object_dtype_forged_flags": _array_of(_forged_dtype("O8", 0)),
    "structured_object_forged_flags": _array_of(_forged_dtype(
        "V16", 0, names=("a", "b"), fields={"a": (np.dtype("O"), 0), "b": (np.dtype("O"), 8)},
        elsize=16, alignment=8), shape=(1,)),
    "structured_object_field": _array_of(np.dtype([("a", "O")])),
    "dtype_object_value": {"d": np.dtype("O")},
    "reconstruct_other_class": _Reduce(RECONSTRUCT, (set, (0,), b"b")),
    "sparse_object_data": _named("scipy.sparse._csc.csc_matrix")(dict(
        _shape=(1, 2), data=_object_array(), indices=np.array([0, 1], np.int32),
        indptr=np.array([0, 1, 2], np.int32), maxprint=50)),
    "chumpy_object_x": _named("chumpy.ch.Ch")(dict(x=_object_array(), _dirty_vars={"x"})),
    "chumpy_select_object_a": _named("chumpy.reordering.Select")(dict(
        a=_named("chumpy.ch.Ch")(dict(x=_object_array())), idxs=np.arange(2))),
}

# Loads PATH through ENTRY and then touches every value, as a caller would.
_CHILD = """
import sys
import numpy as np
entry, path = sys.argv[1], sys.argv[2]
if entry == "safe_pickle":
    from mano_jax import safe_pickle
    data = safe_pickle.load(path)
else:
    from mano_jax import io
    data = io.load_arrays(path)
def touch(value):
    if isinstance(value, dict):
        for v in value.values():
            touch(v)
    else:
        print(repr(value)[:60], np.array(value, copy=True))
touch(data)
print("LOADED")
"""


def _load_in_child(entry: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _CHILD, entry, str(path)], cwd=REPO_ROOT,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_pickle_is_refused_in_a_subprocess(tmp_path, name):
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(dumps({"value": HOSTILE[name]}))
    result = _load_in_child("safe_pickle", path)
    assert result.returncode == 1, (result.returncode, result.stdout[-500:], result.stderr[-2000:])
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mano_jax.safe_pickle.UnsafePickleError: "), last
    assert str(path) in last and "LOADED" not in result.stdout


@pytest.mark.parametrize(
    "name", ["ndarray_direct_call", "object_dtype_forged_flags", "structured_object_forged_flags"])
def test_hostile_payload_crashes_the_stock_unpickler(tmp_path, name):
    """These payloads are real attacks: the stock unpickler hands out forged pointers."""
    path = tmp_path / "attack.pkl"
    path.write_bytes(dumps(HOSTILE[name]))
    code = f"import pickle; a = pickle.load(open({str(path)!r}, 'rb')); print(repr(a))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode < 0, result


def test_hostile_mano_file_is_refused_by_load_arrays(tmp_path):
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(dumps({"shapedirs": HOSTILE["chumpy_object_x"]}))
    result = _load_in_child("io", path)
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert "UnsafePickleError" in result.stderr and str(path) in result.stderr


def test_dataset_builders_use_the_one_safe_unpickler():
    from datasets.ho3d import ho3d_dataset_builder
    from datasets.rhd import rhd_dataset_builder
    from mano_jax import io as mano_io

    assert rhd_dataset_builder.safe_pickle is safe_pickle
    assert ho3d_dataset_builder.safe_pickle is safe_pickle
    assert mano_io.safe_pickle is safe_pickle
    assert not (REPO_ROOT / "datasets" / "safe_pickle.py").exists()


# ---------------------------------------------------------------------------------------------
# Plain data


def test_loads_numpy_data_under_every_protocol(tmp_path):
    data = {
        "a": np.arange(6.0).reshape(2, 3), "s": np.float64(2.5), "name": "obj", "n": None,
        "big_endian": np.arange(4, dtype=">i4"), "fortran": np.asfortranarray(np.eye(3)[:, :2]),
        "flags": np.array([True, False]), "c": np.array([1 + 2j], np.complex64),
        "dt": np.dtype("u2"), "nested": [(1, np.zeros(2, np.uint8)), {"k": frozenset({3})}],
        "empty": np.zeros((0, 3), np.float32),
    }
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        out = safe_pickle.load(path)
        assert out.keys() == data.keys()
        for key in ("a", "big_endian", "fortran", "flags", "c", "empty"):
            assert out[key].dtype == data[key].dtype and out[key].shape == data[key].shape, key
            np.testing.assert_array_equal(out[key], data[key], err_msg=key)
            assert out[key].flags.writeable and out[key].flags.owndata is not None
        assert out["s"] == 2.5 and out["name"] == "obj" and out["n"] is None
        assert out["dt"] == np.dtype("u2")
        np.testing.assert_array_equal(out["nested"][0][1], np.zeros(2, np.uint8))
        assert out["nested"][1] == {"k": frozenset({3})}


def test_sparse_matrices_are_rebuilt(tmp_path):
    dense = np.array([[0.0, 1.5, 0.0], [2.0, 0.0, 3.0]])
    data = {fmt: getattr(scipy.sparse, f"{fmt}_matrix")(dense) for fmt in ("csc", "csr", "coo")}
    path = tmp_path / "sparse.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    out = safe_pickle.load(path)
    for fmt, matrix in out.items():
        assert scipy.sparse.issparse(matrix) and matrix.format == fmt
        np.testing.assert_array_equal(matrix.toarray(), dense)


def test_bool_bytes_are_normalised(tmp_path):
    path = tmp_path / "bools.pkl"
    array = _Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"),
                    (1, (3,), np.dtype("?"), False, b"\x00\x02\x01"))
    path.write_bytes(pickle.dumps(array, protocol=2))
    out = safe_pickle.load(path)
    assert out.dtype == np.bool_ and out.tolist() == [False, True, True]
    assert out.view(np.uint8).tolist() == [0, 1, 1]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_refuses_code_naming_the_file(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"x": _Evil()}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"evil.pkl: refused to load global .*system"):
        safe_pickle.load(path)


@pytest.mark.parametrize("what, payload, message", [
    ("size", _Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"),
                     (1, (3,), np.dtype("f8"), False, b"\x00" * 16)), "needs 24 bytes"),
    ("shape", _Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b"),
                      (1, (-1,), np.dtype("f8"), False, b"")), "non-negative ints"),
    ("no_data", _Reduce(RECONSTRUCT, (np.ndarray, (0,), b"b")), "without its data"),
])
def test_malformed_arrays_are_corrupt(tmp_path, what, payload, message):
    path = tmp_path / f"{what}.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CorruptPickleError, match=message) as info:
        safe_pickle.load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert isinstance(info.value, ValueError) and isinstance(info.value, pickle.UnpicklingError)


def test_names_truncated_and_deeply_nested_files(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"a": np.zeros(100)}, protocol=2)[:40])
    with pytest.raises(CorruptPickleError, match="cut.pkl: corrupt pickle"):
        safe_pickle.load(path)
    deep = tmp_path / "deep.pkl"
    value = []
    for _ in range(40):
        value = [value]
    deep.write_bytes(pickle.dumps(value, protocol=2))
    with pytest.raises(CorruptPickleError, match="deep.pkl: corrupt pickle: .*deeper than 32"):
        safe_pickle.load(deep)
