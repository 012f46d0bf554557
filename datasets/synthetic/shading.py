"""The generator's own shading: a key light, a fill light and a sky/ground ambient, with wrapped
diffuse (skin scatters light past the terminator) and Blinn-Phong highlights, per pixel.

Works on compacted pixels (N,) of a whole batch, numpy float32; per-image light parameters are
gathered per pixel by the caller. Shadows: a cheap contact term darkens pixels whose surface
faces away from the key light beyond the wrap (self-shadowing of the lit side is not traced).
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


def stack_lights(lights) -> dict:
    """A list of B `Lights` -> dict of (B, ...) float32 arrays with the same field names."""
    return {name: np.asarray([getattr(l, name) for l in lights], np.float32)
            for name in Lights._fields}


def shade(albedo, normal, position, lights, gloss):
    """Per-pixel colour (N, 3) in [0, 1] (before clipping it may exceed 1).

    albedo: (N, 3); normal: (N, 3) interpolated vertex normals (any length); position: (N, 3)
    camera-frame surface points; lights: dict of per-pixel (N, ...) arrays (`stack_lights`
    gathered by image); gloss: (N,) specular multiplier (skin ~1, nails ~3, creases less).
    Normals are turned towards the camera (both sides of a face are lit alike)."""
    view = -position / np.linalg.norm(position, axis=1, keepdims=True)
    n = normal / np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    n *= np.where(np.einsum("ij,ij->i", n, view) < 0, -1.0, 1.0).astype(np.float32)[:, None]
    key_l, fill_l = lights["key_dir"], lights["fill_dir"]
    n_key = np.einsum("ij,ij->i", n, key_l)
    diffuse_key = np.maximum((n_key + WRAP) / (1 + WRAP), 0)
    diffuse_fill = np.maximum((np.einsum("ij,ij->i", n, fill_l) + WRAP) / (1 + WRAP), 0)
    up = 0.5 - 0.5 * n[:, 1]  # 1 facing up (-y), 0 facing down
    ambient = lights["ambient_sky"] * up[:, None] + lights["ambient_ground"] * (1 - up)[:, None]
    light = (ambient + lights["key"] * diffuse_key[:, None] + lights["fill"] * diffuse_fill[:, None])
    half = key_l + view
    half /= np.linalg.norm(half, axis=1, keepdims=True)
    n_half = np.maximum(np.einsum("ij,ij->i", n, half), 0)
    spec = lights["specular"] * gloss * np.where(n_key > 0, n_half ** lights["shininess"], 0)
    return albedo * light + spec[:, None] * lights["key"]
