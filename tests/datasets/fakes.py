"""Tiny fake dataset trees in the REAL on-disk layouts (each writer states its own), for tests.

Plain functions, reusable by the builder and pipeline tests. Nothing here comes from a real
dataset: images are random noise over a flat colour that encodes the file id (`id_color`), and
annotations are random but valid (finite, K invertible, points in front of the camera).
Each writer returns the annotations it wrote, in the dataset's own conventions, so tests can
check the builders' conversions against them.
"""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
from PIL import Image


def id_color(file_id: int) -> np.ndarray:
    """The flat RGB colour (3,) uint8 of fake image `file_id`; distinct for ids 0..15."""
    return np.array([(30 + 17 * file_id) % 256, (200 - 13 * file_id) % 256, 90], np.uint8)


NOISE_AMPLITUDE = 3  # +- grey levels of uniform noise added to the flat colour


def write_image(path, file_id: int, hw, rng, fmt=None) -> None:
    """A noisy flat-colour RGB image (H, W) = hw at path (format from the extension)."""
    h, w = hw
    img = id_color(file_id)[None, None, :].astype(np.int16) + rng.integers(
        -NOISE_AMPLITUDE, NOISE_AMPLITUDE + 1, size=(h, w, 3)
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(path, format=fmt, quality=95)


def rect_mask(hw, rng) -> np.ndarray:
    """A random axis-aligned rectangle (H, W) bool covering at least 4x4 pixels."""
    h, w = hw
    y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
    y1, x1 = rng.integers(y0 + 4, h + 1), rng.integers(x0 + 4, w + 1)
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def jpeg_mask_agrees(got: np.ndarray, truth: np.ndarray) -> bool:
    """A mask decoded from a 0/255 JPEG and thresholded (got, (H, W) 0/1) matches truth (bool)
    everywhere except the pixels next to truth's edges, where JPEG ringing may flip it."""
    def grow(m, op):
        out = m.copy()
        for axis in (0, 1):
            for shift in (1, -1):
                out = op(out, np.roll(m, shift, axis))
        return out
    inner = grow(truth, np.logical_and)  # np.roll wraps: both sets only get smaller
    outer = ~grow(truth, np.logical_or)
    return bool(got[inner].all() and not got[outer].any() and set(np.unique(got)) <= {0, 1})


def random_K(image_size, rng) -> np.ndarray:
    """(3, 3) float64 pinhole K for a square image: f ~ 2 * size, principal point near centre."""
    f = image_size * rng.uniform(1.8, 2.2)
    c = image_size / 2 + rng.uniform(-2, 2, size=2)
    return np.array([[f, 0, c[0]], [0, f * rng.uniform(0.98, 1.02), c[1]], [0, 0, 1]])


def random_hand_xyz(rng, n=21, depth=0.6) -> np.ndarray:
    """(n, 3) float64 points, metres, OpenCV camera frame, ~8 cm spread around z = depth."""
    centre = np.array([rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03), depth])
    return centre + rng.uniform(-0.08, 0.08, size=(n, 3))


def project(K, xyz):
    p = xyz @ np.asarray(K).T
    return p[:, :2] / p[:, 2:3]


# -------------------------------------------------------------------------------------------
# FreiHAND


def _freihand_set(rng, n, image_size, with_gt):
    if n == 0:
        return {"K": np.zeros((0, 3, 3))}
    K = np.stack([random_K(image_size, rng) for _ in range(n)])
    out = {"K": K, "scale": rng.uniform(0.02, 0.04, size=n)}
    if with_gt:
        xyz = np.stack([random_hand_xyz(rng) for _ in range(n)])
        verts = np.stack([random_hand_xyz(rng, 778) for _ in range(n)])
        mano = rng.normal(0, 0.3, size=(n, 61))
        for i in range(n):  # [58:60] uv of keypoint 9, [60] scale with z9 = f / scale
            mano[i, 58:60] = project(K[i], xyz[i, 9:10])[0]
            mano[i, 60] = 0.5 * (K[i, 0, 0] + K[i, 1, 1]) / xyz[i, 9, 2]
        out.update(xyz=xyz, verts=verts, mano=mano)
    return out


