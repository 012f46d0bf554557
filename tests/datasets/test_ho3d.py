"""HO-3D builder: OpenGL -> OpenCV conversions and the build on a fake HO3D_v3 tree."""
import os
import pickle
import shutil

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from datasets.ho3d import ho3d_dataset_builder as ho3d
from datasets.schema import BadRecordError
from tests.datasets import fakes

C = np.diag([1.0, -1.0, -1.0])


def _rigid_mano(aa, J0, V, trans):
    """What MANO does with its global rotation: rotate V about the root J0, then translate."""
    R = Rotation.from_rotvec(aa).as_matrix()
    return (V - J0) @ R.T + J0 + trans


def test_global_rotation_and_trans_reproduce_opengl_mesh_in_opencv():
    rng = np.random.default_rng(1)
    for _ in range(5):
        aa_gl, trans_gl = rng.normal(size=3), rng.normal(0, 0.1, size=3)
        J0, V = rng.normal(0, 0.05, size=3), rng.normal(0, 0.05, size=(50, 3))
        verts_gl = _rigid_mano(aa_gl, J0, V, trans_gl)
        wrist_gl = J0 + trans_gl  # the root joint after the rotation about itself
        aa_cv = ho3d.gl_to_cv_global_rotation(aa_gl)
        trans_cv = ho3d.gl_to_cv_trans(trans_gl, wrist_gl)
        # float64 throughout: agreement to ~1e-15 m; 1e-12 leaves room for the rotvec round trip.
        np.testing.assert_allclose(_rigid_mano(aa_cv, J0, V, trans_cv),
                                   ho3d.gl_to_cv_points(verts_gl), atol=1e-12)


def test_joint_order_map():
    perm = ho3d.MANO_TO_FREIHAND
    assert sorted(perm.tolist()) == list(range(21))
    # FreiHAND thumb 1-4 <- MANO thumb 13-15 + thumb tip 16; pinky 17-20 <- 7-9 + tip 20.
    assert perm[1:5].tolist() == [13, 14, 15, 16] and perm[17:].tolist() == [7, 8, 9, 20]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("HO3D_v3")
    written = fakes.write_fake_ho3d(root, train_seqs=2, eval_seqs=1, per_seq=2)
    builder = fakes.build(ho3d.Builder, root, tmp_path_factory.mktemp("data"))
    return root, written, {s: fakes.read_split(builder, s) for s in ("train", "test")}


def test_train_split(built):
    _, written, splits = built
    assert len(splits["train"]) == 4
    for ex in splits["train"]:
        meta = written["train"][ex["sample_id"].decode()]
        assert ex["image"].shape == (48, 64, 3)
        joints_gl = meta["handJoints3D"]
        xyz = joints_gl[ho3d.MANO_TO_FREIHAND] * np.array([1, -1, -1])
        np.testing.assert_allclose(ex["keypoints_3d"], xyz, rtol=1e-6)
        assert (ex["keypoints_3d"][:, 2] > 0).all()
        p = xyz @ meta["camMat"].T
        np.testing.assert_allclose(ex["keypoints_2d"], p[:, :2] / p[:, 2:], atol=1e-3)
        R_gl = Rotation.from_rotvec(meta["handPose"][:3]).as_matrix()
        R_cv = Rotation.from_rotvec(ex["mano_pose"][:3].astype(np.float64)).as_matrix()
        np.testing.assert_allclose(R_cv, C @ R_gl, atol=1e-6)  # float32 storage
        np.testing.assert_allclose(ex["mano_pose"][3:], meta["handPose"][3:], rtol=1e-6)
        expected_trans = meta["handTrans"] + (C - np.eye(3)) @ joints_gl[0]
        np.testing.assert_allclose(ex["mano_trans"], expected_trans, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(ex["mano_betas"], meta["handBeta"], rtol=1e-6)
        assert ex["mano_flat_hand_mean"] and ex["has_mano_trans"] and ex["has_3d"]
        assert not (ex["has_mesh"] or ex["has_mask"]) and ex["hand_side"] == 0


def test_test_split_has_root_and_bbox_only(built):
    _, written, splits = built
    assert len(splits["test"]) == 2
    for ex in splits["test"]:
        meta = written["evaluation"][ex["sample_id"].decode()]
        np.testing.assert_allclose(ex["root_3d"], meta["handJoints3D"] * [1, -1, -1], rtol=1e-6)
        np.testing.assert_allclose(ex["bbox"], meta["handBoundingBox"], rtol=1e-6)
        assert ex["has_root_3d"] and ex["has_bbox"] and ex["has_intrinsics"]
        assert not (ex["has_2d"] or ex["has_3d"] or ex["has_mano"] or ex["has_mask"])


def test_missing_meta_names_path(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built[0], copy)
    os.remove(copy / "train" / "TS1" / "meta" / "0001.pkl")
    with pytest.raises(FileNotFoundError, match="train/TS1/meta/0001.pkl"):
        fakes.build(ho3d.Builder, copy, tmp_path / "data")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


@pytest.fixture()
def bad_root(built, tmp_path):
    """TS0/0001 meta carries code; TS1/0000 has hand annotations set to None."""
    copy = tmp_path / "bad"
    shutil.copytree(built[0], copy)
    (copy / "train" / "TS0" / "meta" / "0001.pkl").write_bytes(
        pickle.dumps({"camMat": np.eye(3), "x": _Evil()}, protocol=2))
    path = copy / "train" / "TS1" / "meta" / "0000.pkl"
    meta = pickle.loads(path.read_bytes())
    meta["handJoints3D"] = None
    path.write_bytes(pickle.dumps(meta, protocol=2))
    return copy


def test_bad_record_names_file(bad_root, tmp_path):
    with pytest.raises(BadRecordError,
                       match=r"TS0/meta/0001.pkl \[index TS0/0001\].*refused to load global"):
        fakes.build(ho3d.Builder, bad_root, tmp_path / "data")


def test_skip_bad_records(bad_root, tmp_path):
    builder = fakes.build(ho3d.Builder, bad_root, tmp_path / "data", skip_bad_records=True)
    ids = sorted(ex["sample_id"].decode() for ex in fakes.read_split(builder, "train"))
    assert ids == ["TS0/0000", "TS1/0001"]
    skipped = builder.info.metadata["build_report"]["skipped"]["train"]
    assert sorted(r["where"].split("[index ")[1] for r in skipped) == ["TS0/0001]", "TS1/0000]"]
    assert any("handJoints3D" in r["reason"] for r in skipped)
