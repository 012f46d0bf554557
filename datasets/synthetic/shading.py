"""The generator's own shading: a key light, a fill light and a sky/ground ambient, with wrapped
diffuse (skin scatters light past the terminator) and Blinn-Phong highlights, per pixel.

Works on the covered pixels (N,) of one image, numpy float32. No cast shadows are traced: the
wrapped diffuse, the fill and the hemispheric ambient give soft form shading instead.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

WRAP = 0.3  # diffuse wrap: max((n.l + WRAP) / (1 + WRAP), 0)


class Lights(NamedTuple):
    """One image's lights, camera frame (unit directions from the surface towards the light).

    key_dir, fill_dir: (3,); key, fill, ambient_sky, ambient_ground: (3,) RGB intensities;
    specular: scalar strength; shininess: Blinn-Phong exponent."""

    key_dir: np.ndarray
    fill_dir: np.ndarray
    key: np.ndarray
    fill: np.ndarray
    ambient_sky: np.ndarray
    ambient_ground: np.ndarray
    specular: float
    shininess: float


def _unit(v):
    return v / np.linalg.norm(v)


def sample_lights(rng) -> Lights:
    """Photographic-studio-like lights: a key light in front of the hand (camera side) from a
    random direction, a weaker fill from roughly the other side, a sky/ground ambient, and a warm,
    neutral or cool colour temperature."""
    key_dir = rng.standard_normal(3)
    key_dir[2] = -abs(key_dir[2]) - 0.4  # on the camera's side of the hand
    key_dir = _unit(key_dir)
    fill_dir = _unit(-key_dir * np.array([1.0, 1.0, -1.0]) + 0.5 * rng.standard_normal(3)
                     + np.array([0.0, 0.0, -1.0]))
    temperature = rng.uniform(-1, 1)
    white = np.array([1.0 + 0.08 * temperature, 1.0, 1.0 - 0.10 * temperature])
    key = white * rng.uniform(0.7, 1.05)
    fill = _unit(np.array([1.0, 1.0, 1.0]) + rng.normal(0, 0.05, 3)) * np.sqrt(3) * (
        key.mean() * rng.uniform(0.15, 0.45))
    ambient = rng.uniform(0.12, 0.3)
    sky = ambient * np.array([0.95, 1.0, 1.08])
    ground = ambient * rng.uniform(0.5, 0.8) * np.array([1.05, 1.0, 0.92])
    return Lights(key_dir, fill_dir, key, fill, sky, ground, rng.uniform(0.08, 0.3),
                  rng.uniform(12.0, 40.0))


def _dot(a, b):
    return a[:, 0] * b[0] + a[:, 1] * b[1] + a[:, 2] * b[2]


def shade(albedo, normal, ray, lights: Lights, gloss):
    """Per-pixel colour (N, 3) (may exceed 1 before clipping) for one image.

    albedo: (N, 3); normal: (N, 3) interpolated vertex normals (any length); ray: (N, 3)
    camera-frame direction from the camera through each pixel (any length); lights: the image's
    `Lights`; gloss: (N,) specular multiplier (skin ~1, nails ~3, creases and cloth less).
    Normals are turned towards the camera (both sides of a face are lit alike)."""
    view = -ray / np.sqrt(np.sum(ray * ray, axis=1, keepdims=True))
    n = normal / np.maximum(np.sqrt(np.sum(normal * normal, axis=1, keepdims=True)), 1e-12)
    flip = np.where(np.sum(n * view, axis=1) < 0, np.float32(-1), np.float32(1))
    n *= flip[:, None]
    key_l = lights.key_dir.astype(np.float32)
    n_key = _dot(n, key_l)
    diffuse_key = np.maximum((n_key + WRAP) / (1 + WRAP), 0)
    diffuse_fill = np.maximum((_dot(n, lights.fill_dir.astype(np.float32)) + WRAP) / (1 + WRAP), 0)
    up = (0.5 - 0.5 * n[:, 1])[:, None]  # 1 facing up (-y), 0 facing down
    sky, ground = (lights.ambient_sky.astype(np.float32), lights.ambient_ground.astype(np.float32))
    light = (ground + up * (sky - ground) + diffuse_key[:, None] * lights.key.astype(np.float32)
             + diffuse_fill[:, None] * lights.fill.astype(np.float32))
    half = view + key_l
    half /= np.sqrt(np.sum(half * half, axis=1, keepdims=True))
    n_half = np.maximum(np.sum(n * half, axis=1), 0)
    spec = np.float32(lights.specular) * gloss * np.where(
        n_key > 0, n_half ** np.float32(lights.shininess), 0)
    return albedo * light + spec[:, None] * lights.key.astype(np.float32)
