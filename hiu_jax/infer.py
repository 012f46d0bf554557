"""Inference demo: 2D keypoints, 3D joints, the MANO mesh and a mask from hand images.

    python -m hiu_jax.infer --checkpoint runs/default IMAGE [IMAGE ...] --out DIR
        [--box x0,y0,x1,y1 ...] [--which last|best] [--config configs/x.py]

--checkpoint: a training work directory (train.py's --workdir, holding config.json and
checkpoints/), its checkpoints/ directory, or checkpoints/last or checkpoints/best. The config
comes from <workdir>/config.json (`config_from_workdir`) unless --config names a config file.

The crop: without --box each image is taken as a hand crop: the square of side max(W, H) centred
on the image (a non-square image is padded with black, not stretched) is resized to the model's
crop size. With --box (image pixels x_min,y_min,x_max,y_max; one box for every image, or one
--box per image in order) the crop is the pipeline's evaluation crop: a square of side
crop_padding * max(box width, box height) (at least min_box_size) centred on the box; '--box full'
takes that image whole, as without --box. Pixel convention as in datasets/pipeline.py: the pixel
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

The module also holds what eval.py shares: `resolve_checkpoint`, `config_from_workdir`,
`load_config_file` and `load_model`.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
from typing import Any, NamedTuple, Optional

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, "configs")
WHICH = ("last", "best")
FULL_IMAGE = "full"  # --box value: the whole image is the crop


class UserError(Exception):
    """Bad input from the command line or the files it names; reported in one line, exit 2."""


# --------------------------------------------------------------------------- checkpoints


def _steps_in(directory: str) -> list:
    """Finished Orbax steps (integer-named subdirectories) of a checkpoints/<which> directory."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(n) for n in os.listdir(directory)
                  if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


def resolve_checkpoint(path: str, which: Optional[str] = None) -> tuple[str, str]:
    """(workdir, which) of a work directory, its checkpoints/ dir, or checkpoints/last|best.

    which: "last" or "best", or None: the directory's own name for checkpoints/last|best, else
    "last". Raises UserError naming the path when it holds no finished checkpoint, or when
    `which` contradicts a checkpoints/last|best path.
    """
    if which is not None and which not in WHICH:
        raise UserError(f"--which must be one of {WHICH}, got {which!r}")
    p = os.path.normpath(os.path.abspath(path))
    if not os.path.isdir(p):
        raise UserError(f"checkpoint directory not found: {path}")
    base = os.path.basename(p)
    if base in WHICH and os.path.basename(os.path.dirname(p)) == "checkpoints":
        if which is not None and which != base:
            raise UserError(f"--which {which} contradicts the checkpoint directory {path}")
        workdir, which = os.path.dirname(os.path.dirname(p)), base
    elif os.path.isdir(os.path.join(p, "checkpoints")):
        workdir = p
    elif base == "checkpoints" and any(os.path.isdir(os.path.join(p, w)) for w in WHICH):
        workdir = os.path.dirname(p)
    else:
        raise UserError(f"{path} is neither a training work directory (with checkpoints/) nor a "
                        "checkpoints directory (with last/ or best/)")
    which = which or "last"
    directory = os.path.join(workdir, "checkpoints", which)
    if not _steps_in(directory):
        raise UserError(f"no finished checkpoint in {directory}")
    return workdir, which


# --------------------------------------------------------------------------- configs


def _ensure_repo_on_path() -> None:
    # configs/*.py import each other as `configs.<name>`: the repository root must be importable.
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)


