"""The HIU-DMTL network (Flax linen): cascaded multi-task stacks, then coarse-to-fine MANO regression.

    image (B, 256, 256, 3)
      -> stem: 7x7/2 conv (64) -> 7x7/2 conv (128)                       (B, 64, 64, 128)
      -> K stacks, each: ResNet bottleneck encoder (skips at 64, 32, 16, 8 px) and three decoders
         sharing the skips -> 21 heat maps, mask logits, 60 POF channels (20 bones x 3);
         the next stack takes x + 1x1(features) + 1x1(predictions)   (hourglass-style)
      -> feature encoder: strided conv blocks over [last features, predictions] -> vector (2048)
      -> coarse to fine: the vector, the soft-argmax 2D keypoints of the last heat maps and the
         POF pooled over the bones between them (3D bone directions), all stop-gradient
      -> iterative regressor (HMR error feedback): theta += MLP([f, theta]), 3 iterations;
         theta = weak-perspective camera (log s, tx, ty), global rotation, finger pose, betas
      -> MANO layer (mano_jax) -> root-relative vertices and 21 joints, projected to crop pixels.

Parameterisation (where the regressor's numbers become a hand): the camera scale is
s = init_cam_scale * exp(theta_s), so it stays positive; the global rotation is 6D (continuous,
no wrap at pi) when `global_rotation` = "rot6d", the fingers as `pose_parameterisation` says;
betas = beta_limit * tanh(theta_beta / beta_limit) keeps the shape within +-beta_limit standard
deviations (0 = unbounded).

Design decisions where the paper is silent are listed in docs/architecture.md ("The network").
Every size is a config field; `configs/` holds the full (ResNet-50 body per stack) and tiny sizes.

Projection: the weak-perspective crop camera of hiu_jax.geometry.projection.crop_camera_projection,
    uv = crop/2 * (1 + t + s * X_xy / PROJECTION_REF)
in crop pixels, with X root-relative in metres and PROJECTION_REF = 0.1 m, so s ~ 1 makes a 0.1 m
offset span half the crop.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

import mano_jax
from hiu_jax import keypoint_maps
from hiu_jax.config_blocks import check_keys
from hiu_jax.geometry import skeleton
from hiu_jax.geometry.projection import PROJECTION_REF, crop_camera_projection
from mano_jax import lbs, rotations

NUM_KEYPOINTS = skeleton.NUM_KEYPOINTS
NUM_BONES = skeleton.NUM_BONES
POSE_PARAMETERISATIONS = ("axis_angle", "pca", "rot6d")
GLOBAL_ROTATIONS = ("axis_angle", "rot6d")
MAX_LOG_CAM_SCALE = 4.0  # theta_s is clipped to +-this: s within e^-4 .. e^4 of init_cam_scale
# The hidden activation (config `activation`). ReLU's derivative jumps at 0, so the gradient of a
# ReLU network is a discontinuous function of its inputs: the float32 rounding differences
# between two equivalent evaluations (one device vs data parallel: BatchNorm statistics and
# convolutions summed in another order, 1e-7 to 3e-6 of the pre-activations) carry the few
# pre-activations that lie that close to 0 to the other side (0 to 2 of the tiny config's ~1M
# per batch of 8), and each such unit changes the gradient by ~1/sqrt(pixels summed), 2e-4 to
# 8e-3 of it (bench/dp_grad_terms.py). GELU's derivative is continuous: equivalent evaluations
# then give gradients equal to float32 rounding (~1e-5).
ACTIVATIONS = {"relu": nn.relu, "gelu": nn.gelu}


def activation(name: str) -> Callable:
    """The elementwise activation function called `name` in ACTIVATIONS."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


