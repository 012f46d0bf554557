"""Triangle-mesh rendering in pure JAX: a hard z-buffer rasterizer with Phong shading, and a soft
(SoftRas-style) differentiable silhouette rasterizer.

Conventions (DESIGN.md): metres; OpenCV camera frame (x right, y down, z forward); a camera-frame
point X projects to pixel coordinates uv = (K @ X)[:2] / X_z; the pixel in column x, row y has its
centre at uv = (x + 0.5, y + 0.5); images are NHWC float32 in [0, 1].

Hard rasterizer (`rasterize`, `render`): exact, not differentiable, jittable with static image
size. Each face's clipped pixel bounding box is cut into T x T tiles; every (image, face, tile)
triple is numbered by a prefix sum over the tile counts, and the triples are processed N at a time
in a `lax.while_loop` that scatters into a per-pixel inverse-depth buffer (first pass) and then a
face-index buffer (second pass). Memory is O(B*H*W + N*T*T) whatever the mesh; work follows the
area that the faces' boxes cover. Edge functions are evaluated per edge in a canonical vertex
order, so two faces that share an edge get bitwise opposite values there: a closed surface has no
cracks and no pixel is dropped between neighbouring faces.

Soft rasterizer (`soft_silhouette`): every face covers a pixel p with probability
D_j(p) = sigmoid(s_j(p) * d_j(p)^2 / sigma), d_j the pixel distance from p to the face's edges and
s_j = +1 inside, -1 outside; silhouette = 1 - prod_j (1 - D_j). It is accumulated as
sum_j log(1 - D_j) = -sum_j softplus(s_j d_j^2 / sigma) with the same tiling, over each face's box
grown by sqrt(cutoff * sigma) pixels (beyond it a term is below exp(-cutoff)). The backward pass is
a custom VJP written out by hand (a second loop over the same tiles), so memory stays
O(B*H*W + N*T*T) under `jax.grad` too and the work is that of the covered boxes, not B*H*W*F.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

DEFAULT_NEAR = 1e-3  # metres; faces with any vertex at z <= near are not drawn
DEFAULT_COLOR = (0.8, 0.8, 0.8)  # vertex colour used by `render` when none is given
DEFAULT_SOFT_CUTOFF = 30.0  # soft_silhouette skips pixels where log(1 - D) > -exp(-cutoff)


def pixel_centre_intrinsics(K):
    """Intrinsics for this renderer from intrinsics in the datasets' pixel convention.

    Datasets (FreiHAND, the pipeline) centre pixel (row r, col c) at (u, v) = (c, r); this
    renderer centres it at (c + 0.5, r + 0.5). Rendering with K' = K + 0.5 on the principal
    point makes the pixel that shows a surface point X the one at K X / X_z in the datasets'
    convention. K: (..., 3, 3) numpy or jax -> same shape."""
    shift = np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
    return K + shift * K[..., 2:3, 2:3]


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


# --------------------------------------------------------------------------- input validation


def _concrete(x):
    """`x` as a numpy array when its value is known now, or None when it is traced."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _check_points(name: str, points, last: int) -> jax.Array:
    points = jnp.asarray(points)
    if points.ndim != 3 or points.shape[-1] != last or points.shape[0] < 1:
        raise ValueError(f"{name} must have shape (B, N, {last}) with B >= 1, got {points.shape}")
    if not jnp.issubdtype(points.dtype, jnp.floating):
        raise ValueError(f"{name} must be floating point, got dtype {points.dtype}")
    value = _concrete(points)
    if value is not None and not np.all(np.isfinite(value)):
        raise ValueError(f"{name} holds non-finite values")
    return points


def _check_faces(faces, num_vertices: int) -> jax.Array:
    faces = jnp.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.shape[0] < 1:
        raise ValueError(f"faces must have shape (F, 3) with F >= 1, got {faces.shape}")
    if not jnp.issubdtype(faces.dtype, jnp.integer):
        raise ValueError(f"faces must be integer, got dtype {faces.dtype}")
    value = _concrete(faces)
    if value is not None and (value.min() < 0 or value.max() >= num_vertices):
        raise ValueError(
            f"faces index vertices {value.min()}..{value.max()}, outside 0..{num_vertices - 1}"
        )
    return faces.astype(jnp.int32)


