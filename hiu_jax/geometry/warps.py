"""Image warps: the bilinear resampling that cuts a crop out of an image.

One definition for the tf.data pipeline (xp = tensorflow.experimental.numpy), for inference
(numpy) and for JAX (jax.numpy): pixel centres at integers (hiu_jax/geometry/__init__.py).
"""
from __future__ import annotations

import numpy as np

from hiu_jax.geometry import crops


def warp_bilinear(image, A_inv, crop_size: int, *, xp=np):
    """Crop pixel (column x, row y) samples `image` bilinearly at A_inv [x, y, 1]; 0 outside.

    Args:
      image: (H, W, C) float.
      A_inv: (3, 3) affine from crop pixels to image pixels (last row [0, 0, 1]).
      crop_size: N, the output's side in pixels.
    Returns:
      (N, N, C), image's dtype. Equal to tf.raw_ops.ImageProjectiveTransformV3 (BILINEAR,
      CONSTANT 0) up to float rounding.
    """
    h, w, c = image.shape[0], image.shape[1], image.shape[2]
    if h is None or w is None:  # a TF tensor of dynamic size (tf.data): its run-time size
        import tensorflow as tf

        h, w = tf.shape(image)[0], tf.shape(image)[1]
    g = xp.arange(crop_size, dtype=A_inv.dtype)
    sx = A_inv[0, 0] * g[None, :] + A_inv[0, 1] * g[:, None] + A_inv[0, 2]
    sy = A_inv[1, 0] * g[None, :] + A_inv[1, 1] * g[:, None] + A_inv[1, 2]
    x0, y0 = xp.floor(sx), xp.floor(sy)
    fx = xp.asarray((sx - x0)[..., None], dtype=image.dtype)
    fy = xp.asarray((sy - y0)[..., None], dtype=image.dtype)
    x0, y0 = xp.asarray(x0, dtype=xp.int32), xp.asarray(y0, dtype=xp.int32)
    flat = xp.reshape(image, (-1, c))

    def tap(dy, dx):
        xi, yi = x0 + dx, y0 + dy
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        index = xp.clip(yi, 0, h - 1) * w + xp.clip(xi, 0, w - 1)
        return xp.take(flat, index, axis=0) * xp.asarray(inside, dtype=image.dtype)[..., None]

    top = tap(0, 0) + (tap(0, 1) - tap(0, 0)) * fx
    bottom = tap(1, 0) + (tap(1, 1) - tap(1, 0)) * fx
    return top + (bottom - top) * fy


def crop_image(image, S, crop_size: int) -> np.ndarray:
    """The crop (N, N, C) float32 of a NumPy image (H, W, C) under the image-to-crop matrix S
    (3, 3) (`crops.crop_matrix`): `warp_bilinear` by S^-1, computed in float64; 0 outside
    the image. N = crop_size."""
    inverse = crops.invert_affine(np.asarray(S, np.float64))
    return warp_bilinear(np.asarray(image, np.float64), inverse, crop_size).astype(np.float32)
