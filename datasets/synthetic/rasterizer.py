"""The generator's only calls into hiu_jax.render (one place to adapt when the renderer changes).

`rasterize_hands` takes intrinsics in the project's pixel convention (pixel (c, r) centred at
(u, v) = (c, r)) and converts them for the renderer here, so every label projects onto the
pixel that shows its surface point.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from hiu_jax import render

TILE_SIZE = 8
TILES_PER_STEP = 8192  # measured fastest on 2 CPU cores for 224 px hands (bench/synthetic_bench.py)


def rasterize_hands(vertices_cam, faces, K, size):
    """Hard z-buffer rasterisation of a batch of meshes, and their vertex normals.

    vertices_cam: (B, V, 3) metres, camera frame; faces: (F, 3) int; K: (B, 3, 3), pixel (c, r)
    centred at (c, r); size: the square image side. Returns numpy (face_index (B, size, size)
    int32, -1 = background; barycentrics (B, size, size, 3) float32, perspective-correct;
    normals (B, V, 3) float32 unit area-weighted vertex normals)."""
    v = jnp.asarray(vertices_cam, jnp.float32)
    f = jnp.asarray(faces, jnp.int32)
    frags = render.rasterize(v, f, jnp.asarray(render.pixel_centre_intrinsics(K), jnp.float32),
                             size, size, tile_size=TILE_SIZE, tiles_per_step=TILES_PER_STEP)
    normals = render.vertex_normals(v, f)
    return np.asarray(frags.face_index), np.asarray(frags.barycentrics), np.asarray(normals)


def template_normals(vertices, faces):
    """(V, 3) float64 vertices, (F, 3) faces -> (V, 3) unit vertex normals (as the renderer's)."""
    n = render.vertex_normals(jnp.asarray(vertices[None], jnp.float32), jnp.asarray(faces))
    return np.asarray(n[0], np.float64)
