"""One canonical example (datasets/schema.py) -> one network example: the hand's crop, its
labels in the crop's frame, and the training targets. `Knobs` is the one definition of the
per-example settings: their names, defaults and valid ranges.

Geometry (the pixel convention is hiu_jax.geometry's: pixel (c, r) has its centre at (c, r), an
N-pixel crop covers [-0.5, N - 0.5]):
- A 3D point X (camera frame, metres) becomes X' = R X with R = R_z(theta) @ M, where M =
  diag(-1, 1, 1) mirrors left hands to right hands (M = I otherwise) and R_z(theta) rotates about
  the optical axis. The image is warped by the affine A = S @ K @ R @ K^-1, where S is the crop's
  scale + translation (crops.crop_matrix), and the crop's intrinsics are K' = S @ K; so
  proj(K' X') = A proj(K X) exactly: the warped image, the warped 2D labels and the rotated 3D
  labels agree.
- Heat maps (size M) cover the same area as the crop (size N): crops.crop_to_heatmap.

Backends (Knobs.xla): False runs preprocess as a TF graph and warps with
tf.raw_ops.ImageProjectiveTransformV3; True warps by gathers (warps.warp_bilinear) and runs
everything after decoding as one XLA program per padded image size (XLA_BUCKETS), ~1.5x the
throughput (bench/input_bench.py). Both give the same outputs up to float rounding (tested).

Limitations: the warp samples bilinearly without anti-aliasing, so crops that shrink the image
by more than ~2x alias; MANO translation is not carried through the crop (it needs MANO's J0),
and mirrored hands lose their MANO labels (has_mano = 0).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import numpy as np
import tensorflow as tf
import tensorflow.experimental.numpy as tnp

from datasets import augment, schema, targets
from hiu_jax.geometry import crops, projection, warps
from mano_jax import rotations

LEFT = schema.HAND_SIDES.index("left")  # ClassLabel id of a left hand (1)
SAMPLE_ID_BYTES = 64  # the output's sample_id: UTF-8, zero-padded to this many bytes

# Keys of a canonical example that preprocess reads.
INPUT_KEYS = (
    "image", "mask", "K", "keypoints_2d", "keypoint_visibility", "keypoints_3d", "vertices",
    "mano_pose", "mano_betas", "mano_flat_hand_mean", "scale", "bbox", "root_3d", "hand_side",
    "sample_id",
) + schema.FLAG_NAMES


@dataclasses.dataclass(frozen=True)
class Knobs:
    """Every per-example setting (no defaults: the config files state every value). Lengths in
    pixels unless stated.

    Constructing one validates it (ValueError naming the knob and its value); floats are
    stored as float. The `pipeline` config block holds these names plus the stream's
    (datasets/pipeline.py) and the sources' (datasets/registry.py).
    """

    crop_size: int  # N: the network input is N x N
    heatmap_size: int  # M: heat maps and POF are M x M
    heatmap_sigma: float  # Gaussian sigma, heat-map pixels
    crop_padding: float  # crop side = padding * max(width, height) of the hand box
    min_box_size: float  # lower bound of the crop side before jitter, image pixels
    scale_jitter: float  # train: crop side *= U(1 - s, 1 + s)
    rotation_deg: float  # train: theta ~ U(-r, r) degrees about the optical axis
    translation_jitter: float  # train: crop centre += U(-t, t) * crop side, x and y
    flip_prob: float  # train: mirror probability (a right hand becomes left: has_mano = 0)
    brightness: float  # train: add U(-b, b) to all channels ([0, 1] units)
    contrast: float  # train: (x - mean) * U(1 - c, 1 + c) + mean, per channel mean
    saturation: float  # train: grey + U(1 - s, 1 + s) * (x - grey), grey = luma
    hue: float  # train: rotate the YIQ chroma by U(-h, h) turns
    blur_prob: float  # train: probability of a Gaussian blur
    blur_sigma_min: float  # blur sigma ~ U(min, max), crop pixels
    blur_sigma_max: float
    noise_std: float  # train: std of additive pixel noise ([0, 1] units); 0 = off
    mask_threshold: float  # the mask is warped bilinearly, then thresholded at this value
    pof_width: float  # POF half-width: heat-map pixels within this distance of the bone
    # False: warp with tf.raw_ops.ImageProjectiveTransformV3 in a TF graph. True: warp by
    # gathers and compute labels, targets and colour augmentation in one XLA program (~1.5x
    # faster); images are zero-padded to a side in XLA_BUCKETS, and each padded size compiles
    # once per process (~1-2 s).
    xla: bool

    def __post_init__(self):
        def need(ok, name, rule):
            if not ok:
                raise ValueError(f"pipeline config: {name} = {getattr(self, name)!r} must be "
                                 f"{rule}")

        def number(name):
            value = getattr(self, name)
            need(isinstance(value, (int, float, np.integer, np.floating))
                 and not isinstance(value, bool), name, "a number")
            return float(value)

        for name in ("crop_size", "heatmap_size"):
            value = getattr(self, name)
            need(isinstance(value, (int, np.integer)) and not isinstance(value, bool)
                 and value > 0, name, "an int > 0")
            object.__setattr__(self, name, int(value))
        for f in dataclasses.fields(self):
            if f.type == "float":
                object.__setattr__(self, f.name, number(f.name))
        for name in ("heatmap_sigma", "crop_padding", "min_box_size", "pof_width"):
            need(getattr(self, name) > 0 and math.isfinite(getattr(self, name)), name,
                 "finite and > 0")
        for name in ("scale_jitter", "contrast", "saturation"):
            need(0 <= getattr(self, name) < 1, name, "in [0, 1)")
        for name in ("flip_prob", "blur_prob", "mask_threshold", "brightness", "hue"):
            need(0 <= getattr(self, name) <= 1, name, "in [0, 1]")
        need(0 <= self.rotation_deg <= 180, "rotation_deg", "in [0, 180]")
        need(0 <= self.translation_jitter <= 1, "translation_jitter", "in [0, 1]")
        need(0 <= self.noise_std and math.isfinite(self.noise_std), "noise_std",
             "finite and >= 0")
        need(0 < self.blur_sigma_min <= self.blur_sigma_max <= 20, "blur_sigma_min",
             f"> 0 and <= blur_sigma_max ({self.blur_sigma_max}) <= 20")
        need(isinstance(self.xla, bool), "xla", "a bool")


KNOB_NAMES = tuple(f.name for f in dataclasses.fields(Knobs))


# ----------------------------------------------------------------------------------------------
# Geometry (pure TF functions; float32)


def mirror_x(mirror):
    """mirror () bool -> diag(-1, 1, 1) if mirror else I, (3, 3) float32."""
    sx = tf.where(mirror, -1.0, 1.0)
    return tf.linalg.diag(tf.stack([sx, 1.0, 1.0]))


def compose_z_rotation(axis_angle, theta):
    """Axis-angle (3,) of R_z(theta) @ Rodrigues(axis_angle), via quaternions (stable at 0 and
    pi); the result has angle in [0, pi]. float32."""
    q_z = tf.stack([tf.cos(0.5 * theta), 0.0, 0.0, tf.sin(0.5 * theta)])  # R_z(theta)
    q = rotations.quaternion_multiply(q_z, rotations.axis_angle_to_quaternion(axis_angle, xp=tnp),
                                      xp=tnp)
    return rotations.quaternion_to_axis_angle(q, xp=tnp)


def _mask_box(mask):
    """mask (H, W, 1) -> (any pixel on () bool, lo (2,), hi (2,)): the box of the on pixels'
    areas [c - 0.5, c + 0.5] (u, v); static shapes (XLA-friendly); +-1e9 when empty."""
    big = 1e9
    m = mask[:, :, 0] > 0
    cols, rows = tf.reduce_any(m, 0), tf.reduce_any(m, 1)
    u = tf.range(tf.shape(m)[1], dtype=tf.float32)
    v = tf.range(tf.shape(m)[0], dtype=tf.float32)
    lo = tf.stack([tf.reduce_min(tf.where(cols, u, big)), tf.reduce_min(tf.where(rows, v, big))])
    hi = tf.stack([tf.reduce_max(tf.where(cols, u, -big)),
                   tf.reduce_max(tf.where(rows, v, -big))])
    return tf.reduce_any(cols), lo - 0.5, hi + 0.5


def hand_box(keypoints_2d, visibility, has_2d, mask, has_mask, bbox, has_bbox, image_hw):
    """The hand's axis-aligned box in image pixels, from the first available of: the visible
    2D keypoints, the mask's pixels (their areas), the bbox, the whole image.

    Args: keypoints_2d (21, 2) f32; visibility (21,) f32 0/1; has_2d, has_mask, has_bbox ()
      bool; mask (H, W, 1) uint8; bbox (4,) f32 [x0, y0, x1, y1]; image_hw (2,) f32 (H, W).
    Returns: (center (2,) f32, size () f32 = max(width, height)), pixels.
    """
    big = 1e9
    vis = (visibility > 0.5) & has_2d
    use_kp = tf.reduce_any(vis)
    kp_lo = tf.reduce_min(tf.where(vis[:, None], keypoints_2d, big), 0)
    kp_hi = tf.reduce_max(tf.where(vis[:, None], keypoints_2d, -big), 0)
    # The mask is only scanned when no keypoint is visible.
    mask_on, m_lo, m_hi = tf.cond(
        use_kp | tf.logical_not(has_mask),
        lambda: (tf.constant(False), tf.zeros((2,)), tf.zeros((2,))),
        lambda: _mask_box(mask))
    use_mask = has_mask & mask_on
    image_lo = tf.constant([-0.5, -0.5])
    image_hi = tf.stack([image_hw[1], image_hw[0]]) - 0.5
    lo = tf.where(use_kp, kp_lo, tf.where(use_mask, m_lo, tf.where(has_bbox, bbox[:2], image_lo)))
    hi = tf.where(use_kp, kp_hi, tf.where(use_mask, m_hi, tf.where(has_bbox, bbox[2:], image_hi)))
    return crops.box_center_size(lo, hi, xp=tnp)


def warp_projective(image, A_inv, crop_size: int):
    """warps.warp_bilinear with tf.raw_ops.ImageProjectiveTransformV3 (BILINEAR, CONSTANT 0):
    output pixel (x, y) samples image (H, W, C) f32 at A_inv [x, y, 1]; (N, N, C)."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=tf.reshape(A_inv, (9,))[None, :8],
        output_shape=tf.constant([crop_size, crop_size], tf.int32),
        fill_value=tf.constant(0.0), interpolation="BILINEAR", fill_mode="CONSTANT")[0]


