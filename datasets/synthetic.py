"""The synthetic hand dataset: rendered hands written in the exact FreiHAND layout.

    python -m datasets.synthetic --out DIR --num N [--num-eval M] [--seed S] [--model MANO.pkl]

Each sample is a hand (the procedural model, or a user's MANO file) in a random plausible pose
and shape, under a random global rotation, distance, focal length, skin tone and light, rendered
at 224 x 224 over a procedural background with clutter, sometimes partly hidden by occluders.
The mask holds the visible hand's pixels, as FreiHAND's do. Files (same names, shapes, units and
conventions as FreiHAND v2, so `datasets/freihand` reads them with no special case):

  training/rgb/%08d.jpg, training/mask/%08d.jpg, training_{K,mano,xyz,verts,scale}.json
  evaluation/rgb/%08d.jpg, evaluation_{K,scale,xyz,verts,mano}.json
  evaluation/mask/%08d.jpg   (extra: FreiHAND's evaluation masks are not public)
  synthetic_info.json        (generator settings, for reproducibility)

MANO values follow FreiHAND: 48 pose values with the hand mean ADDED (flat_hand_mean=False),
10 betas, the uv of keypoint 9 and scale = f / z9, so xyz9 = [u - cx, v - cy, f] / scale.
Keypoints are the mesh-regressed joints plus the FreiHAND fingertip vertices, OpenPose order.

Every sample is drawn from its own generator seeded by (seed, split, index), so any one image can
be regenerated alone and the whole set is reproducible.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy.spatial.transform import Rotation
from tqdm import tqdm

import mano_jax
from hiu_jax import render
from mano_jax import procedural

IMAGE_SIZE = 224
SPLITS = {"training": 0, "evaluation": 1}
# Skin tones from light to dark (linear-ish RGB in [0, 1]).
SKIN_TONES = np.array([[0.96, 0.80, 0.69], [0.92, 0.72, 0.58], [0.85, 0.64, 0.50],
                       [0.76, 0.55, 0.40], [0.62, 0.43, 0.30], [0.45, 0.31, 0.22],
                       [0.33, 0.22, 0.16]])
INFO_NAME = "synthetic_info.json"
GENERATOR_VERSION = 2  # 2: FreiHAND-like viewpoints, palm/back/nail colours, exact pixel centres
VIEWPOINTS = ("freihand", "uniform")
# The "freihand" viewpoint distribution: the hand's long axis (wrist -> middle-finger base) lies
# near the image plane, at an in-plane angle ~ N(0, INPLANE_STD) from "fingers up" and an
# elevation out of the image plane ~ N(0, ELEVATION_STD) clipped at ELEVATION_MAX; the roll about
# that axis is uniform (palm, back and side views alike), as in FreiHAND's multi-camera captures.
INPLANE_STD = np.deg2rad(50.0)
ELEVATION_STD = np.deg2rad(25.0)
ELEVATION_MAX = np.deg2rad(70.0)


def hand_frame(model) -> np.ndarray:
    """(3, 3) orthonormal columns [u, n, u x n] in the model frame: u = the hand's long axis
    (wrist -> middle-finger base, MANO joints 0 -> 4 of the template), n = the palm's normal
    (perpendicular to u, in the plane of the index and pinky bases). Its sign is irrelevant to
    `sample_global_rotation`, whose roll about u is uniform."""
    joints = np.asarray(model.J_regressor, np.float64) @ np.asarray(model.v_template, np.float64)
    u = joints[4] - joints[0]
    u /= np.linalg.norm(u)
    n = np.cross(joints[1] - joints[0], joints[7] - joints[0])
    n -= u * (n @ u)
    n /= np.linalg.norm(n)
    return np.stack([u, n, np.cross(u, n)], 1)


def sample_global_rotation(rng, frame, viewpoints="freihand") -> np.ndarray:
    """A global rotation (3,) axis-angle, camera frame (OpenCV: x right, y down, z forward).

    "uniform": uniform on SO(3). "freihand": the long axis of `frame` (see `hand_frame`) is sent
    to d = (sin a cos e, -cos a cos e, sin e), a ~ N(0, INPLANE_STD) (0 = fingers up in the
    image), e ~ N(0, ELEVATION_STD) clipped at +-ELEVATION_MAX, and the roll about d is uniform.
    """
    if viewpoints == "uniform":
        q = rng.standard_normal(4)
        q /= np.linalg.norm(q)
        angle = 2 * np.arccos(np.clip(abs(q[0]), 0, 1))
        return q[1:] * np.sign(q[0]) / max(np.linalg.norm(q[1:]), 1e-12) * angle
    if viewpoints != "freihand":
        raise ValueError(f"viewpoints must be one of {VIEWPOINTS}, got {viewpoints!r}")
    a = rng.normal(0.0, INPLANE_STD)
    e = np.clip(rng.normal(0.0, ELEVATION_STD), -ELEVATION_MAX, ELEVATION_MAX)
    roll = rng.uniform(0.0, 2 * np.pi)
    d = np.array([np.sin(a) * np.cos(e), -np.cos(a) * np.cos(e), np.sin(e)])
    m0 = np.cross(d, [0.0, 0.0, 1.0])
    m0 /= np.linalg.norm(m0)
    m = m0 * np.cos(roll) + np.cross(d, m0) * np.sin(roll)
    target = np.stack([d, m, np.cross(d, m)], 1)
    return Rotation.from_matrix(target @ frame.T).as_rotvec()


def sample_hand_params(rng, model, *, procedural_poses, pca_components=12, pca_std=1.0,
                       viewpoints="freihand", frame=None):
    """One random hand: (pose (48,) with the mean ADDED convention, betas (10,)).

    Finger poses: for the procedural model, from the same plausible-pose distribution that
    defines its mean and PCA (`procedural.sample_poses`); for a user's MANO file, hands_mean +
    c @ hands_components[:pca_components] with c ~ N(0, pca_std^2) truncated at 2 sd. The global
    rotation follows `sample_global_rotation(viewpoints)` ("freihand" or "uniform"); frame: the
    model's `hand_frame` (computed when None). Returned in FreiHAND's convention: fingers minus
    hands_mean. procedural_poses: True for the procedural model (see `is_procedural`).
    """
    if procedural_poses:
        fingers = procedural.sample_poses(rng, 1)[0]
    else:
        c = np.clip(rng.standard_normal(pca_components), -2, 2) * pca_std
        fingers = np.asarray(model.hands_mean) + c @ np.asarray(model.hands_components[:pca_components])
    frame = hand_frame(model) if frame is None else frame
    global_rot = sample_global_rotation(rng, frame, viewpoints)
    pose = np.concatenate([global_rot, fingers - np.asarray(model.hands_mean)])
    betas = np.clip(rng.standard_normal(10), -2, 2)
    return pose, betas


@jax.jit
def _hands(model, pose, betas):
    out = mano_jax.forward(model, pose, betas, flat_hand_mean=False)
    return out.vertices, out.joints


def is_procedural(model) -> bool:
    """Whether `model` is the procedural hand (its joint axes are known to the pose sampler)."""
    ref = mano_jax.procedural_model(model.side)
    return model.v_template.shape == ref.v_template.shape and bool(
        jnp.all(model.v_template == ref.v_template))


def sample_camera(rng, joints, size=IMAGE_SIZE):
    """Intrinsics and a translation that puts the hand in view.

    joints: (21, 3) root-relative-ish hand joints (metres, before translation).
    Returns K (3, 3) and trans (3,) so that keypoint 9 sits at depth z ~ U(0.4, 0.8) m and
    projects within +-12 % of the image centre; the whole hand fits in most samples.
    """
    f = rng.uniform(450, 650) * size / 224
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    z = rng.uniform(0.4, 0.8)
    uv = size / 2 + rng.uniform(-0.12, 0.12, 2) * size
    target = np.array([(uv[0] - K[0, 2]) * z / f, (uv[1] - K[1, 2]) * z / f, z])
    return K, target - joints[9]


def background(rng, size=IMAGE_SIZE):
    """A procedural background: a colour gradient, low-frequency noise and random clutter."""
    c0, c1 = rng.uniform(0, 1, (2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size
    t = np.clip(0.5 + (xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle), 0, 1)[..., None]
    img = (1 - t) * c0 + t * c1
    noise = Image.fromarray((rng.uniform(0, 255, (6, 6, 3))).astype(np.uint8)).resize(
        (size, size), Image.BICUBIC)
    img = 0.75 * img + 0.25 * np.asarray(noise, np.float32) / 255
    canvas = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(3, 12)):
        _random_shape(draw, rng, size)
    if rng.uniform() < 0.5:
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.5)))
    return np.asarray(canvas, np.float32) / 255


def _random_shape(draw, rng, size, fill=None):
    colour = tuple(int(c) for c in (rng.uniform(0, 255, 3) if fill is None else fill))
    x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
    w, h = rng.uniform(0.05, 0.5, 2) * size
    kind = rng.integers(0, 4)
    if kind == 0:
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
    elif kind == 1:
        draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
    elif kind == 2:
        pts = rng.uniform(0, 1, (rng.integers(3, 7), 2)) * [w, h] + [x0, y0]
        draw.polygon([tuple(p) for p in pts], fill=colour)
    else:
        draw.line([x0, y0, x0 + w, y0 + h], fill=colour, width=int(rng.integers(2, 12)))


def occluders(rng, size=IMAGE_SIZE, probability=0.3):
    """An occluder layer: (rgba (H, W, 4) uint8) with 0-2 shapes, or None (no occlusion)."""
    if rng.uniform() >= probability:
        return None
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.integers(1, 3)):
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3)) + (255,)
        cx, cy = rng.uniform(0.25, 0.75, 2) * size  # near the hand, which is near the centre
        w, h = rng.uniform(0.08, 0.3, 2) * size
        if rng.uniform() < 0.5:
            draw.ellipse([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=colour)
        else:
            draw.rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=colour)
    return np.asarray(layer)


NAIL_RADIUS = 0.011  # metres from a fingertip vertex: the dorsal skin there is nail
PALM_TINT = np.array([1.10, 1.02, 1.00])  # palms are lighter and pinker than backs
NAIL_COLOUR = np.array([0.93, 0.78, 0.76])


def skin_layout(model, frame=None):
    """Where a hand's skin differs, from its template (works for any MANO-format model).

    Returns (palm (V,) in [-1, 1]: the vertex normal's component along the palm's outward
    normal, > 0 on the palm side; nail (V,) bool: dorsal vertices within NAIL_RADIUS of a
    fingertip vertex). The palm side is the one from which a right hand, fingers up, shows its
    thumb on the viewer's right: p = +-n with (u x p) . (thumb base - middle base) > 0."""
    frame = hand_frame(model) if frame is None else frame
    u, n = frame[:, 0], frame[:, 1]
    joints = np.asarray(model.J_regressor, np.float64) @ np.asarray(model.v_template, np.float64)
    thumb = joints[13] - joints[4]
    p = n if np.cross(u, n) @ thumb > 0 else -n
    if model.side == "left":
        p = -p
    verts = np.asarray(model.v_template, np.float64)
    normals = render.vertex_normals(jnp.asarray(verts[None], jnp.float32), model.faces)[0]
    palm = np.asarray(normals, np.float64) @ p
    tips = verts[list(mano_jax.TIP_PRESETS["freihand"][model.side])]
    near_tip = np.min(np.linalg.norm(verts[:, None] - tips[None], axis=-1), axis=1) < NAIL_RADIUS
    return palm, near_tip & (palm < -0.3)


