"""The generator's own shading: a key light, a fill light and a sky/ground ambient, with wrapped
diffuse (skin scatters light past the terminator) and Blinn-Phong highlights, per pixel.

Works on the covered pixels (N,) of one image, numpy float32 channel-major planes. No cast shadows are traced: the
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


def shade(albedo, normal, ray, lights: Lights, gloss):
    """Per-pixel colour (3, N) (may exceed 1 before clipping) for one image; channel-major
    planes (numpy vectorises along N, not along a last axis of 3).

    albedo: (3, N); normal: (3, N) interpolated vertex normals (any length); ray: (3, N)
    camera-frame direction from the camera through each pixel (any length); lights: the image's
    `Lights`; gloss: (N,) specular multiplier (skin ~1, nails ~3, creases and cloth less).
    Normals are turned towards the camera (both sides of a face are lit alike)."""
    f32 = np.float32
    view = ray * (-1 / np.sqrt(ray[0] * ray[0] + ray[1] * ray[1] + ray[2] * ray[2]))
    n = normal * (1 / np.maximum(np.sqrt(normal[0] * normal[0] + normal[1] * normal[1]
                                         + normal[2] * normal[2]), f32(1e-12)))
    n_view = n[0] * view[0] + n[1] * view[1] + n[2] * view[2]
    n *= np.where(n_view < 0, f32(-1), f32(1))
    kx, ky, kz = lights.key_dir.astype(f32)
    fx, fy, fz = lights.fill_dir.astype(f32)
    n_key = n[0] * kx + n[1] * ky + n[2] * kz
    diffuse_key = np.maximum((n_key + f32(WRAP)) * f32(1 / (1 + WRAP)), 0)
    diffuse_fill = np.maximum((n[0] * fx + n[1] * fy + n[2] * fz + f32(WRAP)) * f32(1 / (1 + WRAP)), 0)
    up = f32(0.5) - f32(0.5) * n[1]  # 1 facing up (-y), 0 facing down
    sky, ground = lights.ambient_sky.astype(f32), lights.ambient_ground.astype(f32)
    key, fill = lights.key.astype(f32), lights.fill.astype(f32)
    hx, hy, hz = view[0] + kx, view[1] + ky, view[2] + kz
    n_half = np.maximum((n[0] * hx + n[1] * hy + n[2] * hz)
                        / np.sqrt(hx * hx + hy * hy + hz * hz), 0)
    spec = f32(lights.specular) * gloss * np.where(n_key > 0, n_half ** f32(lights.shininess), 0)
    out = np.empty_like(albedo)
    for c in range(3):
        light = ground[c] + up * (sky[c] - ground[c]) + diffuse_key * key[c] + diffuse_fill * fill[c]
        out[c] = albedo[c] * light + spec * key[c]
    return out
