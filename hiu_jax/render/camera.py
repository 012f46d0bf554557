"""Where pixels are, and how points reach them: the pixel-centre convention (`pixel_centre`) and
the two projections the renderer is fed with (pinhole `project_perspective`, weak-perspective
`project_weak_perspective`). The convention itself is stated in the package docstring.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from hiu_jax.render.checks import check_K, check_points


def pixel_centre(index, dtype) -> jax.Array:
    """The coordinate (u for a column, v for a row) of the centre of pixel `index`: the index
    itself. Pixel `index` covers [index - 0.5, index + 0.5].

    Args:
      index: int array of pixel columns or rows.
      dtype: float dtype of the result.
    """
    return jnp.asarray(index).astype(dtype)


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
    uvw = jnp.einsum("bij,bnj->bni", K, points)
    return uvw[..., :2] / points[..., 2:3]


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
    return scale[:, None, None] * points[..., :2] + trans[:, None, :]
