"""The pinhole camera: THE one perspective projection of the project.

Conventions (DESIGN.md): camera frame OpenCV (x right, y down, z forward), metres. Pixel
coordinates (u, v) = (column, row) with integer coordinates at pixel CENTRES: pixel (c, r) covers
[c - 0.5, c + 0.5] x [r - 0.5, r + 0.5], so an image of width W spans u in [-0.5, W - 0.5].
Intrinsics K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]] in pixels map a camera-frame point X to
(K X)[:2] / (K X)[2]; (cx, cy) is the principal point in the same pixel-centre coordinates.
"""
from __future__ import annotations

import jax.numpy as jnp


def project_pinhole(K, points, *, min_depth=None, xp=None):
    """Pinhole projection of camera-frame points to pixels.

    Args:
      K: (..., 3, 3) intrinsics, pixels; leading axes broadcast against those of `points`.
      points: (..., N, 3) camera-frame points (OpenCV: x right, y down, z forward), metres.
      min_depth: optional lower bound (metres, for K's last row (0, 0, 1)) on the depth
        (K X)[2] that divides; points nearer than it or behind the camera then give large but
        finite pixels and gradients (the fit uses 1e-3). None divides by the depth as it is.
      xp: the array namespace: jax.numpy (default), numpy or tensorflow.experimental.numpy;
        only xp.einsum, xp.maximum and slicing are used, so the result keeps the inputs' type.
    Returns:
      (..., N, 2) pixel coordinates (u, v), integer values at pixel centres.
    """
    xp = jnp if xp is None else xp
    camera = xp.einsum("...ab,...nb->...na", K, points)
    depth = camera[..., 2:]
    if min_depth is not None:
        depth = xp.maximum(depth, min_depth)
    return camera[..., :2] / depth
