"""Tests for mano_jax.io and mano_jax.convert: safe reading and exact writing of MANO files.

Every fixture is random data with the official shapes, written by the test into tmp_path. The
"official-style" pickle is written the way Python 2 + chumpy + old SciPy wrote MANO_RIGHT.pkl:
protocol 2, byte data as Python-2 `str` opcodes (readable only with encoding="latin1"), globals
under the old module paths, `shapedirs` as a chumpy Select of a chumpy Ch, `J_regressor` as a
scipy.sparse csc matrix. chumpy is not installed, and the test never imports it.
"""
from __future__ import annotations

import copyreg
import functools
import io
import os
import pickle
import pickletools
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from mano_jax import io as mano_io
from mano_jax.io import UnsafePickleError, load_arrays, load_model, save_npz, save_pkl
from mano_jax.model import MANO_PARENTS, REQUIRED_SHAPES, chirality, model_from_arrays
from mano_jax.procedural import build_procedural_arrays

REPO_ROOT = Path(__file__).resolve().parents[2]
procedural_arrays = functools.lru_cache(maxsize=2)(build_procedural_arrays)  # built once
NUM_BETAS = 10


# ---------------------------------------------------------------------------------------------
# Fixtures: random official arrays and a Python-2-style chumpy pickle


def random_official_arrays(seed: int = 0, side: str = "right") -> dict:
    """Random arrays with the official keys, shapes and dtypes, on a plausible hand.

    v_template, J_regressor and weights are the procedural hand of `side` (the loader checks the
    size, side and row sums of those); the other floats are random. Floats are float32 values
    stored as float64, so they survive the float32 model exactly and every comparison below can
    be exact equality.
    """
    rng = np.random.default_rng(seed)

    def floats(*shape):
        return rng.standard_normal(shape).astype(np.float32).astype(np.float64)

    hand = procedural_arrays(side)
    kintree = np.zeros((2, 16), np.int64)
    kintree[0] = [2**32 - 1 if p < 0 else p for p in MANO_PARENTS]
    kintree[1] = np.arange(16)
    return {
        "v_template": hand["v_template"].astype(np.float32).astype(np.float64),
        "shapedirs": floats(778, 3, NUM_BETAS),
        "posedirs": floats(778, 3, 135),
        "J_regressor": hand["J_regressor"].astype(np.float32).astype(np.float64),
        "weights": hand["weights"].astype(np.float32).astype(np.float64),
        "kintree_table": kintree,
        "f": rng.integers(0, 778, size=(1538, 3)).astype(np.uint32),
        "hands_components": floats(45, 45),
        "hands_mean": floats(45),
    }


class FakeCh:
    """Pickles like chumpy.ch.Ch: protocol-2 NEWOBJ of the class, then its __dict__ state."""

    def __init__(self, x):
        self.__dict__.update(
            x=x, _dirty_vars={"x"}, _itr=None, _depends_on_deps={},
            _make_dense=False, _make_sparse=False,
        )


class FakeChOldStyle(FakeCh):
    """Pickles like a chumpy Ch under protocols 0-1: copy_reg._reconstructor(cls, object, None)."""

    def __reduce_ex__(self, protocol):
        return copyreg._reconstructor, (type(self), object, None), self.__dict__


class FakeSelect:
    """Pickles like chumpy.reordering.Select; its value is a.r.ravel()[idxs], reshaped."""

    def __init__(self, a, idxs, preferred_shape):
        self.__dict__.update(
            a=a, idxs=idxs, preferred_shape=preferred_shape, _dirty_vars={"a", "idxs"},
            _itr=None, _depends_on_deps={}, _make_dense=False, _make_sparse=False,
        )


class FakeOldCsc:
    """Pickles like a SciPy 0.x csc_matrix: its attribute dict."""

    def __init__(self, dense):
        csc = scipy.sparse.csc_matrix(dense)
        self.__dict__.update(
            _shape=csc.shape, maxprint=50, format="csc", data=csc.data,
            indices=csc.indices, indptr=csc.indptr, has_sorted_indices=True,
        )