def load_config_file(path: str):
    """get_config() of a config file such as configs/tiny.py. Raises UserError naming the file."""
    if not os.path.isfile(path):
        raise UserError(f"config file not found: {path}")
    _ensure_repo_on_path()
    name = "_hiu_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"config file {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a broken user file: report it in one line
        raise UserError(f"config file {path} failed to load: {type(e).__name__}: {e}") from None
    if not callable(getattr(module, "get_config", None)):
        raise UserError(f"config file {path} has no get_config()")
    return module.get_config()


def _flatten(tree, prefix="") -> dict:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def _restore_types(value, template, key: str, missing: list):
    """The JSON value with the template's types back: tuples where the template has tuples,
    template entries that config.json lacks filled in (and listed in `missing`)."""
    if isinstance(value, dict):
        tdict = template if isinstance(template, dict) else {}
        out = {k: _restore_types(v, tdict.get(k), f"{key}.{k}" if key else k, missing)
               for k, v in value.items()}
        for k, v in tdict.items():
            if k not in value:
                out[k] = v
                missing.append(f"{key}.{k}" if key else k)
        return out
    if isinstance(value, list) and isinstance(template, tuple):
        return tuple(value)
    return value


class RunConfig(NamedTuple):
    """A run's config rebuilt from config.json: base = the configs/*.py it was derived from,
    differences = how many values config.json overrides in it, missing = keys config.json lacks
    (filled in from the base)."""

    config: Any
    base: str
    differences: int
    missing: tuple


def config_from_json(path: str) -> RunConfig:
    """The ConfigDict of a run from the config.json that train.py writes.

    config.json holds every value (FieldReferences resolved, tuples written as lists). The base
    config file is the configs/*.py whose get_config() differs from it in the fewest values (its
    name is not stored); its types are restored (lists back to tuples), and keys that config.json
    lacks (an older run) are taken from it and reported in `missing`.
    """
    import ml_collections

    if not os.path.isfile(path):
        raise UserError(f"run config not found: {path} (give --config configs/<name>.py)")
    with open(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise UserError(f"run config {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict) or "model" not in data or "crop_size" not in data:
        raise UserError(f"run config {path} is not a train.py config (no 'model' / 'crop_size')")
    flat = _flatten(data)
    best = None
    for fname in sorted(os.listdir(CONFIG_DIR)):
        if not fname.endswith(".py") or fname == "__init__.py":
            continue
        template = load_config_file(os.path.join(CONFIG_DIR, fname)).to_dict()
        tflat = _flatten(template)
        diff = sum(1 for k in set(flat) | set(tflat) if flat.get(k, None) != tflat.get(k, None))
        if best is None or diff < best[0]:
            best = (diff, fname, template)
    if best is None:
        raise UserError(f"no config files in {CONFIG_DIR}")
    diff, fname, template = best
    missing = []
    restored = _restore_types(data, template, "", missing)
    return RunConfig(ml_collections.ConfigDict(restored), f"configs/{fname}", diff, tuple(missing))


def config_from_workdir(workdir: str) -> RunConfig:
    """`config_from_json` of <workdir>/config.json."""
    return config_from_json(os.path.join(workdir, "config.json"))


# --------------------------------------------------------------------------- model


class LoadedModel(NamedTuple):
    """A restored model. variables: {"params", "batch_stats"} (host arrays)."""

    config: Any
    config_source: str  # "configs/tiny.py" or "<workdir>/config.json (base configs/tiny.py)"
    model: Any  # models.HIUNet (bn_axis_name None: inference)
    variables: dict
    step: int
    workdir: str
    which: str


def _template_state(model, config):
    """A TrainState of zeros shaped like the checkpoint's, without compiling the model's init
    (jax.eval_shape traces it; the orbax restore only needs shapes and dtypes)."""
    import jax

    from hiu_jax import training

    shape = (1, int(config.crop_size), int(config.crop_size), 3)
    abstract = jax.eval_shape(
        lambda key: training.create_train_state(model, config, key, shape), jax.random.key(0))
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract)


def run_config(workdir: str, config_file: Optional[str] = None, log=None) -> tuple:
    """(config, source): `config_file`'s get_config(), or the run's <workdir>/config.json.
    log: called with a note when config.json lacks keys (taken from its base config file)."""
    if config_file:
        return load_config_file(config_file), config_file
    rc = config_from_workdir(workdir)
    if rc.missing and log:
        log(f"note: {len(rc.missing)} config keys are not in {workdir}/config.json and come "
            f"from {rc.base}: {', '.join(rc.missing)}")
    return rc.config, f"{os.path.join(workdir, 'config.json')} (base {rc.base})"


def load_model(checkpoint: str, *, config_file: Optional[str] = None,
               which: Optional[str] = None, config=None, log=None) -> LoadedModel:
    """The model and variables of a checkpoint (see `resolve_checkpoint`).

    The config: `config` = (ConfigDict, description) when given, else `run_config` (the run's
    <workdir>/config.json, or `config_file`). log: called with notes (e.g. print).
    """
    workdir, which = resolve_checkpoint(checkpoint, which)
    if config is None:
        config = run_config(workdir, config_file, log)
    config, source = config
    from hiu_jax import checkpoint as ckpt
    from hiu_jax import models

    try:
        model = models.build_model(config.model, half_precision=bool(config.half_precision))
        template = _template_state(model, config)
    except (FileNotFoundError, ValueError, KeyError, AttributeError) as e:
        raise UserError(f"cannot build the model of {source}: {type(e).__name__}: {e}") from None
    try:
        variables, meta = ckpt.restore_variables(workdir, template, which=which)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    except ckpt.CorruptCheckpointError as e:  # before ValueError: damaged files, not the config
        raise UserError(str(e)) from None
    except (ValueError, TypeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if len(first) > 240:  # orbax lists every key of the checkpoint
            first = first[:240] + " ..."
        raise UserError(f"the checkpoint in {os.path.join(workdir, 'checkpoints', which)} does "
                        f"not match the config {source}: {first}") from None
    return LoadedModel(config, source, model, variables, int(meta.get("step", -1)), workdir,
                       which)


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


def crop_matrix(center, side: float, crop_size: int) -> np.ndarray:
    """The 3 x 3 map from image pixels to crop pixels of the square of side `side` centred on
    `center` (the pipeline's crop_matrix: center -> ((N - 1) / 2, (N - 1) / 2), side -> N)."""
    a = crop_size / float(side)
    t = (crop_size - 1) / 2.0 - a * np.asarray(center, np.float64)
    return np.array([[a, 0.0, t[0]], [0.0, a, t[1]], [0.0, 0.0, 1.0]])


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
    return crop_matrix(center, side, n), center, side


def warp_to_crop(image: np.ndarray, S: np.ndarray, crop_size: int) -> np.ndarray:
    """Bilinear warp: crop pixel (row r, col c) samples the image at S^-1 (c, r) (pixel centres at
    integer coordinates, as the pipeline); 0 outside the image. image (H, W, C) float."""
    h, w = image.shape[:2]
    inv = np.linalg.inv(S)
    v, u = np.mgrid[0:crop_size, 0:crop_size].astype(np.float64)
    x = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
    y = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    out = np.zeros((crop_size, crop_size, image.shape[2]), np.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = (x0 + dx).astype(np.int64), (y0 + dy).astype(np.int64)
            weight = (fx if dx else 1.0 - fx) * (fy if dy else 1.0 - fy)
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            pixels = image[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
            out += (weight * inside)[..., None] * pixels
    return out.astype(np.float32)


def crop_to_image(points: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Crop pixel coordinates (..., 2) -> original image pixels (..., 2) by S^-1."""
    inv = np.linalg.inv(S)
    return points @ inv[:2, :2].T + inv[:2, 2]


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
    view = crop_matrix(corners.mean(0), OVERLAY_CONTEXT * (corners[1, 0] - corners[0, 0]), d)

    def to_view(points):
        return points @ view[:2, :2].T + view[:2, 2]

    kp = crop_to_image(np.asarray(pred["joints_2d"], np.float64), S)
    left = visualize.draw_skeleton(warp_to_crop(image, view, d), to_view(kp))
    canvas = Image.fromarray(to_uint8(left))
    (x0, y0), (x1, y1) = to_view(corners)
    ImageDraw.Draw(canvas).rectangle([x0, y0, x1, y1], outline=(255, 255, 0), width=2)
    left = np.asarray(canvas, np.float32) / 255.0
    return np.concatenate([left, row], axis=1)


def prediction_record(pred: dict, S, center, side, crop_size, image_path, image_hw, box,
                      loaded: LoadedModel) -> dict:
    """The JSON-able result of one image (see the module docstring)."""
    from hiu_jax import metrics

    kp_crop = np.asarray(pred["joints_2d"], np.float64)
    s, tx, ty = (float(c) for c in pred["cam"])
    return {
        "image": os.path.abspath(image_path),
        "image_size": {"width": int(image_hw[1]), "height": int(image_hw[0])},
        "box": None if box is None else [float(b) for b in box],
        "crop": {"center": [float(c) for c in center], "side": float(side),
                 "crop_size": int(crop_size), "image_to_crop": np.asarray(S).tolist()},
        "joint_names": list(metrics.JOINT_NAMES),
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


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


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
    parser = _ArgumentParser(
        prog="python -m hiu_jax.infer",
        description="HIU-JAX demo: 2D keypoints, 3D joints, MANO mesh and mask of hand images.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--checkpoint", required=True,
                        help="a work directory, its checkpoints/ or checkpoints/last|best")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--box", action="append", metavar="x0,y0,x1,y1",
                        help="hand box in image pixels, or 'full' (the whole image is the hand "
                             "crop, the default): once for every image, or once per image")
    parser.add_argument("--which", choices=WHICH,
                        help="checkpoints/last (default) or checkpoints/best")
    parser.add_argument("--config", help="config file (default: <workdir>/config.json)")
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
    workdir, which = resolve_checkpoint(args.checkpoint, args.which)
    if args.config and not os.path.isfile(args.config):
        raise UserError(f"config file not found: {args.config}")
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

    loaded = load_model(workdir, config_file=args.config, which=which,
                        log=lambda m: print(m, file=sys.stderr))
    n = int(loaded.config.crop_size)
    forward = forward_fn(loaded.model)
    faces = np.asarray(loaded.model.mano_model.faces)
    print(f"checkpoint {loaded.workdir} ({loaded.which}, step {loaded.step}), config "
          f"{loaded.config_source}, crop {n} px")
    for path, image, box, stem in tqdm(list(zip(args.images, images, boxes, stems)),
                                       desc="infer", unit="image", disable=args.no_progress,
                                       file=sys.stderr):
        S, center, side = crop_for(image.shape[:2], box, loaded.config)
        crop = warp_to_crop(image, S, n)
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
