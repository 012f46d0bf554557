"""TFDS builder for HO-3D v3 (hand-object sequences, right hand only).

Splits:
- 'train': the frames listed in train.txt ("SEQ/id"), train/SEQ/rgb/id.jpg + train/SEQ/meta/id.pkl.
  Labels: K (camMat), keypoints_3d, keypoints_2d = project(K, keypoints_3d) with visibility 1,
  MANO pose/betas/trans with mano_flat_hand_mean=True (handPose is the full pose, no mean added).
  No vertices (the meta files hold none; has_mesh False).
- 'test': the frames listed in evaluation.txt, evaluation/SEQ/{rgb,meta}. Labels: K, bbox
  (handBoundingBox, read as [x_min, y_min, x_max, y_max] pixels) and root_3d (the wrist, from
  the root-only handJoints3D). Everything else is flagged absent.
No masks: HO-3D's seg/ maps are not decoded (their colour coding is not established here), so
has_mask is False everywhere.

Conversions (HO-3D stores OpenGL camera coordinates: x right, y up, hand at z < 0):
- points: p_cv = C p_gl with C = diag(1, -1, -1) (negate y and z);
- joint order: MANO order + tips -> FreiHAND order with MANO_TO_FREIHAND;
- global rotation: R_cv = C R_gl (the first 3 axis-angle values); finger values unchanged;
- translation: MANO rotates about its shaped root J0, verts_gl = R_gl (V - J0) + J0 + t_gl, and
  the wrist is wrist_gl = J0 + t_gl. Requiring verts_cv = C verts_gl = R_cv (V - J0) + J0 + t_cv
  gives t_cv = C J0 + C t_gl - J0 = t_gl + (C - I) wrist_gl, computable without the MANO file.
Meta pickles are Python-2 pickles, read by mano_jax.safe_pickle (no code execution).
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds
from scipy.spatial.transform import Rotation

from datasets import builder_utils, schema
from datasets.schema import BadRecordError
from mano_jax import safe_pickle

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])
# FreiHAND joint j = HO-3D joint MANO_TO_FREIHAND[j] (HO-3D order: MANO joints then 5 tips).
MANO_TO_FREIHAND = np.array(
    [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20], dtype=np.int64
)
SETS = {"train": ("train", "train.txt"), "test": ("evaluation", "evaluation.txt")}
IMAGE_EXT = ".jpg"  # v3 (v2 used .png)


def gl_to_cv_points(xyz_gl: np.ndarray) -> np.ndarray:
    """(..., 3) OpenGL camera points -> OpenCV camera points (negate y and z)."""
    return np.asarray(xyz_gl) @ OPENGL_TO_OPENCV.T


def gl_to_cv_global_rotation(axis_angle_gl: np.ndarray) -> np.ndarray:
    """(3,) axis-angle of R_gl -> (3,) axis-angle of R_cv = C @ R_gl (C = diag(1, -1, -1))."""
    R_gl = Rotation.from_rotvec(np.asarray(axis_angle_gl, np.float64)).as_matrix()
    return Rotation.from_matrix(OPENGL_TO_OPENCV @ R_gl).as_rotvec()


def gl_to_cv_trans(trans_gl: np.ndarray, wrist_gl: np.ndarray) -> np.ndarray:
    """MANO translation in OpenGL -> OpenCV: t_gl + (C - I) wrist_gl (see module docstring)."""
    return np.asarray(trans_gl, np.float64) + (OPENGL_TO_OPENCV - np.eye(3)) @ np.asarray(
        wrist_gl, np.float64
    )


class Builder(builder_utils.HandBuilder):
    """HO-3D v3 in the canonical hand schema (datasets/schema.py)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: OpenCV axes, FreiHAND joint order."}
    HOMEPAGE = "https://github.com/shreyashampali/ho3d"
    IMAGE_FORMAT = "jpeg"
    DESCRIPTION = __doc__
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Register and download HO-3D v3 (HO3D_v3.zip) via https://github.com/shreyashampali/ho3d
(link to the dataset page in its README) and extract it. Pass the extracted folder as
manual_dir, i.e. manual_dir must contain directly
  train.txt, evaluation.txt                       (lines "SEQ/id")
  train/SEQ/rgb/id.jpg, train/SEQ/meta/id.pkl     for every line of train.txt
  evaluation/SEQ/rgb/id.jpg, evaluation/SEQ/meta/id.pkl for every line of evaluation.txt