def theta_layout(pose_parameterisation: str, pca_components: int = 12,
                 global_rotation: str = "axis_angle") -> dict:
    """Slices of the regressor's theta vector: name -> (start, stop).

    global_rotation: "axis_angle" (3 values) or "rot6d" (6); with pose_parameterisation "rot6d"
    the global rotation is 6D either way."""
    if pose_parameterisation not in POSE_PARAMETERISATIONS:
        raise ValueError(f"pose_parameterisation must be one of {POSE_PARAMETERISATIONS}, "
                         f"got {pose_parameterisation!r}")
    if global_rotation not in GLOBAL_ROTATIONS:
        raise ValueError(f"global_rotation must be one of {GLOBAL_ROTATIONS}, "
                         f"got {global_rotation!r}")
    glob = 6 if "rot6d" in (pose_parameterisation, global_rotation) else 3
    if pose_parameterisation == "rot6d":
        sizes = [("cam", 3), ("global_rot", 6), ("hand_pose", 15 * 6), ("betas", 10)]
    else:
        if pose_parameterisation == "pca" and not 1 <= pca_components <= 45:
            raise ValueError(f"pca_components must be in 1..45, got {pca_components}")
        finger = 45 if pose_parameterisation == "axis_angle" else pca_components
        sizes = [("cam", 3), ("global_rot", glob), ("hand_pose", finger), ("betas", 10)]
    layout, start = {}, 0
    for name, size in sizes:
        layout[name] = (start, start + size)
        start += size
    return layout


def initial_theta(layout: dict, pose_parameterisation: str, init_global_rot=(0.0, 0.0, 0.0)):
    """theta at iteration 0: camera (log s = 0, 0, 0), the global rotation init_global_rot
    (axis-angle, camera frame), identity finger rotations (the mean finger pose), zero betas."""
    size = max(stop for _, stop in layout.values())
    theta = jnp.zeros((size,), jnp.float32)
    glob = jnp.asarray(init_global_rot, jnp.float32)
    gslice = slice(*layout["global_rot"])
    if gslice.stop - gslice.start == 6:
        glob = rotations.matrix_to_rotation_6d(rotations.axis_angle_to_matrix(glob))
    theta = theta.at[gslice].set(glob)
    if pose_parameterisation == "rot6d":
        eye6 = rotations.matrix_to_rotation_6d(jnp.eye(3))
        theta = theta.at[slice(*layout["hand_pose"])].set(jnp.tile(eye6, 15))
    return theta


def pose_from_rotmats(mano_model, global_rotmat, finger_rotmats):
    """The 48-value MANO pose (flat_hand_mean=False) of full local rotations:
    global_rotmat (B, 3, 3), finger_rotmats (B, 15, 3, 3), hands_mean included -> (B, 48)
    axis-angle radians, [0:3] global, [3:48] the fingers' axis-angles minus hands_mean, so that
    MANO(pose + hands_mean) gives the same rotations."""
    fingers = rotations.matrix_to_axis_angle(finger_rotmats)
    fingers = fingers.reshape(fingers.shape[:-2] + (45,)) - mano_model.hands_mean
    return jnp.concatenate([rotations.matrix_to_axis_angle(global_rotmat), fingers], -1)


def mano_from_theta(mano_model, theta, layout, pose_parameterisation, beta_limit: float = 0.0):
    """Runs MANO for a batch of theta. Returns root-relative vertices, joints and the pose.

    theta: (B, T). Axis-angle and PCA poses are deviations from hands_mean (flat_hand_mean=False,
    as FreiHAND stores them); 6D poses are full local rotations. A 6D global rotation goes with
    any finger parameterisation. beta_limit > 0: betas = beta_limit tanh(theta_betas / limit).
    Returns dict(vertices (B, 778, 3), keypoints_3d (B, 21, 3), both minus the wrist (joint 0),
    in metres, OpenPose/FreiHAND order; pose (B, 48) axis-angle radians with
    flat_hand_mean=False, whatever the parameterisation (PCA coefficients expanded; 6D finger
    rotations converted, `pose_from_rotmats`); rotmats (B, 16, 3, 3) the full local rotations
    (hands_mean included), MANO joint order; betas (B, 10)).
    """
    betas = theta[..., slice(*layout["betas"])]
    if beta_limit > 0:
        betas = beta_limit * jnp.tanh(betas / beta_limit)
    glob = theta[..., slice(*layout["global_rot"])]
    fingers = theta[..., slice(*layout["hand_pose"])]
    glob_rotmat = (rotations.rotation_6d_to_matrix(glob) if glob.shape[-1] == 6
                   else rotations.axis_angle_to_matrix(glob))
    if pose_parameterisation == "rot6d":
        finger_rotmats = rotations.rotation_6d_to_matrix(
            fingers.reshape(fingers.shape[:-1] + (15, 6)))
        pose = pose_from_rotmats(mano_model, glob_rotmat, finger_rotmats)
    else:
        if pose_parameterisation == "pca":
            fingers = fingers @ mano_model.hands_components[: fingers.shape[-1]]
        finger_rotmats = lbs.pose_to_rotations(
            mano_model, jnp.concatenate([jnp.zeros_like(fingers[..., :3]), fingers], -1),
            flat_hand_mean=False, pose_space="axis_angle")[..., 1:, :, :]
        glob_aa = glob if glob.shape[-1] == 3 else rotations.matrix_to_axis_angle(glob_rotmat)
        pose = jnp.concatenate([glob_aa, fingers], -1)
    rotmats = jnp.concatenate([glob_rotmat[..., None, :, :], finger_rotmats], -3)
    out = mano_jax.forward(mano_model, rotmats, betas, flat_hand_mean=True, pose_space="rotmat")
    root = out.joints[..., :1, :]
    return dict(vertices=out.vertices - root, keypoints_3d=out.joints - root, pose=pose,
                rotmats=rotmats, betas=betas)