def _check_K(K, batch: int, dtype) -> jax.Array:
    K = jnp.asarray(K)
    if K.shape not in ((3, 3), (batch, 3, 3)):
        raise ValueError(f"K must have shape (3, 3) or ({batch}, 3, 3), got {K.shape}")
    value = _concrete(K)
    if value is not None:
        value = value.reshape(-1, 3, 3)
        if not np.all(np.isfinite(value)):
            raise ValueError("K holds non-finite values")
        if not np.all(value[:, 2] == np.array([0.0, 0.0, 1.0])):
            raise ValueError(f"K's last row must be (0, 0, 1), got {value[:, 2].tolist()}")
        if not (np.all(value[:, 0, 0] > 0) and np.all(value[:, 1, 1] > 0)):
            raise ValueError("K's focal lengths K[0, 0] and K[1, 1] must be positive")
    return jnp.broadcast_to(K.astype(dtype), (batch, 3, 3))


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive Python int, got {value!r}")


def _check_positive(name: str, value) -> None:
    concrete = _concrete(value)
    if concrete is not None and not np.all(concrete > 0):
        raise ValueError(f"{name} must be positive, got {concrete}")


def _per_image(name: str, value, batch: int, dtype) -> jax.Array:
    """A scalar or (B,) parameter as a (B,) array."""
    value = jnp.asarray(value, dtype)
    if value.shape not in ((), (batch,)):
        raise ValueError(f"{name} must be a scalar or have shape ({batch},), got {value.shape}")
    return jnp.broadcast_to(value, (batch,))


# --------------------------------------------------------------------------- projections


def project_perspective(points, K) -> jax.Array:
    """Pinhole projection: uv = (K @ X)[:2] / X_z.

    Args:
      points: (B, N, 3) camera-frame points in metres (z > 0 expected; not checked under jit).
      K: (3, 3) or (B, 3, 3) intrinsics with last row (0, 0, 1).
    Returns:
      (B, N, 2) pixel coordinates (pixel (x, y) has its centre at (x + 0.5, y + 0.5)).
    """
    points = _check_points("points", points, 3)
    K = _check_K(K, points.shape[0], points.dtype)
    return _project(points, K)


def _project(points, K):
    uvw = jnp.einsum("bij,bnj->bni", K, points)
    return uvw[..., :2] / points[..., 2:3]


def project_weak_perspective(points, scale, trans) -> jax.Array:
    """Weak-perspective (scaled orthographic) projection: uv = scale * X_xy + trans.

    The network's camera is expressed in crop pixels: `scale` in pixels per metre and `trans` in
    pixels, so uv are pixel coordinates of the crop (centre of pixel (x, y) at (x + .5, y + .5)).

    Args:
      points: (B, N, 3) points in metres (z is ignored).
      scale: (B,) pixels per metre.
      trans: (B, 2) pixels.
    Returns:
      (B, N, 2) pixel coordinates.
    """
    points = _check_points("points", points, 3)
    batch = points.shape[0]
    scale, trans = jnp.asarray(scale), jnp.asarray(trans)
    if scale.shape != (batch,):
        raise ValueError(f"scale must have shape ({batch},), got {scale.shape}")
    if trans.shape != (batch, 2):
        raise ValueError(f"trans must have shape ({batch}, 2), got {trans.shape}")
    return scale[:, None, None] * points[..., :2] + trans[:, None, :]


# --------------------------------------------------------------------------- hard rasterizer


class _FaceTable(NamedTuple):
    """Per-face screen data, leading axis (B*F,) or (B, F)."""

    start: jax.Array  # (..., 3, 2) canonical start point of edge i (lower vertex index)
    delta: jax.Array  # (..., 3, 2) canonical end minus start
    sign: jax.Array  # (..., 3) +1 when edge i (vertex i+1 -> i+2) runs low -> high index, else -1
    area2: jax.Array  # (...,) twice the signed screen area
    inv_z: jax.Array  # (..., 3) 1 / z of the three vertices


def _edge_weights(table: _FaceTable, px, py):
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


