"""The soft (SoftRas-style) differentiable silhouette, `soft_silhouette`, with its custom VJP.

Every face covers a pixel p with probability D_j(p) = sigmoid(s_j(p) * d_j(p)^2 / sigma), d_j the
pixel distance from p's centre to the face's edges and s_j = +1 inside, -1 outside; silhouette =
1 - prod_j (1 - D_j). It is accumulated as sum_j log(1 - D_j) = -sum_j softplus(s_j d_j^2 / sigma)
with the hard rasteriser's tiling (`raster.TilePlan`), over each face's box grown by
sqrt(cutoff * sigma) pixels (beyond it a term is below exp(-cutoff)). The backward pass is a custom
VJP written out by hand (a second loop over the same tiles), so memory stays O(B*H*W + N*T*T)
under `jax.grad` too and the work is that of the covered boxes, not B*H*W*F.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from hiu_jax.geometry.crops import pixel_centre
from hiu_jax.render.checks import (check_faces, check_image_and_tiles, check_points,
                                   check_positive)
from hiu_jax.render.raster import plan_steps, plan_tiles, tile_plan

DEFAULT_SOFT_CUTOFF = 30.0  # soft_silhouette skips pixels where log(1 - D) > -exp(-cutoff)


def _soft_geometry(tri, x, y):
    """Distance from the pixels of N tiles to their triangles.

    Args:
      tri: (N, 3, 2) pixel coordinates; x: (N, 1, T), y: (N, T, 1) int pixel column and row.
    Returns:
      dist2, inside, rx, ry, t, edge, each (N, T, T): squared distance to the nearest edge, the
      pixel centre lies in the triangle (either winding), p - q with q the closest point of that
      edge, q = (1 - t) v_edge + t v_edge+1, and the edge's index (edge i runs v_i -> v_i+1).
    """
    px, py = pixel_centre(x, tri.dtype), pixel_centre(y, tri.dtype)
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
    return tile_plan(lo, hi, jnp.zeros(tri.shape[0], bool), height, width, tile_size)


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
        owner, x, y, valid = plan_tiles(plan, step, tiles_per_step, tile_size)
        terms = _soft_terms(flat_tri[owner], flat_w[owner], sigma, x, y, valid)
        pixel = _soft_pixels(owner, x, y, valid, num_faces, height, width, num_pixels)
        return acc.at[pixel.reshape(-1)].add(terms.reshape(-1), mode="drop")

    acc = jnp.zeros((num_pixels,), tri.dtype)
    acc = lax.fori_loop(0, plan_steps(plan, tiles_per_step), body, acc)
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
        owner, x, y, valid = plan_tiles(plan, step, tiles_per_step, tile_size)
        pixel = _soft_pixels(owner, x, y, valid, num_faces, height, width, num_pixels)
        cotangent = flat_grad.at[pixel].get(mode="fill", fill_value=0.0)
        g_tri, g_w, g_sigma = _soft_terms_vjp(
            flat_tri[owner], flat_w[owner], sigma, x, y, valid, cotangent
        )
        return d_tri.at[owner].add(g_tri), d_w.at[owner].add(g_w), d_sigma + g_sigma

    init = (jnp.zeros_like(flat_tri), jnp.zeros_like(flat_w), jnp.zeros_like(sigma))
    d_tri, d_w, d_sigma = lax.fori_loop(0, plan_steps(plan, tiles_per_step), body, init)
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

    d_j(p) is the distance in pixels from the centre p = (x, y) of pixel (column x, row y) to
    triangle j's edges and s_j = +1 when p is inside the triangle (either winding), -1 outside.
    As sigma -> 0 this tends to the hard mask (1 inside any face, 1/2 on an edge, 0 elsewhere).

    Each face is evaluated on the pixels within sqrt(cutoff * sigma) of its bounding box; a pixel
    farther away would get log(1 - D_j) > -exp(-cutoff) (about -1e-13 at the default), which is
    left out: below float32 resolution of the result even summed over thousands of faces.
    `cutoff=float("inf")` evaluates every face at every pixel. Memory is O(B*H*W + tiles_per_step
    * tile_size^2) under `jax.grad` too (custom VJP, two passes over the tiles). Jittable;
    differentiable once (reverse mode) w.r.t. `vertices_2d`, `sigma` and `face_mask`.

    Args:
      vertices_2d: (B, V, 2) float pixel coordinates, pixel (col c, row r) centred at (c, r)
        (hiu_jax.geometry.projection: `project_pinhole`, `project_weak_perspective`).
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
    vertices_2d = check_points("vertices_2d", vertices_2d, 2)
    batch = vertices_2d.shape[0]
    dtype = vertices_2d.dtype
    faces = check_faces(faces, vertices_2d.shape[1])
    num_faces = faces.shape[0]
    check_image_and_tiles(height, width, tile_size, tiles_per_step)
    sigma = jnp.asarray(sigma, dtype)
    if sigma.shape != ():
        raise ValueError(f"sigma must be a scalar, got shape {sigma.shape}")
    check_positive("sigma", sigma)
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
