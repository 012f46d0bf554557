"""Backgrounds: photographs and procedural natural textures, rotated, scaled, put in perspective
and blurred (once per process: `variants`), then cropped, flipped, turned and colour-jittered per
sample (`background`), so a small bank still gives variety.

Photographs: scikit-image's bundled sample images (PHOTOS) whose own licences allow
redistribution (CC0 or public domain, per skimage.data's docstrings): read from the installed
package's data folder, never downloaded. Procedural textures (PROCEDURAL): fractal noise, wood,
fabric, marble/stone, made once per process from a fixed seed. If scikit-image is missing, the
bank is procedural only (the generator records which in its info file).
"""
from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np
from PIL import Image, ImageFilter

# skimage.data files and licences (their docstrings): coffee, chelsea, camera, grass, gravel,
# brick (CC0); rocket (public domain, SpaceX). Left out: images of people, text, microscopy and
# astronomy (not what is behind a hand in a photograph).
PHOTOS = ("coffee.png", "chelsea.png", "camera.png", "grass.png", "gravel.png", "brick.png",
          "rocket.jpg")
PROCEDURAL = ("noise", "wood", "fabric", "marble", "noise", "wood", "fabric", "marble")
BANK_SIZE = 384  # pixels: every bank image is resized/cropped to BANK_SIZE^2 RGB uint8
BANK_SEED = 20261129


def photo_dir():
    """The folder of scikit-image's bundled sample images, or None when it is not installed."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "data")
    return path if os.path.isdir(path) else None


def _square(img: Image.Image, size: int) -> np.ndarray:
    img = img.convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(img.resize((size, size), Image.BILINEAR))


def fractal_noise(rng, size, octaves=5, base=4) -> np.ndarray:
    """(size, size) float32 in about [-1, 1]: octaves of bicubically upsampled white noise."""
    out = np.zeros((size, size), np.float32)
    amp, cells, total = 1.0, base, 0.0
    for _ in range(octaves):
        grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
        up = Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC)
        out += amp * np.asarray(up)
        total += amp
        amp, cells = amp * 0.55, cells * 2
    return out / total * 1.6


def procedural_texture(rng, kind, size) -> np.ndarray:
    """(size, size, 3) uint8 natural-looking texture of `kind` in PROCEDURAL."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    n = fractal_noise(rng, size)
    # muted, natural colours: a grey level plus a little saturation
    grey = rng.uniform(0.15, 0.85, (2, 1))
    c0, c1 = np.clip(grey + rng.uniform(0.1, 0.45, (2, 1)) * rng.uniform(-0.5, 0.5, (2, 3)), 0, 1)
    if kind == "noise":
        t = 0.5 + 0.5 * n
    elif kind == "wood":
        c0 = np.array([0.55, 0.36, 0.2]) * rng.uniform(0.6, 1.3)
        c1 = c0 * rng.uniform(0.55, 0.8)
        cx = rng.uniform(-1, 2)
        rings = np.sqrt((xx - cx) ** 2 * 0.05 + (yy * rng.uniform(0.05, 0.3)) ** 2) * 60 + 3 * n
        t = (0.5 + 0.5 * np.sin(rings * rng.uniform(1.5, 3.0))) ** 2
    elif kind == "fabric":
        f = rng.uniform(40, 90)
        weave = np.sin(xx * f * np.pi) * np.sin(yy * f * np.pi)
        t = 0.5 + 0.25 * weave + 0.25 * n
    elif kind == "marble":
        t = 0.5 + 0.5 * np.sin((xx + yy * rng.uniform(0.2, 1.0)) * rng.uniform(6, 16) + 4 * n)
        c0 = np.full(3, rng.uniform(0.6, 0.95))
        c1 = c0 * rng.uniform(0.4, 0.8) * rng.uniform(0.9, 1.1, 3)
    else:
        raise ValueError(f"unknown procedural texture {kind!r}; expected one of {PROCEDURAL}")
    t = np.clip(t, 0, 1)[..., None]
    img = c0 * (1 - t) + c1 * t
    img = img * (1 + 0.08 * fractal_noise(rng, size, 3, 16)[..., None])
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


