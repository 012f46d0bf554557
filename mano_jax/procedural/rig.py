"""The procedural hand's rig: skinning weights, rest skeleton, joint regressor, shape directions.

All from the labels `topology.build_topology` attaches to each vertex (its part and its arc length
s along its finger, metres): weights blend smoothly across each joint along a finger, palm
vertices blend into the MCP joints near the knuckles and into the thumb's CMC joint around the
thenar; each joint is a sparse non-negative, sum-to-one combination of the vertices around it
(NNLS), so J_regressor @ v_template reproduces the designed skeleton; the 10 shape directions are
size, finger length, palm width, thickness, finger girth, palm length, thumb size, pinky length,
index/ring ratio and fingertip taper.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy.optimize import nnls

from mano_jax.model import NUM_JOINTS
from mano_jax.procedural.topology import (FINGER_LENGTHS, FINGER_MANO_JOINTS, PALM_CENTER_Z,
                                          PALM_TOP_X, THUMB_CMC, THUMB_LENGTHS, THUMB_MANO_JOINTS,
                                          THUMB_RADII, WRIST_JOINT, WRIST_X, build_topology,
                                          point_on_chain, smoothstep)


def _blend_weights(s, bounds, joints, width):
    """Weights along a chain: joints[0] below bounds[0], joints[k] between bounds[k-1], bounds[k].

    Each step is a smoothstep of half-width `width[k]` centred on bounds[k]."""
    steps = [smoothstep((s - b + w) / (2 * w)) for b, w in zip(bounds, width)]
    out = {joints[0]: 1 - steps[0]}
    for k in range(1, len(joints)):
        nxt = steps[k] if k < len(steps) else 0.0
        out[joints[k]] = out.get(joints[k], 0.0) + steps[k - 1] - nxt
    return out


def skinning_weights(mesh, info):
    """(V, 16) linear-blend-skinning weights, non-negative, each row summing to 1."""
    n = len(mesh.pos)
    w = np.zeros((n, NUM_JOINTS))
    pos = np.array(mesh.pos)
    thumb_centre = np.array([pos[v] for v in info["thumb_rings"][0]]).mean(0)
    for v in range(n):
        kind, tag = mesh.part[v]
        s = mesh.s[v]
        if kind == "finger":
            f = tag
            l1, l2, _ = FINGER_LENGTHS[f]
            j = FINGER_MANO_JOINTS[f]
            for jj, val in _blend_weights(s, [0.0, l1, l1 + l2], (0,) + j,
                                          [0.011, 0.4 * l2, 0.35 * l2]).items():
                w[v, jj] += val
        elif kind == "thumb":
            l1, l2, _ = THUMB_LENGTHS
            for jj, val in _blend_weights(s, [0.0, l1, l1 + l2], (0,) + THUMB_MANO_JOINTS,
                                          [0.012, 0.010, 0.4 * l2 * 0.8]).items():
                w[v, jj] += val
        elif kind == "thumb_base":
            w[v, 0], w[v, THUMB_MANO_JOINTS[0]] = 0.5, 0.5
        elif kind == "palm":
            i, _ = tag
            f = min(i // 4, 3)
            mcp = smoothstep((s + 0.011) / 0.022)  # the finger-side half of the MCP blend
            d = np.linalg.norm(pos[v] - thumb_centre)
            cmc = 0.5 * (1 - smoothstep((d - THUMB_RADII[0]) / (1.2 * THUMB_RADII[0])))
            w[v, FINGER_MANO_JOINTS[f][0]] = mcp * (1 - cmc)
            w[v, THUMB_MANO_JOINTS[0]] = cmc
            w[v, 0] = 1 - w[v].sum()
        else:  # wrist taper
            w[v, 0] = 1.0
    return w / w.sum(1, keepdims=True)


def joint_targets(info):
    """The designed rest skeleton (16, 3) in MANO joint order."""
    joints = np.zeros((NUM_JOINTS, 3))
    joints[0] = WRIST_JOINT
    for f in range(4):
        joints[list(FINGER_MANO_JOINTS[f])] = info["chains"][f][:3]
    joints[list(THUMB_MANO_JOINTS)] = info["chains"]["thumb"][:3]
    return joints


def joint_regressor(vertices, targets, neighbours=40):
    """Sparse non-negative rows summing to 1 with J_regressor @ vertices == targets (NNLS)."""
    reg = np.zeros((len(targets), len(vertices)))
    for j, t in enumerate(targets):
        idx = np.argsort(np.linalg.norm(vertices - t, axis=1))[:neighbours]
        lam = 10.0
        a = np.vstack([vertices[idx].T, lam * np.ones(len(idx))])
        b = np.concatenate([t, [lam]])
        x, residual = nnls(a, b)
        if residual > 1e-6:
            raise AssertionError(f"joint {j} is not inside the hull of its vertices ({residual})")
        reg[j, idx] = x / x.sum()
    return reg


def shape_directions(mesh, info, joints):
    """(V, 3, 10) displacements per unit beta. Each is about one standard deviation of adults."""
    pos = np.array(mesh.pos)
    n = len(pos)
    dirs = np.zeros((n, 3, 10))
    kinds = [p[0] for p in mesh.part]
    s = np.array(mesh.s)
    finger_of = np.array([p[1] if p[0] == "finger" else -1 for p in mesh.part])
    is_thumb = np.array([k == "thumb" for k in kinds])
    on_finger = finger_of >= 0

    axis_pt = np.zeros_like(pos)  # nearest point on the own bone axis (fingers), for radial moves
    axis_dir = np.zeros_like(pos)
    for v in range(n):
        if on_finger[v]:
            f = finger_of[v]
            axis_pt[v], axis_dir[v] = point_on_chain(info["chains"][f], FINGER_LENGTHS[f],
                                                      min(s[v], FINGER_LENGTHS[f].sum()))
        elif is_thumb[v]:
            axis_pt[v], axis_dir[v] = point_on_chain(info["chains"]["thumb"], THUMB_LENGTHS,
                                                      min(s[v], THUMB_LENGTHS.sum()))
    radial = np.where((on_finger | is_thumb)[:, None], pos - axis_pt, 0.0)

    dirs[:, :, 0] = 0.06 * (pos - joints[0])                                  # overall size
    dirs[:, :, 1] = 0.07 * np.maximum(s, 0)[:, None] * axis_dir               # finger length
    dirs[:, 2, 2] = 0.07 * (pos[:, 2] - PALM_CENTER_Z) * (~is_thumb)          # palm width
    dirs[:, 2, 2] += is_thumb * 0.07 * (THUMB_CMC[2] - PALM_CENTER_Z)
    palm_y = np.where(on_finger | is_thumb, radial[:, 1], pos[:, 1])
    dirs[:, 1, 3] = 0.10 * palm_y                                              # thickness
    dirs[:, :, 4] = 0.10 * radial                                              # finger girth
    palm_len = np.clip((pos[:, 0] - WRIST_X) / (PALM_TOP_X - WRIST_X), 0, 1)
    dirs[:, 0, 5] = 0.006 * np.where(on_finger, 1.0, palm_len * (~is_thumb))   # palm length
    thumb_s = np.where(is_thumb, np.maximum(s, 0), 0.0)
    dirs[:, :, 6] = 0.08 * thumb_s[:, None] * axis_dir + 0.06 * is_thumb[:, None] * radial
    pinky = finger_of == 3
    dirs[:, :, 7] = 0.08 * (pinky * np.maximum(s, 0))[:, None] * axis_dir     # pinky length
    ratio = np.where(finger_of == 0, 1.0, np.where(finger_of == 2, -1.0, 0.0))
    dirs[:, :, 8] = 0.05 * (ratio * np.maximum(s, 0))[:, None] * axis_dir     # index : ring
    total = np.array([FINGER_LENGTHS[f].sum() if f >= 0 else 1.0 for f in finger_of])
    distal = np.clip((s / total - 0.75) / 0.25, 0, 1) * on_finger
    dirs[:, :, 9] = -0.12 * distal[:, None] * radial                          # tip taper
    return dirs


@functools.lru_cache(maxsize=1)
def default_skeleton():
    """The designed rest skeleton (16, 3) of the right hand, metres (cached)."""
    _, info = build_topology()
    return joint_targets(info)
