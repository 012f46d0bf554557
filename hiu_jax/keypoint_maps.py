"""Reading the network's maps: keypoints from heat maps (soft-argmax), bone directions from
3D joints, and part orientation fields pooled over each 2D bone's region.

Topology (joints, bones) and the pixel convention come from hiu_jax.geometry: heat-map pixel
(c, r) is centred at (c, r).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from hiu_jax.geometry.skeleton import BONE_CHILDREN, BONE_PARENTS, NUM_BONES


def soft_argmax(heatmaps, temperature: float):
    """Expected pixel position under softmax(H / T) over each map's pixels.

    heatmaps (B, M, M, J) -> (B, J, 2) heat-map coordinates (x = column, y = row; pixel centres
    at integers).
    """
    b, m, w, j = heatmaps.shape
    logits = heatmaps.reshape(b, m * w, j) / temperature
    prob = jax.nn.softmax(logits, axis=1).reshape(b, m, w, j)
    x = jnp.einsum("bhwj,w->bj", prob, jnp.arange(w, dtype=heatmaps.dtype))
    y = jnp.einsum("bhwj,h->bj", prob, jnp.arange(m, dtype=heatmaps.dtype))
    return jnp.stack([x, y], -1)


def bone_directions(keypoints_3d, eps: float = 1e-9):
    """Unit vectors child - parent of the 20 BONES: (B, 21, 3) -> (B, 20, 3); 0 for a bone
    shorter than eps (metres)."""
    d = keypoints_3d[:, BONE_CHILDREN] - keypoints_3d[:, BONE_PARENTS]
    length2 = jnp.sum(d * d, -1, keepdims=True)
    safe = jnp.where(length2 > eps * eps, length2, 1.0)
    return jnp.where(length2 > eps * eps, d * jax.lax.rsqrt(safe), 0.0)


def bone_distances2(joints_hm, size: int):
    """Squared distance of every heat-map pixel centre to each 2D bone segment.

    joints_hm (B, 21, 2) heat-map coordinates -> (B, M, M, 20), M = size (heat-map px^2)."""
    g = jnp.arange(size, dtype=joints_hm.dtype)
    pix = jnp.stack(jnp.meshgrid(g, g, indexing="xy"), -1)[None, :, :, None, :]  # (1,M,M,1,2)
    a = joints_hm[:, BONE_PARENTS][:, None, None]  # (B, 1, 1, 20, 2)
    ab = joints_hm[:, BONE_CHILDREN][:, None, None] - a
    ab2 = jnp.maximum(jnp.sum(ab * ab, -1), 1e-12)
    t = jnp.clip(jnp.sum((pix - a) * ab, -1) / ab2, 0.0, 1.0)
    r = pix - a - t[..., None] * ab
    return jnp.sum(r * r, -1)


def bone_regions(joints_hm, size: int, width: float):
    """The pipeline's POF regions: pixels whose centre is within `width` of the 2D bone.

    joints_hm (B, 21, 2) heat-map coordinates -> (B, M, M, 20) float 0/1, M = size.
    """
    return (bone_distances2(joints_hm, size) <= width * width).astype(joints_hm.dtype)


def soft_bone_regions(joints_hm, size: int, width: float):
    """exp(-d^2 / (2 width^2)) of the distance d to each 2D bone: a smooth `bone_regions`, whose
    pooled POF moves continuously with the joints. (B, 21, 2) -> (B, M, M, 20)."""
    return jnp.exp(-bone_distances2(joints_hm, size) / (2.0 * width * width))


def pooled_bone_vectors(pof, weight):
    """The POF averaged over each bone's region: sum_px w P_b / max(sum_px w, 1e-12).

    pof (B, M, M, 60) (channels 3b..3b+2 = bone b), weight (B, M, M, 20) -> (B, 20, 3); zero
    where a bone's region is empty."""
    b, m, w, _ = pof.shape
    vectors = pof.reshape(b, m, w, NUM_BONES, 3)
    total = jnp.einsum("bhwk,bhwkc->bkc", weight, vectors)
    return total / jnp.maximum(jnp.sum(weight, axis=(1, 2)), 1e-12)[..., None]
