"""Assembly of the procedural hand: official-format arrays, the left hand by mirroring, the model.

Fingertip vertex ids are placed where every preset in `mano_jax.lbs.TIP_PRESETS` expects a tip,
so FreiHAND / manopth / smplx / HO-3D conventions all give sensible fingertips on this model.
"""
from __future__ import annotations

import functools

import numpy as np

from mano_jax.model import MANO_PARENTS, NUM_FACES, NUM_JOINTS, NUM_VERTICES, model_from_arrays
from mano_jax.procedural.correctives import pose_correctives
from mano_jax.procedural.poses import pose_pca, sample_poses
from mano_jax.procedural.rig import (joint_regressor, joint_targets, shape_directions,
                                     skinning_weights)
from mano_jax.procedural.topology import build_topology, orient_outward

TIP_IDS = {  # new id of a fingertip's apex, and of its nearest ring vertices (other presets)
    "thumb": (744, (745,)), "index": (320, (317, 319, 333)), "middle": (443, (444, 445)),
    "ring": (555, (554, 556)), "pinky": (672, (671, 673)),
}


def _tip_permutation(info, n):
    """A vertex permutation that puts each fingertip at the ids the tip presets expect."""
    apex = {"thumb": info["apex"]["thumb"], "index": info["apex"][0], "middle": info["apex"][1],
            "ring": info["apex"][2], "pinky": info["apex"][3]}
    last_ring = {"thumb": info["thumb_rings"][-1], "index": info["finger_rings"][0][-1],
                 "middle": info["finger_rings"][1][-1], "ring": info["finger_rings"][2][-1],
                 "pinky": info["finger_rings"][3][-1]}
    fixed = {}  # old id -> new id
    for name, (apex_id, others) in TIP_IDS.items():
        fixed[apex[name]] = apex_id
        ring = last_ring[name]
        for k, new in enumerate(others):  # palmar-side ring vertices, nearest the pad
            fixed[ring[7 - k]] = new
    rest_old = [v for v in range(n) if v not in fixed]
    rest_new = [v for v in range(n) if v not in set(fixed.values())]
    new_of_old = np.empty(n, int)
    for o, nw in fixed.items():
        new_of_old[o] = nw
    new_of_old[rest_old] = rest_new
    return new_of_old


def build_procedural_arrays(side: str = "right", seed: int = 0) -> dict:
    """The procedural hand as a dict of official-format NumPy arrays (float64).

    Args:
      side: "right" or "left" (the left hand is the right one mirrored in z, with the
        rotations, correctives and PCA mirrored to match).
      seed: seed of the pose sampler behind hands_mean, the PCA and the correctives.
    """
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    mesh, info = build_topology()
    n = len(mesh.pos)
    if n != NUM_VERTICES:
        raise AssertionError(f"procedural hand has {n} vertices, expected {NUM_VERTICES}")
    v = np.array(mesh.pos)
    faces = orient_outward(mesh.faces, v)
    if len(faces) != NUM_FACES:
        raise AssertionError(f"procedural hand has {len(faces)} faces, expected {NUM_FACES}")
    weights = skinning_weights(mesh, info)
    targets = joint_targets(info)
    regressor = joint_regressor(v, targets)
    shapedirs = shape_directions(mesh, info, targets)

    rng = np.random.default_rng(seed)
    poses = sample_poses(rng, 4000)
    hands_mean, components, coeffs = pose_pca(poses)
    posedirs = pose_correctives(v, weights, targets, poses[:600])

    perm = _tip_permutation(info, n)
    inv = np.argsort(perm)
    arrays = {
        "v_template": v[inv],
        "shapedirs": shapedirs[inv],
        "posedirs": posedirs[inv],
        "J_regressor": regressor[:, inv],
        "weights": weights[inv],
        "f": perm[faces].astype(np.uint32),
        "hands_components": components,
        "hands_mean": hands_mean,
        "hands_coeffs": coeffs,
        "kintree_table": np.array([[2**32 - 1] + list(MANO_PARENTS[1:]), list(range(NUM_JOINTS))],
                                  dtype=np.int64),
    }
    if side == "left":
        arrays = mirror_arrays(arrays)
    return arrays


def mirror_arrays(arrays: dict) -> dict:
    """Mirrors official-format arrays in z (right <-> left hand).

    Points: z -> -z. Rotations R -> M R M with M = diag(1, 1, -1), i.e. axis-angle (x, y, z) ->
    (-x, -y, z); the pose-corrective features (R - I) change sign where exactly one index is z.
    Faces flip their winding so normals still point outward.
    """
    m = np.array([1.0, 1.0, -1.0])
    out = dict(arrays)
    out["v_template"] = arrays["v_template"] * m
    out["shapedirs"] = arrays["shapedirs"] * m[None, :, None]
    feature_sign = np.outer(m, m).reshape(9)  # (R - I)_{ab} -> m_a m_b (R - I)_{ab}
    out["posedirs"] = arrays["posedirs"] * m[None, :, None] * np.tile(feature_sign, 15)[None, None]
    aa_sign = np.tile(-m, 15)  # per joint (-x, -y, z)
    out["hands_mean"] = arrays["hands_mean"] * aa_sign
    out["hands_components"] = arrays["hands_components"] * aa_sign[None]
    out["f"] = arrays["f"][:, [0, 2, 1]]
    return out


@functools.lru_cache(maxsize=2)
def _cached_arrays(side):
    return build_procedural_arrays(side)


def procedural_model(side: str = "right"):
    """The open procedural hand as a `MANOModel` (built in a few seconds, once per process)."""
    arrays = _cached_arrays(side)
    return model_from_arrays(arrays, side, source=f"procedural {side} hand")
