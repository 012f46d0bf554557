"""Validated point sets: the checks every metric and file reader applies to (N, P, D) arrays
and to per-sample JSON lists, and FreiHAND's submission file pred.json.

Errors name the array or file, the sample, the point and the value at fault: a user's file is
refused in one line instead of being scored. Coordinates read from files are metres; values
beyond `MAX_ABS_COORDINATE_M` are refused as wrong units (e.g. millimetres).
"""
from __future__ import annotations

import json
import numbers
import os
from typing import Optional, Sequence

import numpy as np

from hiu_jax.geometry.skeleton import NUM_KEYPOINTS

# Largest |coordinate| a 3D point read from a file may have: a hand is within metres of the
# camera; 100 m leaves room for any real scene and catches wrong units (mm = 1000x) and garbage.
MAX_ABS_COORDINATE_M = 100.0


def _first_non_finite(x: np.ndarray) -> Optional[tuple]:
    """Index tuple of the first non-finite entry of `x`, or None."""
    bad = np.argwhere(~np.isfinite(x))
    return None if len(bad) == 0 else tuple(int(i) for i in bad[0])


def _check_range(name: str, x: np.ndarray, max_abs: Optional[float], sample=None) -> None:
    """Raises ValueError naming the sample, point and value of the first |x| > max_abs."""
    if max_abs is None:
        return
    bad = np.argwhere(np.abs(x) > max_abs)
    if len(bad):
        at = tuple(int(i) for i in bad[0])
        where = f"sample {at[0]}, point {at[1]}" if sample is None else \
            f"sample {sample}, point {at[0]}"
        raise ValueError(f"{name}: {where} has coordinate {x[at]:.6g}, beyond the physical "
                         f"range +-{max_abs:g} m (wrong units, e.g. millimetres?)")


def _numbers_array(item) -> np.ndarray:
    """float64 array of `item`, whose leaves must be real numbers: np.asarray(.., float) would
    silently turn the str "1.5" and the bool true into numbers.

    Raises:
      TypeError: a leaf is a str, bool or other non-number (the message names its type).
      ValueError: ragged nesting.
    """
    if isinstance(item, np.ndarray) and item.dtype != object:
        if item.dtype.kind not in "iuf":
            raise TypeError(f"holds {item.dtype} values, expected numbers")
        return item.astype(np.float64)
    leaves = np.asarray(item, dtype=object)
    for kind in set(map(type, leaves.ravel())):
        if not issubclass(kind, numbers.Real) or issubclass(kind, (bool, np.bool_)):
            example = next(v for v in leaves.ravel() if type(v) is kind)
            if isinstance(example, (list, tuple)):
                raise ValueError("ragged nesting")
            raise TypeError(f"holds {kind.__name__} values (e.g. {example!r:.40}), expected "
                            "numbers")
    return leaves.astype(np.float64)


def check_points(name: str, x, num_points: Optional[int] = None,
                 num_samples: Optional[int] = None, dims: int = 3,
                 max_abs: Optional[float] = None) -> np.ndarray:
    """Validates a batch of point sets and returns it as float64.

    Args:
      name: what `x` is, for the error messages.
      x: (N, P, dims) array-like.
      num_points: required P, or None for any P >= 1.
      num_samples: required N, or None.
      max_abs: refuse |coordinate| > max_abs (e.g. `MAX_ABS_COORDINATE_M`); None: no limit.
    Raises:
      ValueError naming `name` and the found shape, the sample count, or the sample, point and
      value of the first non-finite or out-of-range entry.
    """
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: not a numeric array ({e})") from None
    want = f"(N, {num_points if num_points is not None else 'P'}, {dims})"
    if x.ndim != 3 or x.shape[2] != dims or x.shape[1] == 0:
        raise ValueError(f"{name}: expected shape {want}, found {x.shape}")
    if num_points is not None and x.shape[1] != num_points:
        raise ValueError(f"{name}: expected shape {want}, found {x.shape}")
    if num_samples is not None and x.shape[0] != num_samples:
        raise ValueError(f"{name}: {x.shape[0]} samples, expected {num_samples}")
    bad = _first_non_finite(x)
    if bad is not None:
        raise ValueError(f"{name}: sample {bad[0]} has a non-finite value ({x[bad]}) at point "
                         f"{bad[1]}, coordinate {bad[2]}")
    _check_range(name, x, max_abs)
    return x


