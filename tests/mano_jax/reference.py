"""An independent float64 NumPy implementation of the MANO forward pass, for tests only.

Written from the MANO equations (below; Romero et al. 2017, with SMPL's skinning), one sample at a time
and with plain loops, so that it shares no code and no structure with `mano_jax.lbs`:

    R_k      = Rodrigues(theta_k)                         k = 0..15, MANO joint order
    v_shaped = T + S[:, :, :s] beta                       shape blend shapes
    J        = J_regressor v_shaped                       rest joints (16)
    v_posed  = v_shaped + P vec(R_1 - I, ..., R_15 - I)   pose correctives, row-major per joint
    G_0      = [R_0 | J_0],  G_k = G_parent(k) [R_k | J_k - J_parent(k)]
    A_k      = G_k [I | -J_k]                             rest -> posed, per joint
    v_i      = sum_k w_ik A_k [v_posed_i; 1]              linear blend skinning

Regressed joints are J_regressor @ (posed vertices + trans) (how FreiHAND made its ground truth);
FK joints are the translations of G_k (+ trans). Five fingertip vertices are appended (thumb,
index, middle, ring, pinky) and "openpose" reorders MANO-with-tips into wrist, thumb, index,
middle, ring, pinky, each base to tip.

Nothing here imports `mano_jax.lbs` or `mano_jax.rotations`.
"""
from __future__ import annotations

import numpy as np

MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)

# Fingertip vertex ids (thumb, index, middle, ring, pinky) of each codebase's convention, written
# out here independently of mano_jax.lbs.TIP_PRESETS.
TIPS = {
    "freihand": {"right": (744, 320, 443, 555, 672), "left": (744, 320, 443, 555, 672)},
    "manopth": {"right": (745, 317, 444, 556, 673), "left": (745, 317, 445, 556, 673)},
    "smplx": {"right": (744, 320, 443, 554, 671), "left": (744, 320, 443, 554, 671)},
    "ho3d": {"right": (744, 333, 444, 555, 672), "left": (744, 333, 444, 555, 672)},
}

# Position i of the OpenPose order takes MANO-with-tips joint MANO_TO_OPENPOSE[i].
MANO_TO_OPENPOSE = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]


def rodrigues(axis_angle) -> np.ndarray:
    """One axis-angle vector (3,) -> rotation matrix (3, 3).

    R = cos t I + sin t [k]x + (1 - cos t) k k^T with t = |w|, k = w / t; exactly I at w = 0.
    """
    w = np.asarray(axis_angle, np.float64)
    t = np.sqrt(w @ w)
    if t == 0.0:
        return np.eye(3)
    k = w / t
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.cos(t) * np.eye(3) + np.sin(t) * kx + (1.0 - np.cos(t)) * np.outer(k, k)


def local_rotations(arrays: dict, pose, *, flat_hand_mean: bool, pose_space: str) -> np.ndarray:
    """One pose -> (16, 3, 3) local rotations.

    pose: (48,) axis-angle, (3 + k,) global axis-angle + k PCA coefficients, or (16, 3, 3).
    """
    pose = np.asarray(pose, np.float64)
    if pose_space == "rotmat":
        assert flat_hand_mean, "rotation matrices are full rotations"
        return pose.copy()
    if pose_space == "axis_angle":
        assert pose.shape == (48,)
        fingers = pose[3:].copy()
    elif pose_space == "pca":
        k = pose.shape[0] - 3
        assert 1 <= k <= 45
        fingers = np.zeros(45)
        for i in range(k):  # coefficients @ hands_components[:k], one component per row
            fingers += pose[3 + i] * np.asarray(arrays["hands_components"], np.float64)[i]
    else:
        raise ValueError(pose_space)
    if not flat_hand_mean:
        fingers = fingers + np.asarray(arrays["hands_mean"], np.float64)
    full = np.concatenate([pose[:3], fingers])
    return np.stack([rodrigues(full[3 * j:3 * j + 3]) for j in range(16)])


