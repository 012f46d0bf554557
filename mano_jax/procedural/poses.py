"""Plausible poses of the procedural hand, its joint axes and the pose PCA (hands_mean, components).

Poses are 45 axis-angle values (15 finger joints x 3, radians, MANO joint order 1..15) of full
local rotations in the rest frame, i.e. flat_hand_mean=True.
"""
from __future__ import annotations

import functools

import numpy as np

from mano_jax.model import NUM_JOINTS
from mano_jax.procedural.topology import (FINGER_MANO_JOINTS, THUMB_DIRS, THUMB_MANO_JOINTS,
                                          THUMB_NAIL, finger_frame, unit)


@functools.lru_cache(maxsize=1)
def _joint_axes():
    axes = _design_axes()
    axes.flags.writeable = False
    return axes


def joint_axes():
    """Per finger joint (15, in MANO order 1..15): flexion, abduction and twist axes (rest frame),
    (15, 3, 3). They follow from the design measurements (topology.py), not from a skeleton.

    Flexion curls the finger towards its palmar side; rotations are in the rest frame, which is
    how MANO's local axis-angle values act."""
    return _joint_axes().copy()


def _design_axes():
    axes = np.zeros((NUM_JOINTS, 3, 3))
    for f in range(4):
        d, n, _ = finger_frame(f)
        for j in FINGER_MANO_JOINTS[f]:
            axes[j] = [np.cross(n, d), n, d]  # flex about n x d moves d towards -n
    for k, j in enumerate(THUMB_MANO_JOINTS):
        d = unit(THUMB_DIRS[k])
        nail = unit(THUMB_NAIL - np.dot(THUMB_NAIL, d) * d)
        axes[j] = [np.cross(nail, d), nail, d]
    return axes[1:]


def sample_poses(rng, n):
    """Plausible finger poses as (n, 45) axis-angle values in MANO order (full rotations).

    A per-hand grasp latent (open, relaxed, fist, point, pinch, spread) sets each finger's curl
    with noise; MCP, PIP and DIP flex together (DIP ~ 2/3 PIP), spread falls with curl, and the
    thumb opposes as the hand closes. Angles stay inside anatomical limits.
    """
    axes = _joint_axes()
    out = np.zeros((n, 15, 3))
    kind = rng.integers(0, 6, size=n)
    base_curl = np.select([kind == 0, kind == 1, kind == 2], [0.05, 0.35, 0.9], 0.5)
    curl = np.clip(base_curl[:, None] + 0.18 * rng.standard_normal((n, 4)), -0.08, 1.0)
    curl[kind == 3, 0] = np.clip(0.05 * rng.standard_normal((kind == 3).sum()), -0.05, 0.2)  # point
    curl[kind == 3, 1:] = np.clip(0.85 + 0.1 * rng.standard_normal(((kind == 3).sum(), 3)), 0.5, 1)
    curl[kind == 5] = np.clip(0.1 * rng.standard_normal(((kind == 5).sum(), 4)), -0.08, 0.3)
    spread = np.clip(np.where(kind == 5, 1.0, 0.4 * (1 - curl.mean(1))), 0, 1)
    for f in range(4):
        c = curl[:, f]
        mcp, pip, dip = FINGER_MANO_JOINTS[f]
        flex = np.stack([np.deg2rad(85) * c + np.deg2rad(6) * rng.standard_normal(n),
                         np.deg2rad(100) * np.clip(c, 0, 1) + np.deg2rad(5) * rng.standard_normal(n),
                         np.deg2rad(65) * np.clip(c, 0, 1) + np.deg2rad(5) * rng.standard_normal(n)], 1)
        flex = np.clip(flex, np.deg2rad([-20, -5, -10]), np.deg2rad([95, 110, 80]))
        abd = (np.deg2rad([-12, -3, 5, 14][f]) * spread + np.deg2rad(4) * rng.standard_normal(n))
        for k, j in enumerate((mcp, pip, dip)):
            out[:, j - 1] = flex[:, k, None] * axes[j - 1, 0]
        out[:, mcp - 1] += abd[:, None] * axes[mcp - 1, 1]
        out[:, mcp - 1] += np.deg2rad(3) * rng.standard_normal((n, 1)) * axes[mcp - 1, 2]
    close = np.clip(curl.mean(1) + 0.2 * (kind == 4), 0, 1)  # the pinch brings the thumb across
    t_cmc_flex = np.deg2rad(45) * close + np.deg2rad(8) * rng.standard_normal(n)
    t_cmc_abd = np.deg2rad(-25) * close + np.deg2rad(10) * rng.standard_normal(n)
    t_mcp = np.clip(np.deg2rad(35) * close + np.deg2rad(8) * rng.standard_normal(n),
                    np.deg2rad(-10), np.deg2rad(60))
    t_ip = np.clip(np.deg2rad(50) * close + np.deg2rad(12) * rng.standard_normal(n),
                   np.deg2rad(-15), np.deg2rad(85))
    cmc, tmcp, tip = THUMB_MANO_JOINTS
    out[:, cmc - 1] = t_cmc_flex[:, None] * axes[cmc - 1, 0] + t_cmc_abd[:, None] * axes[cmc - 1, 1]
    out[:, cmc - 1] += np.deg2rad(20) * close[:, None] * axes[cmc - 1, 2]  # opposition twist
    out[:, tmcp - 1] = t_mcp[:, None] * axes[tmcp - 1, 0]
    out[:, tip - 1] = t_ip[:, None] * axes[tip - 1, 0]
    return out.reshape(n, 45)


def pose_pca(poses):
    """The pose PCA of MANO's file format from sample poses (N, 45).

    Returns hands_mean (45,), hands_components (45, 45) with one component per row by decreasing
    variance, and hands_coeffs (N, 45), the poses' coefficients in that basis.
    """
    hands_mean = poses.mean(0)
    _, _, components = np.linalg.svd(poses - hands_mean, full_matrices=False)
    return hands_mean, components, (poses - hands_mean) @ components.T