@functools.lru_cache(maxsize=2)
def bank(use_photos: bool = True) -> tuple:
    """The background bank: a tuple of (BANK_SIZE, BANK_SIZE, 3) uint8 images (photos first).
    Deterministic: the procedural textures come from BANK_SEED."""
    images = []
    folder = photo_dir() if use_photos else None
    if folder is not None:
        for name in PHOTOS:
            path = os.path.join(folder, name)
            if os.path.exists(path):
                with Image.open(path) as img:
                    images.append(_square(img, BANK_SIZE))
    rng = np.random.default_rng(BANK_SEED)
    for kind in PROCEDURAL:
        images.append(procedural_texture(rng, kind, BANK_SIZE))
    return tuple(images)


VARIANTS = 6  # warped versions of each bank image, made once per image size
VARIANT_SCALE = 1.4  # a variant's side / the image side: room for random crops


@functools.lru_cache(maxsize=4)
def variants(size: int, use_photos: bool = True) -> tuple:
    """Warped versions of every `bank` image (VARIANTS each, (VARIANT_SCALE * size)^2 uint8):
    rotation, scale, a perspective tilt and, for half of them, a defocus blur. Made once per
    process and size from BANK_SEED, so each sample only crops and recolours (cheap)."""
    rng = np.random.default_rng(BANK_SEED + size)
    side = int(VARIANT_SCALE * size)
    out = []
    for src in bank(use_photos):
        for _ in range(VARIANTS):
            out.append(warp(rng, src, side))
    return tuple(out)


def warp(rng, src, side) -> np.ndarray:
    """(side, side, 3) uint8: `src` (S, S, 3) under a random rotation, scale and perspective
    tilt about a random centre (the view stays inside `src`), blurred half of the time, lit by a
    linear illumination gradient."""
    S = src.shape[0]
    angle = rng.uniform(0, 2 * np.pi)
    zoom = rng.uniform(0.35, 1.0) * S / (1.5 * side)  # source pixels per output pixel
    g, h = rng.uniform(-0.25, 0.25, 2) / side  # perspective terms (projective row)
    c, s = np.cos(angle) * zoom, np.sin(angle) * zoom
    half = side / 2
    reach = zoom * side * 0.75
    cx, cy = rng.uniform(min(reach, S / 2), max(S - reach, S / 2), 2)
    # output (x, y) -> source (((c x - s y) + tx (1 + g x + h y)) / (1 + g x + h y), ...)
    tx = cx - (c - s) * half
    ty = cy - (s + c) * half
    coeffs = (c + tx * g, -s + tx * h, tx, s + ty * g, c + ty * h, ty, g, h)
    img = Image.fromarray(src).transform((side, side), Image.PERSPECTIVE, coeffs, Image.BILINEAR)
    if rng.uniform() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.7, 3.0)))
    ramp = np.linspace(-0.5, 0.5, side, dtype=np.float32)
    gx, gy = rng.uniform(-0.6, 0.6, 2).astype(np.float32)
    light = 1.0 + gx * ramp[None, :, None] + gy * ramp[:, None, None]  # uneven illumination
    return np.clip(np.asarray(img, np.float32) * light + 0.5, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def variant_images(size: int, use_photos: bool = True) -> tuple:
    """`variants` as PIL images (what `background` crops)."""
    return tuple(Image.fromarray(v) for v in variants(size, use_photos))


# The 8 flips and quarter turns of a square (index 0: as is).
DIHEDRAL = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180,
            Image.Transpose.ROTATE_270, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.TRANSPOSE,
            Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.TRANSVERSE)


def background(rng, images, size) -> np.ndarray:
    """One (size, size, 3) uint8 background from warped bank images (`variant_images`, PIL): a
    random crop under one of the 8 flips/quarter turns, recoloured by a per-channel gain and
    gamma (one lookup table)."""
    src = images[rng.integers(len(images))]
    o = rng.integers(0, src.size[0] - size + 1, 2)
    crop = src.crop((o[1], o[0], o[1] + size, o[0] + size))
    k = rng.integers(8)
    if k:
        crop = crop.transpose(DIHEDRAL[k])
    gain = rng.uniform(0.6, 1.25) * rng.uniform(0.85, 1.15, 3)
    gamma = rng.uniform(0.8, 1.25)
    lut = np.clip(np.linspace(0, 1, 256)[None, :] * gain[:, None], 0, 1) ** gamma  # (3, 256)
    lut = (lut * 255 + 0.5).astype(np.uint8).reshape(-1).tolist()
    return np.array(crop.point(lut))