class Py2StylePickler(mano_io._LegacyNamePickler):
    """Protocol 2 as Python 2 wrote it: bytes as `str` opcodes, globals under old names (the
    writer's renaming mechanism, with Python 2's names)."""

    _NAMES = (
        (np.ndarray((0,)).__reduce__()[0], "numpy.core.multiarray", "_reconstruct"),
        (copyreg._reconstructor, "copy_reg", "_reconstructor"),
        (FakeCh, "chumpy.ch", "Ch"),
        (FakeChOldStyle, "chumpy.ch", "Ch"),
        (FakeSelect, "chumpy.reordering", "Select"),
        (FakeOldCsc, "scipy.sparse.csc", "csc_matrix"),
    )
    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + struct.pack("<B", len(obj)) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def write_official_style_pkl(path: Path, arrays: dict) -> bytes:
    """Writes `arrays` the way the official MANO pickle stores them; returns the bytes."""
    rng = np.random.default_rng(1)
    shapedirs = arrays["shapedirs"]
    idxs = rng.permutation(shapedirs.size)  # Select picks x[idxs]: store x scrambled
    scrambled = np.empty(shapedirs.size)
    scrambled[idxs] = shapedirs.ravel()
    content = {"bs_style": b"lbs", "bs_type": b"lrotmin"}  # Python-2 str
    content.update(arrays)
    content["shapedirs"] = FakeSelect(FakeChOldStyle(scrambled), idxs, shapedirs.shape)
    content["J_regressor"] = FakeOldCsc(arrays["J_regressor"])
    content["J"] = FakeCh(arrays["J_regressor"] @ arrays["v_template"])
    buffer = io.BytesIO()
    Py2StylePickler(buffer, protocol=2).dump(content)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def pickle_globals(data: bytes) -> set:
    return {arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


def assert_models_equal(a, b):
    for name in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "faces",
                 "hands_components", "hands_mean"):
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.parents == b.parents and a.side == b.side


@pytest.fixture(scope="module")
def arrays():
    return random_official_arrays()


@pytest.fixture(scope="module")
def left_arrays():
    return random_official_arrays(side="left")


@pytest.fixture
def official_pkl(tmp_path, arrays):
    path = tmp_path / "MANO_RIGHT.pkl"
    write_official_style_pkl(path, arrays)
    return path


def write_npz(path: Path, arrays: dict) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


# ---------------------------------------------------------------------------------------------
# Reading the official format


def test_official_style_fixture_is_python2_style(tmp_path, arrays):
    data = write_official_style_pkl(tmp_path / "MANO_RIGHT.pkl", arrays)
    ops = {op.name for op, _, _ in pickletools.genops(data)}
    assert data[:2] == b"\x80\x02"
    assert {"BINSTRING", "SHORT_BINSTRING", "NEWOBJ"} <= ops
    names = pickle_globals(data)
    assert {"chumpy.ch Ch", "chumpy.reordering Select", "scipy.sparse.csc csc_matrix",
            "copy_reg _reconstructor", "__builtin__ object", "__builtin__ set",
            "numpy.core.multiarray _reconstruct"} <= names
    assert not any(n.startswith(("_codecs", "numpy._core")) for n in names)
    with pytest.raises(UnicodeDecodeError):  # the array bytes (before any chumpy) need latin1
        pickle.loads(data)  # noqa: S301 (our own bytes)


def test_load_arrays_resolves_chumpy_and_sparse_without_chumpy(official_pkl, arrays):
    assert "chumpy" not in sys.modules
    loaded = load_arrays(official_pkl)
    assert "chumpy" not in sys.modules
    assert loaded["bs_style"] == "lbs" and loaded["bs_type"] == "lrotmin"
    assert isinstance(loaded["shapedirs"], np.ndarray)
    assert scipy.sparse.issparse(loaded["J_regressor"])
    assert loaded["J_regressor"].format == "csc"
    np.testing.assert_array_equal(loaded["J_regressor"].toarray(), arrays["J_regressor"])
    np.testing.assert_array_equal(loaded["J"], arrays["J_regressor"] @ arrays["v_template"])
    for key, value in arrays.items():
        if key != "J_regressor":
            assert loaded[key].dtype == value.dtype, key
            np.testing.assert_array_equal(loaded[key], value, err_msg=key)


def test_load_model_equals_source(official_pkl, arrays):
    model = load_model(official_pkl)
    assert model.side == "right" and model.parents == MANO_PARENTS
    assert model.num_betas == NUM_BETAS
    f32 = lambda key: arrays[key].astype(np.float32)  # noqa: E731
    np.testing.assert_array_equal(model.v_template, f32("v_template"))
    np.testing.assert_array_equal(model.shapedirs, f32("shapedirs"))
    np.testing.assert_array_equal(model.posedirs, f32("posedirs"))
    np.testing.assert_array_equal(model.J_regressor, f32("J_regressor"))
    np.testing.assert_array_equal(model.weights, f32("weights"))
    np.testing.assert_array_equal(model.faces, arrays["f"].astype(np.int32))
    np.testing.assert_array_equal(model.hands_components, f32("hands_components"))
    np.testing.assert_array_equal(model.hands_mean, f32("hands_mean"))


# ---------------------------------------------------------------------------------------------
# Hostile pickles


class CallsOsSystem:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class CallsEval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w').close()",)


class CallsGetattr:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return getattr, (str(self.marker), "upper")


