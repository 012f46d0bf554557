"""Projections: THE pinhole camera and its intrinsics check, the weak-perspective camera and the
network's crop camera, and the least-squares weak-perspective fit of labels.

Conventions (the project's; hiu_jax/geometry/__init__.py): camera frame OpenCV (x right, y down,
z forward), metres. Pixel coordinates (u, v) = (column, row) with integer coordinates at pixel
CENTRES (`crops.pixel_centre`): pixel (c, r) covers [c - 0.5, c + 0.5] x [r - 0.5, r + 0.5], so
an image of width W spans u in [-0.5, W - 0.5]. Intrinsics K = [[fx, s, cx], [0, fy, cy],
[0, 0, 1]] in pixels map a camera-frame point X to (K X)[:2] / (K X)[2]; (cx, cy) is the
principal point in the same pixel-centre coordinates.

The array functions take `xp`, the array namespace (numpy, jax.numpy,
tensorflow.experimental.numpy), and use only operations the three share.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

PROJECTION_REF = 0.1  # metres: the network camera's s = 1 maps 0.1 m to half the crop


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


def check_intrinsics(K, *, batch=None, name: str = "K") -> np.ndarray:
    """Validates pinhole intrinsics; returns them as a NumPy float array of K's shape.

    K must be (3, 3), or (batch, 3, 3) / (3, 3) when `batch` is given: finite, with positive
    focal lengths K[0, 0] and K[1, 1], last row (0, 0, 1) (absolute tolerance 1e-6) and
    non-singular (|det K| > 1e-9 times the squared largest entry of K[:2, :2], a scale-free
    test). Raises ValueError naming `name`, the first bad matrix (when batched) and its values.
    """
    try:
        k = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array: {error}") from None
    shapes = [(3, 3)] + ([] if batch is None else [(batch, 3, 3)])
    if k.shape not in shapes:
        expected = " or ".join(str(s) for s in shapes)
        raise ValueError(f"{name} must have shape {expected}, got {k.shape}")
    flat = k.reshape(-1, 3, 3)

    def where(i):
        return name if k.ndim == 2 else f"{name}[{i}]"

    def first(bad):
        return int(np.argmax(bad))

    bad = ~np.all(np.isfinite(flat), axis=(1, 2))
    if np.any(bad):
        i = first(bad)
        raise ValueError(f"{where(i)} holds non-finite values: {flat[i].tolist()}")
    bad = ~((flat[:, 0, 0] > 0) & (flat[:, 1, 1] > 0))
    if np.any(bad):
        i = first(bad)
        raise ValueError(f"{where(i)} has non-positive focal length fx={flat[i, 0, 0]:.6g}, "
                         f"fy={flat[i, 1, 1]:.6g}")
    bad = ~np.all(np.abs(flat[:, 2] - [0.0, 0.0, 1.0]) <= 1e-6, axis=1)
    if np.any(bad):
        i = first(bad)
        raise ValueError(f"{where(i)} must be pinhole intrinsics [[fx, s, cx], [0, fy, cy], "
                         f"[0, 0, 1]]; its last row is {flat[i, 2].tolist()}")
    det = np.linalg.det(flat)
    scale = np.abs(flat[:, :2, :2]).max(axis=(1, 2)) ** 2
    bad = ~(np.abs(det) > 1e-9 * scale)
    if np.any(bad):
        i = first(bad)
        raise ValueError(f"{where(i)} is singular (det {det[i]:.3g}): {flat[i].tolist()}")
    return np.asarray(K) if np.issubdtype(np.asarray(K).dtype, np.floating) else k

def project_weak_perspective(points, scale, trans):
    """Weak-perspective (scaled orthographic) projection: uv = scale X_xy + trans.

    Args:
      points: (..., N, 3) metres (z is ignored).
      scale: (...) pixels per metre.
      trans: (..., 2) pixels.
    Returns:
      (..., N, 2) pixels.
    """
    return scale[..., None, None] * points[..., :2] + trans[..., None, :]


def crop_camera_projection(points, cam, crop_size: int):
    """The network's weak-perspective camera in crop pixels:

        uv = N/2 (1 + t + s X_xy / PROJECTION_REF),   cam = (s, tx, ty)

    with X root-relative metres, so s ~ 1 makes a PROJECTION_REF offset span half the crop of
    N = crop_size pixels. points (B, N, 3), cam (B, 3) -> (B, N, 2) crop pixels.
    """
    half = 0.5 * crop_size
    return project_weak_perspective(points, half / PROJECTION_REF * cam[..., 0],
                                    half * (1.0 + cam[..., 1:3]))


def weak_perspective_fit(keypoints_3d, keypoints_2d, visibility, crop_size: int):
    """The least-squares weak-perspective camera of the labels: (B, 3) = (s, tx, ty) minimising
    sum_j vis_j |crop_camera_projection(X_j) - uv_j|^2 (models.py's convention), with
    X root-relative metres (B, 21, 3) and uv crop pixels (B, 21, 2). Closed form: with
    a = N / 2, b = a / PROJECTION_REF and visibility-weighted means, s = cov(X_xy, uv) /
    (b var(X_xy)) and t = (mean(uv) - a - b s mean(X_xy)) / a. Also returns a (B,) validity
    mask: False where fewer than two distinct visible points pin the scale."""
    a = 0.5 * crop_size
    b = a / PROJECTION_REF
    w = visibility / jnp.maximum(jnp.sum(visibility, -1, keepdims=True), 1e-9)
    x, uv = keypoints_3d[..., :2], keypoints_2d
    xm = jnp.sum(w[..., None] * x, -2, keepdims=True)
    um = jnp.sum(w[..., None] * uv, -2, keepdims=True)
    var = jnp.sum(w * jnp.sum((x - xm) ** 2, -1), -1)
    cov = jnp.sum(w * jnp.sum((x - xm) * (uv - um), -1), -1)
    valid = var > 1e-8  # metres^2: at least two visible joints a tenth of a mm apart
    s = cov / (b * jnp.where(valid, var, 1.0))
    t = (um[..., 0, :] - a - b * s[..., None] * xm[..., 0, :]) / a
    return jnp.concatenate([s[..., None], t], -1), valid
