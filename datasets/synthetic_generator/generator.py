"""Batching, rendering, writing: the synthetic dataset in the exact FreiHAND layout.

Per sample (all drawn from the sample's own generator seeded by (seed, split, index), so any
image can be regenerated alone and the set is reproducible bit for bit): a hand (`hands`) in a
FreiHAND-like pose and viewpoint, placed wholly in the image by FreiHAND-like intrinsics
(`placement`), a forearm or sleeve, skin with palm/back, nails, creases and texture
(`appearance`), key/fill/ambient light with highlights (`skin_lighting`), a photographic or
procedural background (`backgrounds`), sometimes occluders (`occluders`), sensor noise and JPEG.
The mask holds the visible MANO hand's pixels (not the forearm, not occluded pixels).
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import sys
import time

import numpy as np
import orjson
from PIL import Image
from tqdm import tqdm

import mano_jax
from hiu_jax.geometry import projection

from . import appearance, backgrounds, hands, occluders, placement, skin_lighting
from .rasterizer import rasterize_hands

IMAGE_SIZE = 224
SPLITS = {"training": 0, "evaluation": 1}
INFO_NAME = "synthetic_info.json"
# 3: skin detail (nails, creases, texture, palm/back), forearm/sleeve, key/fill/ambient light,
# photographic + procedural backgrounds, textured occluders, whole hand in frame.
GENERATOR_VERSION = 3
VIEWPOINTS = placement.VIEWPOINTS
LABELS = ("K", "xyz", "verts", "mano", "scale")  # written as <split>_<name>.json
SLEEVE_PROBABILITY = 0.5
NOISE_SEED = 7
# CPU seconds spent per stage while STAGE_TIMING is on (bench/synthetic_bench.py turns it on
# and prints them). Off by default: the process CPU clock costs ~0.1-0.4 ms a reading here.
STAGE_TIMING = False
STAGE_SECONDS = collections.defaultdict(float)


class _stage:
    """with _stage("name"): adds the block's process CPU time to STAGE_SECONDS["name"] when
    STAGE_TIMING is on."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.t0 = time.process_time() if STAGE_TIMING else 0.0

    def __exit__(self, *exc):
        if STAGE_TIMING:
            STAGE_SECONDS[self.name] += time.process_time() - self.t0


class Scene:
    """What every sample of a run shares: the model, its surface layout, the forearm topology,
    the background bank and the noise textures (all deterministic). forearm=False leaves the
    wrist open and draws both sides of every face (tests compare with the bare mesh)."""

    def __init__(self, model, size, use_photos=True, forearm=True):
        self.model = model
        self.size = size
        self.procedural_poses = hands.is_procedural(model)
        self.frame = placement.hand_frame(model)
        self.layout = appearance.surface_layout(model, self.frame)
        self.faces = np.asarray(model.faces, np.int64)
        self.num_vertices = int(model.v_template.shape[0])
        self.ring = hands.wrist_ring(self.faces) if forearm else np.zeros(0, np.int64)
        num_arm = len(self.ring) * len(hands.FOREARM_RINGS) + 1 if len(self.ring) else 0
        self.static = _static_table(self.layout, num_arm, len(self.ring))
        verts = np.asarray(model.v_template, np.float64)
        tri = verts[self.faces]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        # Back-face culling needs a closed surface: the hand closed by the capped forearm. +1
        # when counter-clockwise faces face outwards (MANO's).
        out = np.mean(np.einsum("fi,fi->f", n, tri.mean(1) - verts.mean(0)) > 0) > 0.5
        self.outward = (1.0 if out else -1.0) if len(self.ring) else None
        self.photos = len(backgrounds.bank(use_photos)) - len(backgrounds.PROCEDURAL)
        self.bank = backgrounds.variants(size, use_photos)  # numpy: occluder textures
        self.bank_images = backgrounds.variant_images(size, use_photos)  # PIL: backgrounds
        rng = np.random.default_rng(NOISE_SEED)
        self.grain = backgrounds.fractal_noise(rng, 256, 3, 64)
        # sensor noise in 1/16 of an 8-bit level (int16 arithmetic is ~3x cheaper than float)
        self.noise = np.round(16 * rng.standard_normal((2 * size, 2 * size, 3))).astype(np.int16)