(depth/ and seg/ folders are not read).
Python: Builder(data_dir=D).download_and_prepare(
  download_config=tfds.download.DownloadConfig(manual_dir='/path/to/HO3D_v3'))
"""

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        frames = {}
        for split, (folder, list_name) in SETS.items():
            list_path = os.path.join(root, list_name)
            builder_utils.require_files([list_path], self.MANUAL_DOWNLOAD_INSTRUCTIONS)
            frames[split] = _read_list(list_path)
            builder_utils.require_files(
                [p for f in frames[split] for p in _paths(root, folder, f)],
                self.MANUAL_DOWNLOAD_INSTRUCTIONS,
            )
        return {
            split: self._generate_examples(split, root, SETS[split][0], frames[split])
            for split in SETS
        }

    def _generate_examples(self, split, root, folder, frames):
        def convert(frame):
            image_path, meta_path = _paths(root, folder, frame)
            where = schema.record_where(meta_path, frame)
            try:
                meta = safe_pickle.load(meta_path)
            except Exception as e:  # corrupt or disallowed pickle: a bad record
                raise BadRecordError(where, f"cannot read meta pickle: {e}") from None
            if not isinstance(meta, dict):
                raise BadRecordError(where, f"meta is a {type(meta).__name__}, expected a dict")
            labels = _train_labels(meta, where) if split == "train" else _eval_labels(meta, where)
            image, hw = builder_utils.read_image(image_path, schema.record_where(image_path, frame))
            return [(frame, schema.make_example(
                image=image, image_hw=hw, sample_id=frame, source=self.name,
                where=f"{image_path} ({where})", hand_side="right", **labels,
            ))]

        return self._convert_all(split, frames, convert)


def _read_list(path):
    """train.txt / evaluation.txt -> ['SEQ/id', ...]; a malformed line raises ValueError."""
    frames = []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("/")
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"{path}:{line_no}: expected 'SEQ/id', got {line!r}")
            frames.append(line)
    if len(set(frames)) != len(frames):
        raise ValueError(f"{path}: duplicate frame entries")
    return frames


def _paths(root, folder, frame):
    seq, fid = frame.split("/")
    return (
        os.path.join(root, folder, seq, "rgb", fid + IMAGE_EXT),
        os.path.join(root, folder, seq, "meta", fid + ".pkl"),
    )


def _get(meta, key, shape, where):
    if key not in meta or meta[key] is None:
        raise BadRecordError(where, f"meta has no {key!r} (missing or None)")
    arr = np.asarray(meta[key], dtype=np.float64) if builder_utils.is_numeric(meta[key]) else None
    if arr is None or arr.size != int(np.prod(shape)):
        raise BadRecordError(where, f"meta {key!r} is not {shape} numbers")
    return schema.check_finite(key, arr.reshape(shape), where)


def _train_labels(meta, where):
    K = schema.check_K(_get(meta, "camMat", (3, 3), where), where)
    joints_gl = _get(meta, "handJoints3D", (schema.NUM_KEYPOINTS, 3), where)
    pose = _get(meta, "handPose", (48,), where).copy()
    trans_gl = _get(meta, "handTrans", (3,), where)
    betas = _get(meta, "handBeta", (10,), where)
    xyz = gl_to_cv_points(joints_gl)[MANO_TO_FREIHAND]
    schema.check_in_front("handJoints3D (OpenCV)", xyz, where)
    trans = gl_to_cv_trans(trans_gl, joints_gl[0])
    pose[:3] = gl_to_cv_global_rotation(pose[:3])
    return dict(
        K=K, keypoints_3d=xyz, keypoints_2d=schema.project(K, xyz), mano_pose=pose,
        mano_betas=betas, mano_flat_hand_mean=True, mano_trans=trans,
    )


def _eval_labels(meta, where):
    K = schema.check_K(_get(meta, "camMat", (3, 3), where), where)
    root = gl_to_cv_points(_get(meta, "handJoints3D", (3,), where))
    return dict(K=K, bbox=_get(meta, "handBoundingBox", (4,), where), root_3d=root)