def camera_from_theta(theta, layout, init_cam_scale: float, keypoints_3d):
    """(B, T) theta -> (B, 3) weak-perspective camera (s, tx, ty) of `crop_camera_projection`.

    The regressor's camera (theta_s, t_c) is anchored at the centroid c of the hand's 21 joints
    (B, 21, 3) root-relative: uv = N/2 (1 + t_c + s (X - c)_xy / REF), so theta = 0 puts the
    hand's centre at the crop's centre (where the pipeline puts the hand) whatever the pose.
    s = init_cam_scale exp(theta_s) stays positive. Returned as the equivalent wrist-anchored
    camera, t = t_c - s c_xy / REF."""
    raw = theta[..., slice(*layout["cam"])]
    s = init_cam_scale * jnp.exp(jnp.clip(raw[..., :1], -MAX_LOG_CAM_SCALE, MAX_LOG_CAM_SCALE))
    centroid = jnp.mean(keypoints_3d[..., :2], axis=-2)
    return jnp.concatenate([s, raw[..., 1:] - s * centroid / PROJECTION_REF], -1)


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm -> optional activation (`act`, see `ACTIVATIONS`)."""

    features: int
    kernel: int = 3
    strides: int = 1
    relu: bool = True  # apply `act`
    norm: Any = None
    dtype: Any = jnp.float32
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.features, (self.kernel, self.kernel), strides=self.strides, use_bias=False,
                    dtype=self.dtype, param_dtype=jnp.float32)(x)
        x = self.norm()(x)
        return self.act(x) if self.relu else x


class ConvBlock(nn.Module):
    """What every block built of `ConvBN`s shares: its norm, dtype and activation (keyword-only
    fields, so a block's own fields come first), and `conv`, a ConvBN with them."""

    norm: Any = dataclasses.field(default=None, kw_only=True)
    dtype: Any = dataclasses.field(default=jnp.float32, kw_only=True)
    act: Callable = dataclasses.field(default=nn.relu, kw_only=True)

    def conv(self, features: int, kernel: int = 3, strides: int = 1, relu: bool = True):
        return ConvBN(features, kernel, strides, relu, norm=self.norm, dtype=self.dtype,
                      act=self.act)


class Bottleneck(ConvBlock):
    """ResNet bottleneck: 1x1 -> 3x3 (stride) -> 1x1 (x4), projection shortcut when needed."""

    width: int
    strides: int = 1

    @nn.compact
    def __call__(self, x):
        y = self.conv(self.width, 1)(x)
        y = self.conv(self.width, 3, self.strides)(y)
        y = self.conv(self.width * 4, 1, relu=False)(y)
        if x.shape[-1] != self.width * 4 or self.strides != 1:
            x = self.conv(self.width * 4, 1, self.strides, relu=False)(x)
        return self.act(x + y)


class Encoder(ConvBlock):
    """ResNet-style stages; returns the output of every stage (the decoders' skips)."""

    widths: Sequence[int]
    blocks: Sequence[int]

    @nn.compact
    def __call__(self, x):
        skips = []
        for i, (width, count) in enumerate(zip(self.widths, self.blocks)):
            for b in range(count):
                strides = 2 if (i > 0 and b == 0) else 1
                x = Bottleneck(width, strides, norm=self.norm, dtype=self.dtype, act=self.act)(x)
            skips.append(x)
        return skips


class Decoder(ConvBlock):
    """Upsamples the deepest skip back to the first skip's resolution, merging each skip."""

    width: int

    @nn.compact
    def __call__(self, skips):
        x = self.conv(self.width, 1)(skips[-1])
        for skip in reversed(skips[:-1]):
            b, h, w, c = x.shape
            x = jax.image.resize(x, (b, skip.shape[1], skip.shape[2], c), "bilinear")
            x = self.conv(self.width, 3)(x + self.conv(self.width, 1)(skip))
        return self.conv(self.width, 3)(x)


def scale_gradient(x, scale: float):
    """x in the forward pass; `scale` times its gradient in the backward pass (0: none)."""
    if scale == 1.0:
        return x
    frozen = jax.lax.stop_gradient(x)
    return frozen if scale == 0.0 else frozen + scale * (x - frozen)


class Stack(nn.Module):
    """One multi-task stack: encoder + heat-map, mask and POF decoders sharing the skips.

    zero_init_heads: the 1x1 output convolutions start at zero (heat maps and POF start as
    zero maps, the mask as p = 0.5) instead of as noise the first steps must erase."""

    widths: Sequence[int]
    blocks: Sequence[int]
    decoder_width: int
    norm: Any = None
    dtype: Any = jnp.float32
    zero_init_heads: bool = False
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x):
        skips = Encoder(self.widths, self.blocks, norm=self.norm, dtype=self.dtype,
                        act=self.act)(x)
        feats, preds = [], {}
        for name, channels in (("heatmaps", NUM_KEYPOINTS), ("mask", 1), ("pof", 3 * NUM_BONES)):
            f = Decoder(self.decoder_width, norm=self.norm, dtype=self.dtype, act=self.act,
                        name=f"{name}_decoder")(skips)
            feats.append(f)
            init = (nn.initializers.zeros if self.zero_init_heads
                    else nn.linear.default_kernel_init)
            preds[name] = nn.Conv(channels, (1, 1), dtype=self.dtype, param_dtype=jnp.float32,
                                  kernel_init=init, name=f"{name}_head")(f)
        return jnp.concatenate(feats, -1), preds


