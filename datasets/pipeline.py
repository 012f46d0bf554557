"""tf.data input pipeline: canonical hand examples (datasets/schema.py) -> network batches.

    sources (tfds builders or tf.data datasets of canonical examples), one per dataset
      -> per host: its own slice (tfds.split_for_jax_process / Dataset.shard)
      -> per source: [repeat] -> enumerate -> [shuffle] -> preprocess (parallel, deterministic)
      -> mix by weights (stateless choices, choose_from_datasets; eval: concatenate)
      -> batch (per-host batch) -> reshape [local_device_count, per_device_batch, ...] -> prefetch
      -> tfds.as_numpy

Geometry (one convention everywhere; see `preprocess`):
- Pixel coordinates are continuous (u right, v down); the pixel with index (row r, col c) has
  its CENTRE at (u, v) = (c, r), the OpenCV and `ImageProjectiveTransformV3` convention, and
  covers [c - 0.5, c + 0.5] x [r - 0.5, r + 0.5]. An N-pixel crop covers [-0.5, N - 0.5].
- A 3D point X (camera frame, metres) becomes X' = R X with R = R_z(theta) @ M, where M =
  diag(-1, 1, 1) mirrors left hands to right hands (M = I otherwise) and R_z(theta) rotates about
  the optical axis. The image is warped by the affine A = S @ K @ R @ K^-1, where S is the crop's
  scale + translation, and the crop's intrinsics are K' = S @ K; so proj(K' X') = A proj(K X)
  exactly: the warped image, the warped 2D labels and the rotated 3D labels agree.
- Heat maps (size M) cover the same area as the crop (size N): crop coordinate p maps to
  heat-map coordinate h = (p + 0.5) * M / N - 0.5 (pixel areas aligned; `crop_to_heatmap`),
  i.e. h = p * M / N - 0.375 for N / M = 4. Inverse: `heatmap_to_crop`.

Determinism: every random choice of an example is a stateless op seeded by
fold_in(seed, process index, source index, example index), where the example index counts the
examples of a source in read order over all epochs (so each epoch augments differently, and a
seed reproduces everything); file shuffling, shuffle buffers and mixing are seeded, and the
tf.data options say deterministic=True.

Backends (config.xla): False (default) runs preprocess as a TF graph and warps with
tf.raw_ops.ImageProjectiveTransformV3; True warps by gathers and runs everything after decoding
as one XLA program per padded image size (XLA_BUCKETS), ~1.5x the throughput
(bench/input_bench.py). Both give the same outputs up to float rounding (tested).

Limitations: the warp samples bilinearly without anti-aliasing, so crops that shrink the image
by more than ~2x alias; iterator state is not checkpointed (a restart re-seeds from the start
of the stream); MANO translation is not carried through the crop (it needs MANO's J0), and
mirrored hands lose their MANO labels (has_mano = 0).
"""
from __future__ import annotations

import importlib
import math
from typing import Mapping, NamedTuple, Optional, Sequence, Union

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from datasets import schema

try:  # TF must never reserve accelerator memory that JAX needs (jax-stack.md section 7).
    tf.config.set_visible_devices([], "GPU")
except (RuntimeError, ValueError):  # already initialised, or no such device type
    pass

NUM_JOINTS = schema.NUM_JOINTS
NUM_VERTICES = schema.NUM_VERTICES
# Bones (parent, child) in FreiHAND joint order: per finger f (thumb 0 .. pinky 4) the bones
# 0-(4f+1), (4f+1)-(4f+2), (4f+2)-(4f+3), (4f+3)-(4f+4). POF channel 3 b + k is axis k of bone b.
BONES = tuple(
    (0 if j == 0 else 4 * f + j, 4 * f + j + 1) for f in range(5) for j in range(4)
)
NUM_BONES = len(BONES)  # 20
BONE_PARENTS = np.array([p for p, _ in BONES], np.int32)
BONE_CHILDREN = np.array([c for _, c in BONES], np.int32)
LEFT = schema.HAND_SIDES.index("left")  # ClassLabel id of a left hand (1)

# Keys a source's examples must have (the canonical schema's subset that the pipeline reads).
INPUT_KEYS = (
    "image", "mask", "K", "keypoints_2d", "keypoint_visibility", "keypoints_3d", "vertices",
    "mano_pose", "mano_betas", "mano_flat_hand_mean", "scale", "bbox", "root_3d", "hand_side",
) + schema.FLAG_NAMES

# The output of `preprocess` (one example). Shapes use "crop" = config.crop_size and
# "hm" = config.heatmap_size; batches add [local_device_count, per_device_batch] in front.
OUTPUT_SCHEMA = {
    "image": (("crop", "crop", 3), tf.float32, "RGB in [0, 1]; 0 where the crop leaves the image"),
    "mask": (("crop", "crop", 1), tf.float32, "1 = hand, 0 = background (all 0 if not has_mask)"),
    "heatmaps": (("hm", "hm", NUM_JOINTS), tf.float32,
                 "exp(-d^2 / 2 sigma^2), peak 1 at the keypoint (heat-map coords, see "
                 "crop_to_heatmap); all 0 for joints with keypoint_visibility 0"),
    "keypoints_2d": ((NUM_JOINTS, 2), tf.float32, "u, v crop pixels; 0 if not has_2d"),
    "keypoint_visibility": ((NUM_JOINTS,), tf.float32,
                            "1 = labeled, visible and inside the crop [-0.5, crop - 0.5]^2"),
    "joints_3d": ((NUM_JOINTS, 3), tf.float32, "metres, crop camera frame, minus root_3d"),
    "root_3d": ((3,), tf.float32, "wrist (joint 0), metres, crop camera frame"),
    "vertices": ((NUM_VERTICES, 3), tf.float32, "metres, crop camera frame, minus root_3d"),
    "K": ((3, 3), tf.float32, "intrinsics of the crop: proj(K (root_3d + joints_3d)) = 2D"),
    "pof": (("hm", "hm", 3 * NUM_BONES), tf.float32,
            "unit 3D direction of bone b in channels 3b..3b+2 within pof_width of the 2D bone"),
    "pof_weight": (("hm", "hm", NUM_BONES), tf.float32, "1 where bone b's POF is defined"),
    "mano_pose": ((schema.MANO_POSE_DIM,), tf.float32,
                  "axis-angle; [0:3] rotated with the crop camera; 0 if not has_mano"),
    "mano_betas": ((schema.MANO_BETAS_DIM,), tf.float32, "0 if not has_mano"),
    "mano_flat_hand_mean": ((), tf.float32, "1 / 0, see schema.py"),
    "scale": ((), tf.float32, "FreiHAND bone 9-10 length, metres (has_scale)"),
    "hand_side": ((), tf.float32, "side of the hand IN THE CROP: 0 right, 1 left"),
    "source": ((), tf.int32, "index of the example's source in make_dataset's list"),
    "valid": ((), tf.float32, "1 = real example, 0 = padding of the last eval batch"),
    **{flag: ((), tf.float32, "1 / 0, see preprocess") for flag in schema.FLAG_NAMES},
}

