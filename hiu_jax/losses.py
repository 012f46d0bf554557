"""Loss terms of HIU-DMTL: a registry of pure per-sample terms, and their labeled-sample average.

A loss term is a pure function

    term(outputs, batch, cfg) -> (B,) per-sample values

of the network's output dict (`models.HIUNet.__call__`), the batch (`datasets.pipeline.
OUTPUT_SCHEMA`, leading axis B) and `cfg`, the `loss` config block (loss_registry.LOSS_KEYS) with one more
field, `cfg.mano_model` (the network's `mano_jax.MANOModel`, or None). `register(name, flag=...)`
stores a term with the availability flag(s) that gate it: the batch's 0/1 `has_*` fields whose
product says which samples are labeled for it; flag=None marks a self-supervised term, which needs
no labels. The config's `terms` block maps names to weights; adding a term is one decorated
function plus one config line (README, "Add a loss term"). The registry and the config block are
hiu_jax/loss_registry.py.

`total_loss` averages every term over the samples labeled for it, f = flags * batch["valid"]:

    mean_t = sum_i f_i v_i / max(sum_i f_i, 1)        loss = sum_t weight_t * mean_t

so datasets with different labels mix in one batch, and no dataset needs its own code path.

Data parallelism (`axis_name`): the count sum_i f_i is the GLOBAL one (psum over the axis), and
each device returns its SHARE of the global loss,

    share_d = n_devices * sum_{i on d} w f_i v_i / max(global count, 1),

whose mean over devices is exactly the single-device loss of the whole batch (up to float
summation order). So the train step does the usual `lax.pmean(grads)` (pmap) or differentiates
`lax.pmean(share)` (shard_map): both give the exact global gradient. Do not psum the share, and
do not divide it again. The metrics are already global (identical on every device; a pmean leaves
them unchanged). Under `jax.jit` with a sharded global batch pass axis_name=None: the batch is
global, the plain formula is exact.

Conventions (hiu_jax/geometry): crop pixels continuous with the pixel (row r, col c) CENTRED
at (u, v) = (c, r); heat-map coordinates h = (p + 0.5) M / N - 0.5 for a crop of N and a heat map
of M pixels (`crop_to_heatmap`); joints in FreiHAND order; 3D root-relative in metres; bones
(parent, child) as `hiu_jax.geometry.skeleton.BONES`. The supervised mask is compared at the
logits' resolution (the crop mask is box averaged when the logits are smaller).

Units and default weights (`loss_config`): 2D errors are in crop pixels divided by the crop size
N; 3D errors are L1 in metres with weight 100 (a 1 cm error in each coordinate of every joint
costs 3); heat maps are the pipeline's peak-1 Gaussians compared by MSE with weight 1000 (HAMR's
heat-map weight); MANO pose as rotation matrices (squared Frobenius distance, no 2 pi wrap), shape
coefficients unitless.

Labels from another hand model: "vertices" and "keypoints_3d" are root-relative at joint 0 of each
model, and "mano_pose"/"mano_betas" compare parameters; both only make sense when the dataset's
MANO model is the network's (e.g. FreiHAND labels with the licensed MANO file given to the
network). With the procedural hand and real MANO labels, set those weights to 0.
"""
from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from hiu_jax import loss_registry, render
from hiu_jax.geometry import projection
from hiu_jax.geometry.crops import crop_to_heatmap, heatmap_to_crop
from hiu_jax.geometry.skeleton import NUM_BONES
from hiu_jax.loss_registry import level_weights, ramp_factor, register, validate_loss_config
from hiu_jax.keypoint_maps import bone_directions, bone_regions, pooled_bone_vectors, soft_argmax
import mano_jax
from mano_jax import rotations

# ----------------------------------------------------------------------------------------------
# Geometry helpers (pipeline conventions)


def crop_size_of(batch) -> int:
    """The crop size N (static), from batch["image"] (B, N, N, 3)."""
    return int(batch["image"].shape[-3])


def area_downsample(images, size: int):
    """(B, N, N, C) -> (B, size, size, C) mean over N/size x N/size blocks (N divisible)."""
    b, n, _, c = images.shape
    if n == size:
        return images
    if n % size:
        raise ValueError(f"the crop mask ({n} px) cannot be box-averaged to the mask logits' "
                         f"{size} px; use a mask_size that divides the crop size")
    f = n // size
    return images.reshape(b, size, f, size, f, c).mean(axis=(2, 4))


