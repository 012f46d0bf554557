"""Reading and writing official MANO files (.pkl and .npz) without chumpy and without trusting them.

    model = load_model("MANO_RIGHT.pkl")             # side from the file name
    model = load_model("hand.npz", side="left", fix_left_shapedirs=True)
    save_npz(model, "MANO_RIGHT.npz");  save_pkl(model, "MANO_RIGHT_clean.pkl")

The official files are Python-2 pickles (reference/mano.md, section 2.1): `shapedirs` is a chumpy
object, `J_regressor` a scipy.sparse csc matrix. A pickle can run any callable it names, so this
module never uses the stock unpickler. `_SafeUnpickler` resolves only an allow-list of globals:

- NumPy array, dtype and scalar reconstruction (old `numpy.core` and new `numpy._core` paths);
- `copy_reg._reconstructor` (base `object` only), `_codecs.encode` (latin-1 only), `object`,
  `set`, `frozenset` (chumpy pickles its dirty-variable set) and `bytes()` with no argument;
- scipy.sparse csc/csr/coo classes and the chumpy classes that only hold or reorder an array
  (`Ch`, `Select`, `Reshape`, `transpose`). Both map to inert stand-ins of ours that only store
  their pickled state; after loading, the stand-ins are turned into arrays by our own code.

Any other global raises `UnsafePickleError` before anything from the file is called.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import scipy.sparse

from mano_jax import model as mano_model
from mano_jax.model import SIDES, MANOModel, model_from_arrays, model_to_arrays

SUFFIXES = (".pkl", ".npz")
_MAX_NESTING = 32


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global that is not on the allow-list of a MANO file."""


class _BadStateError(ValueError):
    """A stand-in's pickled state is not what its class pickles; the message is complete."""


# ---------------------------------------------------------------------------------------------
# Public API


def load_model(path, side: str | None = None, *, fix_left_shapedirs: bool = False) -> MANOModel:
    """Loads an official MANO file (.pkl, as distributed, or .npz with the same keys).

    Args:
      path: str or os.PathLike, e.g. "MANO_RIGHT.pkl" or "mano_left.npz".
      side: "right" or "left"; if None, read from the file name ("right"/"left" as a word, any
        case). A side that contradicts the file name is an error.
      fix_left_shapedirs: negate `shapedirs[:, 0, :]`, the known sign bug of MANO_LEFT.pkl (see
        `mano_jax.model.fix_left_shapedirs`). Only valid for a left model.

    Returns:
      A `MANOModel` in JAX's float dtype (float32 unless x64 is on); units are the file's (metres).

    Raises:
      FileNotFoundError: `path` does not exist.
      ValueError: unknown extension, undecidable or contradicting side, unreadable file, a key
        with the wrong shape or values.
      KeyError: a required key is missing.
      UnsafePickleError: the pickle names a global outside the allow-list.
    """
    path = _check_path(path)
    side = _resolve_side(path, side)
    if fix_left_shapedirs and side != "left":
        raise ValueError(
            f"{path}: fix_left_shapedirs=True applies to left models only, but side is {side!r}"
        )
    model = model_from_arrays(load_arrays(path), side, source=str(path))
    return mano_model.fix_left_shapedirs(model) if fix_left_shapedirs else model


def load_arrays(path) -> dict:
    """The raw dict of an official MANO file, with every chumpy object turned into an ndarray.

    Args:
      path: a .pkl (Python-2 or -3 pickle, read with latin-1 strings) or a .npz (read without
        pickle support).

    Returns:
      dict from key to value as stored: ndarrays, a scipy.sparse matrix for a sparse
      `J_regressor`, str for `bs_style`/`bs_type` (0-d str arrays in an .npz).

    Raises:
      FileNotFoundError, ValueError, UnsafePickleError: as `load_model`.
    """
    path = _check_path(path)
    if path.suffix.lower() == ".npz":
        return _read_npz(path)
    return _read_pkl(path)


