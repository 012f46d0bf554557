"""The MANO forward pass: blend shapes, forward kinematics and linear blend skinning.

    v_shaped = T + S beta                           shape blend shapes
    J        = J_regressor v_shaped                 rest joints (16)
    v_posed  = v_shaped + P vec(R_1..15 - I)        pose correctives
    G_k      = G_parent(k) [R_k | J_k - J_parent]    forward kinematics
    v        = sum_k w_k (G_k [I | -J_k]) v_posed    skinning

`forward` evaluates these with the model's derived arrays (`mano_jax.model.derived_arrays`):
v_posed is one matrix product [1, beta, vec(R - I)] @ blend_basis, J comes from the betas alone
([1, beta] @ joint_basis), and the mesh stays component-major (N, 3, V) until the skinning is done.
Every public function is pure and batched over leading axes (`skin`: one batch axis); jit, vmap,
grad and pmap apply. Units are metres.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mano_jax import rotations
from mano_jax.model import NUM_JOINTS, MANOModel

# Fingertip vertex ids in the order thumb, index, middle, ring, pinky: MANO has no tip joints,
# and each codebase picks its own vertex near each nail (they differ by a vertex or two).
TIP_PRESETS = {
    "freihand": {"right": (744, 320, 443, 555, 672), "left": (744, 320, 443, 555, 672)},
    "manopth": {"right": (745, 317, 444, 556, 673), "left": (745, 317, 445, 556, 673)},
    "smplx": {"right": (744, 320, 443, 554, 671), "left": (744, 320, 443, 554, 671)},
    "ho3d": {"right": (744, 333, 444, 555, 672), "left": (744, 333, 444, 555, 672)},
}

# MANO order + tips (16 thumb, 17 index, 18 middle, 19 ring, 20 pinky) -> OpenPose/FreiHAND order.
MANO_TO_OPENPOSE = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)
JOINT_ORDERS = ("openpose", "mano")
POSE_SPACES = ("axis_angle", "pca", "rotmat")
JOINT_KINDS = ("regressed", "fk")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MANOOutput:
    """What `forward` returns. Leading axes are those of the pose input.

    vertices: (..., V, 3) posed mesh, metres.
    joints: (..., 21, 3) the 16 joints (regressed or FK) plus 5 fingertip vertices, in the
      requested order (OpenPose/FreiHAND by default).
    skeleton: (..., 16, 3) the posed kinematic-tree joints (FK), MANO order.
    """

    vertices: jax.Array
    joints: jax.Array
    skeleton: jax.Array


def tip_vertex_ids(tips, side: str) -> tuple[int, ...]:
    """Fingertip vertex ids (thumb, index, middle, ring, pinky) for a preset name or 5 ints."""
    if isinstance(tips, str):
        if tips not in TIP_PRESETS:
            raise ValueError(f"unknown fingertip preset {tips!r}; choose one of {sorted(TIP_PRESETS)}"
                             " or pass 5 vertex ids (thumb, index, middle, ring, pinky)")
        return TIP_PRESETS[tips][side]
    ids = tuple(int(i) for i in tips)
    if len(ids) != 5:
        raise ValueError(f"tips must name 5 vertex ids (thumb, index, middle, ring, pinky), got {ids}")
    return ids


def pose_to_rotations(model: MANOModel, pose, *, flat_hand_mean: bool, pose_space: str):
    """Local joint rotations from any pose input.

    Args:
      pose: "axis_angle": (..., 48) = 3 global + 45 finger values, radians;
            "pca": (..., 3 + k), 3 global axis-angle values then k in 1..45 PCA coefficients
              (coefficients @ hands_components[:k]; k = 45 is PCA too, never a silent switch);
            "rotmat": (..., 16, 3, 3) local rotation matrices, used as given.
      flat_hand_mean: False adds `hands_mean` to the 45 finger values (FreiHAND's convention and
        smplx's default); True uses them as the full rotation (manopth's default). Rotation
        matrices are always full rotations, so "rotmat" requires True.
    Returns:
      (..., 16, 3, 3) local rotations in MANO joint order.
    """
    if pose_space not in POSE_SPACES:
        raise ValueError(f"pose_space must be one of {POSE_SPACES}, got {pose_space!r}")
    if pose_space == "rotmat":
        if pose.shape[-3:] != (NUM_JOINTS, 3, 3):
            raise ValueError(f"rotmat pose must have shape (..., 16, 3, 3), got {pose.shape}")
        if not flat_hand_mean:
            raise ValueError("rotation-matrix poses are full local rotations; pass "
                             "flat_hand_mean=True (add hands_mean in axis-angle space first if needed)")
        return pose
    if pose.ndim < 1:
        raise ValueError(f"pose must have a last axis of pose values, got shape {pose.shape}")
    n = pose.shape[-1]
    if pose_space == "axis_angle":
        if n != 48:
            raise ValueError(f"axis_angle pose must have 48 values (3 global + 45 fingers), got {n}"
                             "; for PCA coefficients pass pose_space='pca'")
        fingers = pose[..., 3:]
    else:
        k = n - 3
        if not 1 <= k <= 45:
            raise ValueError(f"pca pose must have 3 global values + 1..45 PCA coefficients, got {n} values")
        fingers = pose[..., 3:] @ model.hands_components[:k]
    if not flat_hand_mean:
        fingers = fingers + model.hands_mean
    axis_angle = jnp.concatenate([pose[..., :3], fingers], axis=-1)
    return rotations.axis_angle_to_matrix(axis_angle.reshape(pose.shape[:-1] + (NUM_JOINTS, 3)))


def pose_features(local_rotations):
    """vec(R_1..15 - I), row-major per joint: (..., 16, 3, 3) -> (..., 135)."""
    eye = jnp.eye(3, dtype=local_rotations.dtype)
    return (local_rotations[..., 1:, :, :] - eye).reshape(local_rotations.shape[:-3] + (-1,))


def _padded_betas(model: MANOModel, betas):
    """betas (..., S) with zeros appended up to model.num_betas (an exact no-op in the sums)."""
    s = betas.shape[-1]
    if s > model.num_betas:
        raise ValueError(f"betas has {s} values but the model has {model.num_betas} shape directions")
    if s == model.num_betas:
        return betas
    return jnp.concatenate([betas, jnp.zeros(betas.shape[:-1] + (model.num_betas - s,),
                                             betas.dtype)], axis=-1)


def blended_mesh(model: MANOModel, betas, local_rotations):
    """v_template + S beta + P vec(R_1..15 - I) as one matrix product with model.blend_basis.

    Args:
      betas: (N, S), S <= model.num_betas; local_rotations: (N, 16, 3, 3).
    Returns:
      (N, 3, V) the shaped, pose-corrected rest mesh, component-major (x, y, z rows).
    """
    betas = _padded_betas(model, betas)
    ones = jnp.ones(betas.shape[:-1] + (1,), betas.dtype)
    features = jnp.concatenate([ones, betas, pose_features(local_rotations)], axis=-1)
    return (features @ model.blend_basis).reshape(betas.shape[:-1] + (3, -1))


def rest_joints(model: MANOModel, betas):
    """J_regressor (v_template + S beta) from the betas alone. betas (..., S) -> (..., 16, 3)."""
    betas = _padded_betas(model, betas)
    ones = jnp.ones(betas.shape[:-1] + (1,), betas.dtype)
    joints = jnp.concatenate([ones, betas], axis=-1) @ model.joint_basis
    return joints.reshape(betas.shape[:-1] + (NUM_JOINTS, 3))


def _take(x, ids, axis: int):
    """x at static indices `ids` along `axis`, by slices (a gather would transpose into a slow
    scatter-add on CPU): one strided slice for an arithmetic progression, else a concatenation."""
    ids = [int(i) for i in ids]
    axis = axis % x.ndim
    step = ids[1] - ids[0] if len(ids) > 1 else 1
    if step == 0 and len(set(ids)) == 1:
        one = jax.lax.slice_in_dim(x, ids[0], ids[0] + 1, axis=axis)
        return jnp.broadcast_to(one, x.shape[:axis] + (len(ids),) + x.shape[axis + 1:])
    if step > 0 and all(b - a == step for a, b in zip(ids, ids[1:])):
        return jax.lax.slice_in_dim(x, ids[0], ids[-1] + 1, step, axis)
    return jnp.concatenate([jax.lax.slice_in_dim(x, i, i + 1, axis=axis) for i in ids], axis)


def _matmul3(a, b):
    """a @ b for (..., 3, 3) matrices as multiply-adds (one fused loop, no batched dot)."""
    return sum(a[..., :, k, None] * b[..., None, k, :] for k in range(3))


def _matvec3(a, v):
    """a @ v for (..., 3, 3) matrices and (..., 3) vectors as multiply-adds."""
    return sum(a[..., :, k] * v[..., None, k] for k in range(3))


def _levels(parents):
    """The tree by depth (static): [(joint ids, index of each one's parent in the level above)].

    A joint's parent is always exactly one level up, so each level is one batched product; for
    MANO the levels are the wrist, then the 5 fingers' 1st, 2nd and 3rd joints."""
    depth = [0] * len(parents)
    for j, p in enumerate(parents):
        if p >= 0:
            depth[j] = depth[p] + 1
    levels = [[j for j in range(len(parents)) if depth[j] == d] for d in range(max(depth) + 1)]
    out = [(np.array(levels[0]), None)]
    for d in range(1, len(levels)):
        out.append((np.array(levels[d]), np.array([levels[d - 1].index(parents[j]) for j in levels[d]])))
    return out


def _parents_of_level(r, t, pos):
    """The parents' world rotations (..., K, 3, 3) and positions (..., K, 3) for a level.

    MANO needs no indexing: a level's parents are either all the root (a broadcast) or the level
    above in the same order (the level itself)."""
    if np.array_equal(pos, np.arange(r.shape[-3])):
        return r, t
    if np.all(pos == pos[0]):
        k = int(pos[0])
        return r[..., k:k + 1, :, :], t[..., k:k + 1, :]  # broadcasts in the products
    return _take(r, pos, -3), _take(t, pos, -2)


def forward_kinematics(parents, local_rotations, rest_joints):
    """World rotations and positions of every joint, and the skinning transforms.

    Args:
      parents: static tuple, parents[j] < j, -1 for the root.
      local_rotations: (..., J, 3, 3).
      rest_joints: (..., J, 3) rest-pose joint positions.
    Returns:
      world_rotations (..., J, 3, 3), posed_joints (..., J, 3), and the skinning transforms
      (..., J, 3, 4) = [R_world | t_world - R_world J_rest], which map rest-pose points of a
      joint's region to their posed positions.
    """
    rs, ts, order = [], [], []
    for ids, parent_pos in _levels(parents):
        local_r = _take(local_rotations, ids, -3)
        rest = _take(rest_joints, ids, -2)
        if parent_pos is None:  # the root(s)
            r, t = local_r, rest
        else:
            parent_r, parent_t = _parents_of_level(rs[-1], ts[-1], parent_pos)
            offset = rest - _take(rest_joints, order[-1][parent_pos], -2)
            r = _matmul3(parent_r, local_r)
            t = parent_t + _matvec3(parent_r, offset)
        rs.append(r)
        ts.append(t)
        order.append(ids)
    world_rotations = _to_joint_order(rs, order, -3)
    posed_joints = _to_joint_order(ts, order, -2)
    translation = posed_joints - _matvec3(world_rotations, rest_joints)
    transforms = jnp.concatenate([world_rotations, translation[..., None]], axis=-1)
    return world_rotations, posed_joints, transforms


def _to_joint_order(per_level, order, axis: int):
    """Arrays of each level (joint axis `axis`, ids `order[d]`) -> one array in joint order.

    MANO's levels are the root and then the fingers' 1st, 2nd and 3rd joints, and joint
    1 + 3 f + d is finger f's joint d: an interleave (stack + reshape), whose gradient is a
    slice, not the sum of one padded copy per joint that a concatenation of single joints
    would give. Other trees fall back to a gather."""
    chains = np.stack(order[1:], axis=1).reshape(-1) if len(order) > 1 and all(
        len(ids) == len(order[1]) for ids in order[1:]) else None
    if len(order[0]) == 1 and chains is not None and np.array_equal(
            np.concatenate([order[0], chains]), np.arange(len(chains) + 1)):
        fingers = jnp.stack(per_level[1:], axis=axis)  # (..., K, D, ...) after the joint axis
        shape = fingers.shape[:fingers.ndim + axis - 1] + (-1,) + fingers.shape[fingers.ndim + axis + 1:]
        return jnp.concatenate([per_level[0], fingers.reshape(shape)], axis=axis)
    inverse = np.argsort(np.concatenate(order))  # level order -> joint order
    return jnp.take(jnp.concatenate(per_level, axis=axis), inverse, axis=axis)


# Hands per step of the skinning loop: the blended transforms of a chunk, (64, 12, 778) floats
# = 2.4 MB, stay in cache instead of going through memory (measured fastest of 32..256 on CPU).
SKIN_CHUNK = 64


def skin(weights_t, transforms, points, translation=None):
    """Linear blend skinning. weights_t (J, V) (model.weights_t), transforms (N, J, 3, 4),
    points (N, 3, V) component-major, optional translation (N, 3) -> posed points (N, V, 3).

    v_i = sum_k w_ik [R_k | t_k] [p_i; 1] (+ translation): the blended (N, 3, 4, V) transforms
    are one matrix product (N 12, J) x (J, V), applied column by column as multiply-adds in the
    same loop that writes (N, V, 3). Batches above SKIN_CHUNK go through a loop over chunks
    (recomputed, not stored, for the gradient), so that the blended transforms never leave the
    cache."""
    n = transforms.shape[0]
    if translation is None:
        translation = jnp.zeros((n, 3), points.dtype)
    if n <= SKIN_CHUNK:
        return _skin_block(weights_t, transforms, points, translation)
    full = n // SKIN_CHUNK * SKIN_CHUNK
    chunks = lambda x: x[:full].reshape((-1, SKIN_CHUNK) + x.shape[1:])  # noqa: E731
    step = jax.checkpoint(lambda block: _skin_block(weights_t, *block))
    looped = jax.lax.map(step, (chunks(transforms), chunks(points), chunks(translation)))
    looped = looped.reshape((full,) + looped.shape[2:])
    if full == n:
        return looped
    rest = _skin_block(weights_t, transforms[full:], points[full:], translation[full:])
    return jnp.concatenate([looped, rest])


def _skin_block(weights_t, transforms, points, translation):
    """`skin` of one block: (N, J, 3, 4), (N, 3, V), (N, 3) -> (N, V, 3)."""
    n, j = transforms.shape[:2]
    rows = jnp.swapaxes(transforms.reshape(n, j, 12), -1, -2)  # (N, 12, J)
    blended = (rows @ weights_t).reshape(n, 3, 4, -1)
    posed = (blended[:, :, 0] * points[:, 0:1] + blended[:, :, 1] * points[:, 1:2]
             + blended[:, :, 2] * points[:, 2:3] + blended[:, :, 3])
    return jnp.swapaxes(posed, -1, -2) + translation[:, None, :]


def forward(
    model: MANOModel,
    pose,
    betas,
    trans=None,
    *,
    flat_hand_mean: bool,
    pose_space: str = "axis_angle",
    joint_kind: str = "regressed",
    tips="freihand",
    joint_order: str = "openpose",
) -> MANOOutput:
    """The MANO hand for a batch of poses and shapes.

    Args:
      model: a `MANOModel` (`mano_jax.load_model(...)` or `mano_jax.procedural_model()`).
      pose: see `pose_to_rotations`: (..., 48), (..., 3 + k) with pose_space="pca", or
        (..., 16, 3, 3) with pose_space="rotmat". Radians.
      betas: (..., S) shape coefficients, S <= model.num_betas; broadcast against the pose's
        leading axes.
      trans: optional (..., 3) translation in metres, added to every output point.
      flat_hand_mean: explicit, see `pose_to_rotations`. FreiHAND poses need False.
      joint_kind: "regressed" = J_regressor @ posed vertices (how FreiHAND's ground truth was
        made) or "fk" = the forward-kinematics joint positions (smplx's `joints`).
      tips: fingertip vertex preset ("freihand", "manopth", "smplx", "ho3d") or 5 vertex ids in
        the order thumb, index, middle, ring, pinky.
      joint_order: "openpose" (FreiHAND: wrist, thumb, index, middle, ring, pinky, base to tip)
        or "mano" (16 kinematic-tree joints, then tips thumb, index, middle, ring, pinky).
    Returns:
      `MANOOutput` with vertices (..., V, 3), joints (..., 21, 3), skeleton (..., 16, 3).
    """
    if joint_kind not in JOINT_KINDS:
        raise ValueError(f"joint_kind must be one of {JOINT_KINDS}, got {joint_kind!r}")
    if joint_order not in JOINT_ORDERS:
        raise ValueError(f"joint_order must be one of {JOINT_ORDERS}, got {joint_order!r}")
    tip_ids = tip_vertex_ids(tips, model.side)
    if max(tip_ids) >= model.num_vertices or min(tip_ids) < 0:
        raise ValueError(f"fingertip ids {tip_ids} outside 0..{model.num_vertices - 1}")

    dtype = model.v_template.dtype
    pose = jnp.asarray(pose, dtype)
    betas = jnp.asarray(betas, dtype)
    local_rotations = pose_to_rotations(model, pose, flat_hand_mean=flat_hand_mean,
                                        pose_space=pose_space)
    batch = local_rotations.shape[:-3]
    if betas.ndim < 1:
        raise ValueError(f"betas must have a last axis of shape values, got shape {betas.shape}")
    if betas.shape[-1] > model.num_betas:
        raise ValueError(f"betas has {betas.shape[-1]} values but the model has "
                         f"{model.num_betas} shape directions")
    try:
        batch = jnp.broadcast_shapes(batch, betas.shape[:-1])
    except ValueError:
        raise ValueError(f"betas leading shape {betas.shape[:-1]} does not broadcast with the "
                         f"pose's {local_rotations.shape[:-3]}") from None
    if trans is not None:
        trans = jnp.asarray(trans, dtype)
        if trans.shape[-1:] != (3,):
            raise ValueError(f"trans must have shape (..., 3), got {trans.shape}")

    # One flat batch axis N inside; the leading axes come back at the end.
    n = int(np.prod(batch, dtype=np.int64))
    local_rotations = jnp.broadcast_to(local_rotations, batch + (NUM_JOINTS, 3, 3))
    local_rotations = local_rotations.reshape((n, NUM_JOINTS, 3, 3))
    betas = jnp.broadcast_to(betas, batch + betas.shape[-1:]).reshape((n, -1))

    if trans is not None:
        trans = jnp.broadcast_to(trans, batch + (3,)).reshape((n, 3))

    v_posed = blended_mesh(model, betas, local_rotations)  # (N, 3, V)
    _, skeleton, transforms = forward_kinematics(model.parents, local_rotations,
                                                 rest_joints(model, betas))
    vertices = skin(model.weights_t, transforms, v_posed, trans)  # (N, V, 3)
    if trans is not None:
        skeleton = skeleton + trans[:, None, :]

    if joint_kind == "regressed":
        joints16 = jnp.einsum("jv,nvc->njc", model.J_regressor, vertices)
    else:
        joints16 = skeleton
    joints = jnp.concatenate([joints16, _take(vertices, tip_ids, -2)], axis=-2)  # slices
    vertices = vertices.reshape(batch + vertices.shape[-2:])
    skeleton = skeleton.reshape(batch + skeleton.shape[-2:])
    joints = joints.reshape(batch + joints.shape[-2:])
    if joint_order == "openpose":
        joints = _take(joints, MANO_TO_OPENPOSE, -2)
    return MANOOutput(vertices=vertices, joints=joints, skeleton=skeleton)