# Names of the dataset builders that `make_builder` knows (module datasets.<name>).
BUILDER_MODULES = {
    "freihand": "datasets.freihand",
    "synthetic_hands": "datasets.synthetic_hands",
    "rhd": "datasets.rhd",
    "ho3d": "datasets.ho3d",
    "hiu_data": "datasets.hiu_data",
}
# Builders whose vertex and MANO-parameter labels were made with the licensed MANO model: a
# network training those terms on them needs that model (config.model.mano_path); see
# hiu_jax.losses.check_label_hand_model.
MANO_LABELLED = ("freihand", "ho3d")

# Luma weights and the RGB -> YIQ matrix, for saturation and hue jitter as linear colour maps.
_LUMA = np.array([0.299, 0.587, 0.114])
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


# ----------------------------------------------------------------------------------------------
# Configuration


def default_pipeline_config() -> ml_collections.ConfigDict:
    """Every knob of the pipeline, with defaults. Lengths in pixels unless stated."""
    c = ml_collections.ConfigDict()
    c.crop_size = 256  # N: the network input is N x N
    c.heatmap_size = 64  # M: heat maps and POF are M x M
    c.heatmap_sigma = 2.0  # Gaussian sigma, heat-map pixels
    c.crop_padding = 1.5  # crop side = padding * max(width, height) of the hand box
    c.min_box_size = 8.0  # lower bound of the crop side before jitter, image pixels
    c.scale_jitter = 0.25  # train: crop side *= U(1 - s, 1 + s)
    c.rotation_deg = 30.0  # train: theta ~ U(-r, r) degrees about the optical axis
    c.translation_jitter = 0.1  # train: crop centre += U(-t, t) * crop side, x and y
    c.flip_prob = 0.0  # train: mirror probability (a right hand becomes left: has_mano = 0)
    c.brightness = 0.2  # train: add U(-b, b) to all channels ([0, 1] units)
    c.contrast = 0.3  # train: (x - mean) * U(1 - c, 1 + c) + mean, per channel mean
    c.saturation = 0.3  # train: grey + U(1 - s, 1 + s) * (x - grey), grey = luma
    c.hue = 0.05  # train: rotate the YIQ chroma by U(-h, h) turns
    c.blur_prob = 0.1  # train: probability of a Gaussian blur
    c.blur_sigma_min = 0.5  # blur sigma ~ U(min, max), crop pixels
    c.blur_sigma_max = 1.5
    c.noise_std = 0.02  # train: std of additive pixel noise ([0, 1] units; uniform_noise); 0 = off
    c.mask_threshold = 0.5  # the mask is warped bilinearly, then thresholded at this value
    c.pof_width = 1.0  # POF half-width: heat-map pixels within this distance of the 2D bone
    # False: warp with tf.raw_ops.ImageProjectiveTransformV3 in a TF graph. True: warp by
    # gathers and compute labels, targets and colour augmentation in one XLA program (~1.5x
    # faster); images are zero-padded to a side in XLA_BUCKETS, and each padded size compiles
    # once per process (~1-2 s).
    c.xla = False
    c.shuffle_buffer = 1024  # train: examples per source in the shuffle buffer
    c.seed = 0  # default seed of make_dataset
    # Sources for make_dataset_from_config: builder name (BUILDER_MODULES) -> mixture weight.
    c.mixture_weights = ml_collections.ConfigDict({"freihand": 1.0})
    c.data_dir = ""  # tfds data_dir ('' = tfds default)
    c.manual_dirs = ml_collections.ConfigDict()  # builder name -> manual_dir (raw files)
    c.builder_configs = ml_collections.ConfigDict()  # builder name -> tfds config, e.g. 'all'
    return c


def validate_config(config) -> None:
    """Raises ValueError naming the first bad knob of a pipeline config and its value."""
    def need(ok, name, rule):
        if not ok:
            raise ValueError(f"pipeline config: {name} = {config[name]!r} must be {rule}")

    for name in ("crop_size", "heatmap_size"):
        need(isinstance(config[name], int) and config[name] > 0, name, "an int > 0")
    for name in ("heatmap_sigma", "crop_padding", "min_box_size", "pof_width"):
        need(float(config[name]) > 0 and math.isfinite(config[name]), name, "finite and > 0")
    for name in ("scale_jitter", "contrast", "saturation"):
        need(0 <= float(config[name]) < 1, name, "in [0, 1)")
    for name in ("flip_prob", "blur_prob", "mask_threshold", "brightness", "hue"):
        need(0 <= float(config[name]) <= 1, name, "in [0, 1]")
    need(0 <= float(config.rotation_deg) <= 180, "rotation_deg", "in [0, 180]")
    need(0 <= float(config.translation_jitter) <= 1, "translation_jitter", "in [0, 1]")
    need(0 <= float(config.noise_std) and math.isfinite(config.noise_std), "noise_std",
         "finite and >= 0")
    need(0 < float(config.blur_sigma_min) <= float(config.blur_sigma_max) <= 20,
         "blur_sigma_min", f"> 0 and <= blur_sigma_max ({config.blur_sigma_max}) <= 20")
    need(isinstance(config.shuffle_buffer, int) and config.shuffle_buffer >= 1,
         "shuffle_buffer", "an int >= 1")
    need(isinstance(config.seed, int), "seed", "an int")
    need(isinstance(config.xla, bool), "xla", "a bool")