def write_fake_freihand(
    root, n_train=3, n_eval=2, with_eval_gt=True, versions=1, image_size=32, seed=0,
    eval_masks=False,
) -> dict:
    """Writes a FreiHAND_pub_v2 tree with n_train records x `versions` image versions.

    Layout: training/rgb/%08d.jpg (file id idx + n_train * k), training/mask/%08d.jpg (n_train,
    grey JPEG 0/255), training_{K,mano,xyz,verts,scale}.json, evaluation/rgb/%08d.jpg,
    evaluation_{K,scale}.json and, with with_eval_gt, evaluation_{xyz,verts,mano}.json.
    mano entries are 1x61 nested lists as in the release. n_eval=0 writes no evaluation files;
    eval_masks=True adds evaluation/mask/%08d.jpg (what datasets/synthetic_generator/ also writes).
    Returns {'training': {...}, 'evaluation': {...}, 'masks': (n_train, S, S) bool,
    'eval_masks': (n_eval, S, S) bool or None} of arrays.
    """
    rng = np.random.default_rng(seed)
    hw = (image_size, image_size)
    sets = {
        "training": _freihand_set(rng, n_train, image_size, True),
        "evaluation": _freihand_set(rng, n_eval, image_size, with_eval_gt),
    }
    for set_name, ann in sets.items():
        if len(ann["K"]) == 0:
            continue
        for name, arr in ann.items():
            value = arr[:, None, :].tolist() if name == "mano" else arr.tolist()
            with open(os.path.join(root, f"{set_name}_{name}.json"), "w") as f:
                json.dump(value, f)
    for k in range(versions):
        for idx in range(n_train):
            fid = idx + n_train * k
            write_image(os.path.join(root, "training", "rgb", f"{fid:08d}.jpg"), fid, hw, rng)
    masks = _write_masks(root, "training", n_train, hw, rng)
    eval_mask_arr = _write_masks(root, "evaluation", n_eval, hw, rng) if eval_masks else None
    for idx in range(n_eval):
        write_image(os.path.join(root, "evaluation", "rgb", f"{idx:08d}.jpg"), idx, hw, rng)
    return dict(sets, masks=masks, eval_masks=eval_mask_arr)


def _write_masks(root, set_name, n, hw, rng):
    """n random rectangle masks as grey JPEGs (0/255) in <set_name>/mask/; returns them."""
    masks = np.stack([rect_mask(hw, rng) for _ in range(n)]) if n else np.zeros((0,) + hw, bool)
    os.makedirs(os.path.join(root, set_name, "mask"), exist_ok=True)
    for idx, m in enumerate(masks):
        Image.fromarray(m.astype(np.uint8) * 255, "L").save(
            os.path.join(root, set_name, "mask", f"{idx:08d}.jpg"), quality=95
        )
    return masks


# -------------------------------------------------------------------------------------------
# RHD (RHD_published_v2)

# Visible-keypoint counts (left, right) of the fake samples, cycled: both hands, right only
# (left below any threshold > 3), left only.
RHD_VISIBLE = ((21, 15), (3, 21), (12, 0))


def write_fake_rhd(root, n_train=3, n_eval=1, image_size=32, seed=0) -> dict:
    """Writes an RHD_published_v2 tree: {training,evaluation}/color/%05d.png (RGB),
    mask/%05d.png (uint8 labels: 0 background, 1 person, 2-17 left parts, 18-33 right parts),
    anno_{training,evaluation}.pickle = {sample_id: {'xyz' (42, 3) m, 'uv_vis' (42, 3), 'K'}}.

    Sample i has RHD_VISIBLE[i % 3] visible keypoints (left, right); sample ids are 0..n-1.
    Returns {'training': {sid: {..., 'labels': (S, S) uint8}}, 'evaluation': {...}}.
    """
    rng = np.random.default_rng(seed)
    hw = (image_size, image_size)
    out = {}
    for set_name, n in (("training", n_train), ("evaluation", n_eval)):
        anno, written = {}, {}
        for sid in range(n):
            K = random_K(image_size, rng)
            xyz = np.concatenate([random_hand_xyz(rng), random_hand_xyz(rng)])
            vis = np.zeros(42)
            n_left, n_right = RHD_VISIBLE[sid % len(RHD_VISIBLE)]
            vis[rng.permutation(21)[:n_left]] = 1
            vis[21 + rng.permutation(21)[:n_right]] = 1
            uv_vis = np.concatenate([project(K, xyz), vis[:, None]], axis=1)
            labels = np.where(rect_mask(hw, rng), 1, 0).astype(np.uint8)  # the "person"
            left, right = rect_mask(hw, rng), rect_mask(hw, rng) & ~rect_mask(hw, rng)
            labels[left] = rng.integers(2, 18, size=int(left.sum()))
            labels[right] = rng.integers(18, 34, size=int(right.sum()))  # overwrites overlap
            anno[sid] = {"xyz": xyz.astype(np.float32), "uv_vis": uv_vis.astype(np.float32),
                         "K": K.astype(np.float32)}
            write_image(os.path.join(root, set_name, "color", f"{sid:05d}.png"), sid, hw, rng)
            os.makedirs(os.path.join(root, set_name, "mask"), exist_ok=True)
            Image.fromarray(labels, "L").save(
                os.path.join(root, set_name, "mask", f"{sid:05d}.png"))
            written[sid] = dict(anno[sid], labels=labels)
        with open(os.path.join(root, set_name, f"anno_{set_name}.pickle"), "wb") as f:
            pickle.dump(anno, f, protocol=2)  # RHD's pickles are Python-2 era
        out[set_name] = written
    return out


