"""TFDS builder for the Rendered Hand Pose Dataset (RHD v1.1, folder RHD_published_v2).

One example per HAND, not per image: each of an image's two hands (annotation rows 0-20 left,
21-41 right) becomes an example when at least `min_visible_keypoints` of its 21 keypoints are
visible (uv_vis[:, 2] == 1); hands below that are left out and counted in the build report
('hands_below_min_visible'; images with no example at all: 'images_without_hand').

Per example (hand_side 'left' or 'right'; nothing is mirrored, the input pipeline may flip):
- keypoints reordered from RHD's tip-first fingers to FreiHAND's base-to-tip order
  (`RHD_TO_FREIHAND`); keypoints_2d = the dataset's uv (not re-projected), visibility = its flag;
- keypoints_3d = xyz (already metres, camera frame with OpenCV axes), K;
- mask = the pixels of THIS hand's part labels (2-17 left, 18-33 right) of mask/%05d.png.
Depth (depth/%05d.png) is not read or stored. No mesh, no MANO, no scale.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from datasets import builder_utils, schema
from datasets.schema import BadRecordError
from mano_jax import safe_pickle

# FreiHAND joint j = RHD joint RHD_TO_FREIHAND[j] within one hand (0 wrist; fingers tip-first).
RHD_TO_FREIHAND = np.array(
    [0] + [f * 4 + 4 - j for f in range(5) for j in range(4)], dtype=np.int64
)
HAND_ROWS = {"left": slice(0, schema.NUM_KEYPOINTS),  # rows of the 42-keypoint arrays
             "right": slice(schema.NUM_KEYPOINTS, 2 * schema.NUM_KEYPOINTS)}
PART_LABELS = {"left": (2, 17), "right": (18, 33)}  # inclusive mask label ranges
MAX_LABEL = 33
SETS = {"train": "training", "test": "evaluation"}


@dataclasses.dataclass
class RhdConfig(tfds.core.BuilderConfig):
    """min_visible_keypoints: a hand needs this many visible keypoints (of 21) to be an example."""

    min_visible_keypoints: int = 10


class Builder(builder_utils.HandBuilder):
    """RHD v1.1 in the canonical hand schema (datasets/schema.py)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: one example per visible hand."}
    BUILDER_CONFIGS = [
        RhdConfig(
            name="default",
            min_visible_keypoints=10,
            description="hands with >= 10 of 21 keypoints visible",
        )
    ]
    DEFAULT_CONFIG_NAME = "default"
    HOMEPAGE = (
        "https://lmb.informatik.uni-freiburg.de/resources/datasets/RenderedHandposeDataset.en.html"
    )
    IMAGE_FORMAT = "png"
    DESCRIPTION = __doc__
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download RHD v1.1 (RHD_v1-1.zip) from
https://lmb.informatik.uni-freiburg.de/resources/datasets/RenderedHandposeDataset.en.html
and extract it. Pass the extracted folder RHD_published_v2 as manual_dir, i.e. manual_dir must
contain directly
  training/color/%05d.png, training/mask/%05d.png, training/anno_training.pickle,
  evaluation/color/%05d.png, evaluation/mask/%05d.png, evaluation/anno_evaluation.pickle.
Python: Builder(data_dir=D).download_and_prepare(
  download_config=tfds.download.DownloadConfig(manual_dir='/path/to/RHD_published_v2'))
"""

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        if not 1 <= self.builder_config.min_visible_keypoints <= schema.NUM_KEYPOINTS:
            raise ValueError(
                f"min_visible_keypoints must be in [1, 21], got "
                f"{self.builder_config.min_visible_keypoints}"
            )
        annos = {}
        for split, set_name in SETS.items():
            path = os.path.join(root, set_name, f"anno_{set_name}.pickle")
            builder_utils.require_files([path], self.MANUAL_DOWNLOAD_INSTRUCTIONS)
            anno = safe_pickle.load(path)
            if not isinstance(anno, dict) or not all(isinstance(k, int) for k in anno):
                raise ValueError(f"{path}: expected a dict with integer sample ids as keys")
            annos[split] = (path, anno)
            builder_utils.require_files(
                [_file(root, set_name, kind, sid) for sid in anno for kind in ("color", "mask")],
                self.MANUAL_DOWNLOAD_INSTRUCTIONS,
            )
        return {
            split: self._generate_examples(split, root, SETS[split], *annos[split])
            for split in SETS
        }

    def _generate_examples(self, split, root, set_name, anno_path, anno):
        min_visible = self.builder_config.min_visible_keypoints

        def convert(sid):
            where = f"{anno_path} [sample {sid}]"
            rec = anno[sid]
            if not isinstance(rec, dict) or not {"xyz", "uv_vis", "K"} <= set(rec):
                raise BadRecordError(where, "record lacks one of the keys xyz, uv_vis, K")
            xyz = schema.check_finite("xyz", schema.check_shape("xyz", rec["xyz"], (42, 3), where),
                                      where)
            uv_vis = schema.check_finite(
                "uv_vis", schema.check_shape("uv_vis", rec["uv_vis"], (42, 3), where), where
            )
            vis = uv_vis[:, 2]
            if not np.all((vis == 0) | (vis == 1)):
                raise BadRecordError(where, f"uv_vis[:, 2] holds values other than 0/1: "
                                            f"{sorted(set(vis.tolist()))}")
            K = schema.check_K(rec["K"], where)
            hands = [
                side for side, rows in HAND_ROWS.items() if vis[rows].sum() >= min_visible
            ]
            if not hands:
                self._count(split, "hands_below_min_visible", 2)
                self._count(split, "images_without_hand")
                return []
            image_path = _file(root, set_name, "color", sid)
            image, hw = builder_utils.read_image(image_path, schema.record_where(image_path, sid))
            mask_path = _file(root, set_name, "mask", sid)
            labels = builder_utils.read_label_image(mask_path, schema.record_where(mask_path, sid))
            if labels.max() > MAX_LABEL:
                raise BadRecordError(
                    schema.record_where(mask_path, sid),
                    f"mask label {int(labels.max())} > {MAX_LABEL}",
                )
            out = []
            for side in hands:
                rows = HAND_ROWS[side]
                lo, hi = PART_LABELS[side]
                out.append((f"{sid:05d}_{side}", schema.make_example(
                    image=image, image_hw=hw, sample_id=f"{sid:05d}", source=self.name,
                    where=f"{image_path} ({where}, {side} hand)", hand_side=side,
                    mask=(labels >= lo) & (labels <= hi), K=K,
                    keypoints_2d=uv_vis[rows, :2][RHD_TO_FREIHAND],
                    keypoint_visibility=vis[rows][RHD_TO_FREIHAND],
                    keypoints_3d=xyz[rows][RHD_TO_FREIHAND],
                )))
            self._count(split, "hands_below_min_visible", 2 - len(hands))  # after all checks
            return out

        return self._convert_all(split, sorted(anno), convert)


def _file(root, set_name, kind, sid):
    return os.path.join(root, set_name, kind, f"{sid:05d}.png")
