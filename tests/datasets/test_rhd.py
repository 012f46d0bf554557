"""RHD builder on a tiny fake RHD_published_v2 tree (one example per visible hand)."""
import os
import pickle
import shutil

import numpy as np
import pytest

from datasets.rhd import rhd_dataset_builder as rhd
from datasets.schema import BadRecordError
from tests.datasets import fakes

SIZE = 32


def test_reorder_is_tip_first_to_base_first():
    perm = rhd.RHD_TO_FREIHAND
    assert sorted(perm.tolist()) == list(range(21))
    assert perm[:5].tolist() == [0, 4, 3, 2, 1]  # wrist; thumb MCP (RHD 4) ... tip (RHD 1)
    assert perm[17:].tolist() == [20, 19, 18, 17]  # little finger
    # Applying it to RHD keypoint ids: each finger becomes increasing distance from the wrist.
    for f in range(5):
        assert perm[1 + 4 * f: 5 + 4 * f].tolist() == [4 + 4 * f, 3 + 4 * f, 2 + 4 * f, 1 + 4 * f]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("RHD_published_v2")
    written = fakes.write_fake_rhd(root, n_train=3, n_eval=1, image_size=SIZE)
    builder = fakes.build(rhd.Builder, root, tmp_path_factory.mktemp("data"))
    return root, builder, written, {s: fakes.read_split(builder, s) for s in ("train", "test")}


def test_one_example_per_visible_hand(built):
    _, builder, _, splits = built
    # fakes.RHD_VISIBLE = (21, 15), (3, 21), (12, 0) visible (left, right); threshold 10.
    got = sorted((ex["sample_id"].decode(), int(ex["hand_side"])) for ex in splits["train"])
    assert got == [("00000", 0), ("00000", 1), ("00001", 0), ("00002", 1)]  # 0 right, 1 left
    assert len(splits["test"]) == 2
    counts = builder.info.metadata["build_report"]["counts"]
    assert counts["train"] == {"hands_below_min_visible": 2}
    assert counts["test"] == {"hands_below_min_visible": 0}


def test_converted_values(built):
    _, _, written, splits = built
    perm = rhd.RHD_TO_FREIHAND
    for ex in splits["train"]:
        sid = int(ex["sample_id"])
        side = ("right", "left")[ex["hand_side"]]
        rows = slice(0, 21) if side == "left" else slice(21, 42)
        ann = written["training"][sid]
        np.testing.assert_array_equal(ex["keypoints_2d"], ann["uv_vis"][rows, :2][perm])
        np.testing.assert_array_equal(ex["keypoint_visibility"], ann["uv_vis"][rows, 2][perm])
        np.testing.assert_array_equal(ex["keypoints_3d"], ann["xyz"][rows][perm])
        # Thumb: FreiHAND 1 (base) is RHD 4, FreiHAND 4 (tip) is RHD 1.
        np.testing.assert_array_equal(ex["keypoints_3d"][1], ann["xyz"][rows][4])
        np.testing.assert_array_equal(ex["keypoints_3d"][4], ann["xyz"][rows][1])
        np.testing.assert_array_equal(ex["K"], ann["K"])
        lo, hi = (2, 17) if side == "left" else (18, 33)
        expected = (ann["labels"] >= lo) & (ann["labels"] <= hi)
        np.testing.assert_array_equal(ex["mask"][..., 0], expected.astype(np.uint8))
        assert expected.any()
        np.testing.assert_allclose(ex["image"].reshape(-1, 3).mean(0), fakes.id_color(sid),
                                   atol=4.0)
        assert ex["has_2d"] and ex["has_3d"] and ex["has_mask"] and ex["has_intrinsics"]
        assert not (ex["has_mesh"] or ex["has_mano"] or ex["has_scale"])


def test_missing_image_names_path(built, tmp_path):
    root = built[0]
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    os.remove(copy / "training" / "color" / "00001.png")
    with pytest.raises(FileNotFoundError, match="training/color/00001.png"):
        fakes.build(rhd.Builder, copy, tmp_path / "data")


@pytest.fixture()
def bad_root(built, tmp_path):
    """Sample 1 of training has a NaN keypoint."""
    copy = tmp_path / "bad"
    shutil.copytree(built[0], copy)
    path = copy / "training" / "anno_training.pickle"
    anno = pickle.loads(path.read_bytes())
    anno[1]["xyz"][30, 2] = np.nan
    path.write_bytes(pickle.dumps(anno, protocol=2))
    return copy


def test_bad_record_names_file_and_sample(bad_root, tmp_path):
    with pytest.raises(BadRecordError, match=r"anno_training.pickle \[sample 1\]: xyz has 1 non"):
        fakes.build(rhd.Builder, bad_root, tmp_path / "data")


def test_skip_bad_records(bad_root, tmp_path):
    builder = fakes.build(rhd.Builder, bad_root, tmp_path / "data", skip_bad_records=True)
    ids = {ex["sample_id"] for ex in fakes.read_split(builder, "train")}
    assert ids == {b"00000", b"00002"}
    report = builder.info.metadata["build_report"]
    assert report["num_skipped"] == {"train": 1, "test": 0}
    assert "[sample 1]" in report["skipped"]["train"][0]["where"]
