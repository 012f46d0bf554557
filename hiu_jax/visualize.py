"""Every picture of predictions: 2D skeleton, mask overlay, the shaded mesh over the image, the
panel of the three, and infer.py's overlay of a crop in its image.

Shared by training (TensorBoard images), eval.py (the overlay page, report.py) and infer.py.
Inputs are NumPy; images are float in [0, 1], (H, W, 3); pixel convention of hiu_jax/geometry.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from hiu_jax import render
from hiu_jax.geometry import crops, skeleton, warps
from hiu_jax.geometry.projection import PROJECTION_REF
from hiu_jax.geometry.skeleton import BONES

FINGER_COLOURS = ((230, 60, 60), (240, 150, 40), (60, 180, 75), (50, 120, 230), (150, 80, 200))
MESH_DISTANCE = 10.0  # metres: the weak-perspective mesh is drawn by a far pinhole camera
OVERLAY_CONTEXT = 1.25  # the overlay's left picture: the crop square enlarged by this factor


def to_uint8(image) -> np.ndarray:
    """float [0, 1] -> uint8 (rounded, clipped)."""
    return (np.clip(np.asarray(image, np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)


def draw_skeleton(image, keypoints_2d, visibility=None, radius: float = 2.0):
    """The image with the 21-joint skeleton drawn on it. keypoints_2d: (21, 2) pixels."""
    canvas = Image.fromarray(to_uint8(image))
    draw = ImageDraw.Draw(canvas)
    kp = np.asarray(keypoints_2d, np.float64)
    vis = np.ones(skeleton.NUM_KEYPOINTS) if visibility is None else np.asarray(visibility)
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
    """The pinhole camera (K (3, 3), depth) that reproduces
    geometry.projection.crop_camera_projection for root-relative points placed MESH_DISTANCE metres in front of it."""
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


def resize(image, width: int, height: int) -> np.ndarray:
    """The image (H, W, 3) in [0, 1] resized bilinearly to (height, width, 3) float32."""
    if image.shape[1] == width and image.shape[0] == height:
        return np.asarray(image, np.float32)
    return np.asarray(Image.fromarray(to_uint8(image)).resize((width, height), Image.BILINEAR),
                      np.float32) / 255.0


def display_panel(crop, pred: dict, faces, size: int) -> np.ndarray:
    """`panel` drawn at `size` x `size` per picture: the crop (N, N, 3) is resized first and
    the keypoints pred["keypoints_2d"] (21, 2) crop pixels moved to the resized grid (the
    weak-perspective camera is relative to the crop size, so it needs no change); pred also
    holds "mask_prob", "vertices", "cam". -> (size, 3 size, 3) in [0, 1]."""
    kp = crops.crop_to_heatmap(np.asarray(pred["keypoints_2d"], np.float64), crop.shape[0], size)
    return panel(resize(crop, size, size), kp, pred["mask_prob"], pred["vertices"], faces,
                 pred["cam"])


def overlay_image(image, S, crop, pred, faces, display: int = 256) -> np.ndarray:
    """[the crop square in its image with some context, skeleton and square drawn | crop:
    skeleton | mask | mesh], (D, 4 D, 3) in [0, 1], D = max(display, crop size).

    image (H, W, 3); S (3, 3) the image-to-crop matrix of `crop` (N, N, 3); pred as in
    `display_panel`. The left picture is warped from the image around the crop
    (OVERLAY_CONTEXT x its side, black outside the image), so memory and time are bounded by
    D, whatever the image's size or aspect ratio (scaling a 1 x 4000 image to D rows took
    14.5 GB)."""
    n = crop.shape[0]
    d = max(display, n)
    row = display_panel(crop, pred, faces, d)
    to_image = crops.invert_affine(np.asarray(S, np.float64))
    corners = crops.apply_affine(to_image, np.array([[-0.5, -0.5], [n - 0.5, n - 0.5]]))
    view = crops.crop_matrix(corners.mean(0), OVERLAY_CONTEXT * (corners[1, 0] - corners[0, 0]),
                             d)
    kp = crops.apply_affine(to_image, np.asarray(pred["keypoints_2d"], np.float64))
    left = draw_skeleton(warps.crop_image(image, view, d), crops.apply_affine(view, kp))
    canvas = Image.fromarray(to_uint8(left))
    (x0, y0), (x1, y1) = crops.apply_affine(view, corners)
    ImageDraw.Draw(canvas).rectangle([x0, y0, x1, y1], outline=(255, 255, 0), width=2)
    return np.concatenate([np.asarray(canvas, np.float32) / 255.0, row], axis=1)
