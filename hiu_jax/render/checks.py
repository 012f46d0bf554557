"""Argument validation shared by the renderer's public functions.

Each check raises ValueError naming the argument at fault. Values known now (not traced) are also
checked for finiteness and range; under `jax.jit` only shapes and dtypes are checked.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hiu_jax.geometry.projection import check_intrinsics


def concrete(x):
    """`x` as a numpy array when its value is known now, or None when it is traced."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def check_points(name: str, points, last: int) -> jax.Array:
    """(B, N, last) floating, finite points with B >= 1."""
    points = jnp.asarray(points)
    if points.ndim != 3 or points.shape[-1] != last or points.shape[0] < 1:
        raise ValueError(f"{name} must have shape (B, N, {last}) with B >= 1, got {points.shape}")
    if not jnp.issubdtype(points.dtype, jnp.floating):
        raise ValueError(f"{name} must be floating point, got dtype {points.dtype}")
    value = concrete(points)
    if value is not None and not np.all(np.isfinite(value)):
        raise ValueError(f"{name} holds non-finite values")
    return points


def check_faces(faces, num_vertices: int) -> jax.Array:
    """(F, 3) integer vertex indices in 0..num_vertices - 1, as int32."""
    faces = jnp.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.shape[0] < 1:
        raise ValueError(f"faces must have shape (F, 3) with F >= 1, got {faces.shape}")
    if not jnp.issubdtype(faces.dtype, jnp.integer):
        raise ValueError(f"faces must be integer, got dtype {faces.dtype}")
    value = concrete(faces)
    if value is not None and (value.min() < 0 or value.max() >= num_vertices):
        raise ValueError(
            f"faces index vertices {value.min()}..{value.max()}, outside 0..{num_vertices - 1}"
        )
    return faces.astype(jnp.int32)


def check_K(K, batch: int, dtype) -> jax.Array:
    """(3, 3) or (B, 3, 3) pinhole intrinsics -> (B, 3, 3) of `dtype`. Their values are checked
    by hiu_jax.geometry.projection.check_intrinsics when known (not under jit)."""
    K = jnp.asarray(K)
    if K.shape not in ((3, 3), (batch, 3, 3)):
        raise ValueError(f"K must have shape (3, 3) or ({batch}, 3, 3), got {K.shape}")
    value = concrete(K)
    if value is not None:
        check_intrinsics(value, batch=batch)
    return jnp.broadcast_to(K.astype(dtype), (batch, 3, 3))


def check_positive_int(name: str, value) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive Python int, got {value!r}")


def check_image_and_tiles(height, width, tile_size, tiles_per_step) -> None:
    """The static sizes every rasteriser takes: positive Python ints."""
    for name, value in (("height", height), ("width", width), ("tile_size", tile_size),
                        ("tiles_per_step", tiles_per_step)):
        check_positive_int(name, value)


def check_positive(name: str, value) -> None:
    """All of `value` > 0 when it is known now (not checked under jit)."""
    value_now = concrete(value)
    if value_now is not None and not np.all(value_now > 0):
        raise ValueError(f"{name} must be positive, got {value_now}")


def per_image(name: str, value, batch: int, dtype) -> jax.Array:
    """A scalar or (B,) parameter as a (B,) array."""
    value = jnp.asarray(value, dtype)
    if value.shape not in ((), (batch,)):
        raise ValueError(f"{name} must be a scalar or have shape ({batch},), got {value.shape}")
    return jnp.broadcast_to(value, (batch,))
