"""The hard rasteriser: which face each pixel shows, at what depth, with which barycentrics.

`rasterize` is exact, not differentiable, jittable with static image size. Each face's clipped
pixel bounding box is cut into T x T tiles; every (image, face, tile) triple is numbered by a
prefix sum over the tile counts (`TilePlan`, shared with the soft silhouette), and the triples are
processed N at a time in a `lax.while_loop` that scatters into a per-pixel inverse-depth buffer
(first pass) and then a face-index buffer (second pass). Memory is O(B*H*W + N*T*T) whatever the
mesh; work follows the area that the faces' boxes cover. Edge functions are evaluated per edge in
a canonical vertex order, so two faces that share an edge get bitwise opposite values there: a
closed surface has no cracks and no pixel is dropped between neighbouring faces. `interpolate`
carries vertex attributes to the pixels, perspective-correct.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from hiu_jax.geometry.crops import pixel_centre
from hiu_jax.geometry.projection import project_pinhole
from hiu_jax.render.checks import (check_faces, check_image_and_tiles, check_K, check_points,
                                   check_positive)

DEFAULT_NEAR = 1e-3  # metres; faces with any vertex at z <= near are not drawn


class Rasterized(NamedTuple):
    """The output of `rasterize`.

    Attributes:
      face_index: (B, H, W) int32, index into `faces` of the face seen at each pixel; -1 where no
        face covers the pixel centre (background).
      barycentrics: (B, H, W, 3) perspective-correct barycentric coordinates of the pixel centre
        in that face (the 3D point is sum_i b_i X_i); zeros on background.
      depth: (B, H, W) camera-frame z in metres of the visible surface; 0 on background.
    """

    face_index: jax.Array
    barycentrics: jax.Array
    depth: jax.Array


class FaceTable(NamedTuple):
    """Per-face screen data, leading axis (B*F,) or (B, F)."""

    start: jax.Array  # (..., 3, 2) canonical start point of edge i (lower vertex index)
    delta: jax.Array  # (..., 3, 2) canonical end minus start
    sign: jax.Array  # (..., 3) +1 when edge i (vertex i+1 -> i+2) runs low -> high index, else -1
    area2: jax.Array  # (...,) twice the signed screen area
    inv_z: jax.Array  # (..., 3) 1 / z of the three vertices


def edge_weights(table: FaceTable, px, py):
    """Unnormalised screen barycentric weights w_i(p), twice the signed area of (p, v_i+1, v_i+2).

    Per-face fields of `table` carry a shape that broadcasts against px, py once their trailing
    (3, 2) / (3,) axes are taken off. Returns a list of three arrays of the broadcast shape.
    """
    out = []
    for i in range(3):
        ax, ay = table.start[..., i, 0], table.start[..., i, 1]
        dx, dy = table.delta[..., i, 0], table.delta[..., i, 1]
        out.append(table.sign[..., i] * (dx * (py - ay) - dy * (px - ax)))
    return out


def face_table(vertices_cam, faces, K, near):
    """(B, F) screen-space face data, a (B, F) mask of drawable faces, (B, F, 3, 2) corners."""
    z = vertices_cam[..., 2]
    safe = jnp.where(z > near, z, 1.0)
    uv = project_pinhole(K, vertices_cam.at[..., 2].set(safe))  # per vertex: shared edges match bitwise
    tri_uv = uv[:, faces]  # (B, F, 3, 2)
    v_next, v_last = faces[:, (1, 2, 0)], faces[:, (2, 0, 1)]  # edge i runs v_{i+1} -> v_{i+2}
    forward = v_next < v_last  # (F, 3)
    lo = jnp.where(forward, v_next, v_last)
    hi = jnp.where(forward, v_last, v_next)
    start = uv[:, lo]
    delta = uv[:, hi] - start
    sign = jnp.where(forward, 1.0, -1.0).astype(uv.dtype)
    p0, p1, p2 = tri_uv[..., 0, :], tri_uv[..., 1, :], tri_uv[..., 2, :]
    area2 = (p1[..., 0] - p0[..., 0]) * (p2[..., 1] - p0[..., 1]) - (
        p1[..., 1] - p0[..., 1]
    ) * (p2[..., 0] - p0[..., 0])
    tri_z = z[:, faces]
    drawable = jnp.all(tri_z > near, axis=-1) & (area2 != 0)
    table = FaceTable(
        start=start,
        delta=delta,
        sign=jnp.broadcast_to(sign, start.shape[:-1]),
        area2=area2,
        inv_z=1.0 / safe[:, faces],
    )
    return table, drawable, tri_uv


class TilePlan(NamedTuple):
    """T x T pixel tiles over M boxes, numbered 0..total-1 box after box (leading axis M)."""

    first: jax.Array  # (M, 2) int32 first pixel column, row in the box
    last: jax.Array  # (M, 2) int32 last pixel column, row (inclusive)
    tiles_x: jax.Array  # (M,) int32 tiles per box row (>= 1)
    num_tiles: jax.Array  # (M,) int32 tiles of each box (0 = nothing to draw)
    ends: jax.Array  # (M,) int32 inclusive prefix sum of num_tiles
    total: jax.Array  # () int32 tiles in all


def tile_plan(lo, hi, skip, height, width, tile_size) -> TilePlan:
    """Tiles over the pixels whose centres lie in the boxes [lo, hi] (uv, pixel coordinates).

    Args:
      lo, hi: (M, 2) float box corners; may be infinite.
      skip: (M,) bool, boxes to leave out.
    """
    limit = jnp.array([width, height], lo.dtype)
    first = jnp.ceil(jnp.clip(lo, -1.0, limit)).astype(jnp.int32)  # pixel x is centred at x
    last = jnp.floor(jnp.clip(hi, -1.0, limit)).astype(jnp.int32)
    first = jnp.maximum(first, 0)
    last = jnp.minimum(last, jnp.array([width - 1, height - 1], jnp.int32))
    empty = jnp.any(last < first, axis=-1) | skip
    tiles_xy = jnp.where(empty[:, None], 0, (last - first + tile_size) // tile_size)
    num_tiles = tiles_xy[:, 0] * tiles_xy[:, 1]
    ends = jnp.cumsum(num_tiles)
    return TilePlan(first, last, jnp.maximum(tiles_xy[:, 0], 1), num_tiles, ends, ends[-1])


def plan_steps(plan: TilePlan, tiles_per_step: int):
    """Loop steps that process all the tiles of `plan`, tiles_per_step at a time."""
    return (plan.total + tiles_per_step - 1) // tiles_per_step


def plan_tiles(plan: TilePlan, step, tiles_per_step: int, tile_size: int):
    """Tiles step * N ... step * N + N - 1 (N = tiles_per_step).

    Returns:
      owner: (N,) int32 box of each tile; x: (N, 1, T), y: (N, T, 1) int32 pixel column and row;
      valid: (N, T, T) bool, the pixel is a real tile's and lies in its box.
    """
    ids = step * tiles_per_step + jnp.arange(tiles_per_step, dtype=jnp.int32)
    owner = jnp.searchsorted(plan.ends, ids, side="right")  # first box with ends > id
    owner = jnp.minimum(owner, plan.ends.shape[0] - 1).astype(jnp.int32)
    local = ids - (plan.ends[owner] - plan.num_tiles[owner])
    offsets = jnp.arange(tile_size, dtype=jnp.int32)
    tile_x, tile_y = local % plan.tiles_x[owner], local // plan.tiles_x[owner]
    x = (plan.first[owner, 0] + tile_x * tile_size)[:, None, None] + offsets[None, None, :]
    y = (plan.first[owner, 1] + tile_y * tile_size)[:, None, None] + offsets[None, :, None]
    valid = (x <= plan.last[owner, 0][:, None, None]) & (y <= plan.last[owner, 1][:, None, None])
    valid &= (ids < plan.total)[:, None, None]
    return owner, x, y, valid


@functools.partial(jax.jit, static_argnames=("height", "width", "tile_size", "tiles_per_step"))
def rasterize_unchecked(vertices_cam, faces, K, near, *, height, width, tile_size, tiles_per_step):
    """`rasterize` without the checks; K is (B, 3, 3), near a scalar of the vertices' dtype."""
    batch, num_faces = vertices_cam.shape[0], faces.shape[0]
    dtype = vertices_cam.dtype
    T, N = tile_size, tiles_per_step
    num_pixels = batch * height * width
    table, drawable, tri_uv = face_table(vertices_cam, faces, K, near)
    tri_uv = tri_uv.reshape(batch * num_faces, 3, 2)
    plan = tile_plan(jnp.min(tri_uv, axis=1), jnp.max(tri_uv, axis=1), ~drawable.reshape(-1),
                     height, width, T)
    num_steps = plan_steps(plan, N)
    flat = jax.tree.map(lambda a: a.reshape((batch * num_faces,) + a.shape[2:]), table)

    def fragments(step):
        """N tiles -> (N*T*T,) flat pixel index (num_pixels if none), inverse depth, face."""
        owner, x, y, inside = plan_tiles(plan, step, N, T)
        face = jax.tree.map(lambda a: a[owner][:, None, None], flat)
        w = edge_weights(face, pixel_centre(x, dtype), pixel_centre(y, dtype))  # (N, T, T)
        positive = face.area2 > 0
        for wi in w:
            inside &= jnp.where(positive, wi >= 0, wi <= 0)
        inv_area = 1.0 / face.area2
        inv_z = sum(w[i] * inv_area * face.inv_z[..., i] for i in range(3))
        image = (owner // num_faces)[:, None, None]
        pixel = jnp.where(inside, (image * height + y) * width + x, num_pixels)
        face_id = jnp.broadcast_to((owner % num_faces)[:, None, None], pixel.shape)
        return pixel.reshape(-1), inv_z.reshape(-1), face_id.reshape(-1)

    def body(carry):
        k, zbuf, fbuf = carry
        pixel, inv_z, face_id = fragments(k % num_steps)

        def depth_pass(bufs):  # nearest = largest 1/z
            return bufs[0].at[pixel].max(inv_z, mode="drop"), bufs[1]

        def face_pass(bufs):  # among the fragments at the nearest depth, the largest face index
            seen = bufs[0].at[pixel].get(mode="fill", fill_value=-1.0)
            hit = jnp.where(inv_z == seen, pixel, num_pixels)
            return bufs[0], bufs[1].at[hit].max(face_id, mode="drop")

        zbuf, fbuf = lax.cond(k < num_steps, depth_pass, face_pass, (zbuf, fbuf))
        return k + 1, zbuf, fbuf

    zbuf = jnp.zeros((num_pixels,), vertices_cam.dtype)
    fbuf = jnp.full((num_pixels,), -1, jnp.int32)
    _, zbuf, fbuf = lax.while_loop(lambda c: c[0] < 2 * num_steps, body, (0, zbuf, fbuf))

    face_index = fbuf.reshape(batch, height, width)
    covered = face_index >= 0
    row = jnp.arange(batch, dtype=jnp.int32)[:, None, None] * num_faces
    pix = jax.tree.map(lambda a: a[row + jnp.maximum(face_index, 0)], flat)
    px = pixel_centre(jnp.arange(width), dtype)[None, None, :]
    py = pixel_centre(jnp.arange(height), dtype)[None, :, None]
    w = jnp.stack(edge_weights(pix, px, py), axis=-1)  # (B, H, W, 3)
    weighted = w * pix.inv_z  # proportional to the perspective-correct barycentrics
    total_w = jnp.sum(weighted, axis=-1, keepdims=True)
    safe_total = jnp.where(covered[..., None], total_w, 1.0)
    barycentrics = jnp.where(covered[..., None], weighted / safe_total, 0.0)
    inv_depth = zbuf.reshape(batch, height, width)
    depth = jnp.where(covered, 1.0 / jnp.where(covered, inv_depth, 1.0), 0.0)
    return Rasterized(face_index, barycentrics, depth)


def rasterize(
    vertices_cam,
    faces,
    K,
    height: int,
    width: int,
    *,
    near: float = DEFAULT_NEAR,
    tile_size: int = 8,
    tiles_per_step: int = 2048,
) -> Rasterized:
    """Hard z-buffer rasterization of a triangle mesh seen by a pinhole camera.

    A pixel is covered by a face when its centre (column x, row y at uv = (x, y)) lies in the
    projected triangle, edges included; the face with the smallest positive depth there wins
    (ties: the largest face index). Both sides of a face are drawn (no back-face culling). Faces
    with a vertex at z <= `near` are not drawn (no clipping). Jittable; `height`, `width`,
    `tile_size` and `tiles_per_step` are static. Not differentiable.

    Args:
      vertices_cam: (B, V, 3) float camera-frame vertices in metres.
      faces: (F, 3) int vertex indices.
      K: (3, 3) or (B, 3, 3) intrinsics, last row (0, 0, 1).
      height, width: image size in pixels (Python ints).
      near: near plane in metres.
      tile_size: side in pixels of the tiles that cover each face's bounding box.
      tiles_per_step: tiles processed per loop step (memory ~ tiles_per_step * tile_size^2).
    Returns:
      `Rasterized(face_index (B, H, W) int32 with -1 = background, barycentrics (B, H, W, 3)
      perspective-correct, depth (B, H, W) metres with 0 = background)`.
    """
    vertices_cam = check_points("vertices_cam", vertices_cam, 3)
    faces = check_faces(faces, vertices_cam.shape[1])
    K = check_K(K, vertices_cam.shape[0], vertices_cam.dtype)
    check_image_and_tiles(height, width, tile_size, tiles_per_step)
    check_positive("near", near)
    return rasterize_unchecked(
        vertices_cam, faces, K, jnp.asarray(near, vertices_cam.dtype),
        height=int(height), width=int(width), tile_size=int(tile_size),
        tiles_per_step=int(tiles_per_step),
    )


def interpolate(vertex_attributes, faces, rasterized: Rasterized) -> jax.Array:
    """Per-pixel perspective-correct interpolation of vertex attributes; zeros on background.

    Args:
      vertex_attributes: (B, V, C) float.
      faces: (F, 3) int.
      rasterized: output of `rasterize` for the same faces.
    Returns:
      (B, H, W, C).
    """
    vertex_attributes = jnp.asarray(vertex_attributes)
    if vertex_attributes.ndim != 3 or vertex_attributes.shape[0] != rasterized.depth.shape[0]:
        raise ValueError(
            f"vertex_attributes must have shape ({rasterized.depth.shape[0]}, V, C), "
            f"got {vertex_attributes.shape}"
        )
    faces = check_faces(faces, vertex_attributes.shape[1])
    return interpolate_unchecked(vertex_attributes, faces, rasterized)


def interpolate_unchecked(attributes, faces, rasterized):
    """`interpolate` without the checks."""
    batch, num_vertices, _ = attributes.shape
    # Row gathers consumed by elementwise ops fuse into one loop on CPU; an einsum over a
    # materialised (B, H, W, 3, C) gather is ~10x slower.
    rows = attributes.reshape(batch * num_vertices, -1)
    corner = faces[jnp.maximum(rasterized.face_index, 0)]  # (B, H, W, 3) vertex indices
    corner += (jnp.arange(batch, dtype=jnp.int32) * num_vertices)[:, None, None, None]
    bary = rasterized.barycentrics
    return sum(bary[..., k : k + 1] * rows[corner[..., k]] for k in range(3))