def skin_colours(rng, num_vertices, layout=None):
    """Per-vertex colours: a random skin tone with gentle per-vertex variation; with a
    `skin_layout`, a lighter, pinker palm and pale nails."""
    a, b = rng.integers(0, len(SKIN_TONES), 2)
    tone = SKIN_TONES[a] + rng.uniform(0, 1) * (SKIN_TONES[b] - SKIN_TONES[a])
    tone = tone * rng.uniform(0.9, 1.1)
    variation = 1 + 0.05 * rng.standard_normal((num_vertices, 1))
    colours = np.broadcast_to(tone, (num_vertices, 3)) * variation
    if layout is not None:
        palm, nail = layout
        w = np.clip(palm, 0.0, 1.0)[:, None]
        colours = colours * (1 + w * (PALM_TINT - 1)) * (1 - 0.06 * np.clip(-palm, 0, 1))[:, None]
        colours[nail] = 0.35 * colours[nail] + 0.65 * NAIL_COLOUR
    return np.clip(colours, 0, 1)


def light(rng):
    """Direction (towards the light, camera frame, in front of the hand) and shading weights."""
    d = rng.standard_normal(3)
    d[2] = -abs(d[2]) - 0.3  # the light is on the camera's side of the hand
    d /= np.linalg.norm(d)
    return d, rng.uniform(0.2, 0.45), rng.uniform(0.45, 0.8), rng.uniform(0.0, 0.35)


