"""The procedural hand's pose correctives: LBS fitted to dual-quaternion skinning.

Linear blend skinning (LBS) collapses the skin at bent joints ("candy wrapper"); dual-quaternion
skinning (DQS, Kavan et al. 2007) does not. MANO's pose correctives are offsets P vec(R - I) added
to the rest mesh before LBS, so we fit P by least squares such that LBS(v + P vec(R - I)) ~ DQS(v)
over sample poses. Rotations and forward kinematics are `mano_jax.rotations` and
`mano_jax.lbs.forward_kinematics`, evaluated in float64 (the fit amplifies rounding).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mano_jax import rotations
from mano_jax.lbs import forward_kinematics
from mano_jax.model import MANO_PARENTS, NUM_JOINTS


def dual_quaternion_skin(weights, transforms, points):
    """Dual-quaternion skinning (Kavan et al. 2007).

    weights (V, J), transforms (N, J, 3, 4), points (V, 3) -> skinned points (N, V, 3).
    Each joint's rigid transform [R | t] becomes a unit dual quaternion (q, 0.5 (0, t) q); each
    vertex blends them with its weights, signs aligned with its dominant joint's quaternion, and
    applies the normalised blend. Units are those of the points and translations (metres).
    """
    qr = rotations.matrix_to_quaternion(transforms[..., :3])  # (N, J, 4)
    t = jnp.concatenate([jnp.zeros(transforms.shape[:-2] + (1,), transforms.dtype),
                         transforms[..., 3]], -1)
    qd = 0.5 * rotations.quaternion_multiply(t, qr)
    dominant = jnp.argmax(weights, 1)  # align hemispheres with the dominant joint
    ref = qr[:, dominant]  # (N, V, 4)
    sign = jnp.where(jnp.einsum("nva,nja->nvj", ref, qr) < 0, -1.0, 1.0)
    br = jnp.einsum("vj,nvj,nja->nva", weights, sign, qr)
    bd = jnp.einsum("vj,nvj,nja->nva", weights, sign, qd)
    norm = jnp.linalg.norm(br, axis=-1, keepdims=True)
    br, bd = br / norm, bd / norm
    conj = br * jnp.array([1.0, -1.0, -1.0, -1.0], br.dtype)
    trans = 2 * rotations.quaternion_multiply(bd, conj)[..., 1:]
    w, xyz = br[..., :1], br[..., 1:]
    p = points[None]
    rotated = p + 2 * jnp.cross(xyz, jnp.cross(xyz, p) + w * p)  # q p q* for unit q = (w, xyz)
    return rotated + trans


@jax.jit
def _posed_targets(axis_angle, rest_joints, weights, v_template):
    """Local rotations (N, 16, 3, 3), skinning transforms (N, 16, 3, 4) and DQS-posed vertices
    (N, V, 3) for local axis-angle values (N, 16, 3), rest joints (N, 16, 3), weights (V, 16) and
    rest vertices (V, 3). One compiled graph: op by op, the first build would take seconds."""
    local = rotations.axis_angle_to_matrix(axis_angle)
    _, _, transforms = forward_kinematics(MANO_PARENTS, local, rest_joints)
    return local, transforms, dual_quaternion_skin(weights, transforms, v_template)


def _skinning_targets(v_template, weights, joints, poses):
    """`_posed_targets` of finger poses (N, 45) with an identity root, in float64 NumPy."""
    n = poses.shape[0]
    axis_angle = np.concatenate([np.zeros((n, 1, 3)), poses.reshape(n, NUM_JOINTS - 1, 3)], 1)
    rest = np.broadcast_to(joints, (n, NUM_JOINTS, 3))
    with jax.enable_x64(True), jax.ensure_compile_time_eval():
        out = _posed_targets(*(jnp.asarray(a, jnp.float64)
                               for a in (axis_angle, rest, weights, v_template)))
        return tuple(np.asarray(a) for a in out)


def pose_correctives(v_template, weights, joints, poses):
    """posedirs (V, 3, 135) such that LBS(v + P f(R)) ~ DQS(v), fitted over sample poses.

    v_template (V, 3) and joints (16, 3) in metres, weights (V, 16), poses (N, 45) finger
    axis-angle values (full rotations). Each vertex uses only the (R - I) features of the
    non-root joints that skin it, with a small ridge term, so no corrective couples unrelated
    fingers."""
    n = poses.shape[0]
    local, transforms, target = _skinning_targets(v_template, weights, joints, poses)
    blended = np.einsum("vj,njab->nvab", weights, transforms)
    # Rest-space residual: undo the LBS transform of each vertex.
    rest_target = np.linalg.solve(blended[..., :3], (target - blended[..., 3])[..., None])[..., 0]
    residual = rest_target - v_template  # (N, V, 3)
    features = (local[:, 1:] - np.eye(3)).reshape(n, 15, 9)
    posedirs = np.zeros((len(v_template), 3, 135))
    influence = weights[:, 1:] > 1e-3
    groups = {}
    for v in range(len(v_template)):
        groups.setdefault(tuple(np.flatnonzero(influence[v])), []).append(v)
    for joint_set, verts in groups.items():
        if not joint_set:
            continue
        cols = np.concatenate([np.arange(9 * j, 9 * j + 9) for j in joint_set])
        x = features[:, list(joint_set)].reshape(n, -1)
        y = residual[:, verts].reshape(n, -1)
        coef = np.linalg.solve(x.T @ x + 1e-4 * n * np.eye(x.shape[1]), x.T @ y)
        posedirs[np.ix_(verts, [0, 1, 2], cols)] = coef.reshape(len(cols), len(verts), 3).transpose(1, 2, 0)
    return posedirs
