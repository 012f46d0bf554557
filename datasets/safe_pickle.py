"""Load dataset pickles (RHD annotations, HO-3D meta files) without executing code from them.

A pickle can call any importable function while it loads. `load` only lets a pickle rebuild plain
Python containers, numbers, strings, NumPy arrays, dtypes and NumPy scalars; any other global
(e.g. `os.system`, `copyreg._reconstructor`) raises pickle.UnpicklingError naming the file and the
global. Python-2 pickles load with encoding='latin1' (their byte strings hold raw array data).
"""
from __future__ import annotations

import codecs
import os
import pickle

import numpy as np

# (module, name) pairs a data pickle may reference. Python 2 pickles name 'numpy.core.*'; NumPy
# 2 moved those to 'numpy._core.*', so both spellings map to the same objects.
_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python 3 writes bytes into protocol 0-2 pickles as _codecs.encode(str, 'latin1'): pure data.
    ("_codecs", "encode"): codecs.encode,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = np._core.multiarray._reconstruct
    _ALLOWED[(_mod, "scalar")] = np._core.multiarray.scalar
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = np._core.numeric._frombuffer
# NumPy dtype classes such as numpy.dtypes.Float64DType appear in pickles written by NumPy >= 1.25.
for _name in dir(np.dtypes):
    if _name.endswith("DType"):
        _ALLOWED[("numpy.dtypes", _name)] = getattr(np.dtypes, _name)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f, path):
        super().__init__(f, encoding="latin1")
        self._path = path

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"{self._path}: refusing to load global '{module}.{name}' (only NumPy arrays, "
                "dtypes, scalars and plain Python data are allowed)"
            ) from None


def load(path: os.PathLike | str):
    """Unpickles the file at `path` allowing only data (see module docstring).

    Raises:
      FileNotFoundError if path does not exist; pickle.UnpicklingError (naming path) for a
      disallowed global or a corrupt file.
    """
    with open(path, "rb") as f:
        try:
            return _RestrictedUnpickler(f, path).load()
        except Exception as e:  # truncated or garbled bytes surface as many exception types
            if isinstance(e, pickle.UnpicklingError) and str(e).startswith(f"{path}: "):
                raise  # our own refusal, already names the file
            raise pickle.UnpicklingError(f"{path}: corrupt pickle ({type(e).__name__}: {e})") from e
