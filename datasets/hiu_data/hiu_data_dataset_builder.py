"""TFDS builder for HIU-Data (real RGB images, 2D keypoints of both hands, hand masks).

The release's folder layout is not documented publicly, so this builder defines the layout it
reads (see MANUAL_DOWNLOAD_INSTRUCTIONS): one JSON per image, the image and `<id>_mask.png`
beside it. JSON fields (per the authors, MandyMo/HIU-DMTL#3):
- pts2d_2hand: (42, 2) pixel coordinates; rows 0-20 the right hand, rows 21-41 the left hand,
  each in FreiHAND/OpenPose order (assumed; the release does not state the joint order);
- hand_type: [right_present, left_present], each 0 or 1;
- hand_type_valid: [right, left] (or one number for both): 1 if hand_type is reliable;
- pts3d_w_2hand (optional): NOT used: it is neither root-centred nor in a stated camera frame
  (MandyMo/HIU-DMTL#4), so has_3d is False everywhere.

One example per present hand (hand_side from the half it comes from; nothing mirrored):
keypoints_2d with visibility 1, mask = `<id>_mask.png`, which marks ALL hands of the image (both
examples of a two-hand image share it). A mask pixel is hand if its value is >= 128 when the
file's maximum is above 1 (0/255 masks), else >= 1 (0/1 masks). No K, no 3D, no mesh.

Validation per record (BadRecordError naming the JSON file; skipped and counted with
skip_bad_records=True):
- pts2d_2hand must be (42, 2) and finite; hand_type / hand_type_valid 0 or 1;
- a hand is "spread" if its keypoints' extent (max - min over u or v) is >= MIN_HAND_EXTENT_PX;
  with hand_type_valid = 1, hand_type must agree with spread (present <=> spread);
  with hand_type_valid = 0, presence is decided by spread (counted: 'presence_from_keypoints');
- every keypoint of a present hand must lie inside the image, 0 <= u <= W and 0 <= v <= H
  (the known bad values such as [2.0, -0.67] fail here).
Known and not fixable here: the halves are sometimes swapped (two right hands labelled as right
and left, MandyMo/HIU-DMTL#4); hand_side is taken from the half as documented by the authors.
"""
from __future__ import annotations

import json
import os

import numpy as np
import tensorflow_datasets as tfds

from datasets import builder_utils, schema
from datasets.schema import BadRecordError

SPLIT_DIRS = {"train": "train", "test": "test"}  # 'train' required, 'test' optional
REQUIRED_SPLITS = ("train",)
HAND_ROWS = {"right": slice(0, schema.NUM_KEYPOINTS),
             "left": slice(schema.NUM_KEYPOINTS, 2 * schema.NUM_KEYPOINTS)}
MIN_HAND_EXTENT_PX = 2.0
IMAGE_EXTS = (".jpg", ".png")
MASK_SUFFIX = "_mask.png"


