"""FreiHAND builder on a tiny fake FreiHAND_pub_v2 tree (3 records x 4 versions, 2 eval)."""
import json
import os
import shutil

import numpy as np
import pytest

from datasets.freihand import freihand_dataset_builder as fh
from datasets.schema import BadRecordError
from tests.datasets import fakes

N_TRAIN, N_EVAL, SIZE = 3, 2, 32
# Flat colour + noise of +-3 through JPEG q95: the image mean stays within a few grey levels.
COLOR_TOL = 4.0


def _tree(tmp_path_factory, name, **kwargs):
    root = tmp_path_factory.mktemp(name)
    written = fakes.write_fake_freihand(
        root, n_train=N_TRAIN, n_eval=N_EVAL, versions=4, image_size=SIZE, **kwargs
    )
    return root, written


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return _tree(tmp_path_factory, "freihand")


@pytest.fixture(scope="module")
def built_all(tree, tmp_path_factory):
    root, written = tree
    builder = fakes.build(fh.Builder, root, tmp_path_factory.mktemp("data"), config="all")
    return builder, written, {s: fakes.read_split(builder, s) for s in ("train", "test")}


def test_split_sizes_and_specs(built_all):
    builder, _, splits = built_all
    assert builder.info.splits["train"].num_examples == 4 * N_TRAIN
    assert builder.info.splits["test"].num_examples == N_EVAL
    ex = splits["train"][0]
    assert ex["image"].shape == (SIZE, SIZE, 3) and ex["image"].dtype == np.uint8
    assert ex["mask"].shape == (SIZE, SIZE, 1) and ex["mask"].dtype == np.uint8
    for name, shape in [("K", (3, 3)), ("keypoints_2d", (21, 2)), ("keypoints_3d", (21, 3)),
                        ("vertices", (778, 3)), ("mano_pose", (48,)), ("mano_betas", (10,))]:
        assert ex[name].shape == shape and ex[name].dtype == np.float32, name
    assert ex["source"] == b"freihand"


