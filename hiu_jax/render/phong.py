"""Shading: area-weighted vertex normals and `render`, the rasterised mesh lit by Lambert + Phong
with one white directional light (colour, mask and depth images).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from hiu_jax.render.checks import (check_faces, check_image_and_tiles, check_K, check_points,
                                   check_positive, concrete, per_image)
from hiu_jax.render.raster import DEFAULT_NEAR, interpolate_unchecked, rasterize_unchecked

DEFAULT_COLOR = (0.8, 0.8, 0.8)  # vertex colour used by `render` when none is given


def _normalize(v, eps=1e-12):
    return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), eps)


def vertex_normals(vertices, faces) -> jax.Array:
    """Area-weighted unit vertex normals: the normalised sum of the cross products
    (v1 - v0) x (v2 - v0) of the faces around each vertex (outward for counter-clockwise faces).

    Args:
      vertices: (B, V, 3) float.
      faces: (F, 3) int.
    Returns:
      (B, V, 3) unit normals (zero for a vertex used by no face).
    """
    vertices = check_points("vertices", vertices, 3)
    faces = check_faces(faces, vertices.shape[1])
    return _vertex_normals(vertices, faces)


def _vertex_normals(vertices, faces):
    tri = vertices[:, faces]  # (B, F, 3, 3)
    n = jnp.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])  # length 2 * area
    acc = jnp.zeros_like(vertices)
    for i in range(3):
        acc = acc.at[:, faces[:, i]].add(n)
    return _normalize(acc)


@functools.partial(jax.jit, static_argnames=("height", "width", "tile_size", "tiles_per_step"))
def _render(vertices_cam, faces, K, colors, light_dir, ambient, diffuse, specular, shininess,
            background, near, *, height, width, tile_size, tiles_per_step):
    frags = rasterize_unchecked(vertices_cam, faces, K, near, height=height, width=width,
                                tile_size=tile_size, tiles_per_step=tiles_per_step)
    mask = frags.face_index >= 0
    attributes = jnp.concatenate([vertices_cam, _vertex_normals(vertices_cam, faces), colors], -1)
    # Shade on (B, H, W) planes, one per component: reductions over a last axis of size 3 do not
    # vectorise on CPU (measured ~5x slower).
    planes = list(jnp.moveaxis(interpolate_unchecked(attributes, faces, frags), -1, 0))
    point, normal, color = planes[0:3], planes[3:6], planes[6:9]
    dot = lambda a, b: a[0] * b[0] + a[1] * b[1] + a[2] * b[2]  # noqa: E731

    def unit(v):
        inv = lax.rsqrt(jnp.maximum(dot(v, v), 1e-24))
        return [c * inv for c in v]

    view = unit([-c for c in point])  # surface -> camera
    normal = unit(normal)
    flip = jnp.where(dot(normal, view) < 0, -1.0, 1.0)
    normal = [c * flip for c in normal]
    light = _normalize(light_dir)  # surface -> light, (B, 3)
    light = [light[:, i, None, None] for i in range(3)]
    n_dot_l = dot(normal, light)
    # r.v with r = 2 (n.l) n - l, the light reflected about the normal
    r_dot_v = jnp.maximum(2.0 * n_dot_l * dot(normal, view) - dot(light, view), 0.0)
    over_pixels = lambda a: a[:, None, None]  # (B,) -> (B, 1, 1)  # noqa: E731
    spec = jnp.where(n_dot_l > 0, r_dot_v ** over_pixels(shininess), 0.0)
    lit = over_pixels(ambient) + over_pixels(diffuse) * jnp.maximum(n_dot_l, 0.0)
    highlight = over_pixels(specular) * spec
    shaded = jnp.stack([jnp.clip(lit * c + highlight, 0.0, 1.0) for c in color], -1)
    rgb = jnp.where(mask[..., None], shaded, background)
    return dict(rgb=rgb, mask=mask.astype(rgb.dtype), depth=frags.depth)


def render(
    vertices_cam,
    faces,
    K,
    height: int,
    width: int,
    vertex_colors=None,
    *,
    light_dir=(0.0, 0.0, -1.0),
    ambient=0.3,
    diffuse=0.6,
    specular=0.2,
    shininess=20.0,
    background=(0.0, 0.0, 0.0),
    near: float = DEFAULT_NEAR,
    tile_size: int = 8,
    tiles_per_step: int = 2048,
) -> dict:
    """Rasterize and shade a mesh: Lambert + Phong with one white directional light.

    colour = clip((ambient + diffuse * max(n.l, 0)) * c + specular * max(r.v, 0)^shininess, 0, 1)
    with c the interpolated vertex colour, n the interpolated area-weighted vertex normal turned
    towards the camera (both sides of a face are lit alike), l the unit direction from the surface
    to the light, v the unit direction from the surface to the camera and r = 2 (n.l) n - l; the
    specular term is 0 where n.l <= 0.

    Args:
      vertices_cam, faces, K, height, width, near, tile_size, tiles_per_step: as in `rasterize`.
      vertex_colors: (B, V, 3) in [0, 1], or None for DEFAULT_COLOR everywhere.
      light_dir: (3,) or (B, 3) camera-frame direction from the surface towards the light
        (default (0, 0, -1): a light at the camera).
      ambient, diffuse, specular, shininess: scalars or (B,) arrays (shininess > 0).
      background: (3,) colour or (B, H, W, 3) image in [0, 1].
    Returns:
      dict(rgb=(B, H, W, 3) float in [0, 1], mask=(B, H, W) float {0, 1},
      depth=(B, H, W) metres with 0 on background).
    """
    vertices_cam = check_points("vertices_cam", vertices_cam, 3)
    batch, num_vertices, _ = vertices_cam.shape
    dtype = vertices_cam.dtype
    faces = check_faces(faces, num_vertices)
    K = check_K(K, batch, dtype)
    check_image_and_tiles(height, width, tile_size, tiles_per_step)
    check_positive("near", near)
    if vertex_colors is None:
        vertex_colors = jnp.broadcast_to(
            jnp.asarray(DEFAULT_COLOR, dtype), (batch, num_vertices, 3)
        )
    vertex_colors = jnp.asarray(vertex_colors, dtype)
    if vertex_colors.shape != (batch, num_vertices, 3):
        raise ValueError(
            f"vertex_colors must have shape ({batch}, {num_vertices}, 3), got {vertex_colors.shape}"
        )
    light_dir = jnp.asarray(light_dir, dtype)
    if light_dir.shape not in ((3,), (batch, 3)):
        raise ValueError(f"light_dir must have shape (3,) or ({batch}, 3), got {light_dir.shape}")
    light_now = concrete(light_dir)
    if light_now is not None and np.any(np.linalg.norm(light_now.reshape(-1, 3), axis=-1) == 0):
        raise ValueError("light_dir must be non-zero")
    light_dir = jnp.broadcast_to(light_dir, (batch, 3))
    params = [per_image(n, v, batch, dtype) for n, v in (
        ("ambient", ambient), ("diffuse", diffuse), ("specular", specular),
        ("shininess", shininess))]
    check_positive("shininess", params[3])
    background = jnp.asarray(background, dtype)
    if background.shape not in ((3,), (batch, height, width, 3)):
        raise ValueError(
            f"background must have shape (3,) or ({batch}, {height}, {width}, 3), "
            f"got {background.shape}"
        )
    background = jnp.broadcast_to(background, (batch, height, width, 3))
    return _render(
        vertices_cam, faces, K, vertex_colors, light_dir, *params, background,
        jnp.asarray(near, dtype), height=int(height), width=int(width),
        tile_size=int(tile_size), tiles_per_step=int(tiles_per_step),
    )
