"""The project's one safe unpickler: MANO files, RHD annotations and HO-3D meta files.

    data = safe_pickle.load("MANO_RIGHT.pkl")    # plain data: dicts, lists, str, numbers, arrays

A pickle can call any callable it names, and NumPy's own reconstruction functions can build an
array of any dtype from raw bytes: an object-dtype array built that way holds forged pointers, and
touching it crashes the process. So this module never hands the unpickler a NumPy constructor.
`find_class` resolves only an allow-list of names, each mapped to an inert stand-in of ours:

- NumPy arrays (`_reconstruct` + `ndarray` + BUILD, protocol 5's `_frombuffer`), scalars
  (`scalar`) and dtypes (`dtype` + BUILD), under the old `numpy.core` and new `numpy._core` paths.
  Only bool, int, uint, float and complex dtypes are accepted; the array is rebuilt by our code
  as `np.frombuffer(bytes, dtype).copy()` after a size check, so no array from the file ever
  went through `ndarray.__setstate__`, and no dtype object from the file is ever used.
- `copy_reg._reconstructor` (base `object` only), `_codecs.encode` (latin-1 only), `object`,
  `set`, `frozenset` (chumpy pickles its dirty-variable set) and `bytes()` with no argument.
- scipy.sparse csc/csr/coo classes and the chumpy classes that only hold or reorder an array
  (`Ch`, `Select`, `Reshape`, `transpose`); after loading, our code rebuilds them as a validated
  scipy.sparse matrix or an ndarray.

Any other name, or a non-numeric dtype, raises `UnsafePickleError` naming the file; a file that
is otherwise malformed (truncated, inconsistent sizes) raises `CorruptPickleError` naming it.
"""
from __future__ import annotations

import math
import os
import pickle

import numpy as np
import scipy.sparse