def output_shapes(config) -> dict:
    """OUTPUT_SCHEMA with concrete shapes: {name: (shape tuple, tf dtype)} of one example."""
    dims = {"crop": int(config.crop_size), "hm": int(config.heatmap_size)}
    return {
        name: (tuple(dims.get(d, d) for d in shape), dtype)
        for name, (shape, dtype, _) in OUTPUT_SCHEMA.items()
    }


def crop_to_heatmap(p, crop_size: int, heatmap_size: int):
    """Crop pixel coordinates p (any shape, float) -> heat-map coordinates, same shape.

    h = (p + 0.5) * M / N - 0.5: the crop's pixel areas [-0.5, N - 0.5] and the heat map's
    [-0.5, M - 0.5] coincide, pixel centres at integers in both. Works on numpy and TF values.
    """
    r = heatmap_size / crop_size
    return (p + 0.5) * r - 0.5


def heatmap_to_crop(h, crop_size: int, heatmap_size: int):
    """Inverse of crop_to_heatmap: p = (h + 0.5) * N / M - 0.5."""
    r = crop_size / heatmap_size
    return (h + 0.5) * r - 0.5


# ----------------------------------------------------------------------------------------------
# Geometry (pure TF functions; float32)


def rotation_z(theta):
    """theta () radians -> R_z (3, 3) float32, rotating x towards y about the optical axis."""
    c, s = tf.cos(theta), tf.sin(theta)
    zero, one = tf.zeros_like(c), tf.ones_like(c)
    return tf.stack([tf.stack([c, -s, zero]), tf.stack([s, c, zero]), tf.stack([zero, zero, one])])


def mirror_x(mirror):
    """mirror () bool -> diag(-1, 1, 1) if mirror else I, (3, 3) float32."""
    sx = tf.where(mirror, -1.0, 1.0)
    return tf.linalg.diag(tf.stack([sx, 1.0, 1.0]))


def crop_matrix(center, side, crop_size: int):
    """The crop S (3, 3) float32 mapping the square of side `side` (px) centred on `center` (2,)
    onto an N x N crop: center -> ((N - 1) / 2, (N - 1) / 2), and side -> N pixels."""
    a = crop_size / side
    t = (crop_size - 1) / 2.0 - a * center
    zero, one = tf.zeros_like(a), tf.ones_like(a)
    return tf.stack([tf.stack([a, zero, t[0]]), tf.stack([zero, a, t[1]]),
                     tf.stack([zero, zero, one])])


def apply_affine(A, points):
    """A (3, 3) with last row [0, 0, 1], points (n, 2) -> A [points; 1] (n, 2)."""
    return tf.linalg.matmul(points, A[:2, :2], transpose_b=True) + A[:2, 2]


def invert_affine(A):
    """Inverse of an affine A (3, 3) with last row [0, 0, 1] (closed form, float32)."""
    a, b, c, d = A[0, 0], A[0, 1], A[1, 0], A[1, 1]
    det = a * d - b * c
    Linv = tf.stack([tf.stack([d, -b]), tf.stack([-c, a])]) / det
    t = -tf.linalg.matvec(Linv, A[:2, 2])
    return tf.concat([tf.concat([Linv, t[:, None]], 1), tf.constant([[0.0, 0.0, 1.0]])], 0)


def project(K, xyz):
    """Pinhole projection: K (3, 3), xyz (n, 3) with z > 0 (metres) -> (n, 2) pixels."""
    p = tf.linalg.matmul(xyz, K, transpose_b=True)
    return p[:, :2] / p[:, 2:3]


def compose_z_rotation(axis_angle, theta):
    """Axis-angle (3,) of R_z(theta) @ Rodrigues(axis_angle), via quaternions (stable at 0 and
    pi); the result has angle in [0, pi]. float32."""
    angle = tf.norm(axis_angle)
    half = 0.5 * angle
    # sin(half) / angle, with its limit 1/2 at angle -> 0.
    k = tf.where(angle > 1e-6, tf.sin(half) / tf.maximum(angle, 1e-12), 0.5 - angle**2 / 48.0)
    w1, v1 = tf.cos(half), axis_angle * k
    cz, sz = tf.cos(0.5 * theta), tf.sin(0.5 * theta)
    vz = tf.stack([0.0, 0.0, 1.0]) * sz
    w = cz * w1 - tf.reduce_sum(vz * v1)
    v = cz * v1 + w1 * vz + tf.linalg.cross(vz, v1)
    sign = tf.where(w < 0, -1.0, 1.0)
    w, v = w * sign, v * sign
    n = tf.norm(v)
    new_angle = 2.0 * tf.atan2(n, w)
    scale = tf.where(n > 1e-7, new_angle / tf.maximum(n, 1e-12), 2.0 / tf.maximum(w, 1e-12))
    return v * scale


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
    return 0.5 * (lo + hi), tf.reduce_max(hi - lo)


# ----------------------------------------------------------------------------------------------
# Targets (pure TF functions, computed at heat-map resolution only)


def gaussian_heatmaps(points, visibility, size: int, sigma: float):
    """points (J, 2) heat-map coordinates, visibility (J,) 0/1 -> (size, size, J) f32 with
    exp(-|x - p|^2 / (2 sigma^2)) (peak 1 at the point), 0 where visibility is 0. Separable."""
    g = tf.range(size, dtype=tf.float32)[:, None]  # (size, 1)
    gx = tf.exp(-tf.square(g - points[:, 0]) / (2.0 * sigma**2))  # (size, J), index = x
    gy = tf.exp(-tf.square(g - points[:, 1]) / (2.0 * sigma**2)) * visibility  # index = y
    return gy[:, None, :] * gx[None, :, :]


def _pixel_features(size: int) -> np.ndarray:
    """(size * size, 4) f32 rows [x, y, x^2 + y^2, 1] of the heat-map pixels, row-major (y, x)."""
    g = np.arange(size, dtype=np.float64)
    px, py = np.meshgrid(g, g)  # px varies along axis 1
    return np.stack([px.ravel(), py.ravel(), (px**2 + py**2).ravel(), np.ones(size * size)],
                    1).astype(np.float32)