class Builder(builder_utils.HandBuilder):
    """HIU-Data in the canonical hand schema (datasets/schema.py)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: one example per present hand, 2D + mask."}
    HOMEPAGE = "https://github.com/MandyMo/HIU-DMTL"
    IMAGE_FORMAT = None  # JPEG or PNG files, stored as they are
    DESCRIPTION = __doc__
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Get HIU-Data through the links in https://github.com/MandyMo/HIU-DMTL (README; the zip is
encrypted, the password comes by e-mail from the authors) and extract it. Arrange it so that
manual_dir contains
  train/          required
    .../<id>.json         one per image, at any depth below train/
    .../<id>.jpg          (or <id>.png, not both) the RGB image, beside its JSON
    .../<id>_mask.png     the hand mask, beside its JSON
  test/           optional, the same layout; becomes the 'test' split
Python: Builder(data_dir=D).download_and_prepare(
  download_config=tfds.download.DownloadConfig(manual_dir='/path/to/hiu_data'))
"""

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        gens = {}
        for split, folder in SPLIT_DIRS.items():
            split_dir = os.path.join(root, folder)
            if not os.path.isdir(split_dir):
                if split in REQUIRED_SPLITS:
                    builder_utils.require_files([split_dir], self.MANUAL_DOWNLOAD_INSTRUCTIONS)
                continue
            records = _find_records(split_dir, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
            gens[split] = self._generate_examples(split, records)
        return gens

    def _generate_examples(self, split, records):
        def convert(record):
            sample_id, json_path, image_path, mask_path = record
            where = json_path
            try:
                with open(json_path) as f:
                    ann = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise BadRecordError(where, f"invalid JSON ({e})") from None
            if not isinstance(ann, dict):
                raise BadRecordError(where, "the JSON is not an object")
            image, hw = builder_utils.read_image(image_path, image_path)
            hands, used_keypoints = _present_hands(ann, hw, where)
            if not hands:
                self._count(split, "images_without_hand")
                return []
            raw = builder_utils.read_label_image(mask_path, mask_path, allow_rgb=True)
            mask = raw >= (128 if raw.max() > 1 else 1)
            out = [(f"{sample_id}_{side}", schema.make_example(
                image=image, image_hw=hw, sample_id=sample_id, source=self.name,
                where=f"{where} ({side} hand)", hand_side=side, mask=mask, keypoints_2d=pts,
            )) for side, pts in hands]
            if used_keypoints:
                self._count(split, "presence_from_keypoints", used_keypoints)
            return out

        return self._convert_all(split, records, convert)


def _find_records(split_dir, instructions):
    """[(sample_id, json, image, mask)] for every *.json below split_dir, files checked."""
    records, missing = [], []
    for dirpath, dirnames, filenames in os.walk(split_dir):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(".json"):
                continue
            stem = os.path.join(dirpath, name[: -len(".json")])
            images = [stem + ext for ext in IMAGE_EXTS if os.path.exists(stem + ext)]
            if len(images) > 1:
                raise ValueError(f"two images for one annotation: {images}")
            if not images:
                missing.append(stem + "{" + ",".join(IMAGE_EXTS) + "}")
            mask = stem + MASK_SUFFIX
            if not os.path.exists(mask):
                missing.append(mask)
            sample_id = os.path.relpath(stem, split_dir).replace(os.sep, "/")
            records.append((sample_id, stem + ".json", images[0] if images else None, mask))
    if not records:
        raise FileNotFoundError(f"no <id>.json annotation found below {split_dir}\n{instructions}")
    builder_utils.require_files(missing, instructions)
    return records


def _flags(ann, key, where):
    value = ann.get(key)
    arr = np.asarray(value) if isinstance(value, (list, int, float)) else None
    if arr is not None and arr.ndim == 0:
        arr = np.repeat(arr, 2)
    if arr is None or arr.shape != (2,) or not np.all((arr == 0) | (arr == 1)):
        raise BadRecordError(where, f"{key} must be two 0/1 values, got {value!r}")
    return arr.astype(bool)


def _present_hands(ann, hw, where):
    """-> ([(side, (21, 2) float32 keypoints)] of present hands, #hands decided by keypoints)."""
    if "pts2d_2hand" not in ann:
        raise BadRecordError(where, "no pts2d_2hand")
    pts = schema.check_shape("pts2d_2hand", ann["pts2d_2hand"], (42, 2), where)
    schema.check_finite("pts2d_2hand", pts, where)
    hand_type = _flags(ann, "hand_type", where)
    valid = _flags(ann, "hand_type_valid", where)
    h, w = hw
    hands, from_keypoints = [], 0
    for i, (side, rows) in enumerate(HAND_ROWS.items()):
        p = pts[rows]
        spread = float((p.max(0) - p.min(0)).max()) >= MIN_HAND_EXTENT_PX
        if valid[i]:
            if hand_type[i] != spread:
                state = "present" if hand_type[i] else "absent"
                raise BadRecordError(
                    where, f"hand_type says the {side} hand is {state} but its keypoints are "
                    f"{'spread' if spread else 'degenerate'} (extent threshold "
                    f"{MIN_HAND_EXTENT_PX} px)"
                )
            present = bool(hand_type[i])
        else:
            present, from_keypoints = spread, from_keypoints + 1
        if not present:
            continue
        outside = (p[:, 0] < 0) | (p[:, 0] > w) | (p[:, 1] < 0) | (p[:, 1] > h)
        if outside.any():
            j = int(np.argmax(outside))
            raise BadRecordError(
                where, f"{side} hand keypoint {j} = {p[j].tolist()} is outside the "
                f"{w}x{h} image ({int(outside.sum())} of 21 outside)"
            )
        hands.append((side, p))
    return hands, from_keypoints