def side_from_name(path) -> str | None:
    """The side a file name states: "right"/"left" if exactly one is a word in it (any case).

    "MANO_RIGHT.pkl" -> "right"; "mano_left.npz" -> "left"; "hand.npz" -> None (also if both).
    """
    name = Path(path).name.lower()
    found = [s for s in SIDES if re.search(rf"(?<![a-z]){s}(?![a-z])", name)]
    return found[0] if len(found) == 1 else None


def official_arrays(model: MANOModel) -> dict:
    """The dict an official file holds for `model`: `REQUIRED_SHAPES` keys plus `J`, `bs_style`,
    `bs_type`. Float arrays float64, `f` uint32, `kintree_table` int64 with 2**32-1 at the root,
    `J_regressor` dense (16, 778), `J` = J_regressor @ v_template (16, 3) metres.
    """
    if not isinstance(model, MANOModel):
        raise TypeError(f"expected a mano_jax.MANOModel, got {type(model).__name__}")
    arrays = model_to_arrays(model)
    arrays["J"] = arrays["J_regressor"] @ arrays["v_template"]
    arrays["bs_style"] = "lbs"
    arrays["bs_type"] = "lrotmin"
    return arrays


def save_npz(model: MANOModel, path) -> Path:
    """Writes `official_arrays(model)` as an uncompressed .npz (no pickled objects). Returns path.

    The side is not stored: name the file with RIGHT/LEFT (e.g. MANO_RIGHT.npz) or pass `side=`
    when loading.
    """
    arrays = official_arrays(model)
    path = _check_output_path(path, ".npz")
    _write_atomically(path, lambda f: np.savez(f, **arrays))
    return path