class FeatureEncoder(ConvBlock):
    """Strided conv blocks over [features, predictions] down to one vector per image."""

    channels: Sequence[int]

    @nn.compact
    def __call__(self, x):
        for c in self.channels:
            x = self.conv(c, 3, 2)(x)
        return jnp.mean(x, axis=(1, 2))


class Regressor(nn.Module):
    """HMR-style iterative error feedback: theta_{i+1} = theta_i + MLP([f, theta_i])."""

    theta_init: Any
    hidden: Sequence[int]
    iterations: int
    dropout: float = 0.0
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, features, train: bool):
        features = features.astype(jnp.float32)  # the regressor runs in float32
        theta = jnp.broadcast_to(self.theta_init, (features.shape[0], self.theta_init.shape[0]))
        layers = [nn.Dense(h, name=f"fc{i}") for i, h in enumerate(self.hidden)]
        out = nn.Dense(self.theta_init.shape[0], name="delta",
                       kernel_init=nn.initializers.variance_scaling(0.01, "fan_avg", "uniform"))
        drop = nn.Dropout(self.dropout)
        thetas = []
        for _ in range(self.iterations):
            h = jnp.concatenate([features, theta], -1)
            for layer in layers:
                h = drop(self.act(layer(h)), deterministic=not train)
            theta = theta + out(h)
            thetas.append(theta)
        return thetas


