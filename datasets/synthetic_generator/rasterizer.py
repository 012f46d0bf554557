"""The generator's only calls into hiu_jax.render (one place to adapt when the renderer changes).

`rasterize_hands` takes intrinsics in the project's one pixel convention (pixel (c, r) centred
at (u, v) = (c, r)), which the renderer shares, so every label projects onto the pixel that
shows its surface point.

Back-face culling (the renderer draws both sides) halves the rasteriser's work: the mesh is
passed as a triangle soup (each face with its own three vertices) in which the faces turned away
from the camera get their vertices moved behind the near plane, which the renderer skips. In the
soup a face's vertices keep the order of their original indices, so two faces that share an edge
still evaluate it from the same end (the renderer's crack-free rule holds).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from hiu_jax import render

TILE_SIZE = 8
TILES_PER_STEP = 8192  # measured fastest on 2 CPU cores for 224 px hands (bench/synthetic_bench.py)


@functools.lru_cache(maxsize=8)
def _soup(faces_bytes, num_faces):
    """(soup_vertex (3F,) original vertex of each soup vertex, soup_faces (F, 3))."""
    faces = np.frombuffer(faces_bytes, np.int64).reshape(num_faces, 3)
    order = np.argsort(faces, axis=1, kind="stable")
    rank = np.argsort(order, axis=1, kind="stable")
    soup_vertex = np.take_along_axis(faces, order, 1).reshape(-1)
    soup_faces = 3 * np.arange(num_faces)[:, None] + rank
    return soup_vertex, jnp.asarray(soup_faces, jnp.int32)


@jax.jit
def _normals(vertices, faces):
    return render.vertex_normals(vertices, faces)


def front_facing(vertices_cam, faces, outward=1.0):
    """(B, F) bool: the face's outward normal points towards the camera (at the origin).
    outward: +1 when counter-clockwise faces (seen from outside) face out, -1 otherwise."""
    tri = vertices_cam[:, faces]
    n = np.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])
    return outward * np.einsum("bfi,bfi->bf", n, tri[:, :, 0]) < 0


def rasterize_hands(vertices_cam, faces, K, size, outward=None):
    """Hard z-buffer rasterisation of a batch of closed meshes, and their vertex normals.

    vertices_cam: (B, V, 3) metres, camera frame; faces: (F, 3) int; K: (B, 3, 3), pixel (c, r)
    centred at (c, r); size: the square image side; outward: None for an open mesh (both sides
    drawn), else see `front_facing`: faces turned away are not drawn, which changes nothing for a
    closed surface. Returns numpy
    (face_index (B, size, size) int32 into `faces`, -1 = background; barycentrics
    (B, size, size, 3) float32, perspective-correct, in the order of the face's vertices;
    normals (B, V, 3) float32 unit area-weighted vertex normals)."""
    faces = np.ascontiguousarray(faces, np.int64)
    soup_vertex, soup_faces = _soup(faces.tobytes(), len(faces))
    soup = np.asarray(vertices_cam, np.float32)[:, soup_vertex]  # (B, 3F, 3)
    if outward is not None:
        back = ~front_facing(vertices_cam, faces, outward)
        soup.reshape(len(soup), -1, 3, 3)[back] = (0.0, 0.0, -1.0)  # behind the near plane
    frags = render.rasterize(jnp.asarray(soup), soup_faces, jnp.asarray(K, jnp.float32),
                             size, size, tile_size=TILE_SIZE, tiles_per_step=TILES_PER_STEP)
    normals = _normals(jnp.asarray(vertices_cam, jnp.float32), jnp.asarray(faces, jnp.int32))
    # Soup face j lists the original vertices of face j in its order: indices and barycentrics
    # refer to `faces` as they are.
    return np.asarray(frags.face_index), np.asarray(frags.barycentrics), np.asarray(normals)


def template_normals(vertices, faces):
    """(V, 3) float64 vertices, (F, 3) faces -> (V, 3) unit vertex normals (as the renderer's)."""
    n = _normals(jnp.asarray(vertices[None], jnp.float32), jnp.asarray(faces, jnp.int32))
    return np.asarray(n[0], np.float64)
