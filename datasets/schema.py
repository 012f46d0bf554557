"""The one canonical example schema shared by every hand-dataset builder.

Every builder yields dicts made by `make_example`, so every dataset has the same keys, shapes and
dtypes; a label a dataset lacks is zero-filled and its `has_*` flag is False (losses multiply by
the flags; no dataset needs its own code path).

Conventions (the project's, hiu_jax/geometry/__init__.py):
- Units metres; camera frame OpenCV (x right, y down, z forward, z > 0 in front of the camera).
- 21 joints in FreiHAND/OpenPose order: 0 wrist, then thumb 1-4, index 5-8, middle 9-12,
  ring 13-16, pinky 17-20, each finger base to tip.
- 2D keypoints are pixel coordinates (u right, v down) in the image frame that `K` maps to:
  uv = (K @ xyz) / z, with no half-pixel shift added or removed.
- `mask` is uint8 with values 0 (background) and 1 (`MASK_ON`, the example's hand), shape
  (H, W, 1), the same H, W as `image`; stored PNG-encoded. Exception: HIU-Data gives one mask
  for all hands of an image, so there it marks every hand (see its builder).
- `mano_pose` is 48 axis-angle values (3 global + 45 fingers) exactly as the dataset gives them;
  `mano_flat_hand_mean` says how to read the 45 finger values: True = they are the full finger
  rotation; False = MANO's `hands_mean` must be added (FreiHAND's convention). The builders cannot
  convert, because `hands_mean` lives in the licensed MANO file.
- `mano_trans` (when `has_mano_trans`): vertices_cam = MANO(mano_pose, mano_betas) + mano_trans,
  where MANO's global rotation turns about the shaped root joint J0(betas) (smplx/manopth
  convention) and MANO's output is not re-centred.
- `scale` (when `has_scale`): FreiHAND's metric length of the bone keypoint 9 -> 10, metres.
- `bbox` (when `has_bbox`): [x_min, y_min, x_max, y_max] in pixels.
- `root_3d` (when `has_root_3d`): the wrist (joint 0) in the camera frame, metres; set where a
  dataset gives the root but not all joints (HO-3D evaluation).

`make_example` is also the one place that checks every builder's labels for plausibility (3D
points 0 < z < 10 m, the 21 joints spanning 4-40 cm, visible 2D keypoints within one image size
of the image), so a sample in the wrong unit is a bad record (raised, or skipped and counted
with skip_bad_records) and never builds silently.
"""
from __future__ import annotations

import io
from typing import Optional

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from hiu_jax.geometry import projection
from hiu_jax.geometry.skeleton import NUM_KEYPOINTS, NUM_VERTICES

MANO_POSE_DIM = 48
MANO_BETAS_DIM = 10
HAND_SIDES = ("right", "left")  # ClassLabel ids: right = 0, left = 1
MASK_ON = 1  # mask value of hand pixels; background is 0

# Every availability flag of the schema; each one is True iff its labels are real.
FLAG_NAMES = (
    "has_intrinsics",  # K
    "has_mask",  # mask
    "has_2d",  # keypoints_2d, keypoint_visibility
    "has_3d",  # keypoints_3d
    "has_mesh",  # vertices
    "has_mano",  # mano_pose, mano_betas, mano_flat_hand_mean
    "has_mano_trans",  # mano_trans
    "has_scale",  # scale
    "has_bbox",  # bbox
    "has_root_3d",  # root_3d
)

# Shapes of the float32 tensor labels and the flag each one belongs to.
TENSOR_LABELS = {
    "K": ((3, 3), "has_intrinsics"),
    "keypoints_2d": ((NUM_KEYPOINTS, 2), "has_2d"),
    "keypoint_visibility": ((NUM_KEYPOINTS,), "has_2d"),
    "keypoints_3d": ((NUM_KEYPOINTS, 3), "has_3d"),
    "vertices": ((NUM_VERTICES, 3), "has_mesh"),
    "mano_pose": ((MANO_POSE_DIM,), "has_mano"),
    "mano_betas": ((MANO_BETAS_DIM,), "has_mano"),
    "mano_trans": ((3,), "has_mano_trans"),
    "bbox": ((4,), "has_bbox"),
    "root_3d": ((3,), "has_root_3d"),
}


# Plausibility of a hand's labels (`check_plausible`): bounds far outside any real capture, so
# that only a wrong unit (millimetres, centimetres, inches read as metres) or garbage fails.
MAX_DEPTH_M = 10.0  # 3D points in the camera frame lie at 0 < z < MAX_DEPTH_M
HAND_EXTENT_RANGE_M = (0.04, 0.40)  # largest distance between two of the 21 joints, metres
MAX_2D_OUTSIDE = 1.0  # visible 2D keypoints lie within this many image sizes outside the border


