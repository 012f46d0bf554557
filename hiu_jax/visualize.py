"""Pictures of predictions: 2D skeleton, mask overlay and the shaded mesh over the image.

Shared by training (TensorBoard images), eval.py (the overlay page) and the inference demo.
Inputs are NumPy; images are float in [0, 1], (H, W, 3).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from hiu_jax import render
from hiu_jax.losses import BONES
from hiu_jax.geometry.cameras import PROJECTION_REF

FINGER_COLOURS = ((230, 60, 60), (240, 150, 40), (60, 180, 75), (50, 120, 230), (150, 80, 200))
MESH_DISTANCE = 10.0  # metres: the weak-perspective mesh is drawn by a far pinhole camera


def draw_skeleton(image, keypoints_2d, visibility=None, radius: float = 2.0):
    """The image with the 21-joint skeleton drawn on it. keypoints_2d: (21, 2) pixels."""
    canvas = Image.fromarray(_to_uint8(image))
    draw = ImageDraw.Draw(canvas)
    kp = np.asarray(keypoints_2d, np.float64)
    vis = np.ones(21) if visibility is None else np.asarray(visibility)
    for b, (i, j) in enumerate(BONES):
        if vis[i] > 0 and vis[j] > 0:
            draw.line([tuple(kp[i]), tuple(kp[j])], fill=FINGER_COLOURS[b // 4], width=2)
    for k, (u, v) in enumerate(kp):
        if vis[k] > 0:
            draw.ellipse([u - radius, v - radius, u + radius, v + radius], fill=(255, 255, 255))
    return np.asarray(canvas, np.float32) / 255.0


def overlay_mask(image, mask, colour=(0.1, 0.8, 0.3), alpha: float = 0.45):
    """The image tinted where mask > 0.5. mask: (H, W) or (H, W, 1), resized if needed."""
    img = np.asarray(image, np.float32)
    m = np.asarray(mask, np.float32).reshape(np.shape(mask)[:2])
    if m.shape != img.shape[:2]:
        m = np.asarray(Image.fromarray((m * 255).astype(np.uint8)).resize(
            (img.shape[1], img.shape[0]), Image.BILINEAR), np.float32) / 255.0
    on = (m > 0.5)[..., None]
    return np.where(on, (1 - alpha) * img + alpha * np.asarray(colour, np.float32), img)


def weak_perspective_camera(cam, crop_size: int):
    """The pinhole camera (K (3, 3), depth) that reproduces geometry.cameras.crop_camera_projection
    for root-relative points placed MESH_DISTANCE metres in front of it."""
    s, tx, ty = (float(c) for c in cam)
    f = 0.5 * crop_size * s / PROJECTION_REF * MESH_DISTANCE
    K = np.array([[f, 0, 0.5 * crop_size * (1 + tx)], [0, f, 0.5 * crop_size * (1 + ty)], [0, 0, 1]])
    return K, MESH_DISTANCE


def render_mesh_overlay(image, vertices, faces, cam, alpha: float = 0.7):
    """The predicted mesh (root-relative vertices (V, 3), weak-perspective cam (3,)), shaded
    and blended over the image (crop pixels)."""
    img = np.asarray(image, np.float32)
    size = img.shape[0]
    K, depth = weak_perspective_camera(cam, size)
    points = np.asarray(vertices, np.float64) + [0.0, 0.0, depth]
    if float(cam[0]) <= 0:  # a degenerate camera: nothing sensible to draw
        return img
    out = render.render(jnp.asarray(points[None], jnp.float32), faces, jnp.asarray(K, jnp.float32),
                        size, img.shape[1], light_dir=(0.3, -0.4, -1.0))
    rgb, mask = np.asarray(out["rgb"][0]), np.asarray(out["mask"][0])[..., None]
    return mask * ((1 - alpha) * img + alpha * rgb) + (1 - mask) * img


def panel(image, keypoints_2d, mask_prob, vertices, faces, cam):
    """One row: input + skeleton | mask overlay | mesh overlay, (H, 3 W, 3) in [0, 1]."""
    return np.concatenate([draw_skeleton(image, keypoints_2d), overlay_mask(image, mask_prob),
                           render_mesh_overlay(image, vertices, faces, cam)], axis=1)


def _to_uint8(image):
    return (np.clip(np.asarray(image, np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