def sampled_region(A_inv, crop_size: int, image_hw):
    """The pixels a bilinear warp by the affine A_inv (crop -> image) can read: the integer box
    [x0, x1) x [y0, y1) holding floor(s) and floor(s) + 1 of every sample s = A_inv [x, y, 1],
    x, y in 0..N-1 (an affine map's extremes are at the corners), clipped to the image and at
    least one pixel wide. Returns (x0, y0, x1, y1) int32."""
    n = crop_size - 1.0
    corners = crops.apply_affine(A_inv, tf.constant([[0.0, 0.0], [n, 0.0], [0.0, n], [n, n]]),
                                 xp=tnp)
    low = tf.cast(tf.floor(tf.reduce_min(corners, 0)), tf.int32)
    high = tf.cast(tf.floor(tf.reduce_max(corners, 0)), tf.int32) + 2
    size = tf.stack([image_hw[1], image_hw[0]])  # (W, H)
    low = tf.clip_by_value(low, 0, size - 1)
    high = tf.clip_by_value(high, low + 1, size)
    return low[0], low[1], high[0], high[1]


def warp_image_and_mask(image, mask, A_inv, crop_size: int):
    """The crop of image (H, W, 3) uint8 and mask (H, W, 1) uint8 0/1 in one bilinear warp
    (warp_projective): (N, N, 4) float32, RGB in [0, 1] then the mask. Only the pixels the warp
    can read are converted to float (`sampled_region`), with A_inv moved to that box: the same
    samples, for a fraction of the work when the crop covers part of the image."""
    x0, y0, x1, y1 = sampled_region(A_inv, crop_size, tf.shape(image))
    stack = tf.concat([tf.cast(image[y0:y1, x0:x1], tf.float32) / 255.0,
                       tf.cast(mask[y0:y1, x0:x1], tf.float32)], -1)
    shift = tf.stack([tf.stack([0.0, 0.0, tf.cast(x0, tf.float32)]),
                      tf.stack([0.0, 0.0, tf.cast(y0, tf.float32)]), tf.zeros(3)])
    return warp_projective(stack, A_inv - shift, crop_size)