@pytest.mark.parametrize(
    "payload, refused",
    [(CallsOsSystem, "system"), (CallsEval, "eval"), (CallsGetattr, "getattr")],
)
def test_hostile_pickle_is_refused_before_running(tmp_path, arrays, payload, refused):
    marker = tmp_path / "marker"
    content = dict(arrays, shapedirs=payload(marker))
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(UnsafePickleError, match=rf"refused to load global .*{refused}") as info:
        load_model(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "data",
    [
        # BUILD on an allowed callable would let a pickle rewrite our helpers.
        b"\x80\x02ccopy_reg\n_reconstructor\n}X\x01\x00\x00\x00aK\x01sb.",
        # copy_reg._reconstructor with a base other than object would call base.__new__/__init__.
        b"\x80\x02ccopy_reg\n_reconstructor\ncchumpy.ch\nCh\ncnumpy\nndarray\nN\x87R.",
        # _codecs.encode with any codec other than latin-1.
        b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.",
    ],
)
def test_misuse_of_allowed_globals_is_refused(tmp_path, data):
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(data)
    with pytest.raises(UnsafePickleError):
        load_model(path)


def test_unsupported_chumpy_class_is_refused(tmp_path):
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(b"\x80\x02cchumpy.ch_ops\nadd\n.")
    with pytest.raises(UnsafePickleError, match=r"chumpy\.ch_ops\.add.*only chumpy Ch, Select"):
        load_model(path)


# ---------------------------------------------------------------------------------------------
# Validation and side


def test_missing_key_names_key_and_expected_shape(tmp_path, arrays):
    without_weights = {k: v for k, v in arrays.items() if k != "weights"}
    path = write_npz(tmp_path / "MANO_RIGHT.npz", without_weights)
    with pytest.raises(KeyError, match=r"'weights'.*\(778, 16\)"):
        load_model(path)


def test_wrong_shape_names_key_expected_and_found(tmp_path, arrays):
    path = write_npz(tmp_path / "MANO_RIGHT.npz", dict(arrays, hands_mean=np.zeros(44)))
    with pytest.raises(ValueError, match=r"'hands_mean' has shape \(44,\), expected \(45\)"):
        load_model(path)


def test_missing_file_and_unknown_extension(tmp_path):
    missing = tmp_path / "MANO_RIGHT.pkl"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_model(missing)
    other = tmp_path / "MANO_RIGHT.txt"
    other.write_text("x")
    with pytest.raises(ValueError, match=r"extension '\.txt'"):
        load_model(other)


def test_side_from_file_name_argument_and_contradiction(tmp_path, arrays, left_arrays):
    left = write_npz(tmp_path / "mano_left.npz", left_arrays)
    assert load_model(left).side == "left"
    neutral = write_npz(tmp_path / "hand.npz", arrays)
    with pytest.raises(ValueError, match=r"pass side='right' or side='left'"):
        load_model(neutral)
    assert load_model(neutral, side="right").side == "right"
    with pytest.raises(ValueError, match=r"side='right' contradicts the file name.*'left'"):
        load_model(left, side="right")
    with pytest.raises(ValueError, match=r"side must be 'right' or 'left', got 'up'"):
        load_model(neutral, side="up")


def test_fix_left_shapedirs_negates_x_row(tmp_path, arrays, left_arrays):
    path = write_npz(tmp_path / "MANO_LEFT.npz", left_arrays)
    plain = load_model(path)
    fixed = load_model(path, fix_left_shapedirs=True)
    np.testing.assert_array_equal(fixed.shapedirs[:, 0, :], -plain.shapedirs[:, 0, :])
    np.testing.assert_array_equal(fixed.shapedirs[:, 1:, :], plain.shapedirs[:, 1:, :])
    np.testing.assert_array_equal(fixed.v_template, plain.v_template)
    with pytest.raises(ValueError, match="left models only"):
        load_model(write_npz(tmp_path / "MANO_RIGHT.npz", arrays), fix_left_shapedirs=True)


def test_chirality_tells_the_procedural_sides_apart():
    right, left = procedural_arrays("right"), procedural_arrays("left")
    c_right = chirality(right["v_template"], right["J_regressor"])
    assert c_right < -0.2
    assert chirality(left["v_template"], left["J_regressor"]) == pytest.approx(-c_right)
    # unchanged by a rotation (official MANO files point the fingers along -x) and by units
    rot = np.array([[-1.0, 0, 0], [0, 1, 0], [0, 0, -1]])
    assert chirality(1000 * right["v_template"] @ rot.T, right["J_regressor"]) == pytest.approx(
        c_right)


def test_left_geometry_loaded_as_right_is_refused(tmp_path, left_arrays):
    message = r"loaded as a right hand, but its geometry .* is a left hand"
    with pytest.raises(ValueError, match=message):
        load_model(write_npz(tmp_path / "MANO_RIGHT.npz", left_arrays))
    neutral = write_npz(tmp_path / "hand.npz", left_arrays)
    with pytest.raises(ValueError, match=message):
        load_model(neutral, side="right")
    assert load_model(neutral, side="left").side == "left"


