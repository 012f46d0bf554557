"""TFDS builder for FreiHAND v2 (FreiHAND_pub_v2, plus the optional evaluation ground truth).

Splits:
- 'train': training/rgb/%08d.jpg of the config's image versions, one example per (version, idx).
  N = len(training_K.json) annotation records (32,560 in the release); the image of version k
  (position in VERSIONS) is file id idx + N * k; the annotation and the mask are idx's.
  Labels: image, mask, K, keypoints_3d (xyz), keypoints_2d = project(K, xyz) with visibility 1,
  vertices, MANO pose/betas, scale.
- 'test': evaluation/rgb/%08d.jpg (only the 'gs' version exists), K and scale; with the
  evaluation ground truth present also keypoints_3d, keypoints_2d, vertices and MANO. No masks
  (has_mask False): the eval archive's segmaps are not decoded here. (A subclass with
  EVAL_MASKS = True, e.g. synthetic_hands, reads evaluation/mask/%08d.jpg instead.)

MANO: `training_mano.json` holds 61 values per sample: [0:48] pose with the hand mean ADDED
(stored as given, mano_flat_hand_mean=False), [48:58] betas, [58:60] the pixel uv of keypoint 9
and [60] a scale s with keypoint 9 at [u - cx, v - cy, f] / s (f = (fx + fy) / 2). Those last
three only repeat keypoints_3d[9] and K, so they are not stored. MANO's translation cannot be
derived without the MANO model (it is keypoint 9's position minus MANO's own keypoint 9), so
has_mano_trans is False.

Everything in the 'train' split is in the camera frame already (OpenCV axes, metres): no
conversion besides the projection.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Tuple

import numpy as np
import tensorflow_datasets as tfds

from datasets import builder_utils, schema
from datasets.schema import BadRecordError

VERSIONS = ("gs", "hom", "sample", "auto")  # image versions in file-id order (toolbox order)
MASK_THRESHOLD = 128  # JPEG mask pixels >= this (grey level 0-255) are hand
MANO_NUM_VALUES = 61
EVAL_GT_NAMES = ("xyz", "verts", "mano")  # evaluation_<name>.json, from the optional archive

_DOC_VERSIONS = {
    "gs": "the original green-screen captures",
    "hom": "'homogenized' images",
    "sample": "automatic colourisation with sample points",
    "auto": "automatic colourisation without sample points",
}


@dataclasses.dataclass
class FreihandConfig(tfds.core.BuilderConfig):
    """versions: the image versions in the 'train' split, a subset of VERSIONS."""

    versions: Tuple[str, ...] = ("gs",)


def _configs():
    configs = [
        FreihandConfig(name=v, versions=(v,), description=f"train split: {_DOC_VERSIONS[v]}")
        for v in VERSIONS
    ]
    configs.append(
        FreihandConfig(name="all", versions=VERSIONS, description="train split: all 4 versions")
    )
    return configs


class Builder(builder_utils.HandBuilder):
    """FreiHAND v2 in the canonical hand schema (datasets/schema.py)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: canonical hand schema."}
    BUILDER_CONFIGS = _configs()
    DEFAULT_CONFIG_NAME = "gs"
    HOMEPAGE = "https://lmb.informatik.uni-freiburg.de/resources/datasets/FreihandDataset.en.html"
    IMAGE_FORMAT = "jpeg"
    DESCRIPTION = __doc__
    EVAL_MASKS = False  # True: the 'test' split reads evaluation/mask/%08d.jpg (not in FreiHAND)
    EVAL_OPTIONAL = False  # True: without evaluation_K.json there is no 'test' split
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Register and download FreiHAND v2 from
https://lmb.informatik.uni-freiburg.de/resources/datasets/FreihandDataset.en.html :
  1. FreiHAND_pub_v2.zip (training + evaluation images and annotations), required;
  2. FreiHAND_pub_v2_eval.zip (evaluation ground truth), optional.
Extract (1) and pass its folder as manual_dir, i.e. manual_dir must contain directly
  training/rgb/%08d.jpg, training/mask/%08d.jpg,
  training_K.json, training_mano.json, training_xyz.json, training_verts.json,
  training_scale.json, evaluation/rgb/%08d.jpg, evaluation_K.json, evaluation_scale.json.
For test-split ground truth copy evaluation_xyz.json, evaluation_verts.json and
evaluation_mano.json from (2) into that same folder (all three or none).
Python: Builder(data_dir=D, config='gs').download_and_prepare(
  download_config=tfds.download.DownloadConfig(manual_dir='/path/to/FreiHAND_pub_v2'))