# -------------------------------------------------------------------------------------------
# HO-3D v3


def _ho3d_frames(prefix, seqs, per_seq):
    return [f"{prefix}{s}/{i:04d}" for s in range(seqs) for i in range(per_seq)]


def write_fake_ho3d(root, train_seqs=2, eval_seqs=1, per_seq=2, image_hw=(48, 64), seed=0) -> dict:
    """Writes an HO3D_v3 tree: train.txt / evaluation.txt ("SEQ/id" lines),
    {train,evaluation}/SEQ/rgb/id.jpg and meta/id.pkl (protocol-2 pickles of dicts).

    Train meta: handJoints3D (21, 3) in OpenGL (z < 0) and MANO order + tips, handPose (48,),
    handTrans (3,), handBeta (10,), camMat (3, 3), objName, objRot. Evaluation meta: camMat,
    handBoundingBox [x0, y0, x1, y1], handJoints3D (3,) the root, objName.
    Returns {'train': {frame: meta}, 'evaluation': {frame: meta}}.
    """
    rng = np.random.default_rng(seed)
    h, w = image_hw
    out = {}
    for folder, list_name, seqs, prefix in (
        ("train", "train.txt", train_seqs, "TS"), ("evaluation", "evaluation.txt", eval_seqs, "ES")
    ):
        frames = _ho3d_frames(prefix, seqs, per_seq)
        with open(os.path.join(root, list_name), "w") as f:
            f.write("".join(fr + "\n" for fr in frames))
        metas = {}
        for n, frame in enumerate(frames):
            seq, fid = frame.split("/")
            K = random_K(w, rng)
            K[1, 2] = h / 2
            joints_gl = random_hand_xyz(rng) * np.array([1, -1, -1])  # OpenGL: z < 0
            meta = {"camMat": K, "objName": "003_cracker_box", "objRot": rng.normal(size=(3, 1))}
            if folder == "train":
                meta.update(handJoints3D=joints_gl, handPose=rng.normal(0, 0.4, size=48),
                            handTrans=rng.normal(0, 0.05, size=3), handBeta=rng.normal(size=10))
            else:
                x0, y0 = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
                meta.update(handJoints3D=joints_gl[0],
                            handBoundingBox=np.array([x0, y0, x0 + 10, y0 + 8]))
            for sub in ("rgb", "meta"):
                os.makedirs(os.path.join(root, folder, seq, sub), exist_ok=True)
            write_image(os.path.join(root, folder, seq, "rgb", fid + ".jpg"), n, image_hw, rng)
            with open(os.path.join(root, folder, seq, "meta", fid + ".pkl"), "wb") as f:
                pickle.dump(meta, f, protocol=2)
            metas[frame] = meta
        out[folder] = metas
    return out


# -------------------------------------------------------------------------------------------
# HIU-Data (layout defined by datasets/hiu_data)

# (hand_type, hand_type_valid) of the fake samples, cycled: right only, both, left only with
# hand_type marked unreliable (presence then follows the keypoints).
HIU_HANDS = (([1, 0], [1, 1]), ([1, 1], [1, 1]), ([0, 1], [0, 0]))


def hiu_hand_keypoints(rng, hw) -> np.ndarray:
    """(21, 2) random pixel keypoints well inside an (H, W) image, spread >= 4 px."""
    h, w = hw
    return np.stack([rng.uniform(1, w - 1, 21), rng.uniform(1, h - 1, 21)], axis=1)