def test_millimetre_template_is_refused(tmp_path, arrays):
    v_template = 1000 * arrays["v_template"]
    path = write_npz(tmp_path / "MANO_RIGHT.npz", dict(arrays, v_template=v_template))
    with pytest.raises(ValueError, match=r"'v_template' spans 205 .*millimetres"):
        load_model(path)


def _one_negative_weight(weights):
    weights = weights.copy()
    weights[0] = 0.0
    weights[0, :2] = [-1.0, 2.0]
    return weights


@pytest.mark.parametrize("key, change, message", [
    ("J_regressor", np.zeros_like, r"'J_regressor': rows must sum to 1 .* row 0 sums to 0"),
    ("weights", lambda w: 2 * w, r"'weights': rows must sum to 1 .* sums to 2"),
    ("weights", _one_negative_weight, r"'weights': entries must be >= 0, row 0 holds -1"),
])
def test_rows_that_do_not_sum_to_one_are_refused(tmp_path, arrays, key, change, message):
    path = write_npz(tmp_path / "MANO_RIGHT.npz", dict(arrays, **{key: change(arrays[key])}))
    with pytest.raises(ValueError, match=message) as info:
        load_model(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------------------
# Writing


@pytest.mark.parametrize("save, suffix", [(save_npz, ".npz"), (save_pkl, ".pkl")])
def test_save_load_round_trip_is_exact(tmp_path, left_arrays, save, suffix):
    model = model_from_arrays(left_arrays, "left", source="test")
    written = save(model, tmp_path / f"MANO_LEFT{suffix}")
    assert written == tmp_path / f"MANO_LEFT{suffix}"
    assert_models_equal(load_model(written), model)
    assert [p.name for p in tmp_path.iterdir()] == [written.name]  # no temporary file left


def test_saved_pkl_is_official_format_for_plain_readers(tmp_path, arrays):
    model = model_from_arrays(arrays, "right", source="test")
    path = save_pkl(model, tmp_path / "MANO_RIGHT.pkl")
    data = path.read_bytes()
    assert data[:2] == b"\x80\x02"
    assert pickle_globals(data) <= {
        "numpy.core.multiarray _reconstruct", "numpy dtype", "numpy ndarray",
        "scipy.sparse csc_matrix", "_codecs encode", "copy_reg __newobj__",
    }
    content = pickle.loads(data, encoding="latin1")  # noqa: S301 (our own file)
    assert set(REQUIRED_SHAPES) | {"J", "bs_style", "bs_type"} == set(content)
    assert content["bs_style"] == "lbs" and content["bs_type"] == "lrotmin"
    assert isinstance(content["J_regressor"], scipy.sparse.csc_matrix)
    np.testing.assert_array_equal(content["J_regressor"].toarray(), arrays["J_regressor"])
    assert type(content["shapedirs"]) is np.ndarray
    np.testing.assert_array_equal(content["shapedirs"], arrays["shapedirs"])
    assert content["f"].dtype == np.uint32 and content["kintree_table"].dtype == np.int64
    assert content["kintree_table"][0, 0] == 2**32 - 1
    np.testing.assert_allclose(content["J"], arrays["J_regressor"] @ arrays["v_template"],
                               rtol=0, atol=1e-15)  # BLAS may sum in another order


def test_save_rejects_bad_arguments(tmp_path, arrays):
    model = model_from_arrays(arrays, "right", source="test")
    with pytest.raises(ValueError, match=r"ending in \.pkl"):
        save_pkl(model, tmp_path / "MANO_RIGHT.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_npz(model, tmp_path / "no_such_dir" / "MANO_RIGHT.npz")
    with pytest.raises(TypeError, match="MANOModel"):
        save_npz(arrays, tmp_path / "MANO_RIGHT.npz")


# ---------------------------------------------------------------------------------------------
# Command line


def run_convert(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-m", "mano_jax.convert", *map(str, args)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_convert_cli_pkl_to_npz(official_pkl, tmp_path, arrays):
    out = tmp_path / "MANO_RIGHT.npz"
    result = run_convert(official_pkl, out)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out} (side=right)" in result.stdout
    assert "shapedirs: (778, 3, 10)" in result.stdout
    assert_models_equal(load_model(out), load_model(official_pkl))


def test_convert_cli_bad_input_exits_2_with_message(tmp_path):
    missing = tmp_path / "MANO_RIGHT.pkl"
    result = run_convert(missing, tmp_path / "out.npz")
    assert result.returncode == 2
    assert "error: MANO file not found" in result.stderr and str(missing) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.npz").exists()