def part_orientation_fields(joints_2d, joints_3d, valid, size: int, width: float):
    """Part Orientation Fields of the 20 BONES.

    Args:
      joints_2d: (21, 2) f32 heat-map coordinates of the joints.
      joints_3d: (21, 3) f32 joints (any frame whose directions the POF should carry).
      valid: () bool; False gives all-zero outputs.
      size: heat-map side M; width: half-width in heat-map pixels.
    Returns:
      pof (M, M, 60) f32: at pixels within `width` of the 2D segment parent -> child, channels
        3b..3b+2 hold the unit 3D direction of child - parent; 0 elsewhere.
      weight (M, M, 20) f32: 1 at those pixels, 0 elsewhere (and for bones of 3D length < 1e-6).

    Distance of pixel p to segment a + t (b - a), t in [0, 1]: with s = (p - a).(b - a) / |b - a|^2
    and t = clip(s, 0, 1), dist^2 = |p - a|^2 - |b - a|^2 t (2 s - t). Both s and |p - a|^2 are
    linear in the pixel features [x, y, x^2 + y^2, 1], so one (M^2, 4) x (4, 40) matmul gives
    them for all pixels and bones; the POF is weight (M^2, 20) x a block matrix (20, 60).
    """
    a = tf.gather(joints_2d, BONE_PARENTS)  # (20, 2)
    ab = tf.gather(joints_2d, BONE_CHILDREN) - a
    d3 = tf.gather(joints_3d, BONE_CHILDREN) - tf.gather(joints_3d, BONE_PARENTS)  # (20, 3)
    length = tf.norm(d3, axis=-1)
    direction = d3 / tf.maximum(length, 1e-6)[:, None]
    ab2 = tf.maximum(tf.reduce_sum(tf.square(ab), -1), 1e-12)
    zeros, ones = tf.zeros_like(ab2), tf.ones_like(ab2)
    w_s = tf.stack([ab[:, 0], ab[:, 1], zeros, -tf.reduce_sum(a * ab, -1)]) / ab2  # (4, 20)
    w_d = tf.stack([-2.0 * a[:, 0], -2.0 * a[:, 1], ones, tf.reduce_sum(a * a, -1)])
    sd = tf.constant(_pixel_features(size)) @ tf.concat([w_s, w_d], 1)  # (M^2, 40)
    s, d2 = sd[:, :NUM_BONES], sd[:, NUM_BONES:]
    t = tf.clip_by_value(s, 0.0, 1.0)
    dist2 = d2 - ab2 * t * (2.0 * s - t)
    ok = tf.cast((length > 1e-6) & valid, tf.float32)
    weight = tf.cast(dist2 <= width**2, tf.float32) * ok  # (M^2, 20)
    # block[b, 3 b' + k] = direction[b, k] if b == b' else 0.
    block = tf.reshape(tf.eye(NUM_BONES)[:, :, None] * direction[:, None, :],
                       (NUM_BONES, 3 * NUM_BONES))
    pof = tf.reshape(weight @ block, (size, size, 3 * NUM_BONES))
    return pof, tf.reshape(weight, (size, size, NUM_BONES))


# ----------------------------------------------------------------------------------------------
# Photometric augmentation (train only)


def color_jitter(image, u, brightness, contrast, saturation, hue):
    """Brightness, contrast, saturation and hue jitter as ONE affine colour map (cheap).

    image (H, W, 3) f32 in [0, 1]; u (4,) f32 uniform draws in [-1, 1] giving
    b = u0 brightness, c = 1 + u1 contrast, s = 1 + u2 saturation, h = u3 hue turns. Applies
    x -> H_h Sat_s (c (x + b - mu) + mu), mu = per-channel mean of x + b (over every 4th row and
    column); Sat_s = grey + s (x - grey) with luma grey; H_h rotates YIQ chroma by 2 pi h.
    No clipping.
    """
    b, c = u[0] * brightness, 1.0 + u[1] * contrast
    s, h = 1.0 + u[2] * saturation, u[3] * hue * 2.0 * np.pi
    luma = tf.constant(_LUMA, tf.float32)
    sat = s * tf.eye(3) + (1.0 - s) * tf.ones((3, 1)) * luma[None, :]
    ch, sh = tf.cos(h), tf.sin(h)
    rot = tf.stack([tf.constant([1.0, 0.0, 0.0]), tf.stack([0.0, ch, -sh]),
                    tf.stack([0.0, sh, ch])])
    colour = tf.constant(_YIQ_TO_RGB, tf.float32) @ rot @ tf.constant(_RGB_TO_YIQ, tf.float32)
    lin = colour @ sat  # (3, 3)
    mean = tf.reduce_mean(image[::4, ::4], axis=(0, 1))  # every 16th pixel: cheap, enough
    offset = tf.linalg.matvec(lin, (1.0 - c) * mean + b)
    flat = tf.linalg.matmul(tf.reshape(image, (-1, 3)), c * lin, transpose_b=True)
    return tf.reshape(flat, tf.shape(image)) + offset


def gaussian_blur(image, sigma, radius: int, by_shifts: bool = False):
    """image (H, W, C) f32, sigma () px -> separable Gaussian blur, reflect-padded, same shape.

    radius: static kernel half-size (>= 3 sigma of the largest sigma used). by_shifts: sum
    2 radius + 1 shifted copies per axis instead of depthwise convolutions (for XLA, whose CPU
    depthwise convolution is ~20x slower; in a TF graph the convolutions are faster).
    """
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-tf.square(x) / (2.0 * sigma**2))
    k = k / tf.reduce_sum(k)
    img = tf.pad(image, [[radius, radius], [radius, radius], [0, 0]], "REFLECT")
    if by_shifts:
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        img = tf.add_n([k[i] * img[:, i:i + w] for i in range(2 * radius + 1)])
        return tf.add_n([k[i] * img[i:i + h] for i in range(2 * radius + 1)])
    channels = image.shape[-1]
    kx = tf.tile(tf.reshape(k, (1, -1, 1, 1)), (1, 1, channels, 1))
    ky = tf.reshape(kx, (-1, 1, channels, 1))
    img = tf.nn.depthwise_conv2d(img[None], kx, (1, 1, 1, 1), "VALID")
    img = tf.nn.depthwise_conv2d(img, ky, (1, 1, 1, 1), "VALID")
    return img[0]