def stack_samples(name: str, samples: Sequence, num_points: Optional[int] = None,
                  dims: int = 3, max_abs: Optional[float] = MAX_ABS_COORDINATE_M) -> np.ndarray:
    """Stacks N per-sample point sets (each (P, dims), e.g. from JSON) into (N, P, dims) float64.

    Args:
      name: what the list is, for the error messages (e.g. "pred.json keypoints").
      samples: sequence of N array-likes of numbers (str and bool are refused).
      num_points: required P, or None: then every sample must have sample 0's P.
      max_abs: refuse |coordinate| > max_abs (metres by default); None: no limit.
    Raises:
      ValueError naming the index and found shape of the first malformed sample (ragged, wrong
      shape, non-numeric), or the index, point and value of the first non-finite or
      out-of-range entry.
    """
    if len(samples) == 0:
        raise ValueError(f"{name}: no samples")
    arrays = []
    for i, s in enumerate(samples):
        try:
            a = _numbers_array(s)
        except TypeError as e:
            raise ValueError(f"{name}: sample {i} {e}") from None
        except ValueError:
            raise ValueError(f"{name}: sample {i} is not a rectangular numeric array") from None
        p = num_points if num_points is not None else (arrays[0].shape[0] if arrays else None)
        if (a.ndim != 2 or a.shape[1] != dims or a.shape[0] == 0
                or (p is not None and a.shape[0] != p)):
            want = f"({p if p is not None else 'P'}, {dims})"
            raise ValueError(f"{name}: sample {i} has shape {a.shape}, expected {want}")
        bad = _first_non_finite(a)
        if bad is not None:
            raise ValueError(f"{name}: sample {i} has a non-finite value ({a[bad]}) at point "
                             f"{bad[0]}, coordinate {bad[1]}")
        _check_range(name, a, max_abs, sample=i)
        arrays.append(a)
    return np.stack(arrays)


# --------------------------------------------------------------------------- pred.json


def write_pred_json(path: str, xyz_list, verts_list) -> None:
    """Writes a FreiHAND submission: the JSON list [xyz_list, verts_list], metres, evaluation order.

    Args:
      xyz_list: N array-likes (21, 3); verts_list: N array-likes (V, 3) (778 for MANO).
    Values are written as float64 (Python's shortest round-trip repr), so `read_pred_json`
    returns exactly the float64 values written. Raises ValueError (naming the sample) on
    mismatched counts, shapes or non-finite values; nothing is written then.
    """
    if len(xyz_list) != len(verts_list):
        raise ValueError(f"{len(xyz_list)} keypoint sets but {len(verts_list)} meshes")
    xyz = stack_samples("xyz_list", xyz_list, NUM_KEYPOINTS)
    verts = stack_samples("verts_list", verts_list)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump([xyz.tolist(), verts.tolist()], f, allow_nan=False)
    os.replace(tmp, path)


def read_json(path: str):
    """The JSON value in the UTF-8 file `path`.

    Raises:
      OSError: the file cannot be opened.
      ValueError naming `path`: not UTF-8, not valid JSON, or nested too deeply for the parser.
    """
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") \
                from None
        except RecursionError:
            raise ValueError(f"{path}: JSON nested too deeply to read") from None


def read_pred_json(path: str) -> tuple[list, list]:
    """Reads a FreiHAND submission written by `write_pred_json` (or the official ``pred.py``).

    Returns:
      (xyz_list, verts_list): lists of float64 arrays, (21, 3) and (V, 3) expected, in metres;
      shapes and values are not validated here (see `stack_samples`), only the layout.
    Raises:
      ValueError if the file is not UTF-8 JSON of the form [list, list], or a sample is not a
      rectangular array of numbers (str and bool are refused; naming the list and index).
    """
    data = read_json(path)
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(d, list) for d in data)):
        raise ValueError(f"{path}: expected a JSON list [xyz_list, verts_list]")
    out = []
    for name, items in zip(("keypoints", "vertices"), data):
        arrays = []
        for i, item in enumerate(items):
            try:
                arrays.append(_numbers_array(item))
            except TypeError as e:
                raise ValueError(f"{path}: {name} sample {i} {e}") from None
            except ValueError:
                raise ValueError(f"{path}: {name} sample {i} is not a rectangular numeric "
                                 "array") from None
        out.append(arrays)
    return out[0], out[1]