NUMERIC_KINDS = "biufc"  # bool, int, uint, float, complex: plain bytes, no pointers inside
_MAX_NESTING = 32
_MAX_NDIM = 32


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global outside the allow-list, or asks for a non-numeric array."""


class CorruptPickleError(pickle.UnpicklingError, ValueError):
    """A pickle cannot be read: truncated, garbled, or with inconsistent array data."""


class _Refused(Exception):
    """Raised inside the unpickler; `load` adds the file name and raises UnsafePickleError."""


class _Malformed(Exception):
    """Raised inside the unpickler; `load` adds the file name and raises CorruptPickleError."""


# ---------------------------------------------------------------------------------------------
# Public API


def load(path: os.PathLike | str):
    """Unpickles the file at `path`, allowing only data (see the module docstring).

    Python-2 pickles load with encoding="latin1" (their byte strings hold raw array data).

    Returns:
      The pickled value with every array, dtype, chumpy object and sparse matrix rebuilt by our
      code: ndarrays of numeric dtype, np.dtype, NumPy scalars, scipy.sparse matrices, and plain
      Python containers, str, bytes and numbers.

    Raises:
      FileNotFoundError: `path` does not exist.
      UnsafePickleError: a refused global or dtype (the message names `path`); nothing from the
        file was called.
      CorruptPickleError (a pickle.UnpicklingError and a ValueError): any other failure, naming
        `path`.
    """
    source = str(path)
    with open(path, "rb") as f:
        try:
            raw = _Unpickler(f).load()
            return _resolve(raw, "", 0)
        except _Refused as err:
            raise UnsafePickleError(
                f"{source}: {err}. Nothing from the file was run; the file is corrupt, not the "
                "data expected, or malicious."
            ) from None
        except _Malformed as err:
            raise CorruptPickleError(f"{source}: corrupt pickle: {err}") from None
        except RecursionError:
            raise CorruptPickleError(f"{source}: corrupt pickle: nested too deeply") from None
        except Exception as err:  # truncated or garbled bytes surface as many exception types
            raise CorruptPickleError(
                f"{source}: corrupt pickle ({type(err).__name__}: {err})"
            ) from err


def numeric_dtype(spec, byteorder: str = "=") -> np.dtype:
    """A fresh np.dtype from a dtype string such as "f8"; refuses anything but NUMERIC_KINDS.

    Raises:
      _Refused: a non-numeric dtype (object, structured, sub-array, string, datetime, void).
      _Malformed: `spec` is not a dtype string.
    """
    if not isinstance(spec, str):
        raise _Malformed(f"a dtype is given as {type(spec).__name__}, expected a str like 'f8'")
    try:
        dtype = np.dtype(spec)
    except (TypeError, ValueError) as err:
        raise _Malformed(f"unknown dtype {spec!r} ({err})") from None
    if dtype.kind not in NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise _Refused(
            f"refused dtype {spec!r}: only bool, int, uint, float and complex arrays can be "
            "loaded"
        )
    if byteorder in "<>" and dtype.itemsize > 1:
        dtype = dtype.newbyteorder(byteorder)
    elif byteorder not in "|=":
        raise _Malformed(f"dtype {spec!r} has byte order {byteorder!r}")
    return dtype


# ---------------------------------------------------------------------------------------------
# Stand-ins: what the unpickler builds instead of NumPy, SciPy and chumpy objects


class _StandIn:
    """An inert placeholder that only stores its pickled state."""

    global_name = "?"

    def __setstate__(self, state):
        self.state = state

    def __reduce__(self):
        raise TypeError(f"a stand-in for {self.global_name} cannot be pickled")


class _Dtype(_StandIn):
    """numpy.dtype(spec, align, copy) as pickled, then BUILD with (version, byteorder, ...)."""

    global_name = "numpy.dtype"

    def __init__(self, spec=None, align=False, copy=True, *rest):
        self.spec = spec
        self.state = None

    def to_dtype(self) -> np.dtype:
        state = self.state
        byteorder = "="
        if state is not None:
            if not isinstance(state, tuple) or len(state) < 5 or state[0] != 3:
                raise _Malformed(
                    f"dtype {self.spec!r} has state {state!r:.80}, expected NumPy's version-3 "
                    "tuple (3, byteorder, ...)"
                )
            byteorder = state[1]
            if any(part is not None for part in state[2:5]):  # sub-array, names, fields
                raise _Refused(f"refused structured or sub-array dtype {self.spec!r}")
            # (elsize, alignment, flags) are (-1, -1, 0) for every numeric dtype; other values
            # would claim e.g. that the items hold Python objects.
            if tuple(state[5:8]) not in ((), (-1,), (-1, -1), (-1, -1, 0)):
                raise _Refused(
                    f"refused dtype {self.spec!r} with (elsize, alignment, flags) "
                    f"{tuple(state[5:8])}; a numeric dtype pickles (-1, -1, 0)"
                )
        if not isinstance(byteorder, str):
            raise _Malformed(f"dtype {self.spec!r} has byte order {byteorder!r}")
        return numeric_dtype(self.spec, byteorder)


def _as_dtype(value) -> np.dtype:
    if not isinstance(value, _Dtype):
        raise _Malformed(f"expected a pickled numpy.dtype, found {type(value).__name__}")
    return value.to_dtype()


class _Array(_StandIn):
    """An ndarray as pickled (`_reconstruct(ndarray, shape, typecode)` then BUILD); BUILD
    rebuilds it at once as a numeric ndarray in `self.array`."""

    global_name = "numpy.ndarray"

    def __init__(self, *args):
        raise _Refused("refused a direct call of numpy.ndarray(...)")

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Malformed(f"array state is a {type(state).__name__}, expected a tuple")
        if len(state) == 5:  # (version, shape, dtype, is_fortran, data); version 0 has 4 parts
            state = state[1:]
        shape, dtype, is_fortran, data = state
        self.array = _array_from_bytes(data, _as_dtype(dtype), shape, "F" if is_fortran else "C")


def _array_from_bytes(data, dtype: np.dtype, shape, order: str) -> np.ndarray:
    """A copy of `data` read as `dtype`, after checking its size against `shape`."""
    if isinstance(data, str):  # Python-2 str, read as latin-1 text
        data = data.encode("latin-1")
    if not isinstance(data, (bytes, bytearray)):
        raise _Refused(f"refused array data of type {type(data).__name__} (expected raw bytes)")
    if not isinstance(shape, tuple) or len(shape) > _MAX_NDIM or not all(
        isinstance(n, int) and n >= 0 for n in shape
    ):
        raise _Malformed(f"array shape {shape!r} is not a tuple of non-negative ints")
    if math.prod(shape) * dtype.itemsize != len(data):
        raise _Malformed(
            f"array of shape {shape} and dtype {dtype} needs {math.prod(shape) * dtype.itemsize} "
            f"bytes, the file holds {len(data)}"
        )
    flat = np.frombuffer(bytes(data), dtype=dtype).copy()
    if dtype.kind == "b":  # a bool byte other than 0/1 is not a valid NumPy bool
        flat = flat.view(np.uint8) != 0
    return flat.reshape(shape, order=order)


def _reconstruct(cls, shape, typecode):
    """numpy.core.multiarray._reconstruct, for plain ndarrays only (BUILD fills them in)."""
    if cls is not _Array:
        raise _Refused(f"refused _reconstruct of {getattr(cls, '__name__', cls)!r}")
    return object.__new__(_Array)


def _frombuffer(data, dtype, shape, order):
    """numpy.core.numeric._frombuffer (protocol 5, in-band buffers only)."""
    stand_in = object.__new__(_Array)
    if order not in ("C", "F"):
        raise _Malformed(f"array order {order!r}")
    stand_in.array = _array_from_bytes(data, _as_dtype(dtype), shape, order)
    return stand_in


def _scalar(dtype, data=None):
    """numpy.core.multiarray.scalar: one numeric value from its bytes."""
    dtype = _as_dtype(dtype)
    array = _array_from_bytes(data, dtype, (), "C")
    return array[()]


class _ChumpyStandIn(_StandIn):
    pass


class _Ch(_ChumpyStandIn):
    global_name = "chumpy.ch.Ch"


class _Select(_ChumpyStandIn):
    global_name = "chumpy.reordering.Select"


class _Reshape(_ChumpyStandIn):
    global_name = "chumpy.reordering.Reshape"


class _Transpose(_ChumpyStandIn):
    global_name = "chumpy.reordering.transpose"


class _Sparse(_StandIn):
    sparse_format = "?"


def _sparse_stand_in(fmt: str, name: str) -> type:
    return type(f"_{name}", (_Sparse,), {"global_name": name, "sparse_format": fmt})


# ---------------------------------------------------------------------------------------------
# Small allowed callables


class _AllowedCallable:
    """An allowed callable that a pickle cannot modify (BUILD on it is refused)."""

    __slots__ = ("_fn",)

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, *args):
        return self._fn(*args)

    def __setstate__(self, state):
        raise _Refused(f"refused to modify the allowed callable {self._fn.__name__}")


def _object_reconstructor(cls, base, state):
    """copy_reg._reconstructor restricted to `object.__new__(chumpy or sparse stand-in)` (how
    protocols 0-1 pickle plain Python objects such as chumpy's)."""
    if base is not object or state is not None or not (
        isinstance(cls, type) and issubclass(cls, (_ChumpyStandIn, _Sparse))
    ):
        raise _Refused(
            "copy_reg._reconstructor is allowed only for chumpy and scipy.sparse classes with "
            f"base object and no state, got base {base!r}"
        )
    return object.__new__(cls)


def _latin1_encode(text, encoding="utf-8"):
    """_codecs.encode as Python 3 writes bytes in protocol 0-2 pickles: str -> latin-1 bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise _Refused(f"_codecs.encode is allowed only for latin-1 str, got {encoding!r}")
    return text.encode("latin-1")


def _empty_bytes():
    """builtins.bytes as Python 3 writes an empty bytes object in protocol 0-2 pickles."""
    return b""


def _allowed_globals() -> dict:
    """(module, name) as written in the pickle -> the object we hand to the unpickler."""
    allowed = {("numpy", "ndarray"): _Array, ("numpy", "dtype"): _Dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = _AllowedCallable(_reconstruct)
        allowed[(f"{core}.multiarray", "scalar")] = _AllowedCallable(_scalar)
        allowed[(f"{core}.numeric", "_frombuffer")] = _AllowedCallable(_frombuffer)
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
    allowed[("chumpy.ch", "Ch")] = _Ch
    allowed[("chumpy", "Ch")] = _Ch
    allowed[("chumpy.reordering", "Select")] = _Select
    allowed[("chumpy.reordering", "Reshape")] = _Reshape
    allowed[("chumpy.reordering", "transpose")] = _Transpose
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()


class _Unpickler(pickle.Unpickler):
    """Resolves only `_ALLOWED_GLOBALS`. `find_class` sees the names exactly as written (Python 2
    pickles say `copy_reg`, `__builtin__`), so both spellings are in the allow-list."""

    def __init__(self, file):
        super().__init__(file, encoding="latin1")

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            pass
        hint = ""
        if str(module).startswith("chumpy"):
            hint = " (only chumpy Ch, Select, Reshape and transpose objects can be read)"
        raise _Refused(
            f"refused to load global {module}.{name}: not on the allow-list (numeric NumPy "
            f"arrays, scipy.sparse matrices, chumpy arrays, plain Python data){hint}"
        )

    def persistent_load(self, pid):
        raise _Refused("refused a persistent id")


# ---------------------------------------------------------------------------------------------
# Stand-ins -> values


def _resolve(value, where: str, depth: int):
    """Replaces stand-ins, also inside lists, tuples, sets and dicts, by values of our own."""
    if depth > _MAX_NESTING:
        raise _Malformed(f"{where or 'the value'} nests deeper than {_MAX_NESTING} levels")
    if isinstance(value, _Array):
        if not hasattr(value, "array"):
            raise _Malformed(f"{where or 'the value'}: an array was pickled without its data")
        return value.array
    if isinstance(value, _Dtype):
        return value.to_dtype()
    if isinstance(value, _ChumpyStandIn):
        return _chumpy_to_array(value, where, depth)
    if isinstance(value, _Sparse):
        return _sparse_from_state(value, where, depth)
    if isinstance(value, _StandIn) or type(value) is object:
        raise _Malformed(f"{where or 'the value'}: an incomplete {type(value).__name__} object")
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(_resolve(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
    if isinstance(value, dict):
        return {
            _resolve(k, where, depth + 1): _resolve(v, f"{where}[{k!r}]", depth + 1)
            for k, v in value.items()
        }
    return value


def _term(obj: _StandIn, name: str, where: str, depth: int):
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        raise _Malformed(f"{where}: {obj.global_name} was pickled without a state dict")
    if name not in state:
        raise _Malformed(
            f"{where}: {obj.global_name} has no {name!r} in its pickled state "
            f"(found {sorted(map(str, state))})"
        )
    return _resolve(state[name], where, depth + 1)


def _chumpy_to_array(obj: _ChumpyStandIn, where: str, depth: int) -> np.ndarray:
    """The value (`.r`) of a chumpy Ch / Select / Reshape / transpose, computed from its state."""

    def operand(name):
        value = _term(obj, name, where, depth)
        if not (isinstance(value, (np.ndarray, np.generic, int, float))
                and np.asarray(value).dtype.kind in NUMERIC_KINDS):
            raise _Malformed(
                f"{where}: {obj.global_name}.{name} is a {type(value).__name__}, expected a "
                "numeric array or a chumpy array"
            )
        return np.asarray(value)

    try:
        if isinstance(obj, _Ch):
            return operand("x")
        if isinstance(obj, _Select):
            idxs = np.asarray(_term(obj, "idxs", where, depth))
            if idxs.dtype.kind not in "iu":
                raise ValueError(f"Select.idxs has dtype {idxs.dtype}, expected integers")
            result = operand("a").ravel()[idxs]
            if "preferred_shape" in obj.state:
                shape = _resolve(obj.state["preferred_shape"], where, depth + 1)
                result = result.reshape(tuple(int(n) for n in shape))
            return result
        if isinstance(obj, _Reshape):
            newshape = _term(obj, "newshape", where, depth)
            return operand("a").reshape(newshape)
        if isinstance(obj, _Transpose):
            axes = _resolve(obj.state.get("axes"), where, depth + 1)
            return np.ascontiguousarray(np.transpose(operand("a"), axes))
    except (_Malformed, _Refused):
        raise
    except (IndexError, TypeError, ValueError) as err:
        raise _Malformed(f"{where}: cannot evaluate {obj.global_name}: {err}") from None
    raise _Malformed(f"{where}: cannot evaluate {obj.global_name}")


def _sparse_from_state(obj: _Sparse, where: str, depth: int):
    """A scipy.sparse matrix rebuilt from the pickled attribute dict, fully validated."""
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        raise _Malformed(f"{where}: {obj.global_name} was pickled without a state dict")

    def numeric(name, kinds=NUMERIC_KINDS):
        value = np.asarray(_term(obj, name, where, depth))
        if value.dtype.kind not in kinds:
            raise _Malformed(f"{where}: {obj.global_name}.{name} has dtype {value.dtype}")
        return value

    shape_key = "_shape" if "_shape" in state else "shape"  # SciPy < 0.14 stored `shape`
    try:
        shape = tuple(int(n) for n in _term(obj, shape_key, where, depth))
        data = numeric("data")
        if obj.sparse_format == "coo":
            if "coords" in state:  # SciPy >= 1.13
                row, col = (np.asarray(c) for c in _term(obj, "coords", where, depth))
            else:
                row, col = numeric("row", "iu"), numeric("col", "iu")
            if row.dtype.kind not in "iu" or col.dtype.kind not in "iu":
                raise ValueError("coordinates are not integers")
            return scipy.sparse.coo_matrix((data, (row, col)), shape=shape)
        cls = scipy.sparse.csc_matrix if obj.sparse_format == "csc" else scipy.sparse.csr_matrix
        matrix = cls((data, numeric("indices", "iu"), numeric("indptr", "iu")), shape=shape)
        matrix.check_format(full_check=True)  # bounds of every index, before anything reads them
        return matrix
    except (_Malformed, _Refused):
        raise
    except (IndexError, TypeError, ValueError) as err:
        raise _Malformed(f"{where}: invalid {obj.global_name}: {err}") from None