def noise_bits(shape, seed):
    """The random bytes of uniform_noise: int32 ((prod(shape) + 3) // 4,), 4 bytes per draw."""
    n = int(np.prod(shape))
    return tf.random.stateless_uniform(((n + 3) // 4,), seed, dtype=tf.int32, minval=None,
                                       maxval=None)


def uniform_noise(bits, shape, std: float):
    """Zero-mean noise of standard deviation `std`, uniform on 256 levels, f32 of `shape`, from
    noise_bits(shape, seed) (one random byte per value: ~8x cheaper than stateless_normal,
    which dominated the per-example cost). Levels 0..255 have mean 127.5 and standard
    deviation sqrt((256^2 - 1) / 12); they are shifted and scaled to mean 0, std `std`."""
    n = int(np.prod(shape))
    levels = tf.reshape(tf.bitcast(bits, tf.uint8), (-1,))[:n]
    step = std / math.sqrt((256.0**2 - 1.0) / 12.0)
    return tf.reshape((tf.cast(levels, tf.float32) - 127.5) * step, shape)


def warp_bilinear(image, A_inv, crop_size: int):
    """Bilinear warp by gathers (the XLA path): output pixel (x, y) samples `image` (H, W, C) f32
    at A_inv [x, y, 1] (pixel centres at integers), 0 outside; (N, N, C). The same result as
    ImageProjectiveTransformV3 (BILINEAR, CONSTANT 0) up to float rounding."""
    shape = tf.shape(image)
    H, W = shape[0], shape[1]
    g = tf.range(crop_size, dtype=tf.float32)
    sx = A_inv[0, 0] * g[None, :] + A_inv[0, 1] * g[:, None] + A_inv[0, 2]
    sy = A_inv[1, 0] * g[None, :] + A_inv[1, 1] * g[:, None] + A_inv[1, 2]
    x0, y0 = tf.floor(sx), tf.floor(sy)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)

    def tap(dy, dx):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
        idx = tf.stack([tf.clip_by_value(yi, 0, H - 1), tf.clip_by_value(xi, 0, W - 1)], -1)
        return tf.gather_nd(image, idx) * tf.cast(ok, image.dtype)[..., None]

    top = tap(0, 0) + (tap(0, 1) - tap(0, 0)) * fx
    bottom = tap(1, 0) + (tap(1, 1) - tap(1, 0)) * fx
    return top + (bottom - top) * fy


def warp_projective(image, A_inv, crop_size: int):
    """The same warp with tf.raw_ops.ImageProjectiveTransformV3 (BILINEAR, CONSTANT 0)."""
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=tf.reshape(A_inv, (9,))[None, :8],
        output_shape=tf.constant([crop_size, crop_size], tf.int32),
        fill_value=tf.constant(0.0), interpolation="BILINEAR", fill_mode="CONSTANT")[0]


# ----------------------------------------------------------------------------------------------
# One example


def _decode(value, channels: int):
    """Encoded JPEG/PNG bytes () string or decoded (H, W, C) uint8 -> (H, W, C) uint8."""
    if value.dtype == tf.string:
        return tf.io.decode_image(value, channels=channels, expand_animations=False)
    return tf.cast(value, tf.uint8)


class _Knobs(NamedTuple):
    """The static (Python) knobs of one preprocess trace; hashable for tf.function."""

    crop_size: int
    heatmap_size: int
    heatmap_sigma: float
    crop_padding: float
    min_box_size: float
    scale_jitter: float
    rotation_deg: float
    translation_jitter: float
    flip_prob: float
    brightness: float
    contrast: float
    saturation: float
    hue: float
    blur_prob: float
    blur_sigma_min: float
    blur_sigma_max: float
    noise_std: float
    mask_threshold: float
    pof_width: float
    train: bool

    @classmethod
    def of(cls, config, train: bool) -> "_Knobs":
        kw = {f: config[f] for f in cls._fields if f != "train"}
        kw = {f: (int(v) if f in ("crop_size", "heatmap_size") else float(v))
              for f, v in kw.items()}
        return cls(train=bool(train), **kw)