# ----------------------------------------------------------------------------------------------
# One example


def _decode(value, channels: int):
    """Encoded JPEG/PNG bytes () string or decoded (H, W, C) uint8 -> (H, W, C) uint8."""
    if value.dtype == tf.string:
        return tf.io.decode_image(value, channels=channels, expand_animations=False)
    return tf.cast(value, tf.uint8)


def encode_sample_id(sample_id):
    """sample_id () tf.string -> (SAMPLE_ID_BYTES,) uint8: its UTF-8 bytes, zero-padded.
    Raises InvalidArgumentError naming the id when it is longer."""
    raw = tf.io.decode_raw(sample_id, tf.uint8)
    size = tf.shape(raw)[0]
    check = tf.debugging.Assert(
        size <= SAMPLE_ID_BYTES,
        [f"sample_id longer than {SAMPLE_ID_BYTES} bytes (UTF-8):", sample_id])
    with tf.control_dependencies([check]):
        padded = tf.pad(raw, [[0, SAMPLE_ID_BYTES - size]])
    return tf.ensure_shape(padded, (SAMPLE_ID_BYTES,))


def _crop_and_targets(image, mask, ex: dict, draws: dict, knobs: Knobs, train: bool,
                      xla: bool) -> dict:
    """The work of preprocess after decoding: hand box, geometry, warp, labels, targets,
    photometric augmentation. image (H', W', 3) uint8; mask (H', W', 1) uint8 0/1, both the
    image of size ex['image_hw'] = (H, W) zero-padded at the bottom and right (H' >= H,
    W' >= W; zeros there read exactly like the warp's fill value 0); ex: f32/bool label and
    flag tensors. Pure; runs as a TF graph or (xla=True, warp by gathers) compiled by XLA."""
    N, Mh = knobs.crop_size, knobs.heatmap_size
    f32 = tf.float32
    flags = {f: ex[f] for f in schema.FLAG_NAMES}
    image_hw = ex["image_hw"]  # the image's own size; image may be zero-padded beyond it
    H, W = image_hw[0], image_hw[1]
    center, size = hand_box(ex["keypoints_2d"], ex["keypoint_visibility"], flags["has_2d"], mask,
                            flags["has_mask"], ex["bbox"], flags["has_bbox"], image_hw)
    f_stand_in = tf.maximum(H, W)
    K_stand_in = tf.stack([tf.stack([f_stand_in, 0.0, (W - 1.0) / 2.0]),
                           tf.stack([0.0, f_stand_in, (H - 1.0) / 2.0]),
                           tf.constant([0.0, 0.0, 1.0])])
    K = tf.where(flags["has_intrinsics"], ex["K"], K_stand_in)
    side = crops.hand_crop_side(size, knobs.crop_padding, knobs.min_box_size, xp=tnp)
    side, theta, shift, flip = augment.crop_jitter(draws["geometry"], side, knobs, train)
    is_left = ex["is_left"]
    mirror = tf.math.logical_xor(is_left, flip)

    R = rotations.rotation_z(theta, xp=tnp) @ mirror_x(mirror)  # 3D: X -> R X
    B = K @ R @ tf.linalg.inv(K)  # the same map on the image (affine)
    center = crops.apply_affine(B, center[None], xp=tnp)[0] + shift
    S = crops.crop_matrix(center, side, N, xp=tnp)
    A = S @ B
    K_out = S @ K

    # Image and mask in one bilinear warp; the warp maps OUTPUT pixels to INPUT pixels: A^-1.
    A_inv = crops.invert_affine(A, xp=tnp)
    if xla:
        stack = tf.concat([tf.cast(image, f32) / 255.0, tf.cast(mask, f32)], -1)
        warped = warps.warp_bilinear(stack, A_inv, N, xp=tnp)
    else:
        warped = warp_image_and_mask(image, mask, A_inv, N)
    warped = tf.ensure_shape(warped, (N, N, 4))
    image = warped[..., :3]
    mask = tf.cast(warped[..., 3:] >= knobs.mask_threshold, f32) * tf.cast(
        flags["has_mask"], f32)
    if train:
        image = augment.photometric(image, draws, knobs, by_shifts=xla)
    image = tf.clip_by_value(image, 0.0, 1.0)

    # 2D labels.
    kp2d, vis = ex["keypoints_2d"], ex["keypoint_visibility"]
    kp_out = crops.apply_affine(A, kp2d, xp=tnp) * tf.cast(flags["has_2d"], f32)
    inside = tf.reduce_all((kp_out >= -0.5) & (kp_out <= N - 0.5), axis=-1)
    vis_out = vis * tf.cast(inside, f32)
    heatmaps = targets.gaussian_heatmaps(crops.crop_to_heatmap(kp_out, N, Mh), vis_out, Mh,
                                         knobs.heatmap_sigma)

    # 3D labels.
    keypoints_cam = tf.linalg.matmul(ex["keypoints_3d"], R, transpose_b=True)
    has_3d = flags["has_3d"]
    has_root = has_3d | flags["has_root_3d"]
    root = tf.where(has_3d, keypoints_cam[0], tf.linalg.matvec(R, ex["root_3d"]))
    root = root * tf.cast(has_root, f32)
    keypoints_3d = (keypoints_cam - root) * tf.cast(has_3d, f32)
    has_mesh = flags["has_mesh"] & has_root
    verts = tf.linalg.matmul(ex["vertices"], R, transpose_b=True)
    verts = (verts - root) * tf.cast(has_mesh, f32)

    pof_valid = has_3d & flags["has_intrinsics"]
    # no division by z = 0
    safe_cam = tf.where(pof_valid, keypoints_cam, tf.ones_like(keypoints_cam))
    joints_hm = crops.crop_to_heatmap(projection.project_pinhole(K_out, safe_cam, xp=tnp), N, Mh)
    pof, pof_weight = targets.part_orientation_fields(joints_hm, keypoints_cam, pof_valid, Mh,
                                                      knobs.pof_width)

    # MANO: global rotation follows R_z; mirrored hands lose their MANO labels.
    has_mano = flags["has_mano"] & tf.logical_not(mirror)
    pose = ex["mano_pose"]
    pose = tf.concat([compose_z_rotation(pose[:3], theta), pose[3:]], 0)
    mano_on = tf.cast(has_mano, f32)

    out_flags = dict(flags, has_mesh=has_mesh, has_mano=has_mano, has_root_3d=has_root,
                     has_mano_trans=tf.constant(False), has_bbox=tf.constant(False))
    out = {
        "image": image,
        "mask": mask,
        "heatmaps": heatmaps,
        "keypoints_2d": kp_out,
        "keypoint_visibility": vis_out,
        "keypoints_3d": keypoints_3d,
        "root_3d": root,
        "vertices": verts,
        "K": K_out,
        "pof": pof,
        "pof_weight": pof_weight,
        "mano_pose": pose * mano_on,
        "mano_betas": ex["mano_betas"] * mano_on,
        "mano_flat_hand_mean": tf.cast(ex["mano_flat_hand_mean"], f32),
        "scale": ex["scale"],
        "hand_side": tf.cast(tf.math.logical_xor(is_left, mirror), f32),
        "mirrored": tf.cast(mirror, f32),
    }
    out.update({f: tf.cast(v, f32) for f, v in out_flags.items()})
    return out