def test_version_file_ids_and_labels(built_all):
    _, written, splits = built_all
    ann = written["training"]
    seen = set()
    for ex in splits["train"]:
        idx = int(ex["sample_id"])
        version = ex["image_version"].decode()
        file_id = idx + N_TRAIN * fh.VERSIONS.index(version)
        seen.add((idx, version))
        np.testing.assert_allclose(
            ex["image"].reshape(-1, 3).mean(0), fakes.id_color(file_id), atol=COLOR_TOL
        )
        np.testing.assert_allclose(ex["K"], ann["K"][idx], rtol=1e-6)
        np.testing.assert_allclose(ex["keypoints_3d"], ann["xyz"][idx], rtol=1e-6)
        np.testing.assert_allclose(ex["vertices"], ann["verts"][idx], rtol=1e-6)
        np.testing.assert_allclose(ex["mano_pose"], ann["mano"][idx, :48], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(ex["mano_betas"], ann["mano"][idx, 48:58], rtol=1e-6, atol=1e-7)
        assert ex["scale"] == pytest.approx(ann["scale"][idx], rel=1e-6)
        # The release's mano[58:60] is keypoint 9's uv: the stored projection must agree.
        # float32 K and xyz, |uv| ~ 100 px: error ~ 100 * 1e-7 * few, far below 1e-3 px.
        np.testing.assert_allclose(ex["keypoints_2d"][9], ann["mano"][idx, 58:60], atol=1e-3)
        p = ann["xyz"][idx] @ ann["K"][idx].T
        np.testing.assert_allclose(ex["keypoints_2d"], p[:, :2] / p[:, 2:], atol=1e-3)
        np.testing.assert_array_equal(ex["keypoint_visibility"], np.ones(21))
        flags = {f: bool(ex[f]) for f in ("has_intrinsics", "has_mask", "has_2d", "has_3d",
                                          "has_mesh", "has_mano", "has_scale")}
        assert all(flags.values()), flags
        assert not ex["has_mano_trans"] and not ex["has_bbox"] and not ex["has_root_3d"]
        assert not ex["mano_flat_hand_mean"] and ex["hand_side"] == 0  # right
    assert seen == {(i, v) for i in range(N_TRAIN) for v in fh.VERSIONS}


def test_masks_thresholded_and_shared_across_versions(built_all):
    _, written, splits = built_all
    for ex in splits["train"]:
        truth = written["masks"][int(ex["sample_id"])]
        assert fakes.jpeg_mask_agrees(ex["mask"][..., 0], truth)


def test_test_split_with_eval_ground_truth(built_all):
    _, written, splits = built_all
    ann = written["evaluation"]
    for ex in splits["test"]:
        idx = int(ex["sample_id"])
        assert ex["image_version"] == b"gs"
        np.testing.assert_allclose(ex["image"].reshape(-1, 3).mean(0), fakes.id_color(idx),
                                   atol=COLOR_TOL)
        np.testing.assert_allclose(ex["keypoints_3d"], ann["xyz"][idx], rtol=1e-6)
        assert ex["has_3d"] and ex["has_mesh"] and ex["has_mano"] and ex["has_2d"]
        assert not ex["has_mask"] and not ex["mask"].any()


def test_single_version_config(tree, tmp_path):
    root, _ = tree
    builder = fakes.build(fh.Builder, root, tmp_path, config="hom")
    train = fakes.read_split(builder, "train")
    assert len(train) == N_TRAIN
    for ex in train:
        assert ex["image_version"] == b"hom"
        np.testing.assert_allclose(ex["image"].reshape(-1, 3).mean(0),
                                   fakes.id_color(int(ex["sample_id"]) + N_TRAIN), atol=COLOR_TOL)


def test_without_eval_archive_flags_false(tmp_path_factory):
    root, written = _tree(tmp_path_factory, "no_eval_gt", with_eval_gt=False)
    builder = fakes.build(fh.Builder, root, tmp_path_factory.mktemp("data"), config="gs")
    test = fakes.read_split(builder, "test")
    assert len(test) == N_EVAL
    for ex in test:
        assert ex["has_intrinsics"] and ex["has_scale"]
        assert not (ex["has_2d"] or ex["has_3d"] or ex["has_mesh"] or ex["has_mano"])
        assert not ex["keypoints_3d"].any()
        idx = int(ex["sample_id"])
        assert ex["scale"] == pytest.approx(written["evaluation"]["scale"][idx], rel=1e-6)


def test_partial_eval_ground_truth_names_missing_file(tree, tmp_path):
    root, _ = tree
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    os.remove(copy / "evaluation_verts.json")
    with pytest.raises(FileNotFoundError, match="evaluation_verts.json"):
        fakes.build(fh.Builder, copy, tmp_path / "data", config="gs")


def test_missing_image_names_path(tree, tmp_path):
    root, _ = tree
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    os.remove(copy / "training" / "rgb" / f"{1 + 2 * N_TRAIN:08d}.jpg")  # 'sample' version
    fakes.build(fh.Builder, copy, tmp_path / "gs", config="gs")  # gs does not need it
    with pytest.raises(FileNotFoundError, match=f"training/rgb/{1 + 2 * N_TRAIN:08d}.jpg"):
        fakes.build(fh.Builder, copy, tmp_path / "all", config="all")


@pytest.fixture(scope="module")
def bad_tree(tmp_path_factory):
    """Record 1 has a singular K; the image of record 2 is not a JPEG."""
    root, _ = _tree(tmp_path_factory, "freihand_bad")
    with open(root / "training_K.json") as f:
        K = json.load(f)
    K[1] = [[500.0, 500.0, 16.0], [400.0, 400.0, 16.0], [0.0, 0.0, 1.0]]
    with open(root / "training_K.json", "w") as f:
        json.dump(K, f)
    (root / "training" / "rgb" / "00000002.jpg").write_bytes(b"not a jpeg at all")
    return root


def test_bad_record_error_names_file_and_index(bad_tree, tmp_path):
    with pytest.raises(BadRecordError) as info:
        fakes.build(fh.Builder, bad_tree, tmp_path, config="gs")
    msg = str(info.value)
    assert "training_*.json [index 1]" in msg and "00000001.jpg" in msg and "singular" in msg


def test_skip_bad_records_counts_and_reports(bad_tree, tmp_path):
    builder = fakes.build(fh.Builder, bad_tree, tmp_path, config="gs", skip_bad_records=True)
    assert [int(ex["sample_id"]) for ex in fakes.read_split(builder, "train")] == [0]
    reloaded = fh.Builder(data_dir=os.fspath(tmp_path), config="gs")  # read from disk
    report = reloaded.info.metadata["build_report"]
    assert report["num_skipped"] == {"train": 2, "test": 0}
    reasons = {r["where"]: r["reason"] for r in report["skipped"]["train"]}
    assert any("index 1" in w and "singular" in r for w, r in reasons.items())
    assert any("00000002.jpg [index 2]" in w and "cannot decode" in r
               for w, r in reasons.items())
    assert os.path.exists(os.path.join(reloaded.data_dir, "metadata.json"))


def test_freihand_requires_evaluation_files(tmp_path):
    root = tmp_path / "FreiHAND_pub_v2"
    root.mkdir()
    fakes.write_fake_freihand(root, n_train=1, n_eval=0)
    with pytest.raises(FileNotFoundError, match="evaluation_K.json"):
        fakes.build(fh.Builder, root, tmp_path / "data", config="gs")


@pytest.fixture(scope="module")
def millimetre_tree(tmp_path_factory):
    """Record 1's xyz is in millimetres (the rest of the tree is metres)."""
    root, _ = _tree(tmp_path_factory, "freihand_mm")
    with open(root / "training_xyz.json") as f:
        xyz = json.load(f)
    xyz[1] = (np.asarray(xyz[1]) * 1000).tolist()
    with open(root / "training_xyz.json", "w") as f:
        json.dump(xyz, f)
    return root


def test_millimetre_labels_name_file_and_index(millimetre_tree, tmp_path):
    with pytest.raises(BadRecordError) as info:
        fakes.build(fh.Builder, millimetre_tree, tmp_path, config="gs")
    msg = str(info.value)
    assert "training_*.json [index 1]" in msg and "00000001.jpg" in msg
    assert "more than 10 m from the camera" in msg


def test_millimetre_labels_skipped_and_counted(millimetre_tree, tmp_path):
    builder = fakes.build(fh.Builder, millimetre_tree, tmp_path, config="gs",
                          skip_bad_records=True)
    assert [int(ex["sample_id"]) for ex in fakes.read_split(builder, "train")] == [0, 2]
    report = builder.info.metadata["build_report"]
    assert report["num_skipped"] == {"train": 1, "test": 0}
    [skipped] = report["skipped"]["train"]
    assert "index 1" in skipped["where"] and "10 m" in skipped["reason"]