class BadRecordError(ValueError):
    """One record of a dataset is unusable. `where` names the file and index, `reason` why."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


def record_where(path, index=None) -> str:
    """The `where` text of a BadRecordError: '<path> [index <index>]' (index optional)."""
    return f"{path}" if index is None else f"{path} [index {index}]"


def features(image_format: Optional[str] = "jpeg") -> tfds.features.FeaturesDict:
    """The canonical FeaturesDict. image_format: 'jpeg', 'png' or None (files of either kind).

    Images are stored as the dataset's own encoded bytes (no re-encoding); `image_format` only
    documents what to expect. Decoding gives image (H, W, 3) uint8 and mask (H, W, 1) uint8.
    """
    f32 = np.float32

    def tensor(name, doc):
        return tfds.features.Tensor(shape=TENSOR_LABELS[name][0], dtype=f32, doc=doc)

    spec = {
        "image": tfds.features.Image(
            shape=(None, None, 3), encoding_format=image_format, doc="RGB (H, W, 3) uint8"
        ),
        "mask": tfds.features.Image(
            shape=(None, None, 1),
            encoding_format="png",
            doc="(H, W, 1) uint8, 1 = this example's hand, 0 = background",
        ),
        "K": tensor("K", "(3, 3) pinhole intrinsics, pixels"),
        "keypoints_2d": tensor("keypoints_2d", "(21, 2) pixels u, v; FreiHAND joint order"),
        "keypoint_visibility": tensor("keypoint_visibility", "(21,) 1 = labeled and visible"),
        "keypoints_3d": tensor("keypoints_3d", "(21, 3) metres, OpenCV camera frame"),
        "vertices": tensor("vertices", "(778, 3) MANO vertices, metres, OpenCV camera frame"),
        "mano_pose": tensor("mano_pose", "(48,) axis-angle, see mano_flat_hand_mean"),
        "mano_betas": tensor("mano_betas", "(10,) MANO shape"),
        "mano_trans": tensor("mano_trans", "(3,) metres, verts = MANO(...) + mano_trans"),
        "bbox": tensor("bbox", "(4,) x_min, y_min, x_max, y_max pixels"),
        "root_3d": tensor("root_3d", "(3,) wrist position, metres, OpenCV camera frame"),
        "mano_flat_hand_mean": tfds.features.Scalar(
            dtype=np.bool_, doc="True: 45 finger values are full rotations; False: add hands_mean"
        ),
        "scale": tfds.features.Scalar(dtype=f32, doc="FreiHAND bone 9-10 length, metres"),
        "hand_side": tfds.features.ClassLabel(names=list(HAND_SIDES)),
        "sample_id": tfds.features.Text(doc="the sample's id in its dataset"),
        "image_version": tfds.features.Text(doc="FreiHAND image version (gs/hom/...), else ''"),
        "source": tfds.features.Text(doc="builder name, e.g. 'freihand'"),
    }
    for flag in FLAG_NAMES:
        spec[flag] = tfds.features.Scalar(dtype=np.bool_)
    return tfds.features.FeaturesDict(spec)


# ----------------------------------------------------------------------------------------------
# Validation helpers: each raises BadRecordError naming `where` (file and index).


def check_shape(name: str, arr, shape, where: str) -> np.ndarray:
    """Returns arr as float32 with exactly `shape`, else raises BadRecordError."""
    try:
        out = np.asarray(arr, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise BadRecordError(where, f"{name} is not numeric: {e}") from None
    if out.shape != tuple(shape):
        raise BadRecordError(where, f"{name} has shape {out.shape}, expected {tuple(shape)}")
    return out


def check_finite(name: str, arr, where: str) -> np.ndarray:
    """Raises BadRecordError if any value of arr is NaN or infinite; returns arr."""
    arr = np.asarray(arr)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise BadRecordError(
            where, f"{name} has {int(bad.sum())} non-finite values (first at {first}: "
            f"{arr[first]})"
        )
    return arr


def check_K(K, where: str) -> np.ndarray:
    """K (3, 3) valid pinhole intrinsics (hiu_jax.geometry.projection.check_intrinsics: finite,
    fx, fy > 0, last row [0, 0, 1] within 1e-6, non-singular), else BadRecordError naming
    `where`. Returns K as float32."""
    K = check_finite("K", check_shape("K", K, (3, 3), where), where)
    try:
        projection.check_intrinsics(K)
    except ValueError as e:
        raise BadRecordError(where, str(e)) from None
    return K


def check_in_front(name: str, xyz, where: str) -> np.ndarray:
    """Raises BadRecordError unless every point of xyz (N, 3), metres, OpenCV camera frame, has
    0 < z < MAX_DEPTH_M (in front of the camera, and not so far that the unit must be wrong)."""
    z = np.asarray(xyz)[..., 2]
    if not np.all(z > 0):
        i = int(np.argmin(z))
        raise BadRecordError(where, f"{name}[{i}] has z = {z.flat[i]} <= 0 (behind the camera)")
    if not np.all(z < MAX_DEPTH_M):
        i = int(np.argmax(z))
        raise BadRecordError(where, f"{name}[{i}] has z = {z.flat[i]:.4g} m, more than "
                             f"{MAX_DEPTH_M:g} m from the camera (millimetres for metres?)")
    return xyz


def check_hand_size(name: str, xyz, where: str) -> np.ndarray:
    """Raises BadRecordError unless the 21 joints xyz (21, 3), metres, span a hand: the largest
    distance between two joints lies in HAND_EXTENT_RANGE_M (a real hand spans ~10-25 cm;
    millimetres or centimetres read as metres are 1000x or 100x that). Returns xyz."""
    p = np.asarray(xyz, np.float64)
    extent = float(np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)).max())
    lo, hi = HAND_EXTENT_RANGE_M
    if not lo <= extent <= hi:
        raise BadRecordError(where, f"{name} spans {extent:.4g} m (largest distance between two "
                             f"joints), not a hand's {lo:g}-{hi:g} m: wrong unit or broken label")
    return xyz


def check_near_image(name: str, uv, visible, image_hw, where: str) -> np.ndarray:
    """Raises BadRecordError unless every visible point of uv (N, 2), pixels, lies within
    MAX_2D_OUTSIDE image sizes outside the (H, W) image. visible: (N,) 0/1. Returns uv."""
    h, w = float(image_hw[0]), float(image_hw[1])
    uv = np.asarray(uv)
    lo = -MAX_2D_OUTSIDE * np.array([w, h])
    hi = (1 + MAX_2D_OUTSIDE) * np.array([w, h])
    bad = (np.asarray(visible) > 0) & np.any((uv < lo) | (uv > hi), axis=-1)
    if bad.any():
        i = int(np.argmax(bad))
        raise BadRecordError(where, f"{name}[{i}] = ({uv[i, 0]:.4g}, {uv[i, 1]:.4g}) px lies "
                             f"far outside the {int(w)}x{int(h)} image")
    return uv


def project(K: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """2D labels: the pinhole projection (hiu_jax.geometry.projection.project_pinhole) in float64.
    K (3, 3), xyz (N, 3) metres -> uv (N, 2) float32 pixels."""
    return np.asarray(projection.project_pinhole(K.astype(np.float64), xyz.astype(np.float64),
                                                 xp=np), np.float32)


# ----------------------------------------------------------------------------------------------
# Example construction.

_EMPTY_MASK_CACHE: dict = {}


def encode_mask(mask: np.ndarray) -> bytes:
    """mask (H, W) bool or 0/1 uint8 -> PNG bytes of a single-channel uint8 0/1 image."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * MASK_ON, mode="L").save(
        buf, format="PNG"
    )
    return buf.getvalue()


