"""Training targets at heat-map resolution: Gaussian heat maps and Part Orientation Fields (POF).

Pure TF functions (float32), used by datasets/preprocess.py. Coordinates are heat-map pixels
(hiu_jax.geometry.crops.crop_to_heatmap maps crop pixels onto them); pixel (c, r) has its
centre at (c, r). Bones and their order: hiu_jax.geometry.skeleton.BONES (POF channel 3 b + k
is axis k of bone b).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from hiu_jax.geometry import skeleton


def gaussian_heatmaps(points, visibility, size: int, sigma: float):
    """points (J, 2) heat-map coordinates, visibility (J,) 0/1 -> (size, size, J) f32 with
    exp(-|x - p|^2 / (2 sigma^2)) (peak 1 at the point), 0 where visibility is 0. Separable."""
    g = tf.range(size, dtype=tf.float32)[:, None]  # (size, 1)
    gx = tf.exp(-tf.square(g - points[:, 0]) / (2.0 * sigma**2))  # (size, J), index = x
    gy = tf.exp(-tf.square(g - points[:, 1]) / (2.0 * sigma**2)) * visibility  # index = y
    return gy[:, None, :] * gx[None, :, :]


def _pixel_features(size: int) -> np.ndarray:
    """(size * size, 4) f32 rows [x, y, x^2 + y^2, 1] of the heat-map pixels, row-major (y, x)."""
    g = np.arange(size, dtype=np.float64)
    px, py = np.meshgrid(g, g)  # px varies along axis 1
    return np.stack([px.ravel(), py.ravel(), (px**2 + py**2).ravel(), np.ones(size * size)],
                    1).astype(np.float32)


def part_orientation_fields(keypoints_2d, keypoints_3d, valid, size: int, width: float):
    """Part Orientation Fields of the 20 skeleton.BONES.

    Args:
      keypoints_2d: (21, 2) f32 heat-map coordinates of the joints.
      keypoints_3d: (21, 3) f32 joints (any frame whose directions the POF should carry).
      valid: () bool; False gives all-zero outputs.
      size: heat-map side M; width: half-width in heat-map pixels.
    Returns:
      pof (M, M, 60) f32: at pixels within `width` of the 2D segment parent -> child, channels
        3b..3b+2 hold the unit 3D direction of child - parent; 0 elsewhere.
      weight (M, M, 20) f32: 1 at those pixels, 0 elsewhere (and for bones of 3D length < 1e-6).

    Distance of pixel p to segment a + t (b - a), t in [0, 1]: with s = (p - a).(b - a) / |b - a|^2
    and t = clip(s, 0, 1), dist^2 = |p - a|^2 - |b - a|^2 t (2 s - t). Both s and |p - a|^2 are
    linear in the pixel features [x, y, x^2 + y^2, 1], so one (M^2, 4) x (4, 40) matmul gives
    them for all pixels and bones; the POF is weight (M^2, 20) x a block matrix (20, 60).
    """
    num_bones = skeleton.NUM_BONES
    a = tf.gather(keypoints_2d, skeleton.BONE_PARENTS)  # (20, 2)
    ab = tf.gather(keypoints_2d, skeleton.BONE_CHILDREN) - a
    d3 = (tf.gather(keypoints_3d, skeleton.BONE_CHILDREN)
          - tf.gather(keypoints_3d, skeleton.BONE_PARENTS))  # (20, 3)
    length = tf.norm(d3, axis=-1)
    direction = d3 / tf.maximum(length, 1e-6)[:, None]
    ab2 = tf.maximum(tf.reduce_sum(tf.square(ab), -1), 1e-12)
    zeros, ones = tf.zeros_like(ab2), tf.ones_like(ab2)
    w_s = tf.stack([ab[:, 0], ab[:, 1], zeros, -tf.reduce_sum(a * ab, -1)]) / ab2  # (4, 20)
    w_d = tf.stack([-2.0 * a[:, 0], -2.0 * a[:, 1], ones, tf.reduce_sum(a * a, -1)])
    sd = tf.constant(_pixel_features(size)) @ tf.concat([w_s, w_d], 1)  # (M^2, 40)
    s, d2 = sd[:, :num_bones], sd[:, num_bones:]
    t = tf.clip_by_value(s, 0.0, 1.0)
    dist2 = d2 - ab2 * t * (2.0 * s - t)
    ok = tf.cast((length > 1e-6) & valid, tf.float32)
    weight = tf.cast(dist2 <= width**2, tf.float32) * ok  # (M^2, 20)
    # block[b, 3 b' + k] = direction[b, k] if b == b' else 0.
    block = tf.reshape(tf.eye(num_bones)[:, :, None] * direction[:, None, :],
                       (num_bones, 3 * num_bones))
    pof = tf.reshape(weight @ block, (size, size, 3 * num_bones))
    return pof, tf.reshape(weight, (size, size, num_bones))