def _static_table(layout, num_arm, ring_size):
    """(V + num_arm, STATIC_CHANNELS) static channels of hand and forearm vertices; forearm
    vertices have no palm, crease or nail, and channel 7 = 1 beyond the first forearm ring
    (where a sleeve may start)."""
    arm = np.zeros((num_arm, appearance.STATIC_CHANNELS), np.float32)
    arm[:, 1] = appearance.CREASE_REACH
    arm[:, 4] = -1.0  # outside the palm lines
    arm[:, 6] = 9.0  # no nail
    arm[ring_size:, 7] = 1.0
    return np.concatenate([layout.static, arm]).astype(np.float32)


def _render_batch(scene: Scene, rngs, viewpoints):
    """Samples and renders one batch. Returns (rgb (B, S, S, 3) uint8, mask (B, S, S) bool,
    labels dict of (B, ...) arrays). See `_geometry` and `_picture`."""
    return _picture(scene, rngs, _geometry(scene, rngs, viewpoints))


def _geometry(scene: Scene, rngs, viewpoints) -> dict:
    """Hands, cameras, forearms and the rasterised fragments of one batch (the first draws of
    each sample's generator; `_picture` makes the rest, so the two may run for different
    batches at once).

    Labels use FreiHAND's pixel convention (pixel (row r, col c) centred at (u, v) = (c, r));
    `rasterize_hands` renders in it, so every label lies exactly on the pixel that shows its
    surface point."""
    model, size, V = scene.model, scene.size, scene.num_vertices
    with _stage("sample + MANO"):
        params = [hands.sample_hand_params(r, model, procedural_poses=scene.procedural_poses,
                                           viewpoints=viewpoints, frame=scene.frame) for r in rngs]
        pose = np.stack([p for p, _ in params])
        betas = np.stack([b for _, b in params])
        verts, joints = (np.asarray(x, np.float64) for x in hands.posed_hands(model, pose, betas))
    with _stage("camera placement"):
        cams = [placement.sample_camera(r, v, j, size) for r, v, j in zip(rngs, verts, joints)]
        K = np.stack([k for k, _ in cams])
        trans = np.stack([t for _, t in cams])
        verts_cam = verts + trans[:, None]
        joints_cam = joints + trans[:, None]
        if len(scene.ring):
            arm, arm_faces = hands.forearm_mesh(verts_cam, joints_cam, scene.ring, V)
            all_verts = np.concatenate([verts_cam, arm], 1)
            all_faces = np.concatenate([scene.faces, arm_faces])
        else:
            all_verts, all_faces = verts_cam, scene.faces
    with _stage("rasterise (JAX)"):
        face_index, bary, normals = rasterize_hands(all_verts, all_faces, K, size, scene.outward)
    return dict(pose=pose, betas=betas, joints=joints, K=K, verts_cam=verts_cam,
                joints_cam=joints_cam, all_verts=all_verts, all_faces=all_faces,
                face_index=face_index, bary=bary, normals=normals)