def _face_table(vertices_cam, faces, K, near):
    """(B, F) screen-space face data, a (B, F) mask of drawable faces, (B, F, 3, 2) corners."""
    z = vertices_cam[..., 2]
    safe = jnp.where(z > near, z, 1.0)
    uv = _project(vertices_cam.at[..., 2].set(safe), K)  # per vertex: shared edges match bitwise
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
    table = _FaceTable(
        start=start,
        delta=delta,
        sign=jnp.broadcast_to(sign, start.shape[:-1]),
        area2=area2,
        inv_z=1.0 / safe[:, faces],
    )
    return table, drawable, tri_uv


class _TilePlan(NamedTuple):
    """T x T pixel tiles over M boxes, numbered 0..total-1 box after box (leading axis M)."""

    first: jax.Array  # (M, 2) int32 first pixel column, row in the box
    last: jax.Array  # (M, 2) int32 last pixel column, row (inclusive)
    tiles_x: jax.Array  # (M,) int32 tiles per box row (>= 1)
    num_tiles: jax.Array  # (M,) int32 tiles of each box (0 = nothing to draw)
    ends: jax.Array  # (M,) int32 inclusive prefix sum of num_tiles
    total: jax.Array  # () int32 tiles in all


def _tile_plan(lo, hi, skip, height, width, tile_size) -> _TilePlan:
    """Tiles over the pixels whose centres lie in the boxes [lo, hi] (uv, pixel coordinates).

    Args:
      lo, hi: (M, 2) float box corners; may be infinite.
      skip: (M,) bool, boxes to leave out.
    """
    limit = jnp.array([width, height], lo.dtype)
    first = jnp.ceil(jnp.clip(lo - 0.5, -1.0, limit)).astype(jnp.int32)  # centre of x: x + 0.5
    last = jnp.floor(jnp.clip(hi - 0.5, -1.0, limit)).astype(jnp.int32)
    first = jnp.maximum(first, 0)
    last = jnp.minimum(last, jnp.array([width - 1, height - 1], jnp.int32))
    empty = jnp.any(last < first, axis=-1) | skip
    tiles_xy = jnp.where(empty[:, None], 0, (last - first + tile_size) // tile_size)
    num_tiles = tiles_xy[:, 0] * tiles_xy[:, 1]
    ends = jnp.cumsum(num_tiles)
    return _TilePlan(first, last, jnp.maximum(tiles_xy[:, 0], 1), num_tiles, ends, ends[-1])


def _plan_steps(plan: _TilePlan, tiles_per_step: int):
    return (plan.total + tiles_per_step - 1) // tiles_per_step


def _plan_tiles(plan: _TilePlan, step, tiles_per_step: int, tile_size: int):
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
def _rasterize(vertices_cam, faces, K, near, *, height, width, tile_size, tiles_per_step):
    batch, num_faces = vertices_cam.shape[0], faces.shape[0]
    T, N = tile_size, tiles_per_step
    num_pixels = batch * height * width
    table, drawable, tri_uv = _face_table(vertices_cam, faces, K, near)
    tri_uv = tri_uv.reshape(batch * num_faces, 3, 2)
    plan = _tile_plan(jnp.min(tri_uv, axis=1), jnp.max(tri_uv, axis=1), ~drawable.reshape(-1),
                      height, width, T)
    num_steps = _plan_steps(plan, N)
    flat = jax.tree.map(lambda a: a.reshape((batch * num_faces,) + a.shape[2:]), table)

    def fragments(step):
        """N tiles -> (N*T*T,) flat pixel index (num_pixels if none), inverse depth, face."""
        owner, x, y, inside = _plan_tiles(plan, step, N, T)
        face = jax.tree.map(lambda a: a[owner][:, None, None], flat)
        w = _edge_weights(face, x + 0.5, y + 0.5)  # (N, T, T) each
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
    px = jnp.arange(width, dtype=vertices_cam.dtype)[None, None, :] + 0.5
    py = jnp.arange(height, dtype=vertices_cam.dtype)[None, :, None] + 0.5
    w = jnp.stack(_edge_weights(pix, px, py), axis=-1)  # (B, H, W, 3)
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

    A pixel is covered by a face when its centre (x + 0.5, y + 0.5) lies in the projected
    triangle, edges included; the face with the smallest positive depth there wins (ties: the
    largest face index). Both sides of a face are drawn (no back-face culling). Faces with a vertex
    at z <= `near` are not drawn (no clipping). Jittable; `height`, `width`, `tile_size` and
    `tiles_per_step` are static. Not differentiable.

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
    vertices_cam = _check_points("vertices_cam", vertices_cam, 3)
    faces = _check_faces(faces, vertices_cam.shape[1])
    K = _check_K(K, vertices_cam.shape[0], vertices_cam.dtype)
    for name, value in (("height", height), ("width", width), ("tile_size", tile_size),
                        ("tiles_per_step", tiles_per_step)):
        _check_positive_int(name, value)
    _check_positive("near", near)
    return _rasterize(
        vertices_cam, faces, K, jnp.asarray(near, vertices_cam.dtype),
        height=int(height), width=int(width), tile_size=int(tile_size),
        tiles_per_step=int(tiles_per_step),
    )


# --------------------------------------------------------------------------- shading


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
    vertices = _check_points("vertices", vertices, 3)
    faces = _check_faces(faces, vertices.shape[1])
    return _vertex_normals(vertices, faces)


def _vertex_normals(vertices, faces):
    tri = vertices[:, faces]  # (B, F, 3, 3)
    n = jnp.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])  # length 2 * area
    acc = jnp.zeros_like(vertices)
    for i in range(3):
        acc = acc.at[:, faces[:, i]].add(n)
    return _normalize(acc)


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
    faces = _check_faces(faces, vertex_attributes.shape[1])
    return _interpolate(vertex_attributes, faces, rasterized)