# ----------------------------------------------------------------------------------------------
# Per-element losses


def sigmoid_binary_cross_entropy(logits, targets):
    """-t log sigmoid(x) - (1 - t) log(1 - sigmoid(x)) = softplus(x) - t x, elementwise."""
    return jax.nn.softplus(logits) - targets * logits


def dice_loss(prob, targets):
    """1 - (2 |P T| + 1) / (|P| + |T| + 1) per sample, written as the sum of non-negative terms
    (sum p (1 - t) + sum t (1 - p)) / (sum p + sum t + 1). prob, targets (B, ...) -> (B,)."""
    axes = tuple(range(1, prob.ndim))
    mismatch = jnp.sum(prob * (1.0 - targets) + targets * (1.0 - prob), axes)
    return mismatch / (jnp.sum(prob, axes) + jnp.sum(targets, axes) + 1.0)


def smooth_l1(x, beta: float):
    """Huber-type: 0.5 x^2 / beta for |x| < beta, |x| - 0.5 beta beyond."""
    ax = jnp.abs(x)
    return jnp.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def keypoint_error_2d(pred, target, crop_size: int, cfg):
    """Per-joint 2D error: sum over (u, v) of rho(delta / N), rho = |.| or smooth-L1.
    pred, target (B, J, 2) crop pixels -> (B, J)."""
    delta = (pred - target) / crop_size
    if cfg.keypoint_loss == "l1":
        return jnp.sum(jnp.abs(delta), -1)
    return jnp.sum(smooth_l1(delta, cfg.smooth_l1_beta), -1)


def _check_shape(name: str, pred, target):
    if pred.shape != target.shape:
        raise ValueError(f"loss term {name}: the prediction has shape {pred.shape} but the "
                         f"target has {target.shape}")


def _per_level(preds, cfg_weights, field, per, fn):
    """sum_k w_k fn(preds[k]) over the stacks / iterations of a list output; w from cfg[field]."""
    weights = level_weights(cfg_weights, len(preds), field, per)
    total = jnp.zeros(preds[0].shape[:1], jnp.float32)
    for w, pred in zip(weights, preds):
        if w:
            total = total + w * fn(pred)
    return total


def visible_mean(values, visibility):
    """sum_j vis_j v_j / max(sum_j vis_j, 1): the mean over a sample's visible joints (B, J) ->
    (B,), so a hand with few visible joints weighs as much as a fully visible one."""
    return jnp.sum(visibility * values, -1) / jnp.maximum(jnp.sum(visibility, -1), 1.0)


def _needs_mano(name, cfg):
    model = cfg.mano_model
    if model is None:
        raise ValueError(f"loss term {name!r} needs the MANO model: pass mano_model= to "
                         "total_loss (the network's model)")
    return model


# ----------------------------------------------------------------------------------------------
# Supervised terms


@register("heatmaps", flag="has_2d")
def heatmaps_loss(outputs, batch, cfg):
    """sum_stacks w_s visible_mean_j mean_pixels (H_pred - H)^2.
    outputs["heatmaps"]: list of (B, M, M, 21); batch heatmaps (B, M, M, 21), visibility (B, 21)."""
    target, vis = batch["heatmaps"], batch["keypoint_visibility"]

    def one(pred):
        _check_shape("heatmaps", pred, target)
        per_joint = jnp.mean(jnp.square(pred - target), axis=(1, 2))  # (B, 21)
        return visible_mean(per_joint, vis)

    return _per_level(outputs["heatmaps"], cfg.stack_weights, "stack_weights", "stacks", one)


@register("heatmap_keypoints", flag="has_2d")
def heatmap_keypoints_loss(outputs, batch, cfg):
    """sum_stacks w_s visible_mean_j rho((soft_argmax(H) - uv) / N): the heat maps' own 2D
    keypoints (integral regression) against the labels, as keypoints_2d. It gives every stack a
    direct localisation gradient from the first step, when an MSE on peak-1 Gaussians mostly
    teaches "predict zeros". outputs["heatmaps"]: list of (B, M, M, 21)."""
    target, vis, n = batch["keypoints_2d"], batch["keypoint_visibility"], crop_size_of(batch)

    def one(heat):
        uv = heatmap_to_crop(soft_argmax(heat, cfg.softargmax_temperature), n, heat.shape[1])
        _check_shape("heatmap_keypoints", uv, target)
        return visible_mean(keypoint_error_2d(uv, target, n, cfg), vis)

    return _per_level(outputs["heatmaps"], cfg.stack_weights, "stack_weights", "stacks", one)