def save_pkl(model: MANOModel, path) -> Path:
    """Writes an official-format, chumpy-free MANO pickle (protocol 2). Returns path.

    The dict holds `official_arrays(model)` with `J_regressor` as a scipy.sparse.csc_matrix and
    `shapedirs` as a plain ndarray. Globals are written under names that old and new readers
    resolve: `numpy.core.multiarray._reconstruct` (NumPy 1.x and 2.x) and
    `scipy.sparse.csc_matrix` (every SciPy version), so smplx/manopth environments with an old
    NumPy read it with `pickle.load(f, encoding="latin1")`, as does `load_model`.
    """
    arrays = official_arrays(model)
    arrays["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
    path = _check_output_path(path, ".pkl")
    _write_atomically(path, lambda f: _LegacyNamePickler(f, protocol=2).dump(arrays))
    return path


# ---------------------------------------------------------------------------------------------
# Paths and sides


def _check_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(
            f"{path}: unknown MANO file extension {path.suffix!r}; expected one of {SUFFIXES}"
        )
    if not path.exists():
        raise FileNotFoundError(
            f"MANO file not found: {path} (the official MANO_RIGHT.pkl / MANO_LEFT.pkl come "
            "from https://mano.is.tue.mpg.de)"
        )
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    return path


def _resolve_side(path: Path, side) -> str:
    named = side_from_name(path)
    if side is None:
        if named is None:
            raise ValueError(
                f"{path}: cannot tell the hand side from the file name (no single 'right' or "
                "'left' in it); pass side='right' or side='left'"
            )
        return named
    if not isinstance(side, str) or side.lower() not in SIDES:
        raise ValueError(f"{path}: side must be 'right' or 'left', got {side!r}")
    side = side.lower()
    if named is not None and named != side:
        raise ValueError(f"{path}: side={side!r} contradicts the file name, which says {named!r}")
    return side


def _check_output_path(path, suffix: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise ValueError(f"{path}: expected a file name ending in {suffix}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: directory {path.parent} does not exist")
    return path


def _write_atomically(path: Path, write) -> None:
    """Writes through a temporary file in the same directory, so `path` is never left half-done."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ---------------------------------------------------------------------------------------------
# .npz


def _read_npz(path: Path) -> dict:
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as err:  # any failure to open is a problem with this file
        raise ValueError(f"{path}: not a readable .npz archive ({err})") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: expected an .npz archive, found a single .npy array")
    with archive:
        arrays = {}
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError as err:  # object arrays need pickle, which we refuse
                raise ValueError(f"{path}: key {key!r} cannot be read safely ({err})") from err
    return arrays


# ---------------------------------------------------------------------------------------------
# .pkl: the restricted unpickler


class _AllowedCallable:
    """An allowed callable that a pickle cannot modify (BUILD on it is refused)."""

    __slots__ = ("_fn",)

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, *args):
        return self._fn(*args)

    def __setstate__(self, state):
        raise UnsafePickleError(f"the pickle tries to modify the allowed callable {self._fn}")


def _object_reconstructor(cls, base, state):
    """copy_reg._reconstructor restricted to `object.__new__(cls)` (how protocols 0-1 pickle
    plain Python objects such as chumpy's)."""
    if base is not object or state is not None:
        raise UnsafePickleError(
            f"copy_reg._reconstructor is allowed only with base object and no state, got base "
            f"{base!r}"
        )
    return object.__new__(cls)


def _latin1_encode(text, encoding):
    """_codecs.encode as Python 3 writes bytes in protocol-2 pickles: str -> latin-1 bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError(f"_codecs.encode is allowed only for latin-1 str, got {encoding!r}")
    return text.encode("latin-1")


def _empty_bytes():
    """builtins.bytes as Python 3 writes an empty bytes object in protocol-2 pickles."""
    return b""


class _StandIn:
    """An inert placeholder for an object of a class we never import; keeps its pickled state."""

    global_name = "?"

    def __setstate__(self, state):
        self.state = state

    def __reduce__(self):
        raise TypeError(f"a stand-in for {self.global_name} cannot be pickled")


class _ChumpyStandIn(_StandIn):
    pass


class _ChStandIn(_ChumpyStandIn):
    global_name = "chumpy.ch.Ch"


class _SelectStandIn(_ChumpyStandIn):
    global_name = "chumpy.reordering.Select"


class _ReshapeStandIn(_ChumpyStandIn):
    global_name = "chumpy.reordering.Reshape"


class _TransposeStandIn(_ChumpyStandIn):
    global_name = "chumpy.reordering.transpose"


class _SparseStandIn(_StandIn):
    sparse_format = "?"


def _sparse_stand_in(fmt: str, name: str) -> type:
    return type(
        f"_{name}StandIn", (_SparseStandIn,), {"global_name": name, "sparse_format": fmt}
    )


def _allowed_globals() -> dict:
    """(module, name) as written in the pickle -> the object we hand to the unpickler."""
    # The reconstruction functions NumPy itself pickles arrays with, whatever its version.
    reconstruct = np.ndarray((0,)).__reduce__()[0]
    scalar = np.float64(0.0).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    for builtins in ("__builtin__", "builtins"):
        allowed[(builtins, "object")] = object
        allowed[(builtins, "set")] = set
        allowed[(builtins, "frozenset")] = frozenset
        allowed[(builtins, "bytes")] = _AllowedCallable(_empty_bytes)
    for copyreg in ("copy_reg", "copyreg"):
        allowed[(copyreg, "_reconstructor")] = _AllowedCallable(_object_reconstructor)
    allowed[("_codecs", "encode")] = _AllowedCallable(_latin1_encode)
    for fmt in ("csc", "csr", "coo"):
        for kind in ("matrix", "array"):
            stand_in = _sparse_stand_in(fmt, f"{fmt}_{kind}")
            modules = ["scipy.sparse", f"scipy.sparse._{fmt}"]
            if kind == "matrix":  # the pre-1.8 module paths only ever held the *_matrix classes
                modules.append(f"scipy.sparse.{fmt}")
            for module in modules:
                allowed[(module, f"{fmt}_{kind}")] = stand_in
    allowed[("chumpy.ch", "Ch")] = _ChStandIn
    allowed[("chumpy", "Ch")] = _ChStandIn
    allowed[("chumpy.reordering", "Select")] = _SelectStandIn
    allowed[("chumpy.reordering", "Reshape")] = _ReshapeStandIn
    allowed[("chumpy.reordering", "transpose")] = _TransposeStandIn
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `_ALLOWED_GLOBALS`; `source` names the file in errors.

    `find_class` sees the names exactly as written (Python 2 pickles say `copy_reg`,
    `__builtin__`), so both spellings are in the allow-list.
    """

    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            pass
        hint = ""
        if str(module).startswith("chumpy"):
            hint = " (only chumpy Ch, Select, Reshape and transpose objects can be read)"
        raise UnsafePickleError(
            f"{self._source}: refused to load global {module}.{name}: not on the allow-list for "
            f"MANO files (NumPy arrays, scipy.sparse matrices, chumpy arrays){hint}. Nothing from "
            "the file was run; the file is corrupt, not a MANO model, or malicious."
        )

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._source}: persistent ids are not allowed in MANO files")


def _read_pkl(path: Path) -> dict:
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = _SafeUnpickler(f, source).load()
    except UnsafePickleError:
        raise
    except Exception as err:  # whatever else goes wrong, the file is at fault; say which
        raise ValueError(
            f"{path}: not a readable MANO pickle ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a pickled dict of arrays, found {type(data).__name__}")
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise ValueError(f"{path}: keys must be str, found {bad_keys[:3]!r}")
    return {key: _resolve(value, source, key) for key, value in data.items()}


# ---------------------------------------------------------------------------------------------
# Stand-ins -> arrays


def _resolve(value, source: str, key: str, depth: int = 0):
    """Replaces stand-ins, also inside lists, tuples and dicts, by ndarrays / sparse matrices."""
    if depth > _MAX_NESTING:
        raise _BadStateError(
            f"{source}: key {key!r}: values nest deeper than {_MAX_NESTING} levels"
        )
    if isinstance(value, _ChumpyStandIn):
        return _chumpy_to_array(value, source, key, depth)
    if isinstance(value, _SparseStandIn):
        return _sparse_from_state(value, source, key)
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v, source, key, depth + 1) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v, source, key, depth + 1) for k, v in value.items()}
    return value