def _interpolate(attributes, faces, rasterized):
    batch, num_vertices, _ = attributes.shape
    # Row gathers consumed by elementwise ops fuse into one loop on CPU; an einsum over a
    # materialised (B, H, W, 3, C) gather is ~10x slower.
    rows = attributes.reshape(batch * num_vertices, -1)
    corner = faces[jnp.maximum(rasterized.face_index, 0)]  # (B, H, W, 3) vertex indices
    corner += (jnp.arange(batch, dtype=jnp.int32) * num_vertices)[:, None, None, None]
    bary = rasterized.barycentrics
    return sum(bary[..., k : k + 1] * rows[corner[..., k]] for k in range(3))


@functools.partial(jax.jit, static_argnames=("height", "width", "tile_size", "tiles_per_step"))
def _render(vertices_cam, faces, K, colors, light_dir, ambient, diffuse, specular, shininess,
            background, near, *, height, width, tile_size, tiles_per_step):
    frags = _rasterize(vertices_cam, faces, K, near, height=height, width=width,
                       tile_size=tile_size, tiles_per_step=tiles_per_step)
    mask = frags.face_index >= 0
    attributes = jnp.concatenate([vertices_cam, _vertex_normals(vertices_cam, faces), colors], -1)
    # Shade on (B, H, W) planes, one per component: reductions over a last axis of size 3 do not
    # vectorise on CPU (measured ~5x slower).
    planes = list(jnp.moveaxis(_interpolate(attributes, faces, frags), -1, 0))
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
    per_image = lambda a: a[:, None, None]  # noqa: E731
    spec = jnp.where(n_dot_l > 0, r_dot_v ** per_image(shininess), 0.0)
    lit = per_image(ambient) + per_image(diffuse) * jnp.maximum(n_dot_l, 0.0)
    highlight = per_image(specular) * spec
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
    vertices_cam = _check_points("vertices_cam", vertices_cam, 3)
    batch, num_vertices, _ = vertices_cam.shape
    dtype = vertices_cam.dtype
    faces = _check_faces(faces, num_vertices)
    K = _check_K(K, batch, dtype)
    for name, value in (("height", height), ("width", width), ("tile_size", tile_size),
                        ("tiles_per_step", tiles_per_step)):
        _check_positive_int(name, value)
    _check_positive("near", near)
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
    concrete = _concrete(light_dir)
    if concrete is not None and np.any(np.linalg.norm(concrete.reshape(-1, 3), axis=-1) == 0):
        raise ValueError("light_dir must be non-zero")
    light_dir = jnp.broadcast_to(light_dir, (batch, 3))
    params = [_per_image(n, v, batch, dtype) for n, v in (
        ("ambient", ambient), ("diffuse", diffuse), ("specular", specular),
        ("shininess", shininess))]
    _check_positive("shininess", params[3])
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