@register("mask", flag="has_mask")
def mask_loss(outputs, batch, cfg):
    """sum_stacks w_s [mean_pixels BCE(logits, mask) + dice_weight * Dice (if mask_dice)].
    outputs["mask_logits"]: list of (B, S, S, 1); batch mask (B, N, N, 1) in {0, 1}, box-averaged
    to S when S < N (soft targets on the hand's edge)."""
    logits0 = outputs["mask_logits"][0]
    target = area_downsample(batch["mask"], logits0.shape[1])

    def one(logits):
        _check_shape("mask", logits, target)
        value = jnp.mean(sigmoid_binary_cross_entropy(logits, target), axis=(1, 2, 3))
        if cfg.mask_dice:
            value = value + cfg.mask_dice_weight * dice_loss(jax.nn.sigmoid(logits), target)
        return value

    return _per_level(outputs["mask_logits"], cfg.stack_weights, "stack_weights", "stacks", one)


@register("pof", flag=("has_3d", "has_intrinsics"))
def pof_loss(outputs, batch, cfg):
    """sum_stacks w_s sum_{pixels, bones} w ||P_pred - P||^2 / max(sum w, 1), w = pof_weight.
    outputs["pof"]: list of (B, M, M, 60); batch pof (B, M, M, 60), pof_weight (B, M, M, 20).
    (The pipeline defines the POF where has_3d and has_intrinsics.)"""
    target, weight = batch["pof"], batch["pof_weight"]
    b, m, _, _ = target.shape
    count = jnp.maximum(jnp.sum(weight, axis=(1, 2, 3)), 1.0)

    def one(pred):
        _check_shape("pof", pred, target)
        err = jnp.sum(jnp.square(pred - target).reshape(b, m, m, NUM_BONES, 3), -1)
        return jnp.sum(weight * err, axis=(1, 2, 3)) / count

    return _per_level(outputs["pof"], cfg.stack_weights, "stack_weights", "stacks", one)


@register("keypoints_2d", flag="has_2d")
def keypoints_2d_loss(outputs, batch, cfg):
    """sum_iters w_i visible_mean_j rho((uv_pred - uv) / N), rho = smooth-L1 or L1 (config
    keypoint_loss) in crop-normalised units. outputs["keypoints_2d_iters"]: list of (B, 21, 2)
    crop px; batch keypoints_2d (B, 21, 2)."""
    target, vis, n = batch["keypoints_2d"], batch["keypoint_visibility"], crop_size_of(batch)

    def one(pred):
        _check_shape("keypoints_2d", pred, target)
        return visible_mean(keypoint_error_2d(pred, target, n, cfg), vis)

    return _per_level(outputs["keypoints_2d_iters"], cfg.iteration_weights, "iteration_weights",
                      "iterations", one)


@register("camera", flag=("has_2d", "has_3d"))
def camera_loss(outputs, batch, cfg):
    """sum_iters w_i |cam_pred - cam_fit|^2 with cam_fit = weak_perspective_fit of the labels
    (no gradient). It keeps the projection's scale from collapsing towards the hand's centre
    while the 3D pose is still wrong (HAMR's camera loss). 0 where the fit is undefined."""
    target, valid = projection.weak_perspective_fit(batch["keypoints_3d"], batch["keypoints_2d"],
                                         batch["keypoint_visibility"], crop_size_of(batch))
    target = jax.lax.stop_gradient(target)

    def one(pred):
        _check_shape("camera", pred, target)
        return jnp.where(valid, jnp.sum((pred - target) ** 2, -1), 0.0)

    return _per_level(outputs["cam"], cfg.iteration_weights, "iteration_weights", "iterations", one)