@tf.function(jit_compile=True)
def _crop_and_targets_xla(image, mask, ex, draws, knob_values: tuple, train: bool):
    """_crop_and_targets as one XLA program per (knobs, train, padded image shape), shared by
    every dataset of the process. knob_values: dataclasses.astuple(knobs), which tf.function
    keys its cache on by value (a Knobs instance would be keyed by identity)."""
    return _crop_and_targets(image, mask, ex, draws, Knobs(*knob_values), train, True)


XLA_BUCKETS = (256, 512, 1024, 2048, 4096, 8192)  # padded image sides (pixels) for XLA


def _bucket_size(n):
    """The smallest XLA_BUCKETS entry >= n (int32 scalar), else n itself."""
    buckets = tf.constant(XLA_BUCKETS, tf.int32)
    return tf.reduce_min(tf.where(buckets >= n, buckets, tf.maximum(n, buckets[-1])))


def preprocess(example: Mapping, rng_seed, knobs: Knobs, train: bool) -> dict:
    """One canonical example -> one network example (pipeline.OUTPUT_SCHEMA). Pure TF.

    Args:
      example: canonical keys (INPUT_KEYS); image and mask either encoded bytes or decoded
        uint8 (H, W, 3) / (H, W, 1). Labels in the schema's units (pixels, metres, camera frame).
      rng_seed: (2,) int32/int64 stateless seed; the same seed gives the same output.
      knobs: the settings (Knobs); knobs.xla picks the backend.
      train: True = random crop jitter, rotation, flips, colour, blur and noise; False = none.
    Returns:
      dict of OUTPUT_SCHEMA (without 'source' and 'valid', which the pipeline adds).

    Steps: hand box (2D keypoints, else mask, else bbox, else image) -> square crop of side
    crop_padding * box size (>= min_box_size), train jitter of scale, rotation theta and centre;
    left hands (hand_side 1) XOR a random flip are mirrored (M = diag(-1, 1, 1); 'mirrored'
    says which); warp A = S K R_z(theta) M K^-1 of image and mask (bilinear; mask thresholded);
    labels: 2D by A, 3D by R_z(theta) M, K' = S K; targets at heat-map resolution. Without
    intrinsics, a stand-in K (principal point at the image centre, fx = fy) defines the
    in-plane rotation, and the output K is S times that stand-in (has_intrinsics stays 0).
    Flags out: has_mano = has_mano and not mirrored (MANO parameters of a mirrored hand need the
    left-hand model; they are zeroed). mano_pose[0:3] (global rotation, camera frame) is rotated
    by R_z(theta). has_root_3d = has_3d or has_root_3d (root = joint 0, else root_3d);
    has_mesh requires a root; has_mano_trans = has_bbox = 0 (the translation needs MANO's J0;
    the bbox is consumed by the crop).
    """
    f32 = tf.float32
    image = _decode(example["image"], 3)
    mask = _decode(example["mask"], 1)
    ex = {f: tf.cast(example[f], tf.bool) for f in schema.FLAG_NAMES}
    for key in ("K", "keypoints_2d", "keypoints_3d", "vertices", "root_3d", "mano_pose",
                "mano_betas", "scale", "bbox"):
        ex[key] = tf.cast(example[key], f32)
    ex["keypoint_visibility"] = tf.cast(example["keypoint_visibility"], f32) * tf.cast(
        ex["has_2d"], f32)
    ex["mano_flat_hand_mean"] = tf.cast(example["mano_flat_hand_mean"], tf.bool)
    ex["is_left"] = tf.equal(tf.cast(example["hand_side"], tf.int32), LEFT)
    ex["image_hw"] = tf.cast(tf.shape(image)[:2], f32)
    draws = augment.draws(rng_seed, knobs.crop_size, train)
    if knobs.xla:  # pad to a bucket size: one XLA program per bucket, not per image size
        hw = tf.shape(image)[:2]
        padded = tf.stack([_bucket_size(hw[0]), _bucket_size(hw[1])])
        pad = [[0, padded[0] - hw[0]], [0, padded[1] - hw[1]], [0, 0]]
        out = _crop_and_targets_xla(tf.pad(image, pad), tf.pad(mask, pad), ex, draws,
                                    dataclasses.astuple(knobs), bool(train))
    else:
        out = _crop_and_targets(image, mask, ex, draws, knobs, bool(train), False)
    out["sample_id"] = encode_sample_id(example["sample_id"])
    return out