def _picture(scene: Scene, rngs, geo: dict):
    """Skin, light, background, occluders and noise of one batch from its `_geometry`.
    Returns what `_render_batch` does."""
    size, V, B = scene.size, scene.num_vertices, len(rngs)
    pose, betas, joints, K = geo["pose"], geo["betas"], geo["joints"], geo["K"]
    verts_cam, joints_cam, all_verts = geo["verts_cam"], geo["joints_cam"], geo["all_verts"]
    all_faces, face_index, bary = geo["all_faces"], geo["face_index"], geo["bary"]
    Vt = all_verts.shape[1]
    with _stage("per-sample looks"):
        # Drawn in a fixed order from each sample's generator.
        dynamic = np.empty((B, Vt, 7), np.float32)  # albedo, normal, ambient occlusion
        dynamic[:, :, 3:6] = geo["normals"]
        dynamic[:, :, 6] = skin_lighting.occlusion(all_verts, geo["normals"], joints_cam)
        jitter = np.empty((B, 3), np.float32)
        depth = np.empty((B,), np.float32)
        sleeve = np.zeros((B, 3), np.float32)  # sleeve colour, or 0 for a bare forearm
        lights = []
        for i, r in enumerate(rngs):
            tone, jitter[i], depth[i] = appearance.sample_skin(r)
            dynamic[i, :V, 0:3] = appearance.vertex_albedo(r, tone, scene.layout)
            dynamic[i, V:, 0:3] = tone * np.array([0.97, 0.95, 0.95]) * r.uniform(0.9, 1.0)
            if r.uniform() < SLEEVE_PROBABILITY:
                sleeve[i] = r.uniform(0.05, 0.95, 3)
            lights.append(skin_lighting.sample_lights(r))
        static = scene.static
        assert static.shape[0] == Vt, (static.shape, Vt)
    with _stage("interpolate"):
        flat = face_index.reshape(-1)
        pix = np.flatnonzero(flat >= 0)
        image = pix // (size * size)
        bounds = np.searchsorted(image, np.arange(B + 1))
        w = np.ascontiguousarray(np.take(bary.reshape(-1, 3), pix, axis=0).T)  # (3, N)
        corner = np.take(all_faces.astype(np.int32), flat[pix], axis=0)
        corner += (image * Vt).astype(np.int32)[:, None]
        corner = np.ascontiguousarray(corner.T)  # (3, N)
        # Channel-major (C, N) planes: numpy vectorises along N, not along a last axis of 3.
        table = np.concatenate([dynamic, np.broadcast_to(static, (B,) + static.shape)], -1)
        table = np.ascontiguousarray(table.reshape(B * Vt, -1).T)
        px = np.take(table, corner[0], axis=1)
        px *= w[0]
        for k in (1, 2):
            term = np.take(table, corner[k], axis=1)
            term *= w[k]
            px += term
    out = np.empty((B, size, size, 3), np.uint8)
    mask = (face_index >= 0) & (face_index < len(scene.faces))
    uv = projection.project_pinhole(K, joints_cam, xp=np)
    for i, r in enumerate(rngs):
        sl = slice(bounds[i], bounds[i + 1])
        local = pix[sl] - i * size * size
        with _stage("skin + shading"):
            st = px[7:, sl]
            colour, crease, nail = appearance.pixel_albedo(px[0:3, sl], st, scene.grain,
                                                            jitter[i], depth[i])
            gloss = (1 - 0.6 * crease) * (1 + 2.0 * nail)
            if sleeve[i, 0] > 0:
                on = st[7] > 0.5
                grain = scene.grain[(local[on] // size) % 256, local[on] % 256]
                colour[:, on] = sleeve[i][:, None] * (1 + 0.08 * grain)
                gloss[on] = 0.15
            ray = np.stack([(local % size - K[i, 0, 2]) / K[i, 0, 0],
                            (local // size - K[i, 1, 2]) / K[i, 1, 1],
                            np.ones(len(local))]).astype(np.float32)
            shaded = skin_lighting.shade(colour, px[3:6, sl], ray, lights[i], gloss, px[6, sl])
        with _stage("backgrounds"):
            canvas = backgrounds.background(r, scene.bank_images, size)
            canvas.reshape(-1, 3)[local] = (np.clip(shaded, 0, 1) * 255 + 0.5).astype(np.uint8).T
        with _stage("occluders + noise + blur"):
            occ = occluders.occluder(r, scene.bank, uv[i], size)
            if occ is not None:
                canvas[occ[1]] = occ[0][occ[1]]
                mask[i] &= ~occ[1]
            sigma = int(r.integers(-2, 7))  # 8-bit levels; none for a quarter of the images
            soft = r.uniform() < 0.5  # camera softness: hard render edges are not photographic
            if sigma > 0 or soft:
                img = canvas.astype(np.int16)
                if soft:
                    img = soften(img)
                if sigma > 0:
                    o = r.integers(0, size, 2)
                    img += (sigma * scene.noise[o[0]:o[0] + size, o[1]:o[1] + size] + 8) >> 4
                canvas = np.clip(img, 0, 255).astype(np.uint8)
            out[i] = canvas
    scale_bone = np.linalg.norm(joints[:, 10] - joints[:, 9], axis=-1)
    f = 0.5 * (K[:, 0, 0] + K[:, 1, 1])
    mano = np.concatenate([pose, betas, uv[:, 9], (f / joints_cam[:, 9, 2])[:, None]], 1)
    labels = dict(K=K, xyz=joints_cam, verts=verts_cam, mano=mano[:, None, :], scale=scale_bone)
    return out, mask, labels


def soften(img):
    """(H, W, C) int16 -> the same blurred by the kernel [[0, 1, 0], [1, 4, 1], [0, 1, 0]] / 8
    (edges repeated), rounded: a slight lens softness."""
    p = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    total = 4 * img + p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]
    return (total + 4) >> 3


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
        rotations uniform on SO(3)); see `placement.sample_global_rotation`.
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
    scene = Scene(model, image_size)
    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    total = num_train + num_eval
    bar = tqdm(total=total, desc="synthetic hands", unit="img", disable=not progress)
    batches = [(split, range(first, min(first + batch_size, count)))
               for split, count in (("training", num_train), ("evaluation", num_eval))
               for first in range(0, count, batch_size)]
    labels = {split: {k: [] for k in LABELS} for split in SPLITS}
    pending = []

    def rngs_of(split, idx):
        return [np.random.default_rng([seed, SPLITS[split], i]) for i in idx]

    # The next batch's geometry (JAX, which releases the GIL) runs beside this batch's picture.
    with concurrent.futures.ThreadPoolExecutor(workers) as pool, \
            concurrent.futures.ThreadPoolExecutor(1) as ahead:
        rngs = rngs_of(*batches[0])
        future = ahead.submit(_geometry, scene, rngs, viewpoints)
        for k, (split, idx) in enumerate(batches):
            geo = future.result()
            if k + 1 < len(batches):
                next_rngs = rngs_of(*batches[k + 1])
                future = ahead.submit(_geometry, scene, next_rngs, viewpoints)
            rgb, mask, lab = _picture(scene, rngs, geo)
            for sub in ("rgb", "mask"):
                os.makedirs(os.path.join(out_dir, split, sub), exist_ok=True)
            for j, i in enumerate(idx):
                pending.append(pool.submit(
                    _write_image, os.path.join(out_dir, split, "rgb", f"{i:08d}.jpg"), rgb[j]))
                pending.append(pool.submit(
                    _write_image, os.path.join(out_dir, split, "mask", f"{i:08d}.jpg"),
                    mask[j].astype(np.uint8) * 255))
            for name in LABELS:
                labels[split][name].append(lab[name])
            bar.update(len(idx))
            if k + 1 < len(batches):
                rngs = next_rngs
        for fut in pending:
            fut.result()
    for split, values in labels.items():
        if values["K"]:
            for name, value in values.items():
                # 1e-8 (m, rad, px): far below float32 resolution, and short decimal strings
                _write_json(os.path.join(out_dir, f"{split}_{name}.json"),
                            np.round(np.concatenate(value), 8))
    bar.close()
    seconds = time.perf_counter() - start
    info = dict(generator="datasets.synthetic_generator", version=GENERATOR_VERSION, seed=seed,
                num_train=num_train, num_eval=num_eval, image_size=image_size,
                viewpoints=viewpoints,
                model=model_path or f"procedural {model.side} hand",
                backgrounds=f"{scene.photos} photographs (scikit-image data) + "
                            f"{len(backgrounds.PROCEDURAL)} procedural textures",
                seconds=round(seconds, 2),
                images_per_second=round(total / seconds, 1))
    _write_json(os.path.join(out_dir, INFO_NAME), info)
    return info


def json_bytes(value) -> bytes:
    """`value` (JSON types or numpy arrays) as JSON; orjson: ~4x faster than json here."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def _write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(json_bytes(value))
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
    parser = argparse.ArgumentParser(prog="python -m datasets.synthetic_generator",
                                     description="Writes a synthetic hand dataset in the "
                                                 "FreiHAND layout.")
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
        print(f"datasets.synthetic_generator: {e}", file=sys.stderr)
        return 2
    print(f"wrote {info['num_train']} training and {info['num_eval']} evaluation samples to "
          f"{args.out} ({info['images_per_second']} images/s)")
    return 0