# --------------------------------------------------------------------------- soft silhouette


def _soft_geometry(tri, x, y):
    """Distance from the pixels of N tiles to their triangles.

    Args:
      tri: (N, 3, 2) pixel coordinates; x: (N, 1, T), y: (N, T, 1) int pixel column and row.
    Returns:
      dist2, inside, rx, ry, t, edge, each (N, T, T): squared distance to the nearest edge, the
      pixel centre lies in the triangle (either winding), p - q with q the closest point of that
      edge, q = (1 - t) v_edge + t v_edge+1, and the edge's index (edge i runs v_i -> v_i+1).
    """
    px, py = x.astype(tri.dtype) + 0.5, y.astype(tri.dtype) + 0.5
    f = lambda a: a[:, None, None]  # (N,) -> (N, 1, 1)  # noqa: E731
    best, pos, neg = None, None, None
    for i in range(3):
        ax, ay = f(tri[:, i, 0]), f(tri[:, i, 1])
        ex, ey = f(tri[:, (i + 1) % 3, 0]) - ax, f(tri[:, (i + 1) % 3, 1]) - ay
        inv_len2 = 1.0 / jnp.maximum(ex * ex + ey * ey, jnp.finfo(tri.dtype).tiny)
        dx, dy = px - ax, py - ay
        t = jnp.clip((dx * ex + dy * ey) * inv_len2, 0.0, 1.0)  # closest point on the segment
        rx, ry = dx - t * ex, dy - t * ey
        cross = ex * dy - ey * dx
        here = (rx * rx + ry * ry, rx, ry, t, jnp.full(t.shape, i, jnp.int32))
        if best is None:
            best, pos, neg = here, cross >= 0, cross <= 0
        else:
            closer = here[0] < best[0]
            best = tuple(jnp.where(closer, h, b) for h, b in zip(here, best))
            pos, neg = pos & (cross >= 0), neg & (cross <= 0)
    dist2, rx, ry, t, edge = best
    return dist2, pos | neg, rx, ry, t, edge


def _soft_terms(tri, weights, sigma, x, y, valid):
    """weight * log(1 - D(p)) = -weight * softplus(s d^2 / sigma) at the pixels of N tiles.

    Args:
      tri: (N, 3, 2) pixel coordinates of each tile's triangle; weights: (N,); sigma: ().
      x: (N, 1, T), y: (N, T, 1) int pixel column and row; valid: (N, T, T) bool.
    Returns:
      (N, T, T), 0 where not valid.
    """
    dist2, inside = _soft_geometry(tri, x, y)[:2]
    logit = jnp.where(inside, dist2, -dist2) / sigma
    return jnp.where(valid, -weights[:, None, None] * jax.nn.softplus(logit), 0.0)


def _soft_terms_vjp(tri, weights, sigma, x, y, valid, cotangent):
    """The VJP of `_soft_terms` w.r.t. (tri, weights, sigma), written out.

    d term / d logit = -w sigmoid(logit); logit = s d^2 / sigma. d^2 = |p - q|^2 with q the
    closest point (1 - t) a + t b of the nearest edge (a, b); as t minimises the distance over
    [0, 1], d(d^2)/da = -2 (p - q)(1 - t) and d(d^2)/db = -2 (p - q) t.

    Returns:
      (N, 3, 2), (N,), () cotangents.
    """
    dist2, inside, rx, ry, t, edge = _soft_geometry(tri, x, y)
    logit = jnp.where(inside, dist2, -dist2) / sigma
    w = weights[:, None, None]
    g = jnp.where(valid, cotangent, 0.0)
    d_logit = -g * w * jax.nn.sigmoid(logit)
    d_weights = jnp.sum(-g * jax.nn.softplus(logit), axis=(1, 2))
    d_sigma = jnp.sum(d_logit * logit) / -sigma
    d_dist2 = jnp.where(inside, d_logit, -d_logit) / sigma
    gx, gy = -2.0 * d_dist2 * rx, -2.0 * d_dist2 * ry  # d/dq
    d_tri = []
    for k in range(3):  # vertex k starts edge k and ends edge k - 1
        share = jnp.where(edge == k, 1.0 - t, 0.0) + jnp.where(edge == (k + 2) % 3, t, 0.0)
        d_tri.append(jnp.stack([jnp.sum(gx * share, (1, 2)), jnp.sum(gy * share, (1, 2))], -1))
    return jnp.stack(d_tri, 1), d_weights, d_sigma