class HIUNet(nn.Module):
    """The full network. `config` is the `model` block of a config (see configs/default.py).

    Fields:
      config: model hyper-parameters (sizes, pose parameterisation, ...).
      mano_model: the MANO hand (a `mano_jax.MANOModel`), used as a constant.
      bn_axis_name: BatchNorm's cross-device axis: the pmap axis name, or None under jit with a
        device mesh (statistics are then global without a collective).
      dtype: computation dtype of the convolutions (jnp.bfloat16 for half precision); parameters,
        BatchNorm statistics, the regressor and MANO stay float32.
    """

    config: ml_collections.ConfigDict
    mano_model: Any
    bn_axis_name: Any = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool):
        cfg = self.config
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (B, H, W, 3), got {images.shape}")
        crop = images.shape[1]
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                                 epsilon=1e-5, axis_name=self.bn_axis_name, dtype=self.dtype,
                                 param_dtype=jnp.float32)
        act = activation(cfg.activation)
        x = images.astype(self.dtype) * 2.0 - 1.0
        for c in cfg.stem_channels:
            x = ConvBN(c, cfg.stem_kernel, 2, norm=norm, dtype=self.dtype, act=act)(x)
        outputs = {"heatmaps": [], "mask_logits": [], "pof": []}
        feats = preds = None
        for k in range(cfg.num_stacks):
            if k > 0:
                merged = jnp.concatenate([preds["heatmaps"], preds["mask"], preds["pof"]], -1)
                x = x + ConvBN(x.shape[-1], 1, relu=False, norm=norm, dtype=self.dtype)(feats)
                x = x + ConvBN(x.shape[-1], 1, relu=False, norm=norm, dtype=self.dtype)(merged)
            feats, preds = Stack(cfg.encoder_widths, cfg.encoder_blocks, cfg.decoder_width,
                                 norm=norm, dtype=self.dtype, act=act,
                                 zero_init_heads=cfg.zero_init_heads,
                                 name=f"stack{k}")(x)
            b = images.shape[0]
            heat = preds["heatmaps"]
            if heat.shape[1] != cfg.heatmap_size:
                heat = jax.image.resize(heat, (b, cfg.heatmap_size, cfg.heatmap_size, NUM_KEYPOINTS),
                                        "bilinear")
            outputs["heatmaps"].append(heat.astype(jnp.float32))
            outputs["mask_logits"].append(jax.image.resize(
                preds["mask"], (b, cfg.mask_size, cfg.mask_size, 1), "bilinear").astype(jnp.float32))
            pof = preds["pof"]
            if pof.shape[1] != cfg.heatmap_size:
                pof = jax.image.resize(pof, (b, cfg.heatmap_size, cfg.heatmap_size, 3 * NUM_BONES),
                                       "bilinear")
            outputs["pof"].append(pof.astype(jnp.float32))
        merged = jnp.concatenate([feats, preds["heatmaps"], preds["mask"], preds["pof"]], -1)
        if cfg.regressor_stop_gradient:
            # The stacks learn from their dense labels only; the mesh losses train the feature
            # encoder and the regressor (their gradients would otherwise swamp the heat maps').
            merged = jax.lax.stop_gradient(merged)
        else:  # the mesh losses reach the stacks, their gradient scaled
            merged = scale_gradient(merged, float(cfg.regressor_gradient_scale))
        vector = FeatureEncoder(cfg.feature_channels, norm=norm, dtype=self.dtype, act=act)(merged)
        # Coarse to fine: the regressor also reads the 2D keypoints and the 3D bone directions
        # that the last stack found (stop-gradient: those heads learn from their own labels).
        heat = jax.lax.stop_gradient(outputs["heatmaps"][-1])
        keypoints_hm = keypoint_maps.soft_argmax(heat, cfg.keypoint_temperature)
        outputs["keypoints_hm"] = keypoints_hm
        if cfg.coarse_to_fine_inputs:
            m = cfg.heatmap_size
            regions = keypoint_maps.soft_bone_regions(keypoints_hm, m, 1.0)
            bones = keypoint_maps.pooled_bone_vectors(jax.lax.stop_gradient(outputs["pof"][-1]),
                                                      regions)
            keypoints_unit = 2.0 * (keypoints_hm + 0.5) / m - 1.0  # the crop spans [-1, 1]
            vector = jnp.concatenate([vector.astype(jnp.float32),
                                      keypoints_unit.reshape(b, -1), bones.reshape(b, -1)], -1)

        layout = theta_layout(cfg.pose_parameterisation, cfg.pca_components,
                              cfg.global_rotation)
        theta0 = initial_theta(layout, cfg.pose_parameterisation,
                               cfg.init_global_rot)
        thetas = Regressor(theta0, cfg.regressor_hidden, cfg.regressor_iterations,
                           cfg.regressor_dropout, act=act)(vector, train)
        outputs["theta"] = thetas
        outputs["cam"], outputs["keypoints_3d_iters"], outputs["keypoints_2d_iters"] = [], [], []
        for theta in thetas:
            hand = mano_from_theta(self.mano_model, theta, layout, cfg.pose_parameterisation,
                                   cfg.beta_limit)
            cam = camera_from_theta(theta, layout, cfg.init_cam_scale, hand["keypoints_3d"])
            outputs["cam"].append(cam)
            outputs["keypoints_3d_iters"].append(hand["keypoints_3d"])
            outputs["keypoints_2d_iters"].append(
                crop_camera_projection(hand["keypoints_3d"], cam, crop))
        outputs["vertices"] = hand["vertices"]
        outputs["keypoints_3d"] = hand["keypoints_3d"]
        outputs["keypoints_2d"] = outputs["keypoints_2d_iters"][-1]
        outputs["vertices_2d"] = crop_camera_projection(hand["vertices"], cam, crop)
        outputs["mano_pose"] = hand["pose"]
        outputs["mano_betas"] = hand["betas"]
        outputs["mano_rotmats"] = hand["rotmats"]
        return outputs


