"""Random hands (pose, shape) through MANO, and the forearm attached to the wrist.

The forearm is extra geometry for the picture only: a tapered tube extruded from the mesh's wrist
boundary ring (found from the faces, so any MANO-format model works). It is rendered (skin or a
sleeve) but it is NOT part of the hand mask, whose pixels are those of the MANO surface, as the
labels (verts, xyz) describe only that surface and the network's mesh silhouette is compared
with the mask.
"""
from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np

import mano_jax
from mano_jax import procedural

from .placement import hand_frame, sample_global_rotation

# Forearm rings: distance from the wrist ring along the forearm (metres) and radius factor.
FOREARM_RINGS = ((0.03, 1.04), (0.08, 1.10), (0.16, 1.16), (0.30, 1.20))


def sample_hand_params(rng, model, *, procedural_poses, pca_components=12, pca_std=1.0,
                       viewpoints="freihand", frame=None):
    """One random hand: (pose (48,) with the mean ADDED convention, betas (10,)).

    Finger poses: for the procedural model, from the same plausible-pose distribution that
    defines its mean and PCA (`procedural.sample_poses`); for a user's MANO file, hands_mean +
    c @ hands_components[:pca_components] with c ~ N(0, pca_std^2) truncated at 2 sd. The global
    rotation follows `sample_global_rotation(viewpoints)` ("freihand" or "uniform"); frame: the
    model's `hand_frame` (computed when None). Returned in FreiHAND's convention: fingers minus
    hands_mean. procedural_poses: True for the procedural model (see `is_procedural`).
    """
    if procedural_poses:
        fingers = procedural.sample_poses(rng, 1)[0]
    else:
        c = np.clip(rng.standard_normal(pca_components), -2, 2) * pca_std
        components = np.asarray(model.hands_components[:pca_components])
        fingers = np.asarray(model.hands_mean) + c @ components
    frame = hand_frame(model) if frame is None else frame
    global_rot = sample_global_rotation(rng, frame, viewpoints)
    pose = np.concatenate([global_rot, fingers - np.asarray(model.hands_mean)])
    betas = np.clip(rng.standard_normal(10), -2, 2)
    return pose, betas


@jax.jit
def posed_hands(model, pose, betas):
    """(B, 48) pose (mean added), (B, 10) betas -> vertices (B, V, 3), joints (B, 21, 3)."""
    out = mano_jax.forward(model, pose, betas, flat_hand_mean=False)
    return out.vertices, out.joints


def is_procedural(model) -> bool:
    """Whether `model` is the procedural hand (its joint axes are known to the pose sampler)."""
    ref = mano_jax.procedural_model(model.side)
    return model.v_template.shape == ref.v_template.shape and bool(
        jnp.all(model.v_template == ref.v_template))


def wrist_ring(faces) -> np.ndarray:
    """The vertex indices (R,) of the mesh's longest boundary loop, in order (MANO: the wrist
    opening, 16 vertices); empty when the mesh is closed."""
    faces = np.asarray(faces)
    count = collections.Counter()
    directed = {}
    for tri in faces:
        for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0])):
            count[(min(a, b), max(a, b))] += 1
            directed[(int(a), int(b))] = True
    nxt = {}
    for (a, b), n in count.items():
        if n == 1:  # a boundary edge; follow it in its face's direction
            a, b = (int(a), int(b)) if (int(a), int(b)) in directed else (int(b), int(a))
            nxt[a] = b
    best, seen = [], set()
    for start in nxt:
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen and v in nxt:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        if len(loop) > len(best):
            best = loop
    return np.asarray(best, np.int64)


@functools.lru_cache(maxsize=8)
def forearm_faces(ring_size: int, num_vertices: int) -> np.ndarray:
    """(2 * R * len(FOREARM_RINGS) + R, 3) faces of the capped tube: ring k of R new vertices is
    numbered num_vertices + k * R + i, then one cap centre; ring -1 is the wrist ring itself
    (indices filled by the caller)."""
    faces = []
    n = len(FOREARM_RINGS)
    for k in range(n):
        for i in range(ring_size):
            j = (i + 1) % ring_size
            a, b = (k - 1) * ring_size + i, (k - 1) * ring_size + j
            c, d = k * ring_size + i, k * ring_size + j
            faces += [(a, c, b), (b, c, d)]
    centre = n * ring_size
    for i in range(ring_size):  # the cap closes the surface (back-face culling stays exact)
        faces.append(((n - 1) * ring_size + i, centre, (n - 1) * ring_size + (i + 1) % ring_size))
    return np.asarray(faces, np.int64) + num_vertices


def forearm_mesh(vertices, joints, ring, num_vertices):
    """Forearm vertices (B, R * len(FOREARM_RINGS) + 1, 3) and faces (F', 3) for posed hands.

    vertices: (B, V, 3) posed hands; joints: (B, 21, 3) (0 wrist, 9 middle-finger base); ring:
    `wrist_ring` indices. The tube's axis leaves the ring's centre away from keypoint 9 along the
    ring's plane normal; ring k is the wrist ring scaled by its radius factor about the centre and
    moved FOREARM_RINGS[k][0] metres along the axis; the last vertex is the centre of the cap
    that closes the far end."""
    R = len(ring)
    loop = vertices[:, ring]  # (B, R, 3)
    centre = loop.mean(1, keepdims=True)
    axis = np.cross(loop - centre, np.roll(loop, -1, 1) - centre).sum(1)
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    away = np.sign(np.einsum("bi,bi->b", axis, centre[:, 0] - joints[:, 9]))
    axis = axis * np.where(away == 0, 1.0, away)[:, None]
    rings = [centre + (loop - centre) * s + d * axis[:, None] for d, s in FOREARM_RINGS]
    faces = forearm_faces(R, num_vertices).copy()
    # ring -1 (indices num_vertices - R .. num_vertices - 1) is the wrist ring itself
    wrist = (faces >= num_vertices - R) & (faces < num_vertices)
    faces[wrist] = ring[faces[wrist] - (num_vertices - R)]
    rings.append(centre + FOREARM_RINGS[-1][0] * axis[:, None])
    return np.concatenate(rings, 1), faces