def _soft_plan(tri, sigma, height, width, tile_size, cutoff):
    """Tiles over each face's box grown by sqrt(cutoff * sigma) pixels; tri (M, 3, 2)."""
    margin = jnp.sqrt(cutoff * jax.lax.stop_gradient(sigma))
    lo, hi = jnp.min(tri, axis=1) - margin, jnp.max(tri, axis=1) + margin
    return _tile_plan(lo, hi, jnp.zeros(tri.shape[0], bool), height, width, tile_size)


def _soft_pixels(owner, x, y, valid, num_faces, height, width, num_pixels):
    image = (owner // num_faces)[:, None, None]
    return jnp.where(valid, (image * height + y) * width + x, num_pixels)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6, 7))
def _soft_log_outside(tri, weights, sigma, height, width, tile_size, tiles_per_step, cutoff):
    """sum_j weights_j log(1 - D_j): (B, F, 3, 2), (B, F), () -> (B, H, W)."""
    batch, num_faces = weights.shape
    num_pixels = batch * height * width
    flat_tri, flat_w = tri.reshape(-1, 3, 2), weights.reshape(-1)
    plan = _soft_plan(flat_tri, sigma, height, width, tile_size, cutoff)

    def body(step, acc):
        owner, x, y, valid = _plan_tiles(plan, step, tiles_per_step, tile_size)
        terms = _soft_terms(flat_tri[owner], flat_w[owner], sigma, x, y, valid)
        pixel = _soft_pixels(owner, x, y, valid, num_faces, height, width, num_pixels)
        return acc.at[pixel.reshape(-1)].add(terms.reshape(-1), mode="drop")

    acc = jnp.zeros((num_pixels,), tri.dtype)
    acc = lax.fori_loop(0, _plan_steps(plan, tiles_per_step), body, acc)
    return acc.reshape(batch, height, width)


def _soft_log_outside_fwd(tri, weights, sigma, height, width, tile_size, tiles_per_step, cutoff):
    out = _soft_log_outside(tri, weights, sigma, height, width, tile_size, tiles_per_step, cutoff)
    return out, (tri, weights, sigma)


def _soft_log_outside_bwd(height, width, tile_size, tiles_per_step, cutoff, residuals, grad):
    """Per tile: the VJP of its terms with the pixels' cotangents, scattered back to its face."""
    tri, weights, sigma = residuals
    batch, num_faces = weights.shape
    num_pixels = batch * height * width
    flat_tri, flat_w, flat_grad = tri.reshape(-1, 3, 2), weights.reshape(-1), grad.reshape(-1)
    plan = _soft_plan(flat_tri, sigma, height, width, tile_size, cutoff)

    def body(step, carry):
        d_tri, d_w, d_sigma = carry
        owner, x, y, valid = _plan_tiles(plan, step, tiles_per_step, tile_size)
        pixel = _soft_pixels(owner, x, y, valid, num_faces, height, width, num_pixels)
        cotangent = flat_grad.at[pixel].get(mode="fill", fill_value=0.0)
        g_tri, g_w, g_sigma = _soft_terms_vjp(
            flat_tri[owner], flat_w[owner], sigma, x, y, valid, cotangent
        )
        return d_tri.at[owner].add(g_tri), d_w.at[owner].add(g_w), d_sigma + g_sigma

    init = (jnp.zeros_like(flat_tri), jnp.zeros_like(flat_w), jnp.zeros_like(sigma))
    d_tri, d_w, d_sigma = lax.fori_loop(0, _plan_steps(plan, tiles_per_step), body, init)
    return d_tri.reshape(tri.shape), d_w.reshape(weights.shape), d_sigma