@register("keypoints_3d", flag="has_3d")
def keypoints_3d_loss(outputs, batch, cfg):
    """sum_iters w_i mean_j sum_xyz |X_pred - X| (metres, root-relative).
    outputs["keypoints_3d_iters"]: list of (B, 21, 3); batch keypoints_3d (B, 21, 3)."""
    target = batch["keypoints_3d"]

    def one(pred):
        _check_shape("keypoints_3d", pred, target)
        return jnp.mean(jnp.sum(jnp.abs(pred - target), -1), -1)

    return _per_level(outputs["keypoints_3d_iters"], cfg.iteration_weights, "iteration_weights",
                      "iterations", one)


@register("vertices", flag="has_mesh")
def vertices_loss(outputs, batch, cfg):
    """mean_v sum_xyz |V_pred - V| (metres, root-relative); (B, 778, 3) each."""
    pred, target = outputs["vertices"], batch["vertices"]
    _check_shape("vertices", pred, target)
    return jnp.mean(jnp.sum(jnp.abs(pred - target), -1), -1)


def _pose_output(name, outputs):
    pose = outputs["mano_pose"]
    if pose.shape[-1] != 48:
        raise ValueError(f"loss term {name!r} needs a 48-value axis-angle mano_pose output, got "
                         f"shape {pose.shape}")
    return pose


def target_rotmats(pose, flat_hand_mean, hands_mean):
    """Full local rotation matrices of a MANO pose label.

    pose (B, 48) axis-angle; flat_hand_mean (B,) 1 = the 45 finger values are full rotations,
    0 = deviations from hands_mean (45,) (FreiHAND). -> (B, 16, 3, 3), MANO joint order."""
    mean48 = jnp.concatenate([jnp.zeros((3,), pose.dtype), jnp.asarray(hands_mean, pose.dtype)])
    full = pose + (1.0 - flat_hand_mean[:, None]) * mean48
    return rotations.axis_angle_to_matrix(full.reshape(pose.shape[:-1] + (mano_jax.NUM_JOINTS, 3)))


@register("mano_pose", flag="has_mano")
def mano_pose_loss(outputs, batch, cfg):
    """mean over the 16 joints of ||R_pred - R||_F^2 (= 8 sin^2(angle / 2) of the rotation
    between them: 0 at the label, the same for every axis-angle of one rotation, so no 2 pi wrap
    and no conflict between equivalent labels). outputs["mano_rotmats"] (B, 16, 3, 3) full local
    rotations; labels via `target_rotmats` (needs cfg.mano_model.hands_mean)."""
    pred = outputs["mano_rotmats"]
    hands_mean = _needs_mano("mano_pose", cfg).hands_mean
    target = target_rotmats(batch["mano_pose"], batch["mano_flat_hand_mean"], hands_mean)
    _check_shape("mano_pose", pred, target)
    return jnp.mean(jnp.sum(jnp.square(pred - target), (-2, -1)), -1)


@register("global_rotation", flag="has_mano")
def global_rotation_loss(outputs, batch, cfg):
    """||R_pred - R||_F^2 of the global rotation alone (MANO joint 0, camera frame; 8 sin^2 of
    half the angle between them), so that it weighs as much as all the fingers together in
    mano_pose. (B,)."""
    pred = outputs["mano_rotmats"][:, 0]
    target = rotations.axis_angle_to_matrix(batch["mano_pose"][:, :3])
    _check_shape("global_rotation", pred, target)
    return jnp.sum(jnp.square(pred - target), (-2, -1))


@register("mano_betas", flag="has_mano")
def mano_betas_loss(outputs, batch, cfg):
    """mean over 10 of (beta_pred - beta)^2; (B, 10) each."""
    pred, target = outputs["mano_betas"], batch["mano_betas"]
    _check_shape("mano_betas", pred, target)
    return jnp.mean(jnp.square(pred - target), -1)


@register("shape_prior", flag=None)
def shape_prior_loss(outputs, batch, cfg):
    """||betas||^2 (B,): keeps the shape near MANO's mean."""
    return jnp.sum(jnp.square(outputs["mano_betas"]), -1)


@register("pose_prior", flag=None)
def pose_prior_loss(outputs, batch, cfg):
    """||finger pose - hands_mean||^2 (B,), radians^2: the 45 finger values of mano_pose."""
    return jnp.sum(jnp.square(_pose_output("pose_prior", outputs)[:, 3:]), -1)


