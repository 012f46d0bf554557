"""Pixel grids and crops: pixel centres, the hand-crop rule, crop matrices and affine maps,
crop <-> heat-map coordinates.

Pixel convention (the project's only one; see hiu_jax/geometry/__init__.py): pixel (c, r) has
its centre at (u, v) = (c, r). A crop of N pixels spans [-0.5, N - 0.5]; a heat map of M pixels
spans [-0.5, M - 0.5] over the same area, so h = (p + 0.5) M / N - 0.5.

Array functions take `xp`, the array namespace (numpy, jax.numpy, tensorflow.experimental.numpy),
and use only operations the three share.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def pixel_centre(index, dtype, *, xp=jnp):
    """The coordinate (u of a column, v of a row) of the centre of pixel `index`: the index
    itself, as `dtype`. Pixel `index` covers [index - 0.5, index + 0.5]. The one place where
    the convention is code: the rasterisers sample at these points."""
    return xp.asarray(index).astype(dtype)


def crop_matrix(center, side, crop_size: int, *, xp=np):
    """The affine S (3, 3) mapping the square of side `side` pixels centred on `center` (2,)
    onto an N x N crop: center -> ((N - 1) / 2, (N - 1) / 2) (the crop's middle, pixel centres
    at integers) and `side` -> N pixels. center and side in image pixels; float."""
    a = crop_size / side
    t = (crop_size - 1) / 2.0 - a * center
    zero, one = xp.zeros_like(a), xp.ones_like(a)
    return xp.stack([xp.stack([a, zero, t[0]]), xp.stack([zero, a, t[1]]),
                     xp.stack([zero, zero, one])])


def box_center_size(lo, hi, *, xp=np):
    """A hand box [lo, hi] ((2,) each: (u, v) of its corners, image pixels) -> (its centre (2,),
    its size (): max(width, height))."""
    return 0.5 * (lo + hi), xp.max(hi - lo)


def hand_crop_side(size, padding, min_side, *, xp=np):
    """The hand-crop rule, the one the pipeline trains with and inference finds hands with: the
    square crop around a hand box of size `size` (max(width, height), pixels) has the side
    padding * size (config pipeline.crop_padding), at least min_side pixels
    (pipeline.min_box_size); centred on the box, it is cut by `crop_matrix`."""
    return xp.maximum(size * padding, min_side)


def apply_affine(A, points, *, xp=np):
    """A (3, 3) with last row [0, 0, 1] applied to points (..., 2) -> (..., 2)."""
    return xp.einsum("ij,...j->...i", A[:2, :2], points) + A[:2, 2]


def invert_affine(A, *, xp=np):
    """The inverse of an affine A (3, 3) with last row [0, 0, 1], in closed form."""
    a, b, c, d = A[0, 0], A[0, 1], A[1, 0], A[1, 1]
    det = a * d - b * c
    linear = xp.stack([xp.stack([d, -b]), xp.stack([-c, a])]) / det
    t = -xp.einsum("ij,j->i", linear, A[:2, 2])
    zero, one = xp.zeros_like(det), xp.ones_like(det)
    return xp.stack([xp.stack([linear[0, 0], linear[0, 1], t[0]]),
                     xp.stack([linear[1, 0], linear[1, 1], t[1]]),
                     xp.stack([zero, zero, one])])


def crop_to_heatmap(p, crop_size: int, heatmap_size: int):
    """Crop pixel coordinates p (any shape) -> heat-map coordinates: h = (p + 0.5) M / N - 0.5,
    M = heatmap_size, N = crop_size (the two pixel grids cover the same area)."""
    return (p + 0.5) * (heatmap_size / crop_size) - 0.5


def heatmap_to_crop(h, crop_size: int, heatmap_size: int):
    """Inverse of crop_to_heatmap: p = (h + 0.5) N / M - 0.5."""
    return (h + 0.5) * (crop_size / heatmap_size) - 0.5