def _term(obj: _StandIn, name: str, source: str, key: str):
    state = obj.state if hasattr(obj, "state") else None
    if not isinstance(state, dict):
        raise _BadStateError(
            f"{source}: key {key!r}: {obj.global_name} was pickled without a state dict"
        )
    if name not in state:
        raise _BadStateError(
            f"{source}: key {key!r}: {obj.global_name} has no {name!r} in its pickled state "
            f"(found {sorted(map(str, state))})"
        )
    return state[name]


def _chumpy_to_array(obj, source: str, key: str, depth: int) -> np.ndarray:
    """The value (`.r`) of a chumpy Ch / Select / Reshape / transpose, computed from its state."""
    if depth > _MAX_NESTING:
        raise _BadStateError(
            f"{source}: key {key!r}: values nest deeper than {_MAX_NESTING} levels"
        )

    def operand(name):
        value = _term(obj, name, source, key)
        if isinstance(value, _ChumpyStandIn):
            return _chumpy_to_array(value, source, key, depth + 1)
        numeric = isinstance(value, (np.ndarray, np.generic, int, float))
        if not (numeric and np.issubdtype(np.asarray(value).dtype, np.number)):
            raise _BadStateError(
                f"{source}: key {key!r}: {obj.global_name}.{name} is a {type(value).__name__}, "
                "expected a numeric array or a chumpy array"
            )
        return np.asarray(value)

    try:
        if isinstance(obj, _ChStandIn):
            return operand("x")
        if isinstance(obj, _SelectStandIn):
            idxs = np.asarray(_term(obj, "idxs", source, key))
            if not np.issubdtype(idxs.dtype, np.integer):
                raise ValueError(f"Select.idxs has dtype {idxs.dtype}, expected integers")
            result = operand("a").ravel()[idxs]
            state = obj.state
            if "preferred_shape" in state:
                result = result.reshape(tuple(int(n) for n in state["preferred_shape"]))
            return result
        if isinstance(obj, _ReshapeStandIn):
            newshape = _term(obj, "newshape", source, key)
            return operand("a").reshape(newshape)
        if isinstance(obj, _TransposeStandIn):
            axes = obj.state.get("axes") if isinstance(obj.state, dict) else None
            return np.ascontiguousarray(np.transpose(operand("a"), axes))
    except _BadStateError:
        raise
    except (IndexError, TypeError, ValueError) as err:
        raise _BadStateError(
            f"{source}: key {key!r}: cannot evaluate {obj.global_name}: {err}"
        ) from err
    raise _BadStateError(f"{source}: key {key!r}: cannot evaluate {obj.global_name}")