# ----------------------------------------------------------------------------------------------
# Self-supervised terms (no labels; the other branch's side is stop-gradient)


@register("silhouette", flag=None)
def silhouette_loss(outputs, batch, cfg):
    """Soft silhouette of the predicted mesh vs the last stack's predicted mask (stop-gradient).

    The mesh outputs["vertices_2d"] (B, 778, 2) crop px is rasterised (render.soft_silhouette,
    sigma = cfg.silhouette_sigma mask px^2) at the mask logits' resolution S; the target is
    t = sigmoid(mask_logits[-1]) (B, S, S). Per sample, the mean over pixels of
      "l2":  (s - t)^2;
      "bce": t log(t / s) + (1 - t) log((1 - t) / (1 - s)) (cross-entropy minus the target's
             entropy: 0 at s = t), s and 1 - s floored at 1e-7 inside the logs.
    """
    model = _needs_mano("silhouette", cfg)
    logits = outputs["mask_logits"][-1]
    size = int(cfg.silhouette_size) or logits.shape[1]
    # The S x S grid spans the crop as a heat map does (pixel areas aligned): crop_to_heatmap.
    uv = crop_to_heatmap(outputs["vertices_2d"], crop_size_of(batch), size)
    sil = render.soft_silhouette(uv, model.faces, size, size, cfg.silhouette_sigma)
    target = jax.lax.stop_gradient(area_downsample(jax.nn.sigmoid(logits), size)[..., 0])
    if cfg.silhouette_loss == "l2":
        return jnp.mean(jnp.square(sil - target), axis=(1, 2))
    # a log(a / b), 0 where a = 0; b floored at 1e-7 so that a mesh that misses a pixel the
    # mask claims costs a finite amount (the floor never binds at the minimum s = t >= 1e-7).
    def xlog_ratio(a, b):
        log_a = jnp.log(jnp.where(a > 0, a, 1.0))
        return jnp.where(a > 0, a * (log_a - jnp.log(jnp.maximum(b, 1e-7))), 0.0)

    kl = xlog_ratio(target, sil) + xlog_ratio(1.0 - target, 1.0 - sil)
    return jnp.mean(kl, axis=(1, 2))


@register("keypoints_consistency", flag=None)
def keypoints_consistency_loss(outputs, batch, cfg):
    """Projected mesh joints outputs["keypoints_2d"] (B, 21, 2) vs the soft-argmax of the last
    stack's heat maps (stop-gradient), in crop px: mean_j c_j rho(delta / N), rho as keypoints_2d,
    c_j = clip(max heat map value, 0, 1) (stop-gradient) if keypoints_consistency_confidence else 1."""
    heat = outputs["heatmaps"][-1]
    n, m = crop_size_of(batch), heat.shape[1]
    target = heatmap_to_crop(soft_argmax(heat, cfg.softargmax_temperature), n, m)
    target = jax.lax.stop_gradient(target)
    err = keypoint_error_2d(outputs["keypoints_2d"], target, n, cfg)
    if cfg.keypoints_consistency_confidence:
        conf = jax.lax.stop_gradient(jnp.clip(jnp.max(heat, axis=(1, 2)), 0.0, 1.0))
        err = conf * err
    return jnp.mean(err, -1)


@register("pof_consistency", flag=None)
def pof_consistency_loss(outputs, batch, cfg):
    """Mesh bone directions vs the last stack's POF (stop-gradient).

    d_b = unit(J[child] - J[parent]) of outputs["keypoints_3d"] (B, 21, 3). p_b = the POF (B, M, M,
    60) averaged over bone b's region with weights w (stop-gradient): "mesh" = the pipeline's bone
    region (half-width pof_consistency_width) of the projected mesh joints, "magnitude" =
    |POF_b|^2. Value: sum_b ok_b ||d_b - p_b / |p_b| ||^2 / 20, ok_b = region and p_b non-empty.
    """
    pof = outputs["pof"][-1]
    b, m, _, _ = pof.shape
    vectors = pof.reshape(b, m, m, NUM_BONES, 3)
    if cfg.pof_consistency_region == "mesh":
        joints_hm = crop_to_heatmap(outputs["keypoints_2d"], crop_size_of(batch), m)
        weight = bone_regions(jax.lax.stop_gradient(joints_hm), m, cfg.pof_consistency_width)
    else:
        weight = jnp.sum(jnp.square(vectors), -1)
    mean = pooled_bone_vectors(pof, weight)
    norm2 = jnp.sum(jnp.square(mean), -1, keepdims=True)
    ok = norm2 > 1e-12
    target = jax.lax.stop_gradient(jnp.where(ok, mean * jax.lax.rsqrt(jnp.where(ok, norm2, 1.0)),
                                             0.0))
    d = bone_directions(outputs["keypoints_3d"])
    err = jnp.sum(jnp.square(d - target), -1) * ok[..., 0]
    return jnp.sum(err, -1) / NUM_BONES


