"""Draws a grid of synthetic samples with their labels: docs/synthetic_samples.png.

    python -m docs.make_synthetic_samples [--num 16] [--cols 4] [--seed 0] [--out PATH]

Generates `num` samples with `datasets.synthetic_generator.generate` into a temporary folder,
reads them back from disk exactly as written (JPEG, *_K.json, *_xyz.json, mask JPEG) and draws, for each,
the image on the left and the same image with its labels on the right: the 21 keypoints
projected with K and joined by the skeleton's bones (one colour per finger), and the mask's
outline (white). What lines up here lines up in training.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import tempfile

import numpy as np
from PIL import Image, ImageDraw

from datasets import synthetic_generator
from hiu_jax.geometry.skeleton import BONES

FINGER_COLOURS = [(214, 39, 40), (255, 127, 14), (44, 160, 44), (31, 119, 180), (148, 103, 189)]
SCALE = 3  # labels are drawn at 3x and shrunk back (smooth lines on 224 px tiles)


def labelled(rgb, mask, uv):
    """(S, S, 3) uint8 image, (S, S) bool mask, (21, 2) keypoints (pixel (c, r) centred at
    (c, r)) -> a (SCALE S, SCALE S) PIL image with the mask outline and the skeleton."""
    size = rgb.shape[0]
    img = Image.fromarray(rgb).resize((size * SCALE, size * SCALE), Image.NEAREST)
    big = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(
        (size * SCALE, size * SCALE), Image.NEAREST)) > 127
    edge = big & ~(np.roll(big, 1, 0) & np.roll(big, -1, 0) & np.roll(big, 1, 1)
                   & np.roll(big, -1, 1))
    out = np.array(img)
    out[edge] = 255
    for _ in range(SCALE - 1):  # thicken the outline to about a pixel at 1x
        out[np.roll(edge, 1, 0) | np.roll(edge, 1, 1)] = 255
        edge = np.roll(edge, 1, 0) | np.roll(edge, 1, 1) | edge
    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    p = (uv + 0.5) * SCALE  # pixel centre (c, r) -> the centre of its SCALE x SCALE block
    for b, (i, j) in enumerate(BONES):
        draw.line([tuple(p[i]), tuple(p[j])], fill=FINGER_COLOURS[b // 4], width=2 * SCALE)
    for k, q in enumerate(p):
        colour = (255, 255, 255) if k == 0 else FINGER_COLOURS[(k - 1) // 4]
        draw.ellipse([q[0] - 2 * SCALE, q[1] - 2 * SCALE, q[0] + 2 * SCALE, q[1] + 2 * SCALE],
                     fill=colour)
    return img


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--cols", type=int, default=4, help="sample pairs per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).with_name(
        "synthetic_samples.png")))
    args = parser.parse_args()
    size = synthetic_generator.IMAGE_SIZE
    with tempfile.TemporaryDirectory() as tmp:
        synthetic_generator.generate(tmp, args.num, 0, seed=args.seed, progress=False)
        with open(os.path.join(tmp, "training_K.json")) as f:
            K = np.asarray(json.load(f))
        with open(os.path.join(tmp, "training_xyz.json")) as f:
            xyz = np.asarray(json.load(f))
        tiles = []
        for i in range(args.num):
            rgb = np.asarray(Image.open(os.path.join(tmp, "training", "rgb", f"{i:08d}.jpg")))
            mask = np.asarray(Image.open(os.path.join(tmp, "training", "mask",
                                                      f"{i:08d}.jpg"))) > 127
            p = xyz[i] @ K[i].T
            tiles.append((Image.fromarray(rgb), labelled(rgb, mask, p[:, :2] / p[:, 2:]).resize(
                (size, size), Image.LANCZOS)))
    rows = -(-args.num // args.cols)
    grid = Image.new("RGB", (2 * args.cols * size, rows * size), (255, 255, 255))
    for i, (a, b) in enumerate(tiles):
        r, c = divmod(i, args.cols)
        grid.paste(a, (2 * c * size, r * size))
        grid.paste(b, ((2 * c + 1) * size, r * size))
    grid.save(args.out, optimize=True)
    print(f"wrote {args.out} ({grid.size[0]} x {grid.size[1]})")


if __name__ == "__main__":
    main()
