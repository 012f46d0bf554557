"""The generator's own shading: a key light, a fill light and a sky/ground ambient, with wrapped
diffuse (skin scatters light past the terminator) and Blinn-Phong highlights, per pixel.

Works on the covered pixels (N,) of one image, numpy float32 channel-major planes. Shadows are
not traced; `occlusion` darkens skin that faces other fingers (contact shadows between fingers,
in a curled palm) from spheres at the keypoints: per vertex, cheap.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

WRAP = 0.3  # diffuse wrap: max((n.l + WRAP) / (1 + WRAP), 0)
FINGER_RADIUS = 0.011  # metres: the occluding spheres of `occlusion`
AO_STRENGTH = 1.5
AO_FLOOR = 0.3


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


def occlusion(vertices, normals, joints):
    """(B, V) ambient visibility in [AO_FLOOR, 1]: 1 - AO_STRENGTH * sum over spheres of
    max(cos, 0) (r / d)^2 (the solid-angle share of a sphere of radius r at distance d seen at
    angle acos(cos) from the normal), spheres of FINGER_RADIUS at the 21 keypoints (bone
    midpoints too would double the cost, ~0.4 ms an image). A vertex's own finger lies behind its
    surface (cos < 0) and does not count.

    vertices, normals: (B, V, 3); joints: (B, 21, 3), metres, camera frame."""
    c = np.moveaxis(joints.astype(np.float32), -1, 0)[:, :, None, :]  # (3, B, 1, S)
    v = np.moveaxis(vertices.astype(np.float32), -1, 0)[..., None]  # (3, B, V, 1)
    n = np.moveaxis(normals.astype(np.float32), -1, 0)[..., None]
    dx, dy, dz = c[0] - v[0], c[1] - v[1], c[2] - v[2]  # (B, V, S) each
    dist2 = np.maximum(dx * dx + dy * dy + dz * dz, np.float32(FINGER_RADIUS ** 2))
    cos_d = np.maximum(dx * n[0] + dy * n[1] + dz * n[2], 0)  # cos * d
    occ = np.sum(cos_d / (dist2 * np.sqrt(dist2)), -1) * np.float32(FINGER_RADIUS ** 2)
    return np.clip(1 - AO_STRENGTH * occ, AO_FLOOR, 1).astype(np.float32)


def shade(albedo, normal, ray, lights: Lights, gloss, ao=None):
    """Per-pixel colour (3, N) (may exceed 1 before clipping) for one image; channel-major
    planes (numpy vectorises along N, not along a last axis of 3).

    albedo: (3, N); normal: (3, N) interpolated vertex normals (any length); ray: (3, N)
    camera-frame direction from the camera through each pixel (any length); lights: the image's
    `Lights`; gloss: (N,) specular multiplier (skin ~1, nails ~3, creases and cloth less);
    ao: (N,) `occlusion` (None: 1), applied to the ambient and fill and half to the key.
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
    n_fill = n[0] * fx + n[1] * fy + n[2] * fz
    diffuse_fill = np.maximum((n_fill + f32(WRAP)) * f32(1 / (1 + WRAP)), 0)
    up = f32(0.5) - f32(0.5) * n[1]  # 1 facing up (-y), 0 facing down
    sky, ground = lights.ambient_sky.astype(f32), lights.ambient_ground.astype(f32)
    key, fill = lights.key.astype(f32), lights.fill.astype(f32)
    hx, hy, hz = view[0] + kx, view[1] + ky, view[2] + kz
    n_half = np.maximum((n[0] * hx + n[1] * hy + n[2] * hz)
                        / np.sqrt(hx * hx + hy * hy + hz * hz), 0)
    spec = f32(lights.specular) * gloss * np.where(n_key > 0, n_half ** f32(lights.shininess), 0)
    if ao is not None:
        diffuse_fill = diffuse_fill * ao
        diffuse_key = diffuse_key * (f32(0.5) + f32(0.5) * ao)
        spec = spec * ao
    out = np.empty_like(albedo)
    for c in range(3):
        ambient = ground[c] + up * (sky[c] - ground[c])
        if ao is not None:
            ambient = ambient * ao
        light = ambient + diffuse_key * key[c] + diffuse_fill * fill[c]
        out[c] = albedo[c] * light + spec * key[c]
    return out
