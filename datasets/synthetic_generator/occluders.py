"""Occluders: objects drawn over the hand (sticks/pens, balls, boxes, blobs), textured from the
background bank and shaded with a gradient, with a binary alpha so the mask stays exact:
mask = hand pixels not covered by any occluder."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

PROBABILITY = 0.35  # share of samples with occluders
KINDS = ("stick", "ellipse", "box", "blob")


def occluder(rng, images, keypoints_uv, size, probability=PROBABILITY):
    """An occluder layer for one image, or None (no occlusion).

    images: the background bank (textures for the objects); keypoints_uv: (21, 2) the hand's
    projected keypoints, so objects land on the hand. Returns (rgb (size, size, 3) uint8,
    alpha (size, size) bool)."""
    if rng.uniform() >= probability:
        return None
    layer = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.integers(1, 3)):
        k = keypoints_uv[rng.integers(len(keypoints_uv))]
        cx, cy = k + rng.normal(0, 0.05 * size, 2)
        kind = KINDS[rng.integers(len(KINDS))]
        w, h = rng.uniform(0.08, 0.3, 2) * size
        if kind == "stick":
            angle = rng.uniform(0, np.pi)
            dx, dy = np.cos(angle) * size, np.sin(angle) * size
            draw.line([cx - dx, cy - dy, cx + dx, cy + dy], fill=255,
                      width=int(rng.uniform(0.03, 0.08) * size))
        elif kind == "ellipse":
            draw.ellipse([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=255)
        elif kind == "box":
            angle = rng.uniform(0, np.pi)
            corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            draw.polygon([tuple(p) for p in corners @ rot.T + [cx, cy]], fill=255)
        else:
            t = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(5, 9)))
            r = rng.uniform(0.5, 1.0, len(t))[:, None] * [w / 2, h / 2]
            pts = np.stack([np.cos(t), np.sin(t)], 1) * r + [cx, cy]
            draw.polygon([tuple(p) for p in pts], fill=255)
    alpha = np.asarray(layer) > 127
    src = images[rng.integers(len(images))]
    o = rng.integers(0, src.shape[0] - size + 1, 2) if src.shape[0] >= size else (0, 0)
    tex = src[o[0]:o[0] + size, o[1]:o[1] + size].astype(np.float32) * (1.0 / 255.0)
    if tex.shape[:2] != (size, size):
        tex = np.asarray(Image.fromarray(src).resize((size, size)), np.float32) / 255.0
    colour = rng.uniform(0.1, 1.0, 3).astype(np.float32)
    mix = np.float32(rng.uniform(0.3, 0.9))
    ramp = np.linspace(1.15, 0.75, size, dtype=np.float32)
    shading = ramp[:, None] if rng.uniform() < 0.5 else ramp[None, :]
    rgb = (mix * colour + (1 - mix) * tex) * shading[..., None]
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), alpha
