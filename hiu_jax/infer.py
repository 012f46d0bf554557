"""Inference demo: 2D keypoints, 3D joints, the MANO mesh and a mask from hand images.

    python -m hiu_jax.infer --workdir runs/default IMAGE [IMAGE ...] --out DIR
        [--box x0,y0,x1,y1 ...] [--which last|best] [--config FILE] [--config.KEY=VALUE ...]

The run's flags are train.py's and eval.py's (hiu_jax/runs.py): --workdir, a training work
directory, or --checkpoint, that or its checkpoints/ directory or checkpoints/last|best; --which;
the config is the run's, rebuilt exactly from its record (config_source.json, checked against
config.json), unless --config names a config file; --config.KEY=VALUE overrides a value.

The crop: without --box each image is taken as a hand crop: the square of side max(W, H) centred
on the image (a non-square image is padded with black, not stretched) is resized to the model's
crop size. With --box (image pixels x_min,y_min,x_max,y_max; one box for every image, or one
--box per image in order) the crop is the pipeline's evaluation crop: a square of side
crop_padding * max(box width, box height) (at least min_box_size) centred on the box; '--box full'
takes that image whole, as without --box. Pixel convention as in hiu_jax/geometry: the pixel
in column c, row r has its centre at (c, r).

Per image, into --out (STEM = the image file name without its extension):
- STEM.json: keypoints_2d (21 x 2) in ORIGINAL image pixels (of the upright image: a JPEG's EXIF
  orientation is applied first, as viewers show it) and keypoints_2d_crop in crop pixels;
  joints_3d (21 x 3) and vertices (778 x 3) root-relative (wrist at the origin), metres, camera
  axes (x right, y down, z forward); mano: pose (48 axis-angle values, flat_hand_mean False: the
  45 finger values are deviations from MANO's hands_mean, as FreiHAND stores them) and betas (10);
  camera: the weak-perspective (s, tx, ty) with uv_crop = N/2 (1 + t + s X_xy / 0.1 m); the crop
  (centre, side, the image-to-crop matrix); the checkpoint.
- STEM_overlay.png: the image with the predicted skeleton and the crop square, then the crop
  with the skeleton, the mask and the shaded mesh.
- STEM.obj: the mesh (778 vertices, 1538 faces, 1-based), root-relative metres.

Errors in the input (missing or unreadable images, a bad box, a missing checkpoint or config)
exit with status 2 and one line naming the file or value at fault, before the model is loaded.
A corrupt newest checkpoint is skipped for the next older one with a warning naming it (see
hiu_jax/checkpoint.py); when none can be read, the one line lists the corrupt step directories.

eval.py shares `cut_crop`, `display_panel` and `to_uint8`; the run's config and model come from
hiu_jax/runs.py.
"""
from __future__ import annotations

import json
import os
import re
import sys

import numpy as np

from hiu_jax import runs
from hiu_jax.geometry import cameras, skeleton, warps
from hiu_jax.runs import UserError

FULL_IMAGE = "full"  # --box value: the whole image is the crop


def mano_pose_48(outputs: dict, config, mano_model) -> np.ndarray:
    """(B, 48) axis-angle MANO pose with flat_hand_mean False from the network outputs.

    Axis-angle and PCA parameterisations give it directly (outputs["mano_pose"]); for rot6d the
    full local rotations are converted to axis-angle and hands_mean is subtracted from the 45
    finger values, so that MANO(pose + hands_mean) reproduces the same rotations.
    """
    if config.model.pose_parameterisation != "rot6d":
        return np.asarray(outputs["mano_pose"], np.float64)
    from mano_jax import rotations

    from hiu_jax import models

    layout = models.theta_layout("rot6d")
    theta = np.asarray(outputs["theta"])
    b = theta.shape[0]
    d6 = np.concatenate([theta[:, slice(*layout["global_rot"])][:, None, :],
                         theta[:, slice(*layout["hand_pose"])].reshape(b, 15, 6)], 1)
    aa = np.asarray(rotations.matrix_to_axis_angle(rotations.rotation_6d_to_matrix(d6)),
                    np.float64).reshape(b, 48)
    aa[:, 3:] -= np.asarray(mano_model.hands_mean, np.float64)
    return aa