# ----------------------------------------------------------------------------------------------
# The total


def term_config(loss_cfg, mano_model=None) -> ml_collections.ConfigDict:
    """The `cfg` that terms receive: a copy of the loss block plus `mano_model` (or None)."""
    cfg = ml_collections.ConfigDict(loss_cfg)
    with cfg.unlocked():
        cfg.mano_model = mano_model
    return cfg


def availability(batch, flags: Sequence[str]):
    """prod_f batch[f] * batch["valid"]: (B,) float; which samples a term averages over."""
    f = batch["valid"].astype(jnp.float32)
    for name in flags:
        if name not in batch:
            raise ValueError(f"the batch has no availability flag {name!r}")
        f = f * batch[name].astype(jnp.float32)
    return jax.lax.stop_gradient(f)


def total_loss(outputs, batch, loss_cfg, *, mano_model=None, axis_name: Optional[str] = None,
               step=None):
    """The weighted sum of every active term, each averaged over its labeled samples.

    Args:
      outputs: the network's output dict (models.HIUNet), per device (leading axis B).
      batch: the batch dict (pipeline.OUTPUT_SCHEMA), per device.
      loss_cfg: the loss block (loss_registry.LOSS_KEYS); terms with weight 0 are skipped.
      mano_model: the network's MANO model (faces for "silhouette", hands_mean for "mano_pose").
      axis_name: the data-parallel axis (pmap / shard_map), or None (one device, or jit with a
        sharded global batch).
      step: the training step, for the ramp of loss_cfg.ramp_terms (`ramp_factor`); None = no
        ramp (full weights).
    Returns:
      (loss, metrics). loss: scalar; without axis_name the loss of the batch; with it, this
      device's share n_dev * sum_local(w f v) / max(global count, 1), whose pmean over the axis
      is the global loss (train steps pmean the gradients as usual; never psum). metrics: global
      values, the same on every device: "<term>" = its unweighted labeled mean, "count/<term>" =
      the number of samples it averaged over, "loss" = the weighted total.
    """
    active = validate_loss_config(loss_cfg)
    cfg = term_config(loss_cfg, mano_model)
    size = 1.0 if axis_name is None else jax.lax.psum(1.0, axis_name)
    batch_size = batch["valid"].shape[0]
    loss, metrics, total = jnp.zeros((), jnp.float32), {}, jnp.zeros((), jnp.float32)
    ramp = ramp_factor(loss_cfg, step)
    ramped = set(loss_cfg.ramp_terms)
    for name, weight in active.items():
        if name in ramped:
            weight = weight * ramp
        term = loss_registry.REGISTRY[name]
        values = term.fn(outputs, batch, cfg)
        if values.shape != (batch_size,):
            raise ValueError(f"loss term {name!r} returned shape {values.shape}; a term returns "
                             f"per-sample values of shape ({batch_size},)")
        f = availability(batch, term.flags)
        local = jnp.sum(jnp.where(f > 0, values * f, 0.0))  # unlabeled NaN/inf cannot leak in
        count = jnp.sum(f)
        if axis_name is not None:
            count = jax.lax.psum(count, axis_name)
            global_sum = jax.lax.psum(jax.lax.stop_gradient(local), axis_name)
        else:
            global_sum = jax.lax.stop_gradient(local)
        denom = jnp.maximum(count, 1.0)
        loss = loss + weight * size * local / denom
        metrics[name] = global_sum / denom
        metrics[f"count/{name}"] = count
        total = total + weight * metrics[name]
    metrics["loss"] = total
    return loss, metrics