"""

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        versions = tuple(self.builder_config.versions)
        bad = [v for v in versions if v not in VERSIONS]
        if bad:
            raise ValueError(f"config {self.builder_config.name}: unknown versions {bad}")
        train = _load_set(root, "training", ("K", "mano", "xyz", "verts", "scale"), self)
        with_test = not self.EVAL_OPTIONAL or os.path.exists(
            os.path.join(root, "evaluation_K.json")
        )
        if with_test:
            test_names = ("K", "scale") + (_eval_gt_names(root, self) or ())
            test = _load_set(root, "evaluation", test_names, self)
        n_train, n_test = len(train["K"]), len(test["K"]) if with_test else 0
        builder_utils.require_files(
            [_rgb_path(root, "training", idx + n_train * VERSIONS.index(v))
             for v in versions for idx in range(n_train)]
            + [_mask_path(root, "training", idx) for idx in range(n_train)]
            + [_rgb_path(root, "evaluation", idx) for idx in range(n_test)]
            + [_mask_path(root, "evaluation", idx) for idx in range(n_test) if self.EVAL_MASKS],
            self.MANUAL_DOWNLOAD_INSTRUCTIONS,
        )
        splits = {"train": self._generate_examples("train", root, "training", train, versions)}
        if with_test:
            splits["test"] = self._generate_examples("test", root, "evaluation", test, ("gs",))
        return splits

    def _generate_examples(self, split, root, set_name, ann, versions):
        n = len(ann["K"])
        records = [(idx, v) for idx in range(n) for v in versions]  # idx-major: mask reuse
        mask_cache = {}

        def mask_of(idx, where):
            if idx not in mask_cache:
                mask_cache.clear()
                try:
                    raw = builder_utils.read_label_image(
                        _mask_path(root, set_name, idx), where, allow_rgb=True
                    )
                    mask_cache[idx] = raw >= MASK_THRESHOLD
                except BadRecordError as err:
                    mask_cache[idx] = err
            if isinstance(mask_cache[idx], BadRecordError):
                raise mask_cache[idx]
            return mask_cache[idx]

        def convert(record):
            idx, version = record
            file_id = idx + n * VERSIONS.index(version)
            image_path = _rgb_path(root, set_name, file_id)
            where = f"{image_path} ({os.path.join(root, set_name)}_*.json [index {idx}])"
            image, hw = builder_utils.read_image(
                image_path, schema.record_where(image_path, file_id)
            )
            labels = _labels(ann, idx, where)
            if set_name == "training" or self.EVAL_MASKS:
                mask_path = _mask_path(root, set_name, idx)
                labels["mask"] = mask_of(idx, schema.record_where(mask_path, idx))
            example = schema.make_example(
                image=image, image_hw=hw, sample_id=f"{idx:08d}", source=self.name,
                where=where, hand_side="right", image_version=version,
                **labels,
            )
            return [(f"{version}_{idx:08d}", example)]

        return self._convert_all(split, records, convert)


def _rgb_path(root, set_name, file_id):
    return os.path.join(root, set_name, "rgb", f"{file_id:08d}.jpg")


def _mask_path(root, set_name, idx):
    return os.path.join(root, set_name, "mask", f"{idx:08d}.jpg")


def _eval_gt_names(root, builder):
    """EVAL_GT_NAMES if all evaluation_<name>.json exist, None if none; else FileNotFoundError."""
    paths = [os.path.join(root, f"evaluation_{n}.json") for n in EVAL_GT_NAMES]
    present = [os.path.exists(p) for p in paths]
    if all(present):
        return EVAL_GT_NAMES
    if any(present):
        builder_utils.require_files(
            paths,
            "The evaluation ground truth needs all of evaluation_{xyz,verts,mano}.json (or none).\n"
            + builder.MANUAL_DOWNLOAD_INSTRUCTIONS,
        )
    return None


def _load_set(root, set_name, names, builder):
    """Loads <set_name>_<name>.json for each name -> {name: list or array}, equal lengths."""
    paths = {n: os.path.join(root, f"{set_name}_{n}.json") for n in names}
    builder_utils.require_files(paths.values(), builder.MANUAL_DOWNLOAD_INSTRUCTIONS)
    ann = {}
    for name, path in paths.items():
        data = builder_utils.load_json(path)
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list, got {type(data).__name__}")
        try:  # one float32 array is ~10x smaller than nested lists (verts: 32560 x 778 x 3)
            ann[name] = np.asarray(data, dtype=np.float32)
        except (TypeError, ValueError):
            ann[name] = data  # ragged: per-record checks name the bad index
    lengths = {paths[n]: len(a) for n, a in ann.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{set_name} annotation files disagree on the record count: {lengths}")
    return ann


def _labels(ann, idx, where):
    """The schema labels of record idx of one annotation set (see make_example)."""
    K = schema.check_K(ann["K"][idx], where)
    labels = {"K": K, "scale": _scalar(ann["scale"][idx], "scale", where)}
    if "xyz" in ann:
        xyz = schema.check_shape("xyz", ann["xyz"][idx], (schema.NUM_KEYPOINTS, 3), where)
        schema.check_in_front("xyz", schema.check_finite("xyz", xyz, where), where)
        labels.update(keypoints_3d=xyz, keypoints_2d=schema.project(K, xyz))
    if "verts" in ann:
        labels["vertices"] = ann["verts"][idx]
    if "mano" in ann:
        mano = np.asarray(ann["mano"][idx], dtype=np.float32) if builder_utils.is_numeric(ann["mano"][idx]) \
            else None
        if mano is None or mano.size != MANO_NUM_VALUES:
            raise BadRecordError(where, f"mano entry is not {MANO_NUM_VALUES} numbers")
        mano = mano.reshape(MANO_NUM_VALUES)
        labels.update(mano_pose=mano[:48], mano_betas=mano[48:58], mano_flat_hand_mean=False)
    return labels


def _scalar(value, name, where):
    if not builder_utils.is_numeric(value) or np.asarray(value).size != 1:
        raise BadRecordError(where, f"{name} entry {value!r} is not one number")
    return np.float32(np.asarray(value, dtype=np.float32).reshape(()))