def forward_fn(model):
    """jit'd inference: (variables, images (B, N, N, 3) in [0, 1]) -> dict of (B, ...) arrays."""
    import jax

    @jax.jit
    def forward(variables, images):
        out = model.apply(variables, images, train=False)
        return {"joints_2d": out["joints_2d"], "joints_3d": out["joints_3d"],
                "vertices": out["vertices"], "cam": out["cam"][-1],
                "mask_prob": jax.nn.sigmoid(out["mask_logits"][-1][..., 0]),
                "mano_pose": out["mano_pose"], "mano_betas": out["mano_betas"],
                "theta": out["theta"][-1]}

    return forward


# --------------------------------------------------------------------------- crops


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
    if not np.all(np.isfinite(box)):
        raise UserError(f"--box {text!r}: values must be finite")
    if not (box[2] > box[0] and box[3] > box[1]):
        raise UserError(f"--box {text!r}: needs x1 > x0 and y1 > y0")
    return box


def crop_for(image_hw, box, config) -> tuple[np.ndarray, np.ndarray, float]:
    """(S, center, side): the crop of an image of size (H, W), around `box` ((4,) or None)."""
    h, w = image_hw
    n = int(config.crop_size)
    if box is None:
        center = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
        side = float(max(h, w))  # the square exactly covering the image's longer side
    else:
        center = np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])
        size = max(box[2] - box[0], box[3] - box[1])
        side = max(size * float(config.pipeline.crop_padding), float(config.pipeline.min_box_size))
    return cameras.crop_matrix(center, side, n), center, side


def cut_crop(image: np.ndarray, S: np.ndarray, crop_size: int) -> np.ndarray:
    """The crop (N, N, C) float32 of image (H, W, C) under the image-to-crop matrix S: the
    bilinear warp of hiu_jax.geometry (computed in float64; 0 outside the image)."""
    inverse = cameras.invert_affine(np.asarray(S, np.float64))
    return warps.warp_bilinear(np.asarray(image, np.float64), inverse, crop_size).astype(
        np.float32)