def write_fake_hiu(root, n_train=3, n_test=1, image_hw=(40, 48), seed=0) -> dict:
    """Writes HIU-Data in the builder's layout: {train,test}/<sub>/<id>.json + <id>.jpg +
    <id>_mask.png (0/255). JSON: pts2d_2hand (42, 2) pixels (rows 0-20 right, 21-41 left; an
    absent hand is all zeros), hand_type, hand_type_valid (cycled from HIU_HANDS),
    pts3d_w_2hand (42, 3) arbitrary. Returns {split: {sample_id: (json dict, mask bool)}}.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        out[split] = {}
        for i in range(n):
            hand_type, valid = HIU_HANDS[i % len(HIU_HANDS)]
            pts = np.zeros((42, 2))
            for k, present in enumerate(hand_type):
                if present:
                    pts[21 * k: 21 * (k + 1)] = hiu_hand_keypoints(rng, image_hw)
            ann = {"pts2d_2hand": pts.tolist(), "hand_type": hand_type,
                   "hand_type_valid": valid, "pts3d_w_2hand": rng.normal(size=(42, 3)).tolist()}
            sample_id = f"s{i % 2}/{i:06d}"
            stem = os.path.join(root, split, *sample_id.split("/"))
            os.makedirs(os.path.dirname(stem), exist_ok=True)
            with open(stem + ".json", "w") as f:
                json.dump(ann, f)
            write_image(stem + ".jpg", i, image_hw, rng)
            mask = rect_mask(image_hw, rng)
            Image.fromarray(mask.astype(np.uint8) * 255, "L").save(stem + "_mask.png")
            out[split][sample_id] = (ann, mask)
    return out


# -------------------------------------------------------------------------------------------
# Building and reading (TFDS Python API; the tfds CLI needs apache-beam)


def build(builder_cls, manual_dir, data_dir, config=None, **builder_kwargs):
    """Builds builder_cls from manual_dir into data_dir as tfrecord; returns the builder."""
    import tensorflow_datasets as tfds

    kwargs = dict(data_dir=os.fspath(data_dir), file_format="tfrecord", **builder_kwargs)
    if config is not None:
        kwargs["config"] = config
    builder = builder_cls(**kwargs)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir))
    )
    return builder


def read_split(builder, split) -> list:
    """Every example of a split as a dict of numpy values (Text -> bytes), in stored order."""
    import tensorflow_datasets as tfds

    return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def canonical_examples(n=4, hand_side=0, seed=0, image_hw=(96, 128), has_2d=True, has_3d=True,
                       blob_joint=None, disc_radius=None):
    """n canonical examples (decoded uint8 images) with a hand of 21 random joints at ~0.5 m,
    K with fx != fy, mano labels, optionally a bright blob at joint `blob_joint`'s 2D and a
    disc mask of `disc_radius` px centred in the keypoint box. Returns a dict of stacked arrays."""
    rng = np.random.default_rng(seed)
    h, w = image_hw
    K = np.array([[150.0, 0.0, w / 2 - 3], [0.0, 130.0, h / 2 + 2], [0.0, 0.0, 1.0]])
    exs = []
    for i in range(n):
        xyz = np.array([0.0, 0.0, 0.5]) + rng.uniform(-0.05, 0.05, (21, 3))
        uv = project(K, xyz)
        yy, xx = np.mgrid[0:h, 0:w]
        image = np.full((h, w, 3), 40, np.uint8)
        if blob_joint is not None:
            if blob_joint == "central":  # the joint nearest the keypoint box centre
                centre = 0.5 * (uv.min(0) + uv.max(0))
                joint = int(np.argmin(np.linalg.norm(uv - centre, axis=1)))
            else:
                joint = blob_joint
            u, v = uv[joint]
            blob = np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * 1.5**2))
            image = np.clip(40 + 215 * blob, 0, 255).astype(np.uint8)[..., None].repeat(3, -1)
        mask = np.zeros((h, w, 1), np.uint8)
        if disc_radius is not None:
            c = 0.5 * (uv.min(0) + uv.max(0))
            mask[..., 0] = ((xx - c[0]) ** 2 + (yy - c[1]) ** 2 <= disc_radius**2)
        ex = {
            "image": image, "mask": mask, "K": K, "keypoints_2d": uv,
            "keypoint_visibility": np.ones(21), "keypoints_3d": xyz,
            "vertices": np.array([0.0, 0.0, 0.5]) + rng.uniform(-0.05, 0.05, (778, 3)),
            "mano_pose": rng.normal(0, 0.3, 48), "mano_betas": rng.normal(0, 1, 10),
            "mano_flat_hand_mean": False, "scale": 0.03, "bbox": np.zeros(4),
            "root_3d": np.zeros(3), "hand_side": hand_side,
            "has_intrinsics": True, "has_mask": disc_radius is not None, "has_2d": has_2d,
            "has_3d": has_3d, "has_mesh": has_3d, "has_mano": True, "has_mano_trans": False,
            "has_scale": True, "has_bbox": False, "has_root_3d": False,
            "sample_id": f"canonical/{seed}/{i}",
            "blob_joint": joint if blob_joint is not None else -1,  # not read by the pipeline
        }
        exs.append(ex)
    out = {k: np.stack([e[k] for e in exs]) for k in exs[0]}  # sample_id: bytes
    for k, v in out.items():
        if v.dtype == np.float64:
            out[k] = v.astype(np.float32)
    out["hand_side"] = out["hand_side"].astype(np.int64)
    return out
