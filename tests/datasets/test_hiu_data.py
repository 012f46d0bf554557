"""HIU-Data builder on a tiny fake tree in the layout the builder defines."""
import json
import os
import shutil

import numpy as np
import pytest

from datasets.hiu_data import hiu_data_dataset_builder as hiu
from datasets.schema import BadRecordError
from tests.datasets import fakes

HW = (40, 48)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("hiu")
    written = fakes.write_fake_hiu(root, n_train=3, n_test=1, image_hw=HW)
    builder = fakes.build(hiu.Builder, root, tmp_path_factory.mktemp("data"))
    return root, builder, written, {s: fakes.read_split(builder, s) for s in ("train", "test")}


def test_one_example_per_present_hand(built):
    _, builder, _, splits = built
    # fakes.HIU_HANDS: right only; both; left only (hand_type unreliable -> from keypoints).
    got = sorted((ex["sample_id"].decode(), ("right", "left")[ex["hand_side"]])
                 for ex in splits["train"])
    assert got == [("s0/000000", "right"), ("s0/000002", "left"), ("s1/000001", "left"),
                   ("s1/000001", "right")]
    assert len(splits["test"]) == 1
    assert builder.info.metadata["build_report"]["counts"]["train"] == {
        "presence_from_keypoints": 2}


def test_values_and_flags(built):
    _, _, written, splits = built
    for ex in splits["train"]:
        ann, mask = written["train"][ex["sample_id"].decode()]
        rows = slice(0, 21) if ex["hand_side"] == 0 else slice(21, 42)
        np.testing.assert_allclose(ex["keypoints_2d"], np.array(ann["pts2d_2hand"])[rows],
                                   rtol=1e-6)
        np.testing.assert_array_equal(ex["keypoint_visibility"], np.ones(21))
        np.testing.assert_array_equal(ex["mask"][..., 0], mask.astype(np.uint8))
        assert ex["image"].shape == HW + (3,)
        assert ex["has_2d"] and ex["has_mask"]
        assert not (ex["has_intrinsics"] or ex["has_3d"] or ex["has_mesh"] or ex["has_mano"])


def test_missing_mask_names_path(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built[0], copy)
    os.remove(copy / "train" / "s1" / "000001_mask.png")
    with pytest.raises(FileNotFoundError, match="train/s1/000001_mask.png"):
        fakes.build(hiu.Builder, copy, tmp_path / "data")


def test_missing_train_folder_names_path(tmp_path):
    (tmp_path / "manual" / "test").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="manual/train"):
        fakes.build(hiu.Builder, tmp_path / "manual", tmp_path / "data")


def _edit(root, sample, fn):
    path = root / "train" / f"{sample}.json"
    ann = json.loads(path.read_text())
    fn(ann)
    path.write_text(json.dumps(ann))


@pytest.fixture()
def bad_root(built, tmp_path):
    """000000: a keypoint at [2.0, -0.67] (out of range); 000001: hand_type says the left hand
    is absent but its keypoints are spread."""
    copy = tmp_path / "bad"
    shutil.copytree(built[0], copy)
    _edit(copy, "s0/000000", lambda a: a["pts2d_2hand"].__setitem__(3, [2.0, -0.67]))
    _edit(copy, "s1/000001", lambda a: a.__setitem__("hand_type", [1, 0]))
    return copy


def test_bad_record_names_json(bad_root, tmp_path):
    with pytest.raises(BadRecordError, match=r"s0/000000.json.*keypoint 3 = \[2.0, -0.67"):
        fakes.build(hiu.Builder, bad_root, tmp_path / "data")


def test_skip_bad_records(bad_root, tmp_path):
    builder = fakes.build(hiu.Builder, bad_root, tmp_path / "data", skip_bad_records=True)
    assert [ex["sample_id"] for ex in fakes.read_split(builder, "train")] == [b"s0/000002"]
    skipped = builder.info.metadata["build_report"]["skipped"]["train"]
    assert len(skipped) == 2
    assert any("000001.json" in r["where"] and "absent but its keypoints are spread"
               in r["reason"] for r in skipped)