def crop_to_image(points: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Crop pixel coordinates (..., 2) -> original image pixels (..., 2) by S^-1."""
    return cameras.apply_affine(cameras.invert_affine(np.asarray(S, np.float64)), points)


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


# --------------------------------------------------------------------------- outputs


def to_uint8(image) -> np.ndarray:
    """float [0, 1] -> uint8 (rounded, clipped)."""
    return (np.clip(np.asarray(image, np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)


def write_obj(path: str, vertices: np.ndarray, faces: np.ndarray, comment: str = "") -> None:
    """A Wavefront OBJ: one 'v x y z' line per vertex, one 'f i j k' line per face (1-based)."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"faces index vertices {faces.min()}..{faces.max()} of {len(vertices)}")
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _resize(image, width: int, height: int) -> np.ndarray:
    from PIL import Image

    if image.shape[1] == width and image.shape[0] == height:
        return np.asarray(image, np.float32)
    return np.asarray(Image.fromarray(to_uint8(image)).resize((width, height), Image.BILINEAR),
                      np.float32) / 255.0


def display_panel(crop, pred: dict, faces, size: int) -> np.ndarray:
    """visualize.panel (skeleton | mask | shaded mesh) drawn at `size` x `size` per picture: the
    crop is resized first and the keypoints scaled with it (the weak-perspective camera is
    relative to the crop size, so it needs no change). (size, 3 size, 3) in [0, 1]."""
    from hiu_jax import visualize

    n = crop.shape[0]
    f = size / n
    kp = (np.asarray(pred["joints_2d"], np.float64) + 0.5) * f - 0.5  # pixel centres at integers
    return visualize.panel(_resize(crop, size, size), kp, pred["mask_prob"], pred["vertices"],
                           faces, pred["cam"])


OVERLAY_CONTEXT = 1.25  # the overlay's left picture: the crop square enlarged by this factor


def overlay_image(image, S, crop, pred, faces, display: int = 256) -> np.ndarray:
    """[the crop square with some context, skeleton and square drawn | crop: skeleton | mask |
    mesh], (D, 4 D, 3) in [0, 1], D = max(display, crop size).

    The left picture is warped from the image around the crop (OVERLAY_CONTEXT x its side, black
    outside the image), so memory and time are bounded by D, whatever the image's size or aspect
    ratio (scaling a 1 x 4000 image to D rows took 14.5 GB)."""
    from PIL import Image, ImageDraw

    from hiu_jax import visualize

    n = crop.shape[0]
    d = max(display, n)
    row = display_panel(crop, pred, faces, d)
    corners = crop_to_image(np.array([[-0.5, -0.5], [n - 0.5, n - 0.5]]), S)
    view = cameras.crop_matrix(corners.mean(0), OVERLAY_CONTEXT * (corners[1, 0] - corners[0, 0]),
                               d)

    def to_view(points):
        return points @ view[:2, :2].T + view[:2, 2]

    kp = crop_to_image(np.asarray(pred["joints_2d"], np.float64), S)
    left = visualize.draw_skeleton(cut_crop(image, view, d), to_view(kp))
    canvas = Image.fromarray(to_uint8(left))
    (x0, y0), (x1, y1) = to_view(corners)
    ImageDraw.Draw(canvas).rectangle([x0, y0, x1, y1], outline=(255, 255, 0), width=2)
    left = np.asarray(canvas, np.float32) / 255.0
    return np.concatenate([left, row], axis=1)


def prediction_record(pred: dict, S, center, side, crop_size, image_path, image_hw, box,
                      loaded: runs.LoadedModel) -> dict:
    """The JSON-able result of one image (see the module docstring)."""
    kp_crop = np.asarray(pred["joints_2d"], np.float64)
    s, tx, ty = (float(c) for c in pred["cam"])
    return {
        "image": os.path.abspath(image_path),
        "image_size": {"width": int(image_hw[1]), "height": int(image_hw[0])},
        "box": None if box is None else [float(b) for b in box],
        "crop": {"center": [float(c) for c in center], "side": float(side),
                 "crop_size": int(crop_size), "image_to_crop": np.asarray(S).tolist()},
        "joint_names": list(skeleton.JOINT_NAMES),
        "keypoints_2d": crop_to_image(kp_crop, S).tolist(),
        "keypoints_2d_crop": kp_crop.tolist(),
        "joints_3d": np.asarray(pred["joints_3d"], np.float64).tolist(),
        "vertices": np.asarray(pred["vertices"], np.float64).tolist(),
        "mano": {"pose": np.asarray(pred["mano_pose_48"], np.float64).tolist(),
                 "betas": np.asarray(pred["mano_betas"], np.float64).tolist(),
                 "flat_hand_mean": False,
                 "pose_parameterisation": str(loaded.config.model.pose_parameterisation)},
        "camera": {"s": s, "tx": tx, "ty": ty,
                   "projection": "uv_crop = crop_size / 2 * (1 + (tx, ty) + s * X_xy / 0.1), "
                                 "X root-relative metres"},
        "checkpoint": {"workdir": loaded.workdir, "which": loaded.which, "step": loaded.step,
                       "config": loaded.config_source},
        "units": "keypoints_2d: original image pixels (pixel centres at integers); "
                 "keypoints_2d_crop: crop pixels; joints_3d, vertices: metres, root-relative "
                 "(wrist = joint 0 at the origin), camera axes x right, y down, z forward; "
                 "mano.pose: axis-angle radians, [0:3] global, [3:48] fingers minus hands_mean",
    }


# --------------------------------------------------------------------------- CLI


def _attach_box_values(argv: list) -> list:
    """'--box -100,-5,3,4' -> '--box=-100,-5,3,4': argparse takes a value that starts with '-'
    (and is not a single negative number) for an option, and fails with 'expected one
    argument'."""
    out = []
    for arg in argv:
        if out and out[-1] == "--box" and re.fullmatch(r"-[0-9.].*", arg):
            out[-1] = f"--box={arg}"
        else:
            out.append(arg)
    return out


def parse_args(argv):
    argv = _attach_box_values(list(sys.argv[1:] if argv is None else argv))
    parser = runs.ArgumentParser(
        prog="python -m hiu_jax.infer",
        description="HIU-JAX demo: 2D keypoints, 3D joints, MANO mesh and mask of hand images. "
                    "--config.KEY=VALUE overrides a value of the run's config.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    runs.add_run_arguments(parser, config_help="config file (default: the run's, exactly as "
                                               "recorded in <workdir>/config_source.json)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--box", action="append", metavar="x0,y0,x1,y1",
                        help="hand box in image pixels, or 'full' (the whole image is the hand "
                             "crop, the default): once for every image, or once per image")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def _validate_inputs(args):
    """Everything checkable before JAX: images, boxes, stems, checkpoint, output directory."""
    images = [read_image(p) for p in args.images]
    boxes = [None] * len(images)
    if args.box:
        if len(args.box) not in (1, len(images)):
            raise UserError(f"{len(args.box)} --box values for {len(images)} images: give one "
                            "box for every image or one per image")
        parsed = [None if b.strip().lower() == FULL_IMAGE else parse_box(b) for b in args.box]
        boxes = parsed * len(images) if len(parsed) == 1 else parsed
        for path, img, box in zip(args.images, images, boxes):
            if box is None:
                continue
            h, w = img.shape[:2]
            if box[2] <= -0.5 or box[0] >= w - 0.5 or box[3] <= -0.5 or box[1] >= h - 0.5:
                raise UserError(f"--box {','.join(f'{b:g}' for b in box)} lies outside the "
                                f"image {path} ({w} x {h} pixels)")
    stems = {}
    for path in args.images:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems:
            raise UserError(f"images {stems[stem]} and {path} would write the same outputs "
                            f"({stem}.json); rename one")
        stems[stem] = path
    workdir, which = runs.checkpoint_from_args(args)
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output directory {args.out}: {e}") from None
    return images, boxes, list(stems), workdir, which


def run(args) -> int:
    images, boxes, stems, workdir, which = _validate_inputs(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import jax.numpy as jnp
    from PIL import Image
    from tqdm import tqdm

    loaded = runs.load_model(workdir, which, runs.run_config(workdir, args.config,
                                                             args.overrides))
    n = int(loaded.config.crop_size)
    forward = forward_fn(loaded.model)
    faces = np.asarray(loaded.model.mano_model.faces)
    print(f"checkpoint {loaded.workdir} ({loaded.which}, step {loaded.step}), config "
          f"{loaded.config_source}, crop {n} px")
    for path, image, box, stem in tqdm(list(zip(args.images, images, boxes, stems)),
                                       desc="infer", unit="image", disable=args.no_progress,
                                       file=sys.stderr):
        S, center, side = crop_for(image.shape[:2], box, loaded.config)
        crop = cut_crop(image, S, n)
        out = {k: np.asarray(v)[0] for k, v in
               forward(loaded.variables, jnp.asarray(crop[None])).items()}
        out["mano_pose_48"] = mano_pose_48({k: v[None] for k, v in out.items()}, loaded.config,
                                           loaded.model.mano_model)[0]
        for key in ("joints_2d", "joints_3d", "vertices", "cam", "mano_betas", "mano_pose_48"):
            if not np.all(np.isfinite(out[key])):
                raise FloatingPointError(f"the model predicted non-finite {key} for {path}")
        record = prediction_record(out, S, center, side, n, path, image.shape[:2], box, loaded)
        base = os.path.join(args.out, stem)
        with open(base + ".json", "w") as f:
            json.dump(record, f)
        picture = overlay_image(image, S, crop, out, faces)
        Image.fromarray(to_uint8(picture)).save(base + "_overlay.png")
        write_obj(base + ".obj", out["vertices"], faces,
                  comment=f"HIU-JAX mesh of {path}\nroot-relative metres, camera axes "
                          "(x right, y down, z forward)")
    print(f"wrote {len(stems)} x (.json, _overlay.png, .obj) to {args.out}")
    return 0


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except UserError as e:
        print(f"python -m hiu_jax.infer: error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:
        print(f"python -m hiu_jax.infer: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