_soft_log_outside.defvjp(_soft_log_outside_fwd, _soft_log_outside_bwd)


@functools.partial(
    jax.jit, static_argnames=("height", "width", "tile_size", "tiles_per_step", "cutoff")
)
def _soft_silhouette(vertices_2d, faces, sigma, weights, *, height, width, tile_size,
                     tiles_per_step, cutoff):
    tri = vertices_2d[:, faces]  # (B, F, 3, 2)
    log_outside = _soft_log_outside(tri, weights, sigma, height, width, tile_size,
                                    tiles_per_step, cutoff)
    return -jnp.expm1(log_outside)


def soft_silhouette(
    vertices_2d,
    faces,
    height: int,
    width: int,
    sigma=1.0,
    *,
    face_mask=None,
    cutoff: float = DEFAULT_SOFT_CUTOFF,
    tile_size: int = 8,
    tiles_per_step: int = 4096,
) -> jax.Array:
    """Differentiable SoftRas-style silhouette: 1 - prod_j (1 - sigmoid(s_j d_j^2 / sigma)).

    d_j(p) is the distance in pixels from the pixel centre p = (x + 0.5, y + 0.5) to triangle j's
    edges and s_j = +1 when p is inside the triangle (either winding), -1 outside. As sigma -> 0
    this tends to the hard mask (1 inside any face, 1/2 on an edge, 0 elsewhere).

    Each face is evaluated on the pixels within sqrt(cutoff * sigma) of its bounding box; a pixel
    farther away would get log(1 - D_j) > -exp(-cutoff) (about -1e-13 at the default), which is
    left out: below float32 resolution of the result even summed over thousands of faces.
    `cutoff=float("inf")` evaluates every face at every pixel. Memory is O(B*H*W + tiles_per_step
    * tile_size^2) under `jax.grad` too (custom VJP, two passes over the tiles). Jittable;
    differentiable once (reverse mode) w.r.t. `vertices_2d`, `sigma` and `face_mask`.

    Args:
      vertices_2d: (B, V, 2) float pixel coordinates (see `project_perspective`,
        `project_weak_perspective`).
      faces: (F, 3) int.
      height, width: image size in pixels (Python ints).
      sigma: positive scalar in pixels^2; the soft edge is about sqrt(sigma) pixels wide.
      face_mask: optional (F,) or (B, F) weights in [0, 1] (bool allowed) multiplying each face's
        log(1 - D_j); 0 removes a face.
      cutoff: positive Python float, see above.
      tile_size, tiles_per_step: tiling of the faces' boxes, as in `rasterize`.
    Returns:
      (B, H, W) float silhouette in [0, 1].
    """
    vertices_2d = _check_points("vertices_2d", vertices_2d, 2)
    batch = vertices_2d.shape[0]
    dtype = vertices_2d.dtype
    faces = _check_faces(faces, vertices_2d.shape[1])
    num_faces = faces.shape[0]
    for name, value in (("height", height), ("width", width), ("tile_size", tile_size),
                        ("tiles_per_step", tiles_per_step)):
        _check_positive_int(name, value)
    sigma = jnp.asarray(sigma, dtype)
    if sigma.shape != ():
        raise ValueError(f"sigma must be a scalar, got shape {sigma.shape}")
    _check_positive("sigma", sigma)
    if not isinstance(cutoff, (int, float)) or isinstance(cutoff, bool) or not cutoff > 0:
        raise ValueError(f"cutoff must be a positive Python float, got {cutoff!r}")
    if face_mask is None:
        weights = jnp.ones((batch, num_faces), dtype)
    else:
        weights = jnp.asarray(face_mask).astype(dtype)
        if weights.shape not in ((num_faces,), (batch, num_faces)):
            raise ValueError(
                f"face_mask must have shape ({num_faces},) or ({batch}, {num_faces}), "
                f"got {weights.shape}"
            )
        weights = jnp.broadcast_to(weights, (batch, num_faces))
    return _soft_silhouette(
        vertices_2d, faces, sigma, weights, height=int(height), width=int(width),
        tile_size=int(tile_size), tiles_per_step=int(tiles_per_step), cutoff=float(cutoff),
    )
