"""The two projections the renderer is fed with, with the renderer's argument checks: pinhole
`project_perspective` and weak-perspective `project_weak_perspective`. Their formulas, and the
pixel-centre convention (`pixel_centre`), are hiu_jax.geometry.cameras'.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from hiu_jax.geometry import cameras
from hiu_jax.render.checks import check_K, check_points


def project_perspective(points, K) -> jax.Array:
    """Pinhole projection: uv = (K @ X)[:2] / X_z.

    Args:
      points: (B, N, 3) camera-frame points in metres (z > 0 expected; not checked under jit).
      K: (3, 3) or (B, 3, 3) intrinsics with last row (0, 0, 1).
    Returns:
      (B, N, 2) pixel coordinates (pixel (col c, row r) centred at (c, r)).
    """
    points = check_points("points", points, 3)
    K = check_K(K, points.shape[0], points.dtype)
    return project(points, K)


def project(points, K):
    """`project_perspective` without the checks: (B, N, 3), (B, 3, 3) -> (B, N, 2)."""
    return cameras.project_pinhole(K, points)


def project_weak_perspective(points, scale, trans) -> jax.Array:
    """Weak-perspective (scaled orthographic) projection: uv = scale * X_xy + trans.

    The network's camera is expressed in crop pixels: `scale` in pixels per metre and `trans` in
    pixels, so uv are pixel coordinates of the crop (pixel (col c, row r) centred at (c, r)).

    Args:
      points: (B, N, 3) points in metres (z is ignored).
      scale: (B,) pixels per metre.
      trans: (B, 2) pixels.
    Returns:
      (B, N, 2) pixel coordinates.
    """
    points = check_points("points", points, 3)
    batch = points.shape[0]
    scale, trans = jnp.asarray(scale), jnp.asarray(trans)
    if scale.shape != (batch,):
        raise ValueError(f"scale must have shape ({batch},), got {scale.shape}")
    if trans.shape != (batch, 2):
        raise ValueError(f"trans must have shape ({batch}, 2), got {trans.shape}")
    return cameras.project_weak_perspective(points, scale, trans)
