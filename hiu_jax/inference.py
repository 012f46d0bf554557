"""Inference on whole images: the crop around the hand (given, the whole image, or found by a
first pass), the model's predictions on it, and the record infer.py writes per image.

The crop follows the pipeline's rule (hiu_jax.geometry.crops: `box_center_size`,
`hand_crop_side`, `crop_matrix`): a square of side crop_padding * max(box width, box height),
at least min_box_size, centred on the hand box, resized to the model's crop size. Pixel
convention as in hiu_jax/geometry: the pixel in column c, row r has its centre at (c, r).

Finding the hand (no box given), FIND_RULE.passes passes of the network that find the box, then
the pass whose predictions are the result:
1. the whole image (the square of side max(W, H) centred on it, black outside a non-square
   image) resized to the crop size gives 2D keypoints (the heat maps' soft-argmax);
2. their `trimmed_box` in image pixels (per axis the second smallest and second largest
   coordinate, the box then scaled by 1.15 about its centre) is, by the crop rule the pipeline
   trains with, the crop of the next pass; the keypoints of that pass give the box again;
3. after FIND_RULE.passes such passes (default 2), one more pass on the crop of the last box
   gives the result.
Why (bench/find_hand.py, a 2000-step default model on 300 synthetic 224-px images): the
min/max box follows single stray keypoints (mostly the wrist put down the forearm, which a
crop that shows more forearm repeats); dropping each axis's extreme keypoint removes them, the
1.15 restores the side the trimming and the heat maps' pull to the crop centre take off, and
the second finding pass recentres. 2D error 20.9 px against 18.1 with the true box (1.15x),
where the min/max box of one pass gave 22.6 (1.25x).

The predictions come from evaluation.predict_fn, the one predict function, run here on one
device (`predictor`).
"""
from __future__ import annotations

import os
from typing import Callable, NamedTuple

import numpy as np

from hiu_jax import evaluation
from hiu_jax.geometry import crops, skeleton, warps
from hiu_jax.geometry.projection import PROJECTION_REF
from hiu_jax.runs import UserError

BOX_SOURCES = ("given", "full image", "found")
FOUND_FROM = "keypoints_heatmap"  # the first pass's keypoints that give the found box


class FindRule(NamedTuple):
    """How infer_image finds the hand: `passes` (>= 1) passes that give the box (the first on
    the whole image, each next one on the crop of the previous box), each box the
    `trimmed_box(keypoints, trim, scale)` of that pass's `keypoints` (a 2D output of
    predict_fn). FindRule(1, 0, 1.0) is the min/max box of the whole image's keypoints."""

    passes: int = 2
    trim: int = 1
    scale: float = 1.15
    keypoints: str = FOUND_FROM


FIND_RULE = FindRule()