def forward_one(arrays: dict, pose, betas, trans=None, *, side: str, flat_hand_mean: bool,
                pose_space: str = "axis_angle", joint_kind: str = "regressed", tips="freihand",
                joint_order: str = "openpose") -> dict:
    """The MANO hand for ONE pose and one betas vector. Returns float64 vertices (V, 3),
    joints (21, 3) and skeleton (16, 3) (the FK joints, MANO order)."""
    T = np.asarray(arrays["v_template"], np.float64)
    S = np.asarray(arrays["shapedirs"], np.float64)
    P = np.asarray(arrays["posedirs"], np.float64)
    Jreg = np.asarray(arrays["J_regressor"], np.float64)
    W = np.asarray(arrays["weights"], np.float64)
    betas = np.asarray(betas, np.float64)
    n_vertices = T.shape[0]

    rots = local_rotations(arrays, pose, flat_hand_mean=flat_hand_mean, pose_space=pose_space)

    # Shape blend shapes: T + sum_s beta_s S[:, :, s].
    v_shaped = T.copy()
    for s in range(betas.shape[0]):
        v_shaped += betas[s] * S[:, :, s]
    rest_joints = Jreg @ v_shaped

    # Pose correctives: features are (R_k - I) for k = 1..15, each flattened row-major.
    features = np.concatenate([(rots[k] - np.eye(3)).reshape(9) for k in range(1, 16)])
    v_posed = v_shaped + P.reshape(n_vertices * 3, 135).dot(features).reshape(n_vertices, 3)

    # Forward kinematics with 4x4 homogeneous matrices, parent by parent.
    def homogeneous(r, t):
        m = np.eye(4)
        m[:3, :3] = r
        m[:3, 3] = t
        return m

    world = [None] * 16
    for k in range(16):
        p = MANO_PARENTS[k]
        if p < 0:
            world[k] = homogeneous(rots[k], rest_joints[k])
        else:
            world[k] = world[p] @ homogeneous(rots[k], rest_joints[k] - rest_joints[p])
    skeleton = np.stack([g[:3, 3] for g in world])
    # A_k = G_k [I | -J_k] maps a rest-pose point to where joint k carries it.
    skinning = np.stack([g @ homogeneous(np.eye(3), -rest_joints[k]) for k, g in enumerate(world)])

    blended = np.tensordot(W, skinning, axes=([1], [0]))  # (V, 4, 4)
    v_h = np.concatenate([v_posed, np.ones((n_vertices, 1))], axis=1)
    vertices = np.einsum("vab,vb->va", blended, v_h)[:, :3]

    if trans is not None:
        trans = np.asarray(trans, np.float64)
        vertices = vertices + trans
        skeleton = skeleton + trans

    joints16 = Jreg @ vertices if joint_kind == "regressed" else skeleton
    tip_ids = TIPS[tips][side] if isinstance(tips, str) else tuple(int(i) for i in tips)
    joints = np.concatenate([joints16, vertices[list(tip_ids)]], axis=0)
    if joint_order == "openpose":
        joints = joints[MANO_TO_OPENPOSE]
    return {"vertices": vertices, "joints": joints, "skeleton": skeleton}


def forward_batch(arrays: dict, pose, betas, trans=None, *, pose_space: str = "axis_angle",
                  **kwargs) -> dict:
    """`forward_one` over a leading batch axis (B,) of pose, betas and (optionally) trans.

    pose: (B, 48), (B, 3 + k) or (B, 16, 3, 3); betas: (B, s) or (s,) shared; trans: (B, 3),
    (3,) shared, or None.
    """
    pose = np.asarray(pose, np.float64)
    betas = np.asarray(betas, np.float64)
    n = pose.shape[0]
    outs = []
    for i in range(n):
        b = betas if betas.ndim == 1 else betas[i]
        t = None if trans is None else (np.asarray(trans) if np.ndim(trans) == 1 else trans[i])
        outs.append(forward_one(arrays, pose[i], b, t, pose_space=pose_space, **kwargs))
    return {key: np.stack([o[key] for o in outs]) for key in outs[0]}