def _render_batch(model, rngs, size, procedural_poses, viewpoints, frame, layout=None):
    """Samples and renders one batch. Returns the images, masks and labels.

    Labels and the renderer share FreiHAND's pixel convention (pixel (row r, col c) centred at
    (u, v) = (c, r)), so every label lies exactly on the pixel that shows its surface point."""
    params = [sample_hand_params(r, model, procedural_poses=procedural_poses,
                                 viewpoints=viewpoints, frame=frame) for r in rngs]
    pose = np.stack([p for p, _ in params])
    betas = np.stack([b for _, b in params])
    verts, joints = (np.asarray(x, np.float64) for x in _hands(model, pose, betas))
    cams = [sample_camera(r, j, size) for r, j in zip(rngs, joints)]
    K = np.stack([k for k, _ in cams])
    trans = np.stack([t for _, t in cams])
    verts_cam = verts + trans[:, None]
    joints_cam = joints + trans[:, None]
    lights = [light(r) for r in rngs]
    bg = np.stack([background(r, size) for r in rngs])
    colours = np.stack([skin_colours(r, verts.shape[1], layout) for r in rngs])
    out = render.render(
        jnp.asarray(verts_cam, jnp.float32), model.faces,
        jnp.asarray(K, jnp.float32), size, size,
        jnp.asarray(colours, jnp.float32),
        light_dir=jnp.asarray(np.stack([l[0] for l in lights]), jnp.float32),
        ambient=jnp.asarray([l[1] for l in lights], jnp.float32),
        diffuse=jnp.asarray([l[2] for l in lights], jnp.float32),
        specular=jnp.asarray([l[3] for l in lights], jnp.float32),
        background=jnp.asarray(bg, jnp.float32))
    rgb = np.array(out["rgb"])  # writable host copies
    mask = np.array(out["mask"]) > 0.5
    for i, r in enumerate(rngs):
        occ = occluders(r, size)
        if occ is not None:
            alpha = occ[..., 3:] / 255.0
            rgb[i] = (1 - alpha) * rgb[i] + alpha * occ[..., :3] / 255.0
            mask[i] &= occ[..., 3] == 0
        rgb[i] = np.clip(rgb[i] + r.normal(0, r.uniform(0, 0.02), rgb[i].shape), 0, 1)
    scale_bone = np.linalg.norm(joints[:, 10] - joints[:, 9], axis=-1)
    uv9 = np.einsum("bij,bj->bi", K, joints_cam[:, 9])
    uv9 = uv9[:, :2] / uv9[:, 2:]
    f = 0.5 * (K[:, 0, 0] + K[:, 1, 1])
    mano = np.concatenate([pose, betas, uv9, (f / joints_cam[:, 9, 2])[:, None]], 1)
    labels = dict(K=K, xyz=joints_cam, verts=verts_cam, mano=mano[:, None, :], scale=scale_bone)
    return (rgb * 255 + 0.5).astype(np.uint8), mask, labels