# Every key of the `model` block. The values live in the config files only (configs/default.py
# model_config states and explains each one); HIUNet reads `cfg.key`.
MODEL_KEYS = (
    "num_stacks", "stem_channels", "stem_kernel", "encoder_widths", "encoder_blocks",
    "decoder_width", "feature_channels", "heatmap_size", "mask_size", "regressor_hidden",
    "regressor_iterations", "regressor_dropout", "activation", "pose_parameterisation",
    "global_rotation", "pca_components", "init_cam_scale", "init_global_rot", "beta_limit",
    "coarse_to_fine_inputs", "regressor_stop_gradient", "regressor_gradient_scale",
    "zero_init_heads", "keypoint_temperature", "mano_path",
)


def validate_model_config(model_config) -> None:
    """Checks the `model` block: exactly MODEL_KEYS, and the switches' values. Raises
    ValueError naming the unknown, missing or bad key."""
    check_keys(model_config, MODEL_KEYS, "model")
    for key, options in (("activation", tuple(ACTIVATIONS)),
                         ("pose_parameterisation", POSE_PARAMETERISATIONS),
                         ("global_rotation", GLOBAL_ROTATIONS)):
        if model_config[key] not in options:
            raise ValueError(f"model config: {key} = {model_config[key]!r} must be one of "
                             f"{options}")
    for key in ("num_stacks", "stem_kernel", "decoder_width", "heatmap_size", "mask_size",
                "regressor_iterations"):
        value = model_config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"model config: {key} = {value!r} must be an int >= 1")
    if len(tuple(model_config.init_global_rot)) != 3:
        raise ValueError(f"model config: init_global_rot = {model_config.init_global_rot!r} must "
                         "be 3 axis-angle values")
    if not isinstance(model_config.mano_path, str):
        raise ValueError(f"model config: mano_path = {model_config.mano_path!r} must be a path "
                         "string ('' = the procedural hand)")


def build_model(model_config, mano_model=None, *, bn_axis_name=None, half_precision=False):
    """HIUNet from a config block (validated: validate_model_config); the MANO model defaults to
    the procedural hand, or `model_config.mano_path` when set (a user's MANO_RIGHT.pkl/.npz)."""
    validate_model_config(model_config)
    if mano_model is None:
        path = model_config.mano_path
        mano_model = mano_jax.load_model(path) if path else mano_jax.procedural_model("right")
    return HIUNet(model_config, mano_model, bn_axis_name=bn_axis_name,
                  dtype=jnp.bfloat16 if half_precision else jnp.float32)
