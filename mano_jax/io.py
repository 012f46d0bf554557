"""Reading and writing official MANO files (.pkl and .npz) without chumpy and without trusting them.

    model = load_model("MANO_RIGHT.pkl")             # side from the file name
    model = load_model("hand.npz", side="left", fix_left_shapedirs=True)
    save_npz(model, "MANO_RIGHT.npz");  save_pkl(model, "MANO_RIGHT_clean.pkl")

The official files are Python-2 pickles of a dict (read with encoding latin1): `shapedirs` is a chumpy
object, `J_regressor` a scipy.sparse csc matrix. A pickle can run any callable it names, so this
module reads them with `mano_jax.safe_pickle`, the project's one safe unpickler: numeric NumPy
arrays, scipy.sparse matrices and the chumpy classes that only hold or reorder an array, all
rebuilt by our own code; any other global or dtype raises `UnsafePickleError` before anything from
the file is called.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import scipy.sparse

from mano_jax import model as mano_model
from mano_jax import safe_pickle
from mano_jax.safe_pickle import UnsafePickleError
from mano_jax.model import SIDES, MANOModel, model_from_arrays, model_to_arrays

SUFFIXES = (".pkl", ".npz")
__all__ = ["UnsafePickleError", "load_arrays", "load_model", "official_arrays", "save_npz",
           "save_pkl", "side_from_name"]


# ---------------------------------------------------------------------------------------------
# Public API


def load_model(path, side: str | None = None, *, fix_left_shapedirs: bool = False) -> MANOModel:
    """Loads an official MANO file (.pkl, as distributed, or .npz with the same keys).

    Args:
      path: str or os.PathLike, e.g. "MANO_RIGHT.pkl" or "mano_left.npz".
      side: "right" or "left"; if None, read from the file name ("right"/"left" as a word, any
        case). A side that contradicts the file name, or the geometry (which side of the palm
        the thumb is on), is an error.
      fix_left_shapedirs: negate `shapedirs[:, 0, :]`, the known sign bug of MANO_LEFT.pkl (see
        `mano_jax.model.fix_left_shapedirs`). Only valid for a left model.

    Returns:
      A `MANOModel` in JAX's float dtype (float32 unless x64 is on); units are the file's (metres).

    Raises:
      FileNotFoundError: `path` does not exist.
      ValueError: unknown extension, undecidable or contradicting side (from the name, the
        argument or the geometry), unreadable file, a key with the wrong shape or values, a hand
        not in metres (see `mano_jax.model.check_hand_geometry`).
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
    mano_model.check_hand_geometry(model, source=str(path))
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
# .pkl


def _read_pkl(path: Path) -> dict:
    data = safe_pickle.load(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a pickled dict of arrays, found {type(data).__name__}")
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise ValueError(f"{path}: keys must be str, found {bad_keys[:3]!r}")
    return data


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