def _write_image(path, array, quality=92):
    Image.fromarray(array).save(path, quality=quality)


def generate(out_dir, num_train, num_eval=0, *, seed=0, model=None, model_path=None,
             image_size=IMAGE_SIZE, batch_size=32, workers=2, progress=True,
             viewpoints="freihand"):
    """Writes a synthetic dataset in the FreiHAND layout. Returns a dict of what was written.

    Args:
      out_dir: the dataset root (created). Existing files with the same names are overwritten.
      num_train, num_eval: sample counts (num_train >= 1, num_eval >= 0).
      seed: the dataset seed; sample i of a split is fully determined by (seed, split, i).
      model: a MANOModel (default: the procedural right hand). model_path is recorded in the
        info file when given.
      image_size: square image side in pixels (FreiHAND: 224).
      batch_size: hands rendered per jitted call.
      workers: threads encoding and writing JPEGs.
      viewpoints: "freihand" (hands seen as in FreiHAND, the default) or "uniform" (global
        rotations uniform on SO(3)); see `sample_global_rotation`.
    """
    if viewpoints not in VIEWPOINTS:
        raise ValueError(f"viewpoints must be one of {VIEWPOINTS}, got {viewpoints!r}")
    for name, value, low in (("num_train", num_train, 1), ("num_eval", num_eval, 0),
                             ("image_size", image_size, 16), ("batch_size", batch_size, 1),
                             ("workers", workers, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    model = mano_jax.procedural_model() if model is None else model
    if model.side != "right":
        raise ValueError("the FreiHAND layout holds right hands; pass a right-hand MANO model")
    procedural_poses = is_procedural(model)
    frame = hand_frame(model)
    layout = skin_layout(model, frame)
    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    total = num_train + num_eval
    bar = tqdm(total=total, desc="synthetic hands", unit="img", disable=not progress)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for split, count in (("training", num_train), ("evaluation", num_eval)):
            if count == 0:
                continue
            for sub in ("rgb", "mask"):
                os.makedirs(os.path.join(out_dir, split, sub), exist_ok=True)
            labels = {k: [] for k in ("K", "xyz", "verts", "mano", "scale")}
            pending = []
            for first in range(0, count, batch_size):
                idx = range(first, min(first + batch_size, count))
                rngs = [np.random.default_rng([seed, SPLITS[split], i]) for i in idx]
                rgb, mask, lab = _render_batch(model, rngs, image_size, procedural_poses,
                                              viewpoints, frame, layout)
                for j, i in enumerate(idx):
                    pending.append(pool.submit(
                        _write_image, os.path.join(out_dir, split, "rgb", f"{i:08d}.jpg"), rgb[j]))
                    pending.append(pool.submit(
                        _write_image, os.path.join(out_dir, split, "mask", f"{i:08d}.jpg"),
                        mask[j].astype(np.uint8) * 255))
                for k in labels:
                    labels[k].extend(np.asarray(lab[k]).tolist())
                bar.update(len(idx))
            for fut in pending:
                fut.result()
            for k, values in labels.items():
                _write_json(os.path.join(out_dir, f"{split}_{k}.json"), values)
    bar.close()
    seconds = time.perf_counter() - start
    info = dict(generator="datasets.synthetic", version=GENERATOR_VERSION, seed=seed,
                num_train=num_train, num_eval=num_eval, image_size=image_size, viewpoints=viewpoints,
                model=model_path or f"procedural {model.side} hand", seconds=round(seconds, 2),
                images_per_second=round(total / seconds, 1))
    _write_json(os.path.join(out_dir, INFO_NAME), info)
    return info


def _write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def dataset_name(num_train: int, num_eval: int, seed: int) -> str:
    """'n<num_train>_e<num_eval>_s<seed>_v<GENERATOR_VERSION>': what a generated set holds.

    train.py generates each set into `dataset_dir` and builds it as the synthetic_hands tfds
    config of this name, so sets of different sizes, seeds or generator versions never share a
    directory (nothing generated ever has to be deleted by hand).
    """
    for name, value, low in (("num_train", num_train, 1), ("num_eval", num_eval, 0),
                             ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return f"n{int(num_train)}_e{int(num_eval)}_s{int(seed)}_v{GENERATOR_VERSION}"


def dataset_dir(root, num_train: int, num_eval: int, seed: int) -> str:
    """<root>/<dataset_name(num_train, num_eval, seed)>: where train.py generates that set."""
    return os.path.join(os.fspath(root), dataset_name(num_train, num_eval, seed))


def read_info(directory):
    """The INFO_NAME dict of a generated set in `directory`, or None when there is none (not
    generated, or generation did not finish: the file is written last). Raises ValueError naming
    the file when it is not a JSON object."""
    path = os.path.join(os.fspath(directory), INFO_NAME)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable synthetic dataset info ({e})") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(info).__name__}")
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m datasets.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="dataset root to write (FreiHAND layout)")
    parser.add_argument("--num", type=int, required=True, help="number of training samples")
    parser.add_argument("--num-eval", type=int, default=None,
                        help="number of evaluation samples (default: 10%% of --num)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", help="a right-hand MANO file (.pkl/.npz); default: procedural")
    parser.add_argument("--size", type=int, default=IMAGE_SIZE, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=32, help="hands rendered per call")
    parser.add_argument("--viewpoints", choices=VIEWPOINTS, default="freihand",
                        help="global rotations as in FreiHAND (default) or uniform on SO(3)")
    args = parser.parse_args(argv)
    num_eval = max(1, args.num // 10) if args.num_eval is None else args.num_eval
    try:
        model = mano_jax.load_model(args.model) if args.model else None
        info = generate(args.out, args.num, num_eval, seed=args.seed, model=model,
                        model_path=args.model, image_size=args.size, batch_size=args.batch,
                        viewpoints=args.viewpoints)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"datasets.synthetic: {e}", file=sys.stderr)
        return 2
    print(f"wrote {info['num_train']} training and {info['num_eval']} evaluation samples to "
          f"{args.out} ({info['images_per_second']} images/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