def _draws(rng_seed, knobs: _Knobs) -> dict:
    """Every random number of one example (stateless, from rng_seed (2,) int):
    geometry (5,), colour (4,) and blur (2,) f32 uniforms in [-1, 1] / [0, 1], noise bits."""
    keys = tf.random.experimental.stateless_split(tf.cast(rng_seed, tf.int64), 4)
    n = knobs.crop_size
    if not knobs.train:
        return {"geometry": tf.zeros((5,)), "colour": tf.zeros((4,)), "blur": tf.ones((2,)),
                "noise": tf.zeros(((n * n * 3 + 3) // 4,), tf.int32)}
    return {
        "geometry": tf.random.stateless_uniform((5,), keys[0], -1.0, 1.0),
        "colour": tf.random.stateless_uniform((4,), keys[1], -1.0, 1.0),
        "blur": tf.random.stateless_uniform((2,), keys[2]),
        "noise": noise_bits((n, n, 3), keys[3]),
    }


def _crop_and_targets(image, mask, ex: dict, draws: dict, knobs: _Knobs, xla: bool) -> dict:
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
    side = tf.maximum(size * knobs.crop_padding, knobs.min_box_size)

    u = draws["geometry"]
    side = side * (1.0 + u[0] * knobs.scale_jitter)
    theta = u[1] * knobs.rotation_deg * (np.pi / 180.0)
    shift = u[2:4] * knobs.translation_jitter * side
    flip = (u[4] + 1.0) / 2.0 < knobs.flip_prob if knobs.train else tf.constant(False)
    is_left = ex["is_left"]
    mirror = tf.math.logical_xor(is_left, flip)

    R = rotation_z(theta) @ mirror_x(mirror)  # 3D: X -> R X
    B = K @ R @ tf.linalg.inv(K)  # the same map on the image (affine)
    center = apply_affine(B, center[None])[0] + shift
    S = crop_matrix(center, side, N)
    A = S @ B
    K_out = S @ K

    # Image and mask in one bilinear warp; the warp maps OUTPUT pixels to INPUT pixels: A^-1.
    stack = tf.concat([tf.cast(image, f32) / 255.0, tf.cast(mask, f32)], -1)
    warp = warp_bilinear if xla else warp_projective
    warped = tf.ensure_shape(warp(stack, invert_affine(A), N), (N, N, 4))
    image = warped[..., :3]
    mask = tf.cast(warped[..., 3:] >= knobs.mask_threshold, f32) * tf.cast(
        flags["has_mask"], f32)

    if knobs.train:
        if knobs.brightness or knobs.contrast or knobs.saturation or knobs.hue:
            image = color_jitter(image, draws["colour"], knobs.brightness, knobs.contrast,
                                 knobs.saturation, knobs.hue)
        if knobs.blur_prob > 0:
            ub = draws["blur"]
            sigma = knobs.blur_sigma_min + ub[1] * (knobs.blur_sigma_max - knobs.blur_sigma_min)
            radius = int(math.ceil(3.0 * knobs.blur_sigma_max))
            image = tf.cond(ub[0] < knobs.blur_prob,
                            lambda: gaussian_blur(image, sigma, radius, by_shifts=xla),
                            lambda: image)
        if knobs.noise_std > 0:
            image = image + uniform_noise(draws["noise"], (N, N, 3), knobs.noise_std)
    image = tf.clip_by_value(image, 0.0, 1.0)

    # 2D labels.
    kp2d, vis = ex["keypoints_2d"], ex["keypoint_visibility"]
    kp_out = apply_affine(A, kp2d) * tf.cast(flags["has_2d"], f32)
    inside = tf.reduce_all((kp_out >= -0.5) & (kp_out <= N - 0.5), axis=-1)
    vis_out = vis * tf.cast(inside, f32)
    heatmaps = gaussian_heatmaps(crop_to_heatmap(kp_out, N, Mh), vis_out, Mh,
                                 knobs.heatmap_sigma)

    # 3D labels.
    xyz = tf.linalg.matmul(ex["keypoints_3d"], R, transpose_b=True)
    has_3d = flags["has_3d"]
    has_root = has_3d | flags["has_root_3d"]
    root = tf.where(has_3d, xyz[0], tf.linalg.matvec(R, ex["root_3d"]))
    root = root * tf.cast(has_root, f32)
    joints_3d = (xyz - root) * tf.cast(has_3d, f32)
    has_mesh = flags["has_mesh"] & has_root
    verts = tf.linalg.matmul(ex["vertices"], R, transpose_b=True)
    verts = (verts - root) * tf.cast(has_mesh, f32)

    pof_valid = has_3d & flags["has_intrinsics"]
    safe_xyz = tf.where(pof_valid, xyz, tf.ones_like(xyz))  # no division by z = 0
    joints_hm = crop_to_heatmap(project(K_out, safe_xyz), N, Mh)
    pof, pof_weight = part_orientation_fields(joints_hm, xyz, pof_valid, Mh, knobs.pof_width)

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
        "joints_3d": joints_3d,
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
    }
    out.update({f: tf.cast(v, f32) for f, v in out_flags.items()})
    return out


# One XLA program per (knobs, padded image shape); shared by every dataset of the process.
_crop_and_targets_xla = tf.function(_crop_and_targets, jit_compile=True)
XLA_BUCKETS = (256, 512, 1024, 2048, 4096, 8192)  # padded image sides (pixels) for XLA


def _bucket_size(n):
    """The smallest XLA_BUCKETS entry >= n (int32 scalar), else n itself."""
    buckets = tf.constant(XLA_BUCKETS, tf.int32)
    return tf.reduce_min(tf.where(buckets >= n, buckets, tf.maximum(n, buckets[-1])))


def preprocess(example: Mapping, rng_seed, config, train: bool) -> dict:
    """One canonical example -> one network example (OUTPUT_SCHEMA). Pure TF, graph-safe.

    Args:
      example: canonical keys (INPUT_KEYS); image and mask either encoded bytes or decoded
        uint8 (H, W, 3) / (H, W, 1). Labels in the schema's units (pixels, metres, camera frame).
      rng_seed: (2,) int32/int64 stateless seed; the same seed gives the same output.
      config: a pipeline config (default_pipeline_config()); config.xla picks the backend.
      train: True = random crop jitter, rotation, colour, blur and noise; False = none.
    Returns:
      dict of OUTPUT_SCHEMA (without 'source' and 'valid', which make_dataset adds).

    Steps: hand box (2D keypoints, else mask, else bbox, else image) -> square crop of side
    crop_padding * box size (>= min_box_size), train jitter of scale, rotation theta and centre;
    left hands (hand_side 1) XOR a random flip are mirrored (M = diag(-1, 1, 1)); warp
    A = S K R_z(theta) M K^-1 of image and mask (bilinear; mask thresholded); labels: 2D by A, 3D
    by R_z(theta) M, K' = S K; targets at heat-map resolution. Without intrinsics, a stand-in K
    (principal point at the image centre, fx = fy) defines the in-plane rotation, and the
    output K is S times that stand-in (has_intrinsics stays 0).
    Flags out: has_mano = has_mano and not mirrored (MANO parameters of a mirrored hand need the
    left-hand model; they are zeroed). mano_pose[0:3] (global rotation, camera frame) is rotated
    by R_z(theta). has_root_3d = has_3d or has_root_3d (root = joint 0, else root_3d);
    has_mesh requires a root; has_mano_trans = has_bbox = 0 (the translation needs MANO's J0;
    the bbox is consumed by the crop).
    """
    knobs = _Knobs.of(config, train)
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
    draws = _draws(rng_seed, knobs)
    if config.xla:  # pad to a bucket size: one XLA program per bucket, not per image size
        hw = tf.shape(image)[:2]
        padded = tf.stack([_bucket_size(hw[0]), _bucket_size(hw[1])])
        pad = [[0, padded[0] - hw[0]], [0, padded[1] - hw[1]], [0, 0]]
        return _crop_and_targets_xla(tf.pad(image, pad), tf.pad(mask, pad), ex, draws, knobs,
                                     True)
    return _crop_and_targets(image, mask, ex, draws, knobs, False)


# ----------------------------------------------------------------------------------------------
# Datasets


def make_builder(name: str, *, data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
                 builder_config: Optional[str] = None, prepare: bool = True):
    """The tfds builder `name` (a key of BUILDER_MODULES), built from manual_dir if needed.

    data_dir: tfds data_dir (None / '' = tfds default); manual_dir: the raw files (None / '' =
    <data_dir>/downloads/manual); builder_config: e.g. 'all' for FreiHAND. prepare: run
    download_and_prepare when the data is not there yet.
    """
    if name not in BUILDER_MODULES:
        raise ValueError(f"unknown dataset builder {name!r}; known: {sorted(BUILDER_MODULES)}")
    cls = importlib.import_module(BUILDER_MODULES[name]).Builder
    kwargs = {"file_format": "tfrecord"}
    if data_dir:
        kwargs["data_dir"] = data_dir
    if builder_config:
        kwargs["config"] = builder_config
    builder = cls(**kwargs)
    if prepare:
        download_config = tfds.download.DownloadConfig(manual_dir=manual_dir or None)
        builder.download_and_prepare(download_config=download_config)
    return builder


def builders_from_config(config) -> tuple:
    """(builders, weights) for config.mixture_weights (builder name -> weight), built with
    config.data_dir, config.manual_dirs[name] and config.builder_configs[name]."""
    names = list(config.mixture_weights.keys())
    if not names:
        raise ValueError("pipeline config: mixture_weights is empty; name at least one builder")
    builders = [
        make_builder(n, data_dir=config.data_dir, manual_dir=config.manual_dirs.get(n),
                     builder_config=config.builder_configs.get(n))
        for n in names
    ]
    return builders, [float(config.mixture_weights[n]) for n in names]


def make_dataset_from_config(config, split: str, *, global_batch_size: int, train: bool,
                             seed: Optional[int] = None, **kwargs):
    """make_dataset over builders_from_config(config). kwargs: as make_dataset."""
    builders, weights = builders_from_config(config)
    return make_dataset(builders, split, weights=weights, config=config,
                        global_batch_size=global_batch_size, train=train, seed=seed, **kwargs)


Source = Union[tfds.core.DatasetBuilder, tf.data.Dataset]


def _read_source(source, index: int, split: str, *, train: bool, seed: int,
                 process_index: int, process_count: int) -> tf.data.Dataset:
    """This host's slice of one source, as a dataset of INPUT_KEYS dicts (images encoded when
    the source is a builder; tf.data sources are sharded with Dataset.shard)."""
    if isinstance(source, tfds.core.DatasetBuilder):
        host_split = tfds.split_for_jax_process(
            split, process_index=process_index, process_count=process_count)
        ds = source.as_dataset(
            split=host_split, shuffle_files=train,
            decoders={"image": tfds.decode.SkipDecoding(), "mask": tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(shuffle_seed=seed, try_autocache=False))
        name = source.name
    elif isinstance(source, tf.data.Dataset):
        ds = source.shard(process_count, process_index) if process_count > 1 else source
        name = f"tf.data source {index}"
    else:
        raise TypeError(f"source {index} is a {type(source).__name__}; expected a "
                        "tfds.core.DatasetBuilder or a tf.data.Dataset of canonical examples")
    spec = ds.element_spec
    if not isinstance(spec, Mapping):
        raise TypeError(f"{name}: examples must be dicts of the canonical schema, got {spec}")
    missing = [k for k in INPUT_KEYS if k not in spec]
    if missing:
        raise ValueError(f"{name}: examples lack the canonical keys {missing}")
    shapes = {k: shape for k, (shape, _) in schema.TENSOR_LABELS.items()}
    for key, shape in shapes.items():
        if key in INPUT_KEYS and not spec[key].shape.is_compatible_with(shape):
            raise ValueError(f"{name}: {key} has shape {spec[key].shape}, expected {shape}")
    return ds.map(lambda ex: {k: ex[k] for k in INPUT_KEYS})


def _device_layout(global_batch_size, local_device_count, process_count, process_index):
    """(local_device_count, per_device_batch, process_index, process_count) from jax unless
    overridden. Raises ValueError naming the numbers if the batch does not divide."""
    import jax  # the datasets package depends on jax anyway (DESIGN.md)

    if process_count is None:
        process_count = jax.process_count()
    if process_index is None:
        process_index = jax.process_index() if process_count == jax.process_count() else 0
    if local_device_count is None:
        local_device_count = jax.local_device_count()
        device_count = jax.device_count()
    else:
        device_count = local_device_count * process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    if not isinstance(global_batch_size, (int, np.integer)) or global_batch_size <= 0:
        raise ValueError(f"global_batch_size must be an int > 0, got {global_batch_size!r}")
    if global_batch_size % device_count:
        raise ValueError(
            f"global_batch_size {global_batch_size} is not divisible by the device count "
            f"{device_count} ({process_count} process(es) x {local_device_count} local devices)")
    return local_device_count, global_batch_size // device_count, process_index, process_count


def _check_weights(weights, n):
    if weights is None:
        return [1.0 / n] * n
    w = [float(x) for x in weights]
    if len(w) != n:
        raise ValueError(f"{len(w)} mixture weights {w} for {n} sources")
    if any(not math.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
        raise ValueError(f"mixture weights {w} must be finite, >= 0 and sum to > 0")
    return [x / sum(w) for x in w]


SELECTOR_BLOCK = 4096  # mixture choices are drawn in blocks of this many examples


def _mixture_choices(key, block, cdf):
    """The source indices (SELECTOR_BLOCK,) int64 of mixture block `block`: stateless uniforms
    from fold_in(key, block) placed in the cumulative weights cdf (n,)."""
    u = tf.random.stateless_uniform(
        (SELECTOR_BLOCK,), tf.random.experimental.stateless_fold_in(key, block))
    n = cdf.shape[0]
    return tf.minimum(tf.searchsorted(cdf, u, side="right", out_type=tf.int64), n - 1)


def _mixture_counts(key, cdf, num_examples: int) -> np.ndarray:
    """How many of the first num_examples mixture choices pick each source: (n,) int."""
    counts = np.zeros(cdf.shape[0], np.int64)
    for block in range(-(-num_examples // SELECTOR_BLOCK)):
        take = min(SELECTOR_BLOCK, num_examples - block * SELECTOR_BLOCK)
        choice = _mixture_choices(key, tf.constant(block, tf.int64), cdf)[:take].numpy()
        counts += np.bincount(choice, minlength=cdf.shape[0])
    return counts


def make_tf_dataset(
    sources: Union[Source, Sequence[Source]],
    split: str,
    *,
    config,
    global_batch_size: int,
    train: bool,
    seed: Optional[int] = None,
    weights: Optional[Sequence[float]] = None,
    start_batch: int = 0,
    local_device_count: Optional[int] = None,
    process_count: Optional[int] = None,
    process_index: Optional[int] = None,
) -> tf.data.Dataset:
    """The batched tf.data.Dataset; see make_dataset (same arguments)."""
    validate_config(config)
    seed = int(config.seed if seed is None else seed)
    if isinstance(sources, (tfds.core.DatasetBuilder, tf.data.Dataset)):
        sources = [sources]
    sources = list(sources)
    if not sources:
        raise ValueError("make_dataset needs at least one source")
    weights = _check_weights(weights, len(sources))
    if not isinstance(start_batch, (int, np.integer)) or start_batch < 0:
        raise ValueError(f"start_batch must be an int >= 0, got {start_batch!r}")
    local, per_device, process_index, process_count = _device_layout(
        global_batch_size, local_device_count, process_count, process_index)
    host_batch = local * per_device
    base_key = tf.constant([seed, 0], tf.int64)  # per-example augmentation
    mix_key = tf.random.experimental.stateless_fold_in(  # mixture choices
        tf.constant([seed, 1], tf.int64), process_index)
    cdf = tf.constant(np.cumsum(weights), tf.float32)

    # Resuming (train): the examples the first start_batch batches drew from each source are
    # skipped as raw records after the shuffle, before any decoding, so the stream continues
    # exactly as if those batches had been consumed.
    skip = [0] * len(sources)
    if train and start_batch:
        n_skip = int(start_batch) * host_batch
        skip = (list(_mixture_counts(mix_key, cdf, n_skip)) if len(sources) > 1 else [n_skip])

    per_source = []
    for index, source in enumerate(sources):
        ds = _read_source(source, index, split, train=train, seed=seed,
                          process_index=process_index, process_count=process_count)
        if train:
            ds = ds.repeat()
        ds = ds.enumerate()
        if train:
            ds = ds.shuffle(int(config.shuffle_buffer), seed=seed + 7919 * index,
                            reshuffle_each_iteration=True)
            ds = ds.skip(int(skip[index]))

        def prep(i, ex, index=index):
            key = tf.random.experimental.stateless_fold_in(base_key, process_index)
            key = tf.random.experimental.stateless_fold_in(key, index)
            key = tf.random.experimental.stateless_fold_in(key, i)
            out = preprocess(ex, key, config, train)
            out["source"] = tf.constant(index, tf.int32)
            out["valid"] = tf.constant(1.0)
            return out

        per_source.append(ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))

    if len(per_source) == 1:
        ds = per_source[0]
    elif train:
        # What sample_from_datasets does, with a selector that is a stateless function of the
        # example's position, so that a resumed stream can skip it exactly.
        first = int(start_batch) * host_batch
        selector = (tf.data.Dataset.range(first // SELECTOR_BLOCK, 2**62)
                    .map(lambda block: _mixture_choices(mix_key, block, cdf))
                    .unbatch().skip(first % SELECTOR_BLOCK))
        ds = tf.data.Dataset.choose_from_datasets(per_source, selector,
                                                  stop_on_empty_dataset=False)
    else:  # evaluation reads every example once, source after source
        ds = per_source[0]
        for other in per_source[1:]:
            ds = ds.concatenate(other)

    ds = ds.batch(host_batch, drop_remainder=train, num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True)
    if not train and start_batch:
        ds = ds.skip(int(start_batch))  # evaluation: preprocesses the skipped batches

    def to_devices(batch):
        n = tf.shape(batch["valid"])[0]

        def reshape(x):
            if not train:  # pad the last, short eval batch; 'valid' marks the padding with 0
                x = tf.pad(x, [[0, host_batch - n]] + [[0, 0]] * (x.shape.rank - 1))
            return tf.reshape(x, [local, per_device] + x.shape[1:].as_list())

        return {k: reshape(v) for k, v in batch.items()}

    ds = ds.map(to_devices, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)


def make_dataset(
    sources: Union[Source, Sequence[Source]],
    split: str,
    *,
    config,
    global_batch_size: int,
    train: bool,
    seed: Optional[int] = None,
    weights: Optional[Sequence[float]] = None,
    start_batch: int = 0,
    local_device_count: Optional[int] = None,
    process_count: Optional[int] = None,
    process_index: Optional[int] = None,
):
    """An iterator of numpy batches {name: [local_device_count, per_device_batch, ...]}.

    Args:
      sources: one or several tfds builders (prepared, tfrecord) or tf.data datasets whose
        elements are canonical examples (INPUT_KEYS; images encoded or decoded uint8).
      split: tfds split name (builders); every host reads its own slice
        (tfds.split_for_jax_process). tf.data sources are sharded with Dataset.shard instead.
      config: default_pipeline_config() or a modified copy.
      global_batch_size: examples per step over all devices of all hosts; must be divisible by
        the device count. per_device_batch = global_batch_size / device_count.
      train: True = shuffled, augmented, repeated forever, sources mixed by weights with
        sample_from_datasets, remainder dropped. False = one pass in order, no augmentation
        (left hands are still mirrored), sources concatenated, the last batch padded with
        'valid' = 0.
      seed: the run's seed (None = config.seed); fixes file order, shuffling, mixing and
        every augmentation.
      weights: mixture weights of the sources (None = equal); normalised. Each example's source
        is a stateless draw from the weights (what sample_from_datasets does, made
        reproducible per position for resuming).
      start_batch: resume: the iterator starts with batch number start_batch of the stream
        (0 = the beginning); the same batches as if start_batch batches had been consumed.
        Train: the skipped examples are skipped as raw records (no decoding). Eval: the
        skipped batches are computed and dropped.
      local_device_count, process_count, process_index: overrides of jax's values (tests,
        or a pretend device layout); by default jax.local_device_count(), jax.device_count(),
        jax.process_count(), jax.process_index().
    Returns:
      An iterator, iter(tfds.as_numpy(make_tf_dataset(...))), of dicts of OUTPUT_SCHEMA numpy
      arrays with the leading dims [local_device_count, per_device_batch], ready for jax.pmap
      (or reshape to [host_batch, ...] for jit with a sharded mesh).
    """
    return iter(tfds.as_numpy(make_tf_dataset(
        sources, split, config=config, global_batch_size=global_batch_size, train=train,
        seed=seed, weights=weights, start_batch=start_batch,
        local_device_count=local_device_count, process_count=process_count,
        process_index=process_index)))
