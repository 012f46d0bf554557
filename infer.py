"""HIU-JAX inference: 2D keypoints, 3D joints, the MANO mesh and a mask from hand images.

    python infer.py --workdir runs/default IMAGE [IMAGE ...] --out DIR
        [--box x0,y0,x1,y1|full|find ...] [--which last|best] [--config FILE]
        [--config.KEY=VALUE ...]

The run's flags are train.py's and eval.py's (hiu_jax/runs.py): --workdir, a training work
directory, or --checkpoint, that or its checkpoints/ directory or checkpoints/last|best; --which;
the config is the run's, rebuilt exactly from its record (config_source.json, checked against
config.json), unless --config names a config file; --config.KEY=VALUE overrides a value.

The crop (hiu_jax/inference.py): without --box the hand is found in three passes: the whole
image resized to the model's crop size gives 2D keypoints, the crop around their trimmed box
(per axis the second smallest and second largest keypoint, scaled by 1.15; the pipeline's crop
rule around it) gives them again, and the crop around their trimmed box gives the result.
With --box (image pixels x_min,y_min,x_max,y_max; one box for every image, or one --box per
image in order) the crop is the pipeline's evaluation crop: a square of side
crop_padding * max(box width, box height) (at least min_box_size) centred on the box. '--box full' takes that image whole as the crop (the square of side
max(W, H) centred on it, a non-square image padded with black, not stretched); '--box find'
finds the hand, as without --box. Pixel convention as in hiu_jax/geometry: the pixel in
column c, row r has its centre at (c, r).

Per image, into --out (STEM = the image file name without its extension):
- STEM.json: keypoints_2d (21 x 2) in ORIGINAL image pixels (of the upright image: a JPEG's EXIF
  orientation is applied first, as viewers show it) and keypoints_2d_crop in crop pixels;
  keypoints_3d (21 x 3) and vertices (778 x 3) root-relative (wrist at the origin), metres, camera
  axes (x right, y down, z forward); mano: pose (48 axis-angle values, flat_hand_mean False: the
  45 finger values are deviations from MANO's hands_mean, as FreiHAND stores them) and betas (10);
  camera: the weak-perspective (s, tx, ty) with uv_crop = N/2 (1 + t + s X_xy / 0.1 m); the box
  and where it came from (given, found, full image), the crop (centre, side, the image-to-crop
  matrix); the checkpoint.
- STEM_overlay.png: the image with the predicted skeleton and the crop square, then the crop
  with the skeleton, the mask and the shaded mesh (hiu_jax/visualize.py).
- STEM.obj: the mesh (778 vertices, 1538 faces, 1-based), root-relative metres.

Errors in the input (missing or unreadable images, a bad box, a missing checkpoint or config)
exit with status 2 and one line naming the file or value at fault, before the model is loaded.
A corrupt newest checkpoint is skipped for the next older one with a warning naming it (see
hiu_jax/checkpoint.py); when none can be read, the one line lists the corrupt step directories.
"""
from __future__ import annotations

import json
import os
import re
import sys

from hiu_jax import inference, runs
from hiu_jax.runs import UserError

FULL_IMAGE = "full"  # --box value: the whole image is the crop
FIND = "find"  # --box value: find the hand (the default)


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
        prog="infer.py",
        description="HIU-JAX inference: 2D keypoints, 3D joints, MANO mesh and mask of hand "
                    "images. --config.KEY=VALUE overrides a value of the run's config.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    runs.add_run_arguments(parser, config_help="config file (default: the run's, exactly as "
                                               "recorded in <workdir>/config_source.json)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--box", action="append", metavar="x0,y0,x1,y1",
                        help=f"hand box in image pixels, '{FULL_IMAGE}' (the whole image is the "
                             f"hand crop) or '{FIND}' (find the hand: the default): once for "
                             "every image, or once per image")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def _parse_boxes(args, images) -> list:
    """One (box or None, find) per image from --box; UserError naming a bad value."""
    if not args.box:
        return [(None, True)] * len(images)
    if len(args.box) not in (1, len(images)):
        raise UserError(f"{len(args.box)} --box values for {len(images)} images: give one "
                        "box for every image or one per image")
    parsed = []
    for text in args.box:
        word = text.strip().lower()
        parsed.append((None, word == FIND) if word in (FULL_IMAGE, FIND)
                      else (inference.parse_box(text), False))
    boxes = parsed * len(images) if len(parsed) == 1 else parsed
    for path, img, (box, _) in zip(args.images, images, boxes):
        if box is None:
            continue
        h, w = img.shape[:2]
        if box[2] <= -0.5 or box[0] >= w - 0.5 or box[3] <= -0.5 or box[1] >= h - 0.5:
            raise UserError(f"--box {','.join(f'{b:g}' for b in box)} lies outside the "
                            f"image {path} ({w} x {h} pixels)")
    return boxes


def _validate_inputs(args):
    """Everything checkable before the model: images, boxes, stems, checkpoint, output dir."""
    images = [inference.read_image(p) for p in args.images]
    boxes = _parse_boxes(args, images)
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
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from hiu_jax import visualize

    loaded = runs.load_model(workdir, which, runs.run_config(workdir, args.config,
                                                             args.overrides))
    predict = inference.predictor(loaded.model, loaded.variables)
    faces = np.asarray(loaded.model.mano_model.faces)
    print(f"checkpoint {loaded.workdir} ({loaded.which}, step {loaded.step}), config "
          f"{loaded.config_source}, crop {int(loaded.config.crop_size)} px")
    for path, image, (box, find), stem in tqdm(list(zip(args.images, images, boxes, stems)),
                                               desc="infer", unit="image",
                                               disable=args.no_progress, file=sys.stderr):
        try:
            result = inference.infer_image(predict, image, box, loaded.config, find=find)
        except FloatingPointError as e:
            raise FloatingPointError(f"{e} for {path}") from None
        inference.check_finite(result.pred, path)
        base = os.path.join(args.out, stem)
        with open(base + ".json", "w") as f:
            json.dump(inference.prediction_record(result, path, image.shape[:2], loaded), f)
        picture = visualize.overlay_image(image, result.S, result.crop, result.pred, faces)
        Image.fromarray(visualize.to_uint8(picture)).save(base + "_overlay.png")
        inference.write_obj(base + ".obj", result.pred["vertices"], faces,
                            comment=f"HIU-JAX mesh of {path}\nroot-relative metres, camera "
                                    "axes (x right, y down, z forward)")
    print(f"wrote {len(stems)} x (.json, _overlay.png, .obj) to {args.out}")
    return 0


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except UserError as e:
        print(f"infer.py: error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:
        print(f"infer.py: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