def _empty_mask(hw) -> bytes:
    hw = (int(hw[0]), int(hw[1]))
    if hw not in _EMPTY_MASK_CACHE:
        _EMPTY_MASK_CACHE[hw] = encode_mask(np.zeros(hw, dtype=bool))
    return _EMPTY_MASK_CACHE[hw]


def empty_labels(image_hw) -> dict:
    """Every label zero-filled and every flag False; the mask is an all-zero (H, W) PNG.

    image_hw: (H, W) of the example's image, pixels.
    """
    out = {name: np.zeros(shape, np.float32) for name, (shape, _) in TENSOR_LABELS.items()}
    out.update({flag: False for flag in FLAG_NAMES})
    out.update(
        mask=_empty_mask(image_hw),
        mano_flat_hand_mean=False,
        scale=np.float32(0.0),
        hand_side=HAND_SIDES[0],
        sample_id="",
        image_version="",
        source="",
    )
    return out


def make_example(
    *,
    image: bytes,
    image_hw,
    sample_id: str,
    source: str,
    where: str,
    hand_side: str = "right",
    image_version: str = "",
    mask=None,
    K=None,
    keypoints_2d=None,
    keypoint_visibility=None,
    keypoints_3d=None,
    vertices=None,
    mano_pose=None,
    mano_betas=None,
    mano_flat_hand_mean: Optional[bool] = None,
    mano_trans=None,
    scale=None,
    bbox=None,
    root_3d=None,
) -> dict:
    """One canonical example; every label left as None is zero-filled with its flag False.

    Args:
      image: the encoded image file (JPEG/PNG bytes), already validated (see builder_utils).
      image_hw: (H, W) of the decoded image, pixels.
      sample_id, source, image_version: text, see `features`.
      where: names the record (file and index) in errors.
      hand_side: 'right' or 'left' (the hand as seen; nothing is mirrored).
      mask: (H, W) bool / 0-1 array of this example's hand.
      K: (3, 3) intrinsics. keypoints_2d (21, 2) pixels; keypoint_visibility (21,) 0/1 (defaults
        to all ones when keypoints_2d is given). keypoints_3d (21, 3) and vertices (778, 3) metres,
        camera frame, z > 0. mano_pose (48,), mano_betas (10,), mano_flat_hand_mean (required with
        mano_pose). mano_trans (3,) metres. scale: metres > 0. bbox (4,) pixels. root_3d (3,).
    Returns:
      A dict with every key of `features()`; flags follow from which labels were given.
    Raises:
      BadRecordError (naming `where`) for a wrong shape, a non-finite value, a bad K, a point
      behind the camera or implausibly far (`check_in_front`), 3D joints that do not span a
      hand (`check_hand_size`), visible 2D keypoints far outside the image
      (`check_near_image`), a mask of the wrong size, or an inconsistent combination.
    """
    out = empty_labels(image_hw)
    if hand_side not in HAND_SIDES:
        raise BadRecordError(where, f"hand_side {hand_side!r} is not one of {HAND_SIDES}")
    out.update(
        image=image, hand_side=hand_side, sample_id=str(sample_id), source=source,
        image_version=image_version,
    )

    given = dict(
        K=K, keypoints_2d=keypoints_2d, keypoint_visibility=keypoint_visibility,
        keypoints_3d=keypoints_3d, vertices=vertices, mano_pose=mano_pose, mano_betas=mano_betas,
        mano_trans=mano_trans, bbox=bbox, root_3d=root_3d,
    )
    if keypoints_2d is not None and keypoint_visibility is None:
        given["keypoint_visibility"] = np.ones((NUM_KEYPOINTS,), np.float32)
    if keypoint_visibility is not None and keypoints_2d is None:
        raise BadRecordError(where, "keypoint_visibility given without keypoints_2d")
    if (mano_pose is None) != (mano_betas is None) or (mano_pose is None) != (
        mano_flat_hand_mean is None
    ):
        raise BadRecordError(
            where, "mano_pose, mano_betas and mano_flat_hand_mean must be given together"
        )
    if mano_trans is not None and mano_pose is None:
        raise BadRecordError(where, "mano_trans given without mano_pose")

    for name, value in given.items():
        if value is None:
            continue
        shape, flag = TENSOR_LABELS[name]
        arr = check_finite(name, check_shape(name, value, shape, where), where)
        out[name] = arr
        out[flag] = True

    if out["has_intrinsics"]:
        check_K(out["K"], where)
    if out["has_2d"]:
        vis = out["keypoint_visibility"]
        if not np.all((vis == 0) | (vis == 1)):
            raise BadRecordError(where, f"keypoint_visibility must be 0 or 1, got {vis.tolist()}")
        check_near_image("keypoints_2d", out["keypoints_2d"], vis, image_hw, where)
    for name in ("keypoints_3d", "vertices", "root_3d"):
        if given[name] is not None:
            check_in_front(name, out[name], where)
    if out["has_3d"]:
        check_hand_size("keypoints_3d", out["keypoints_3d"], where)
    if out["has_bbox"]:
        x0, y0, x1, y1 = out["bbox"]
        if not (x1 > x0 and y1 > y0):
            raise BadRecordError(where, f"bbox {out['bbox'].tolist()} has no area")
    if mano_flat_hand_mean is not None:
        out["mano_flat_hand_mean"] = bool(mano_flat_hand_mean)
    if scale is not None:
        try:
            s_arr = np.asarray(scale, np.float64)
        except (TypeError, ValueError):
            raise BadRecordError(where, f"scale {scale!r} is not a number") from None
        if s_arr.size != 1:
            raise BadRecordError(where, f"scale must be one number, got shape {s_arr.shape}")
        s = float(s_arr.reshape(()))
        if not (np.isfinite(s) and s > 0):
            raise BadRecordError(where, f"scale must be finite and > 0, got {s}")
        out["scale"] = np.float32(s)
        out["has_scale"] = True
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != (int(image_hw[0]), int(image_hw[1])):
            raise BadRecordError(
                where, f"mask has shape {m.shape}, image is {tuple(image_hw)} (H, W)"
            )
        out["mask"] = encode_mask(m)
        out["has_mask"] = True
    return out