def _sparse_from_state(obj: _SparseStandIn, source: str, key: str):
    """A scipy.sparse matrix rebuilt from the pickled attribute dict, fully validated."""
    state = obj.state if hasattr(obj, "state") else None
    if not isinstance(state, dict):
        raise _BadStateError(
            f"{source}: key {key!r}: {obj.global_name} was pickled without a state dict"
        )
    shape_key = "_shape" if "_shape" in state else "shape"  # SciPy < 0.14 stored `shape`
    try:
        shape = tuple(int(n) for n in _term(obj, shape_key, source, key))
        data = np.asarray(_term(obj, "data", source, key))
        if obj.sparse_format == "coo":
            if "coords" in state:  # SciPy >= 1.13
                row, col = state["coords"]
            else:
                row, col = _term(obj, "row", source, key), _term(obj, "col", source, key)
            return scipy.sparse.coo_matrix((data, (np.asarray(row), np.asarray(col))), shape=shape)
        cls = scipy.sparse.csc_matrix if obj.sparse_format == "csc" else scipy.sparse.csr_matrix
        indices = np.asarray(_term(obj, "indices", source, key))
        indptr = np.asarray(_term(obj, "indptr", source, key))
        matrix = cls((data, indices, indptr), shape=shape)
        matrix.check_format(full_check=True)  # bounds of every index, before anything reads them
        return matrix
    except _BadStateError:
        raise
    except (IndexError, TypeError, ValueError) as err:
        raise _BadStateError(f"{source}: key {key!r}: invalid {obj.global_name}: {err}") from err


# ---------------------------------------------------------------------------------------------
# Writing pickles that old readers understand


class _LegacyNamePickler(pickle._Pickler):
    """The pure-Python pickler, writing a few globals under names every reader resolves.

    NumPy 2 pickles arrays via `numpy._core.multiarray._reconstruct`, which NumPy < 1.26 cannot
    import; SciPy >= 1.8 names `scipy.sparse._csc.csc_matrix`, which SciPy < 1.8 lacks. The
    C pickler offers no hook to rename a global, hence the Python one (the files are small).
    """

    _NAMES = (
        (np.ndarray((0,)).__reduce__()[0], "numpy.core.multiarray", "_reconstruct"),
        (np.float64(0.0).__reduce__()[0], "numpy.core.multiarray", "scalar"),
        (scipy.sparse.csc_matrix, "scipy.sparse", "csc_matrix"),
    )

    def save_global(self, obj, name=None):
        for known, module, qualname in self._NAMES:
            if obj is known:
                self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("ascii"))
                self.memoize(obj)
                return
        super().save_global(obj, name)