def parse_box(text: str) -> np.ndarray:
    """'x0,y0,x1,y1' -> (4,) float64; UserError naming the text unless 4 finite numbers with
    x1 > x0 and y1 > y0."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        box = np.array([float(p) for p in parts], np.float64)
    except ValueError:
        raise UserError(f"--box {text!r}: expected four numbers x0,y0,x1,y1") from None
    if box.shape != (4,):
        raise UserError(f"--box {text!r}: expected four numbers x0,y0,x1,y1, got {len(parts)}")
    return check_box(box, f"--box {text!r}")


def check_box(box, name: str = "box") -> np.ndarray:
    """box as (4,) float64 x0, y0, x1, y1; UserError naming it (`name`) unless 4 finite numbers
    with x1 > x0 and y1 > y0."""
    box = np.asarray(box, np.float64)
    if box.shape != (4,):
        raise UserError(f"{name}: expected four numbers x0,y0,x1,y1, got shape {box.shape}")
    if not np.all(np.isfinite(box)):
        raise UserError(f"{name}: values must be finite")
    if not (box[2] > box[0] and box[3] > box[1]):
        raise UserError(f"{name}: needs x1 > x0 and y1 > y0")
    return box


def read_image(path: str) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1], upright (an EXIF orientation tag is applied, as image
    viewers do); UserError naming the file if missing or unreadable."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not os.path.isfile(path):
        raise UserError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            rgb = ImageOps.exif_transpose(img).convert("RGB")
    except Image.DecompressionBombError as e:  # the header claims > 2 x MAX_IMAGE_PIXELS
        raise UserError(f"image {path} is too large to read safely ({e})") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"cannot read image {path}: {e}") from None
    if rgb.width < 1 or rgb.height < 1:
        raise UserError(f"image {path} is empty ({rgb.width} x {rgb.height})")
    return np.asarray(rgb, np.float32) / 255.0


def crop_for(image_hw, box, config) -> tuple[np.ndarray, np.ndarray, float]:
    """(S (3, 3) image-to-crop matrix, center (2,), side) of the crop of an image of size
    (H, W) around `box` ((4,) x0, y0, x1, y1 image pixels, by the pipeline's crop rule), or of
    the whole image when box is None (the square of side max(H, W) centred on it)."""
    h, w = image_hw
    if box is None:
        center, side = np.array([(w - 1) / 2.0, (h - 1) / 2.0]), float(max(h, w))
    else:
        box = np.asarray(box, np.float64)
        center, size = crops.box_center_size(box[:2], box[2:])
        side = float(crops.hand_crop_side(size, float(config.pipeline.crop_padding),
                                          float(config.pipeline.min_box_size)))
    return crops.crop_matrix(center, side, int(config.crop_size)), center, side


def crop_to_image(points, S) -> np.ndarray:
    """Crop pixel coordinates (..., 2) -> image pixels (..., 2) by S^-1."""
    return crops.apply_affine(crops.invert_affine(np.asarray(S, np.float64)),
                              np.asarray(points, np.float64))


def predictor(model, variables) -> Callable[[np.ndarray], dict]:
    """evaluation.predict_fn on one device: crops (B, N, N, 3) float32 in [0, 1] -> dict of
    (B, ...) NumPy arrays (the keys of predict_fn)."""
    import jax
    from flax import jax_utils

    predict = evaluation.predict_fn(model)
    one_device = jax_utils.replicate(variables, devices=jax.local_devices()[:1])

    def run(images):
        out = jax.device_get(predict(one_device, np.asarray(images, np.float32)[None]))
        return {k: np.asarray(v[0]) for k, v in out.items()}

    return run


def trimmed_box(points, trim: int = 0, scale: float = 1.0) -> np.ndarray:
    """The box (4,) x0, y0, x1, y1 of points (P, 2) by order statistics: per axis the
    (trim + 1)-th smallest and (trim + 1)-th largest coordinate, then scaled by `scale` about
    its centre (units of the points). trim 0, scale 1: the min/max box. ValueError unless
    0 <= 2 trim < P and scale > 0."""
    points = np.asarray(points, np.float64)
    if not (0 <= 2 * trim < len(points)) or not scale > 0:
        raise ValueError(f"trimmed_box: trim {trim} of {len(points)} points, scale {scale}")
    ordered = np.sort(points, axis=0)
    lo, hi = ordered[trim], ordered[len(points) - 1 - trim]
    grow = (scale - 1.0) / 2 * (hi - lo)  # each side; 0 (exactly lo, hi) for scale 1
    return np.concatenate([lo - grow, hi + grow])


def found_box(pred: dict, S, keypoints: str = FOUND_FROM, trim: int = 0,
              scale: float = 1.0) -> np.ndarray:
    """The hand box (4,) x0, y0, x1, y1 in image pixels of one prediction on the crop S: the
    `trimmed_box` of its 21 `keypoints` (a 2D output of predict_fn, crop pixels) mapped to the
    image (trim 0, scale 1: their min/max box)."""
    points = crop_to_image(pred[keypoints], S)
    if not np.all(np.isfinite(points)):
        raise FloatingPointError(f"the first pass predicted non-finite {keypoints}")
    return trimmed_box(points, trim, scale)


class Inferred(NamedTuple):
    """One image's result: the crop (S, center, side, the (N, N, 3) pixels), its box (4,) in
    image pixels (None for the whole image) and where the box came from (BOX_SOURCES), and the
    prediction on the crop (predict_fn's keys, one sample)."""

    S: np.ndarray
    center: np.ndarray
    side: float
    crop: np.ndarray
    box: np.ndarray | None
    box_source: str
    pred: dict


def infer_image(predict, image, box, config, *, find: bool,
                rule: FindRule = FIND_RULE) -> Inferred:
    """The prediction on one image (H, W, 3) in [0, 1]. predict: crops (B, N, N, 3) -> dict of
    (B, ...) (`predictor`). box: (4,) image pixels (UserError unless x1 > x0, y1 > y0) or
    None; with None, find=True finds the hand by `rule` (rule.passes + 1 passes, see the
    module docstring), find=False takes the whole image as the crop. FloatingPointError if a
    finding pass predicts non-finite keypoints."""
    n = int(config.crop_size)

    def on_crop(b):
        S, center, side = crop_for(image.shape[:2], b, config)
        crop = warps.crop_image(image, S, n)
        return S, center, side, crop, {k: v[0] for k, v in predict(crop[None]).items()}

    source = "given" if box is not None else "found" if find else "full image"
    if source == "given":
        box = check_box(box)
    elif source == "found":
        if int(rule.passes) < 1:
            raise ValueError(f"FindRule.passes {rule.passes}: needs at least 1")
        box = None  # the first pass: the whole image
        for _ in range(int(rule.passes)):
            S, _, _, _, pred = on_crop(box)
            box = found_box(pred, S, rule.keypoints, int(rule.trim), float(rule.scale))
    S, center, side, crop, pred = on_crop(box)
    return Inferred(S, center, side, crop, box, source, pred)


def check_finite(pred: dict, path: str) -> None:
    """FloatingPointError naming the image unless the written predictions are finite."""
    for key in ("keypoints_2d", "keypoints_3d", "vertices", "cam", "mano_betas", "mano_pose"):
        if not np.all(np.isfinite(pred[key])):
            raise FloatingPointError(f"the model predicted non-finite {key} for {path}")


def write_obj(path: str, vertices, faces, comment: str = "") -> None:
    """A Wavefront OBJ: one 'v x y z' line per vertex (V, 3), one 'f i j k' line per face
    (F, 3) 0-based indices, written 1-based; ValueError if a face indexes no vertex."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"faces index vertices {faces.min()}..{faces.max()} of {len(vertices)}")
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def prediction_record(result: Inferred, image_path: str, image_hw, loaded) -> dict:
    """The JSON-able result of one image (infer.py's STEM.json): `result` of `infer_image` on
    the image of size (H, W) at image_path, by the model `loaded` (runs.LoadedModel)."""
    pred = result.pred
    kp_crop = np.asarray(pred["keypoints_2d"], np.float64)
    s, tx, ty = (float(c) for c in pred["cam"])
    return {
        "image": os.path.abspath(image_path),
        "image_size": {"width": int(image_hw[1]), "height": int(image_hw[0])},
        "box": None if result.box is None else [float(b) for b in result.box],
        "box_source": result.box_source,
        "crop": {"center": [float(c) for c in result.center], "side": float(result.side),
                 "crop_size": int(result.crop.shape[0]),
                 "image_to_crop": np.asarray(result.S).tolist()},
        "joint_names": list(skeleton.JOINT_NAMES),
        "keypoints_2d": crop_to_image(kp_crop, result.S).tolist(),
        "keypoints_2d_crop": kp_crop.tolist(),
        "keypoints_3d": np.asarray(pred["keypoints_3d"], np.float64).tolist(),
        "vertices": np.asarray(pred["vertices"], np.float64).tolist(),
        "mano": {"pose": np.asarray(pred["mano_pose"], np.float64).tolist(),
                 "betas": np.asarray(pred["mano_betas"], np.float64).tolist(),
                 "flat_hand_mean": False,
                 "pose_parameterisation": str(loaded.config.model.pose_parameterisation)},
        "camera": {"s": s, "tx": tx, "ty": ty,
                   "projection": "uv_crop = crop_size / 2 * (1 + (tx, ty) + s * X_xy / "
                                 f"{PROJECTION_REF:g}), X root-relative metres"},
        "checkpoint": {"workdir": loaded.workdir, "which": loaded.which, "step": loaded.step,
                       "config": loaded.config_source},
        "units": "keypoints_2d: original image pixels (pixel centres at integers); "
                 "keypoints_2d_crop: crop pixels; keypoints_3d, vertices: metres, root-relative "
                 "(wrist = joint 0 at the origin), camera axes x right, y down, z forward; "
                 "mano.pose: axis-angle radians, [0:3] global, [3:48] fingers minus hands_mean",
    }
