"""Hand skeleton topology: the 21 joints and the 20 bones, in FreiHAND/OpenPose order.

Joints: wrist, then thumb, index, middle, ring, pinky, each from its base to its tip (joint
4 f + k, finger f = 0 .. 4, k = 1 .. 4). Bones (parent, child): per finger f the chain
0-(4f+1), (4f+1)-(4f+2), (4f+2)-(4f+3), (4f+3)-(4f+4); bone b = 4 f + k - 1. Part orientation
fields (POF) store bone b's 3D unit direction in channels 3 b .. 3 b + 2.

(mano_jax orders its 16 skeleton joints differently; mano_jax.JOINT_NAMES and its joint
regressor convert to this order.)
"""
from __future__ import annotations

import numpy as np

from mano_jax.model import NUM_VERTICES  # noqa: F401  (the MANO mesh's 778, for the layers above)

FINGERS = ("thumb", "index", "middle", "ring", "pinky")
NUM_KEYPOINTS = 21
JOINT_NAMES = ("wrist",) + tuple(
    f"{finger}_{part}"
    for finger, parts in zip(FINGERS, [("cmc", "mcp", "ip", "tip")] + [("mcp", "pip", "dip", "tip")] * 4)
    for part in parts)
BONES = tuple((0 if k == 0 else 4 * f + k, 4 * f + k + 1) for f in range(5) for k in range(4))
NUM_BONES = len(BONES)  # 20
BONE_PARENTS = np.array([p for p, _ in BONES], np.int32)
BONE_CHILDREN = np.array([c for _, c in BONES], np.int32)
ROOT = 0  # the wrist: 3D labels are made root-relative by subtracting it
