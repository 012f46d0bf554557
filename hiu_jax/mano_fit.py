"""Fitting MANO to 3D or 2D keypoints: pose, shape and translation by gradient descent.

    result = fit(model, keypoints_3d=k3d, flat_hand_mean=False)              # (B, 21, 3) metres
    result = fit(model, keypoints_2d=kp, K=K, flat_hand_mean=False)         # (B, 21, 2) pixels
    result.pose (B, 48), result.betas (B, S), result.trans (B, 3), result.joints (B, 21, 3),
    result.mean_error (B,)   # metres for 3D targets, pixels (reprojection) for 2D targets

How it works (every hand of the batch is fitted independently, in one jitted call):

  1. Initialisation of the global rotation and position, where gradient descent alone falls
     into local minima.
     3D: a closed-form weighted Kabsch rotation (no scale) of the palm joints (wrist, thumb base,
     four finger MCPs) of the model's mean-pose hand at zero betas onto the targets; the other
     joints get 1% weight so that a hand with a hidden palm still has a rotation.
     2D: the depth from the ratio of the model's 3D palm size to the keypoints' palm size (in
     normalised image coordinates), then a short rotation + position stage on the rigid mean-pose
     hand (palm-weighted), started from each of the 24 rotations of the cube (every rotation is
     within 63 degrees of one of them); the start with the lowest reprojection error is kept.
  2. The global rotation, wrist position, the 45 finger values and the betas, jointly.
  Each stage is an `optax.adam` loop under `jax.lax.scan` with a cosine-decayed learning rate;
  the whole fit is one `jax.jit`-compiled function of static step counts.

Parametrisation (what Adam steps on): the global rotation as R = exp(delta) R_init (delta,
radians, world frame); the finger pose as its offset from the model's mean pose (`hands_mean`,
radians); the betas; the wrist joint's position (the pivot of the global rotation,
J_0(betas) + trans) in centimetres from its initial value (3D), or as log-depth and normalised
image coordinates (2D). The result is converted back to a standard 48-value axis-angle pose in the
caller's `flat_hand_mean` convention and a translation, so `forward(model, result.pose,
result.betas, result.trans, flat_hand_mean=...)` reproduces `result.joints`.

Objective per hand (weights w_j = the confidence / visibility of joint j):

  data   sum_j w_j |J_j - target_j|^2 / sum_j w_j, in mm^2 (3D) or px^2 (2D)
  priors + pose_prior_weight  * |finger pose - hands_mean|^2   (45 values, rad^2)
         + shape_prior_weight * |betas|^2
The priors are plain L2 (the PCA basis of MANO is not orthonormal, so a PCA-space prior would
not be a simple distance). Their defaults are small enough that the fitted joints of a hand the
model can express exactly stay well under 1 mm from the targets; for 2D fits, where depth and
shape are ambiguous, they choose the plausible hand among the many with the same projection.

Only the vertices the joints depend on (the support of `J_regressor` and the fingertips) are
posed during the optimisation; the joints are the same as those of the full mesh.

The public functions validate concrete (NumPy-convertible) inputs and compile internally; call
them outside `jax.jit`. One compilation per batch size, step count and joint definition; the
learning rate, the prior weights, the weights / visibility and flat_hand_mean are traced.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mano_jax import rotations
from hiu_jax.geometry.projection import project_pinhole
from hiu_jax.geometry.skeleton import NUM_KEYPOINTS
from hiu_jax.mano_fit_checks import check_intrinsics, check_settings, check_targets, check_weights
from mano_jax.lbs import MANO_TO_OPENPOSE, forward, rest_joints
from mano_jax.model import NUM_JOINTS, MANOModel

# Palm joints in MANO-with-tips order: wrist, index MCP, middle MCP, pinky MCP, ring MCP, thumb
# CMC. Children of the root only, so the global rotation alone places them.
_PALM_MANO = (0, 1, 4, 7, 10, 13)
_PALM = {"mano": _PALM_MANO,
         "openpose": tuple(MANO_TO_OPENPOSE.index(j) for j in _PALM_MANO)}
_NON_PALM_KABSCH_WEIGHT = 0.01  # other joints only break ties when the palm is hidden
_MM = 1e-3
_WRIST_STEP = 0.01  # metres per unit of the 3D wrist parameter (centimetres)
# Projected depths are clamped to 1 mm so that joints behind the camera give large but finite
# pixel values (and finite gradients) instead of NaN.
_MIN_DEPTH = 1e-3

# Adam settings tuned on sampled procedural hands (B = 16, float32): with these, 1000 steps bring
# every one of 128 sampled hands under 0.2 mm (3D) and of 96 under 0.5 px (2D). A second-moment
# decay of 0.95 (instead of 0.999) lets the step sizes follow the shrinking gradients of the
# end game; the learning rate ends at 1/1000 of its start.
_ADAM_B2 = 0.95
_FINAL_LR_FRACTION = 1e-3


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """How a fit runs (checked against the model by `mano_fit_checks.check_settings`).

    steps: Adam steps of the full fit (int >= 10). Run time is linear in steps; compile time does
      not change. A 2D fit runs steps // 5 (>= 10) more rigid steps on 24 starting rotations.
    learning_rate: initial Adam step (radians for rotations and finger angles; betas; the 3D
      wrist in centimetres), cosine-decayed to 1/1000 of it.
    joint_kind, tips, joint_order: how the model's joints are defined, as in
      `mano_jax.forward`; they must match how the targets were made (FreiHAND: "regressed",
      "freihand", "openpose").
    pose_prior_weight: weight of |finger pose - hands_mean|^2 (rad^2) against the data term
      (mm^2 of 3D joint error, or px^2 of mean squared reprojection error).
    shape_prior_weight: weight of |betas|^2 against the same data term.
    """

    steps: int = 1000
    learning_rate: float = 0.1
    joint_kind: str = "regressed"
    tips: object = "freihand"
    joint_order: str = "openpose"
    pose_prior_weight: float = 1e-3
    shape_prior_weight: float = 1e-3


SETTINGS_3D = FitSettings()
# 2D: depth and shape are ambiguous, so the priors weigh more. 0.01 is what a Gaussian prior
# (betas ~ N(0, 1)) against ~0.5 px keypoint noise over 21 joints amounts to; raise them for noisy
# detections (about sigma_px^2 / 21 for sigma_px of noise) to get more plausible hands at the
# cost of a larger reprojection error.
SETTINGS_2D = FitSettings(pose_prior_weight=1e-2, shape_prior_weight=1e-2)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FitResult:
    """What the fitting functions return. B = batch size, S = number of betas.

    pose: (B, 48) axis-angle, radians, 3 global + 45 finger values in the caller's
      `flat_hand_mean` convention.
    betas: (B, S) shape coefficients.
    trans: (B, 3) translation, metres (camera frame for 2D fits).
    joints: (B, 21, 3) `forward(model, pose, betas, trans, ...).joints`, metres.
    mean_error: (B,) confidence-weighted mean distance of the fitted joints to the targets:
      metres for a 3D fit, pixels (the reprojection error) for a 2D fit.
    keypoints_2d: (B, 21, 2) the fitted joints projected with K, pixels; None for a 3D fit.
    unit: "m" (3D fit) or "px" (2D fit), the unit of `mean_error`.
    """

    pose: jax.Array
    betas: jax.Array
    trans: jax.Array
    joints: jax.Array
    mean_error: jax.Array
    keypoints_2d: jax.Array | None = None
    unit: str = dataclasses.field(default="m", metadata=dict(static=True))

    @property
    def reprojection_error(self):
        """(B,) mean reprojection error in pixels for a 2D fit; None for a 3D fit."""
        return self.mean_error if self.unit == "px" else None


# ---------------------------------------------------------------------------------------------
# Public entry points


def fit(model: MANOModel, *, keypoints_3d=None, keypoints_2d=None, K=None, **kwargs) -> FitResult:
    """Fits MANO to 3D keypoints or to 2D keypoints; dispatches to the two functions below.

    Pass exactly one of `keypoints_3d` ((B, 21, 3) metres) or `keypoints_2d` ((B, 21, 2) pixels,
    which needs `K`). Other keyword arguments go to `fit_to_keypoints_3d` /
    `fit_to_keypoints_2d` (`flat_hand_mean` is required by both).
    """
    if keypoints_3d is None and keypoints_2d is None:
        raise ValueError("fit needs a target: pass keypoints_3d=(B, 21, 3) metres or "
                         "keypoints_2d=(B, 21, 2) pixels with K")
    if keypoints_3d is not None and keypoints_2d is not None:
        raise ValueError("fit takes one target: pass keypoints_3d or keypoints_2d, not both")
    if keypoints_3d is not None:
        if K is not None:
            raise ValueError("K is only used with keypoints_2d; a 3D fit needs no camera")
        if "visibility" in kwargs:
            raise ValueError("visibility is for keypoints_2d; pass weights= with keypoints_3d")
        return fit_to_keypoints_3d(model, keypoints_3d, **kwargs)
    if K is None:
        raise ValueError("keypoints_2d needs the camera intrinsics K, (3, 3) or (B, 3, 3)")
    if "weights" in kwargs:
        raise ValueError("weights is for keypoints_3d; pass visibility= with keypoints_2d")
    return fit_to_keypoints_2d(model, keypoints_2d, K, **kwargs)


def fit_to_keypoints_3d(model: MANOModel, keypoints_3d, *, flat_hand_mean: bool, weights=None,
                        settings: FitSettings = SETTINGS_3D) -> FitResult:
    """MANO pose, shape and translation whose 21 joints best match 3D keypoints.

    Args:
      model: a `MANOModel`.
      keypoints_3d: (B, 21, 3) target keypoints, metres, in `settings.joint_order`.
      flat_hand_mean: the convention of the returned pose (see `lbs.pose_to_rotations`); the
        fit itself is the same either way.
      weights: optional (B, 21) non-negative confidences (0 = ignore the joint); every hand
        needs at least one positive weight. Default all ones.
      settings: a `FitSettings` (default `SETTINGS_3D`).
    Returns:
      `FitResult`, `mean_error` in metres.
    Raises:
      ValueError: a shape, a non-finite value or a bad setting, naming the argument.
    """
    targets, batch = check_targets(model, keypoints_3d, "keypoints_3d", 3, "metres")
    weights = check_weights(weights, "weights", batch, model)
    arrays, static = _prepared(model, flat_hand_mean, settings, targets.dtype)
    return _run_3d(model, targets, weights, *arrays, **static)


def fit_to_keypoints_2d(model: MANOModel, keypoints_2d, K, *, flat_hand_mean: bool,
                        visibility=None, settings: FitSettings = SETTINGS_2D) -> FitResult:
    """MANO pose, shape and camera-frame translation whose projected joints match 2D keypoints.

    The camera is a pinhole with intrinsics K in the OpenCV frame (x right, y down, z forward):
    pixel = (K X)[:2] / (K X)[2] for a camera-frame point X in metres
    (`projection.project_pinhole`; integer pixel coordinates at pixel centres). From 2D alone,
    depth and hand size trade off and finger bends toward or away from the camera look alike;
    the priors pick a plausible hand, but only the reprojection error is a measure of the fit.

    Args:
      model: a `MANOModel`.
      keypoints_2d: (B, 21, 2) pixel coordinates (x, y), in `settings.joint_order`.
      K: (3, 3) or (B, 3, 3) intrinsics [[fx, s, cx], [0, fy, cy], [0, 0, 1]], pixels,
        non-singular.
      flat_hand_mean: the convention of the returned pose.
      visibility: optional (B, 21) non-negative weights (0 = not visible / not annotated);
        every hand needs at least two positive ones. Default all ones.
      settings: a `FitSettings` (default `SETTINGS_2D`).
    Returns:
      `FitResult` with `mean_error` = `reprojection_error` in pixels and `keypoints_2d` set.
    Raises:
      ValueError: a shape, a non-finite value, a singular K or a bad setting, naming the
        argument.
    """
    keypoints, batch = check_targets(model, keypoints_2d, "keypoints_2d", 2, "pixels")
    K = check_intrinsics(K, batch, model)
    weights = check_weights(visibility, "visibility", batch, model, minimum_visible=2)
    arrays, static = _prepared(model, flat_hand_mean, settings, keypoints.dtype)
    return _run_2d(model, keypoints, K, weights, *arrays,
                   rigid_steps=max(static["steps"] // 5, 10), **static)


def _prepared(model, flat_hand_mean, settings, dtype):
    """The checked settings as the jitted fits' arguments: ((sub-model, learning rate, pose
    prior, shape prior, flat_hand_mean), the static options)."""
    options = check_settings(model, flat_hand_mean, settings)
    sub, sub_tips = _joint_support_model(model, options["tips"])
    return (sub, np.asarray(settings.learning_rate, dtype),
            np.asarray(settings.pose_prior_weight, dtype),
            np.asarray(settings.shape_prior_weight, dtype), np.asarray(bool(flat_hand_mean))), \
        dict(options, steps=int(settings.steps), sub_tips=sub_tips)


# ---------------------------------------------------------------------------------------------
# The model restricted to what the joints depend on


def _joint_support_model(model: MANOModel, tip_ids):
    """The model on the vertices the 21 joints read (J_regressor's support + tips).

    Rest joints, regressed joints and FK joints only involve those vertices, so the sub-model's
    joints equal the full model's. Returns the sub-model and the tip ids inside it.
    """
    regressor = np.asarray(model.J_regressor)
    keep = np.flatnonzero(np.any(regressor != 0, axis=0))
    keep = np.union1d(keep, np.asarray(tip_ids))
    position = {int(v): i for i, v in enumerate(keep)}
    sub = dataclasses.replace(
        model,
        v_template=model.v_template[keep],
        shapedirs=model.shapedirs[keep],
        posedirs=model.posedirs[keep],
        J_regressor=model.J_regressor[:, keep],
        weights=model.weights[keep],
    )
    return sub, tuple(position[int(t)] for t in tip_ids)


# ---------------------------------------------------------------------------------------------
# The jitted fits


def _local_rotations(model, rot_delta, rot_init, fingers):
    """(B, 16, 3, 3) local rotations: exp(rot_delta) rot_init for the root, hands_mean + fingers."""
    root = rotations.axis_angle_to_matrix(rot_delta) @ rot_init
    finger_r = rotations.axis_angle_to_matrix(
        (model.hands_mean + fingers).reshape(fingers.shape[:-1] + (NUM_JOINTS - 1, 3)))
    return jnp.concatenate([root[..., None, :, :], finger_r], axis=-3)


def _rest_wrist(model, betas):
    """J_0(betas), the rest wrist joint and pivot of the global rotation: (..., S) -> (..., 3)."""
    return rest_joints(model, betas)[..., 0, :]


def _joints(model, local_r, betas, wrist, *, tips, joint_kind, joint_order):
    """The model's 21 joints with the rotation pivot J_0(betas) placed at `wrist`."""
    trans = wrist - _rest_wrist(model, betas)
    return forward(model, local_r, betas, trans, flat_hand_mean=True, pose_space="rotmat",
                   joint_kind=joint_kind, tips=tips, joint_order=joint_order).joints


def _mean_pose_joints(model, *, tips, joint_kind, joint_order):
    """(21, 3) joints of the mean-pose hand at zero betas, relative to the rest wrist J_0."""
    betas = jnp.zeros((model.num_betas,), model.v_template.dtype)
    local_r = _local_rotations(model, jnp.zeros(3), jnp.eye(3), jnp.zeros(45))
    return _joints(model, local_r, betas, jnp.zeros(3), tips=tips, joint_kind=joint_kind,
                   joint_order=joint_order)


def _kabsch(source, target, weights):
    """Weighted rotation R and offset c with target ~ R source + c. (B, N, 3), (B, N) -> R, c."""
    w = weights / jnp.sum(weights, axis=-1, keepdims=True)
    mu_s = jnp.einsum("bn,bnc->bc", w, source)
    mu_t = jnp.einsum("bn,bnc->bc", w, target)
    cov = jnp.einsum("bn,bna,bnc->bac", w, source - mu_s[:, None], target - mu_t[:, None])
    u, _, vt = jnp.linalg.svd(cov)
    d = jnp.sign(jnp.linalg.det(jnp.swapaxes(vt, -1, -2) @ jnp.swapaxes(u, -1, -2)))
    d = jnp.where(d == 0, 1.0, d)
    fix = jnp.ones_like(mu_s).at[:, 2].set(d)
    r = jnp.swapaxes(vt, -1, -2) @ (fix[:, :, None] * jnp.swapaxes(u, -1, -2))
    return r, mu_t - jnp.einsum("bac,bc->ba", r, mu_s)


def _weighted_mean(values, weights):
    return jnp.sum(values * weights, axis=-1) / jnp.sum(weights, axis=-1)


def _adam_loop(loss_fn, params, steps, learning_rate):
    """Runs `steps` Adam updates of sum(loss_fn(params)) under lax.scan. Returns the params.

    The learning rate decays from `learning_rate` to `_FINAL_LR_FRACTION` of it on a cosine.

    loss_fn returns per-hand losses; their sum has per-hand independent gradients, and Adam
    scales every parameter separately, so each hand follows its own optimisation path.
    """
    schedule = optax.cosine_decay_schedule(learning_rate, steps, alpha=_FINAL_LR_FRACTION)
    optimiser = optax.adam(schedule, b2=_ADAM_B2)
    grad_fn = jax.grad(lambda p: jnp.sum(loss_fn(p)))

    def step(carry, _):
        p, state = carry
        updates, state = optimiser.update(grad_fn(p), state, p)
        return (optax.apply_updates(p, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, optimiser.init(params)), None, length=steps)
    return params


def _to_standard(model, params, rot_init, wrist_fn):
    """Optimiser parameters -> (pose (B, 48) full rotations, betas, trans)."""
    root = rotations.axis_angle_to_matrix(params["rot"]) @ rot_init
    fingers = model.hands_mean + params["fingers"]
    pose = jnp.concatenate([rotations.matrix_to_axis_angle(root), fingers], axis=-1)
    trans = wrist_fn(params) - _rest_wrist(model, params["betas"])
    return pose, params["betas"], trans


def _fit_3d(model, targets, weights, learning_rate, pose_prior, shape_prior, *, steps, tips,
            joint_kind, joint_order):
    """Kabsch initialisation, then `steps` Adam steps. Returns pose (B, 48) (full rotations,
    i.e. flat_hand_mean=True), betas (B, S) and trans (B, 3) of `model`."""
    kw = dict(tips=tips, joint_kind=joint_kind, joint_order=joint_order)
    batch, dtype = targets.shape[0], targets.dtype
    rest = _mean_pose_joints(model, **kw)
    palm = np.zeros(NUM_KEYPOINTS, np.float32)
    palm[list(_PALM[joint_order])] = 1.0
    kabsch_w = weights * jnp.asarray(np.maximum(palm, _NON_PALM_KABSCH_WEIGHT), dtype)
    rot_init, wrist_init = _kabsch(jnp.broadcast_to(rest, targets.shape), targets, kabsch_w)

    def wrist_fn(p):
        return wrist_init + _WRIST_STEP * p["wrist"]

    def loss(p):
        local_r = _local_rotations(model, p["rot"], rot_init, p["fingers"])
        joints = _joints(model, local_r, p["betas"], wrist_fn(p), **kw)
        data = _weighted_mean(jnp.sum(jnp.square((joints - targets) / _MM), -1), weights)
        return (data + pose_prior * jnp.sum(jnp.square(p["fingers"]), -1)
                + shape_prior * jnp.sum(jnp.square(p["betas"]), -1))

    params = dict(rot=jnp.zeros((batch, 3), dtype), wrist=jnp.zeros((batch, 3), dtype),
                  fingers=jnp.zeros((batch, 45), dtype),
                  betas=jnp.zeros((batch, model.num_betas), dtype))
    params = _adam_loop(loss, params, steps, learning_rate)
    return _to_standard(model, params, rot_init, wrist_fn)


def _cube_rotations():
    """The 24 rotations of the cube, (24, 3, 3): every rotation is within 62.8 degrees of one."""
    out = []
    for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        for signs in np.ndindex(2, 2, 2):
            m = np.zeros((3, 3))
            m[range(3), perm] = np.where(np.array(signs) == 1, -1.0, 1.0)
            if np.linalg.det(m) > 0:
                out.append(m)
    return np.stack(out)


_START_ROTATIONS = _cube_rotations()


def _fit_2d(model, keypoints, K, weights, learning_rate, pose_prior, shape_prior, *, rigid_steps,
            steps, tips, joint_kind, joint_order):
    """Depth from palm size, the rigid multi-start stage, then `steps` Adam steps on everything.
    Returns pose (B, 48) (full rotations), betas (B, S) and camera-frame trans (B, 3)."""
    kw = dict(tips=tips, joint_kind=joint_kind, joint_order=joint_order)
    batch, dtype = keypoints.shape[0], keypoints.dtype
    rest = _mean_pose_joints(model, **kw)  # (21, 3) relative to the wrist pivot
    palm_ids = list(_PALM[joint_order])
    # Normalised image coordinates: K^-1 [u, v, 1] has depth 1.
    k_inv = jnp.linalg.inv(K)
    normalised = (jnp.einsum("bac,bnc->bna", k_inv[..., :2, :2], keypoints)
                  + k_inv[:, None, :2, 2])

    # Depth from palm sizes: RMS spread of the rest palm (metres) over that of the palm keypoints
    # (normalised units); hidden palm keypoints fall back to all visible ones.
    palm_w = weights[:, palm_ids]
    use_palm = jnp.sum(palm_w > 0, axis=-1) >= 3
    size_w = jnp.where(use_palm[:, None], jnp.zeros_like(weights).at[:, palm_ids].set(palm_w),
                       weights)
    centre_2d = jnp.einsum("bn,bnc->bc", size_w, normalised) / jnp.sum(size_w, -1, keepdims=True)
    spread_2d = jnp.sqrt(_weighted_mean(jnp.sum(jnp.square(normalised - centre_2d[:, None]), -1),
                                        size_w))
    centre_3d = jnp.einsum("bn,nc->bc", size_w, rest) / jnp.sum(size_w, -1, keepdims=True)
    spread_3d = jnp.sqrt(_weighted_mean(jnp.sum(jnp.square(rest - centre_3d[:, None]), -1),
                                        size_w))
    # A random orientation shows sqrt(2/3) of a 3D spread in 2D.
    depth0 = jnp.sqrt(2.0 / 3.0) * spread_3d / jnp.maximum(spread_2d, 1e-6)
    def camera_point(p, anchor, depth):
        """A camera-frame point (metres) from log-depth and normalised-image offsets."""
        z = depth * jnp.exp(p["depth"])
        xy = anchor + 0.1 * p["image"]
        return jnp.concatenate([xy * z[..., None], z[..., None]], axis=-1)

    # Rigid stage: the mean-pose hand from 24 starting rotations, its (palm) centre placed by
    # (log-depth, image position) starting on the keypoints' centre at depth0; palm-weighted.
    starts = jnp.asarray(_START_ROTATIONS, dtype)
    n_start = starts.shape[0]
    rigid_w = size_w + 0.05 * weights

    def rigid_loss(p):
        r = rotations.axis_angle_to_matrix(p["rot"]) @ starts[None]  # (B, H, 3, 3)
        rotated = jnp.einsum("bhac,nc->bhna", r, rest)
        centre = jnp.einsum("bhac,bc->bha", r, centre_3d)
        placed = camera_point(p, centre_2d[:, None], depth0[:, None])
        points = rotated - centre[:, :, None] + placed[:, :, None]
        pix = project_pinhole(K[:, None], points, min_depth=_MIN_DEPTH)
        err = jnp.sum(jnp.square(pix - keypoints[:, None]), -1)
        return _weighted_mean(err, rigid_w[:, None])

    zeros = lambda *s: jnp.zeros(s, dtype)  # noqa: E731
    rigid = _adam_loop(rigid_loss, dict(rot=zeros(batch, n_start, 3),
                                        depth=zeros(batch, n_start),
                                        image=zeros(batch, n_start, 2)),
                       rigid_steps, learning_rate)
    best = jnp.argmin(rigid_loss(rigid), axis=1)
    pick = lambda x: jnp.take_along_axis(  # noqa: E731
        x, best.reshape((batch, 1) + (1,) * (x.ndim - 2)), axis=1)[:, 0]
    rot_init = rotations.axis_angle_to_matrix(pick(rigid["rot"])) @ starts[best]
    depth_b = depth0 * jnp.exp(pick(rigid["depth"]))
    centre_b = jnp.einsum("bac,bc->ba", rot_init, centre_3d)
    placed_b = jnp.concatenate([(centre_2d + 0.1 * pick(rigid["image"])) * depth_b[:, None],
                                depth_b[:, None]], -1)
    wrist_b = placed_b - centre_b  # camera-frame wrist pivot of the best start
    depth1 = jnp.maximum(wrist_b[:, 2], 0.05 * depth_b)  # a wrist behind the camera: no NaN
    anchor1 = wrist_b[:, :2] / depth1[:, None]

    def wrist_fn(p):
        return camera_point(p, anchor1, depth1)

    def loss(p):
        local_r = _local_rotations(model, p["rot"], rot_init, p["fingers"])
        joints = _joints(model, local_r, p["betas"], wrist_fn(p), **kw)
        err = jnp.sum(jnp.square(project_pinhole(K, joints, min_depth=_MIN_DEPTH) - keypoints), -1)
        return (_weighted_mean(err, weights) + pose_prior * jnp.sum(jnp.square(p["fingers"]), -1)
                + shape_prior * jnp.sum(jnp.square(p["betas"]), -1))

    params = dict(rot=zeros(batch, 3), depth=zeros(batch), image=zeros(batch, 2),
                  fingers=zeros(batch, 45), betas=zeros(batch, model.num_betas))
    params = _adam_loop(loss, params, steps, learning_rate)
    return _to_standard(model, params, rot_init, wrist_fn)


@functools.partial(jax.jit, static_argnames=("steps", "sub_tips", "tips", "joint_kind",
                                             "joint_order"))
def _run_3d(model, targets, weights, sub, learning_rate, pose_prior, shape_prior, flat_hand_mean,
            *, steps, sub_tips, tips, joint_kind, joint_order):
    """The whole 3D fit as one compiled function: optimise on `sub`, report on `model`."""
    pose, betas, trans = _fit_3d(sub, targets, weights, learning_rate, pose_prior, shape_prior,
                                 steps=steps, tips=sub_tips, joint_kind=joint_kind,
                                 joint_order=joint_order)
    return _result(model, pose, betas, trans, targets, weights, None, flat_hand_mean,
                   dict(tips=tips, joint_kind=joint_kind, joint_order=joint_order))


@functools.partial(jax.jit, static_argnames=("rigid_steps", "steps", "sub_tips", "tips",
                                             "joint_kind", "joint_order"))
def _run_2d(model, keypoints, K, weights, sub, learning_rate, pose_prior, shape_prior,
            flat_hand_mean, *, rigid_steps, steps, sub_tips, tips, joint_kind, joint_order):
    """The whole 2D fit as one compiled function: optimise on `sub`, report on `model`."""
    pose, betas, trans = _fit_2d(sub, keypoints, K, weights, learning_rate, pose_prior,
                                 shape_prior, rigid_steps=rigid_steps, steps=steps, tips=sub_tips,
                                 joint_kind=joint_kind, joint_order=joint_order)
    return _result(model, pose, betas, trans, keypoints, weights, K, flat_hand_mean,
                   dict(tips=tips, joint_kind=joint_kind, joint_order=joint_order))


def _result(model, pose, betas, trans, targets, weights, K, flat_hand_mean, options):
    """Joints of the full model for the fitted parameters, and the error against the targets.

    pose: (B, 48) full rotations; it is returned in the `flat_hand_mean` convention (a traced
    bool, so both conventions share one compiled fit).
    """
    joints = forward(model, pose, betas, trans, flat_hand_mean=True, **options).joints
    pose = pose.at[:, 3:].add(jnp.where(flat_hand_mean, 0.0, -model.hands_mean))
    if K is None:
        error = _weighted_mean(jnp.linalg.norm(joints - targets, axis=-1), weights)
        return FitResult(pose=pose, betas=betas, trans=trans, joints=joints, mean_error=error)
    projected = project_pinhole(K, joints, min_depth=_MIN_DEPTH)
    error = _weighted_mean(jnp.linalg.norm(projected - targets, axis=-1), weights)
    return FitResult(pose=pose, betas=betas, trans=trans, joints=joints, mean_error=error,
                     keypoints_2d=projected, unit="px")
