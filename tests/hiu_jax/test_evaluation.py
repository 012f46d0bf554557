"""The validation scorer's diagnostics: the mean-hand baseline, rotation, size and camera."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import mano_jax
from configs import default
from hiu_jax import evaluation, loss_registry, scorers
from hiu_jax.geometry import projection


@pytest.fixture(scope="module")
def mano():
    return mano_jax.procedural_model()


def predictions(mano, n=6, crop=64, seed=0):
    """Per-sample predictions equal to labels made from the mean hand under random global
    rotations (so the constant baseline is exact up to rotation) and a known camera."""
    rng = np.random.default_rng(seed)
    joints, verts = scorers.mean_hand(mano)
    rot = Rotation.random(n, random_state=seed)
    gt_j = np.einsum("nij,vj->nvi", rot.as_matrix(), joints).astype(np.float32)
    gt_v = np.einsum("nij,vj->nvi", rot.as_matrix(), verts).astype(np.float32)
    cam = np.stack([rng.uniform(0.8, 1.5, n), rng.uniform(-0.2, 0.2, n),
                    rng.uniform(-0.2, 0.2, n)], 1).astype(np.float32)
    uv = np.asarray(projection.crop_camera_projection(gt_j, cam, crop))
    ones = np.ones(n, np.float32)
    pose = np.zeros((n, 48), np.float32)
    pose[:, :3] = rot.as_rotvec()
    return {
        "keypoints_3d": gt_j, "vertices": gt_v, "keypoints_2d": uv, "keypoints_heatmap": uv + 1.0,
        "cam": cam, "global_rotmat": rot.as_matrix().astype(np.float32),
        "mano_betas": np.zeros((n, 10), np.float32), "mask_prob": np.ones((n, crop, crop)),
        "gt_keypoints_3d": gt_j, "gt_vertices": gt_v, "gt_keypoints_2d": uv,
        "gt_keypoint_visibility": np.ones((n, 21), np.float32),
        "gt_mask": np.ones((n, crop, crop, 1), np.float32), "gt_mano_pose": pose,
        "gt_root_3d": np.tile(np.float32([0.02, -0.01, 0.6]), (n, 1)),
        "gt_sample_id": _ids(range(n)), "gt_mirrored": np.zeros(n, np.float32),
        **{f"gt_{f}": ones for f in ("has_3d", "has_mesh", "has_mask", "has_2d", "has_mano",
                                      "valid")},
    }


def _ids(numbers):
    """The pipeline's "sample_id": (N, 64) uint8, UTF-8 zero-padded."""
    out = np.zeros((len(numbers), 64), np.uint8)
    for i, number in enumerate(numbers):
        text = f"{number:08d}".encode()
        out[i, :len(text)] = np.frombuffer(text, np.uint8)
    return out


def test_baseline_and_diagnostics_are_exact_on_mean_hand_labels(mano):
    p = predictions(mano)
    s = evaluation.score(p, mano).values
    # Labels are the mean hand rotated: Procrustes removes the rotation, so the constant
    # baseline (and the prediction, equal to the labels) score 0 mm and F = 1 (float32 maths).
    for prefix in ("", "baseline/"):
        assert s[prefix + "pa_mpjpe_mm"] < 1e-3 and s[prefix + "pa_mpvpe_mm"] < 1e-3
        assert s[prefix + "f5"] == 1.0 and s[prefix + "f15"] == 1.0
    assert s["rot_error_deg"] < 0.05  # arccos near 1 in float32: ~0.03 deg
    assert s["hand_size_mm"] == pytest.approx(s["label/hand_size_mm"], rel=1e-6)
    assert s["kp2d_mean_px"] < 1e-4
    assert s["kp2d_heatmap_px"] == pytest.approx(np.sqrt(2.0), rel=1e-5)
    assert s["cam_scale"] == pytest.approx(p["cam"][:, 0].mean(), rel=1e-6)
    assert s["label/cam_scale"] == pytest.approx(p["cam"][:, 0].mean(), rel=1e-4)


def test_baseline_is_the_constant_mean_hand(mano):
    """Scoring the constant mean hand as a prediction gives the baseline's numbers."""
    p = predictions(mano, seed=1)
    rng = np.random.default_rng(2)
    p["gt_keypoints_3d"] = p["gt_keypoints_3d"] + rng.normal(0, 0.01, p["gt_keypoints_3d"].shape).astype(np.float32)
    p["gt_vertices"] = p["gt_vertices"] + rng.normal(0, 0.01, p["gt_vertices"].shape).astype(np.float32)
    joints, verts = scorers.mean_hand(mano)
    p["keypoints_3d"] = np.broadcast_to(joints, p["keypoints_3d"].shape).copy()
    p["vertices"] = np.broadcast_to(verts, p["vertices"].shape).copy()
    s = evaluation.score(p, mano).values
    for key in ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15"):
        assert s[key] == pytest.approx(s["baseline/" + key], rel=1e-6), key
    assert s["pa_mpjpe_mm"] > 5.0  # 1 cm of noise per coordinate is far from 0


def test_mirrored_samples_are_scored_in_the_dataset_frame(mano):
    """Left hands come mirrored (x -> -x, "mirrored" 1): the prediction is mirrored back for
    pred.json, the absolute ground truth is root_3d + keypoints_3d mirrored back, and the official
    unaligned error of a perfect root-relative prediction is the root's distance."""
    p = predictions(mano, n=4, seed=3)
    p["gt_mirrored"] = np.float32([0, 1, 0, 1])
    p["gt_sample_id"] = _ids([12, 3, 100, 7])
    r = evaluation.score(p, mano)
    left = np.array([False, True, False, True])
    np.testing.assert_array_equal(r.mirrored, left)
    want = np.array(p["keypoints_3d"], np.float64)
    want[left, :, 0] *= -1
    np.testing.assert_array_equal(r.pred_xyz, want)
    assert r.sample_ids == ["00000012", "00000003", "00000100", "00000007"]
    np.testing.assert_array_equal(evaluation.sample_order(r.sample_ids), [1, 3, 0, 2])
    assert r.values["pa_mpjpe_mm"] < 1e-3 and r.values["rr_mpjpe_mm"] < 1e-4
    root = np.linalg.norm(p["gt_root_3d"][0])
    assert r.values["mpjpe_mm"] == pytest.approx(1000 * root, rel=1e-5)
    np.testing.assert_allclose(r.per_sample["rr_mpjpe_mm"], 0.0, atol=1e-4)


def test_mask_iou_resizes_the_probability_bilinearly_then_thresholds():
    """[[1, 0.4], [0, 0]] resized from 2 x 2 to 4 x 4: output pixel c samples the input at
    (c + 0.5) / 2 - 0.5 (pixel centres at integers, edges clamped), so row 0 is 1, 0.75 + 0.25
    * 0.4 = 0.85, 0.25 + 0.75 * 0.4 = 0.55 (above 0.5: in the mask, where pixel repetition
    would give 0.4), and row 1 mixes in a quarter of the zero row."""
    prob = np.array([[[1.0, 0.4], [0.0, 0.0]]], np.float32)
    up = scorers.resize_probabilities(prob, (4, 4))
    np.testing.assert_allclose(up[0, :2, :3], [[1.0, 0.85, 0.55], [0.75, 0.6375, 0.4125]],
                               atol=1e-6)


def test_2d_error_is_the_mean_per_joint_then_over_joints():
    """Joint 0 visible in both samples with errors 1 and 3 px, joint 1 only in sample 0 with
    error 10 px: per joint (2 + 10) / 2 = 6 px (pooled over keypoints it would be 14 / 3)."""
    n = 2
    p = {"keypoints_2d": np.zeros((n, 21, 2), np.float32),
         "gt_keypoints_2d": np.zeros((n, 21, 2), np.float32),
         "gt_keypoint_visibility": np.zeros((n, 21), np.float32)}
    p["gt_keypoints_2d"][0, 0, 0], p["gt_keypoints_2d"][1, 0, 0] = 1.0, 3.0
    p["gt_keypoints_2d"][0, 1, 1] = 10.0
    p["gt_keypoint_visibility"][:, 0] = 1.0
    p["gt_keypoint_visibility"][0, 1] = 1.0
    p.update({"keypoints_3d": np.zeros((n, 21, 3)), "vertices": np.zeros((n, 778, 3)),
              "cam": np.ones((n, 3), np.float32), "mask_prob": np.zeros((n, 4, 4)),
              "gt_keypoints_3d": np.zeros((n, 21, 3)), "gt_vertices": np.zeros((n, 778, 3)),
              "gt_root_3d": np.zeros((n, 3)), "gt_mask": np.zeros((n, 4, 4, 1)),
              "gt_mano_pose": np.zeros((n, 48)), "gt_sample_id": _ids(range(n)),
              "gt_mirrored": np.zeros(n), "gt_has_2d": np.ones(n), "gt_valid": np.ones(n),
              **{f"gt_{f}": np.zeros(n) for f in ("has_3d", "has_mesh", "has_mask",
                                                   "has_mano")}})
    r = evaluation.score(p)
    assert r.values["kp2d_mean_px"] == pytest.approx(6.0)
    np.testing.assert_allclose(r.per_sample["kp2d_mean_px"], [5.5, 3.0])
    assert r.values["pa_mpjpe_mm"] is None and r.values["mask_iou"] is None


def test_rotation_error_in_degrees():
    r = Rotation.random(4, random_state=3)
    turned = r * Rotation.from_rotvec([[0.0, 0.0, np.pi / 2]] * 4)
    got = scorers.geodesic_degrees(r.as_matrix(), turned.as_matrix())
    np.testing.assert_allclose(got, 90.0, atol=1e-6)


def test_mano_label_terms_need_the_licensed_model():
    cfg = default.get_config().loss
    with pytest.raises(ValueError, match=r"--config\.model\.mano_path"):
        loss_registry.check_label_hand_model(cfg, ["freihand"], "")
    loss_registry.check_label_hand_model(cfg, ["freihand"], "/data/MANO_RIGHT.pkl")  # given: fine
    loss_registry.check_label_hand_model(cfg, [], "")  # synthetic data of the procedural hand: fine
    for term in loss_registry.MANO_LABEL_TERMS:
        cfg.terms[term] = 0.0
    loss_registry.check_label_hand_model(cfg, ["freihand"], "")  # those terms off: fine


def test_validation_curves_png(tmp_path):
    from hiu_jax import logs

    rows = [{"step": 10, "loss": 3.0}]
    assert not logs.plot_validation_curves(rows, str(tmp_path / "none.png"))
    rows += [{"step": s, "eval/pa_mpjpe_mm": 20.0 - s / 100, "eval/baseline/pa_mpjpe_mm": 20.0,
              "eval/mask_iou": 0.5 + s / 1000} for s in (100, 200)]
    assert logs.plot_validation_curves(rows, str(tmp_path / "curves.png"))
    from PIL import Image

    assert Image.open(tmp_path / "curves.png").size[0] > 600


def test_every_mean_score_has_a_standard_error_and_per_sample_values_averaging_to_it(mano):
    p = predictions(mano, n=12, seed=3)
    rng = np.random.default_rng(4)
    p["keypoints_3d"] = p["keypoints_3d"] + rng.normal(0, 0.005, p["keypoints_3d"].shape).astype(np.float32)
    p["vertices"] = p["vertices"] + rng.normal(0, 0.005, p["vertices"].shape).astype(np.float32)
    p["keypoints_2d"] = p["keypoints_2d"] + rng.normal(0, 2.0, p["keypoints_2d"].shape).astype(np.float32)
    p["gt_keypoint_visibility"][::3, 4:9] = 0.0  # per-joint means over unequal counts
    p["mask_prob"] = rng.uniform(size=p["mask_prob"].shape)
    result = evaluation.score(p, mano)
    s = result.values
    assert set(result.linear) == {k[:-3] for k in s if k.endswith(evaluation.SE_SUFFIX)}
    assert set(result.linear) >= {
        "pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "rr_mpjpe_mm", "rr_mpvpe_mm", "rot_error_deg",
        "kp2d_mean_px", "kp2d_heatmap_px", "mask_iou", "hand_size_mm", "baseline/pa_mpjpe_mm",
        "baseline/pa_mpvpe_mm"}
    for key, column in result.linear.items():
        assert np.nanmean(column) == pytest.approx(s[key], rel=1e-9, abs=1e-12), key
        se = s[key + evaluation.SE_SUFFIX]
        assert se == pytest.approx(np.nanstd(column, ddof=1) / np.sqrt(np.isfinite(column).sum()),
                                   rel=1e-12), key
    assert s["pa_mpjpe_mm_se"] > 0 and s["kp2d_mean_px_se"] > 0 and s["rot_error_deg_se"] >= 0
    np.testing.assert_allclose(result.per_sample["rot_error_deg"], result.linear["rot_error_deg"])
    line = evaluation.summary(evaluation.validation_values(result))
    assert f"PA-MPJPE {s['pa_mpjpe_mm']:.2f}+-{s['pa_mpjpe_mm_se']:.2f} mm" in line
    assert "RR-MPJPE" in line and "rotation" in line


def test_linear_values_round_trip_through_their_file(mano, tmp_path):
    result = evaluation.score(predictions(mano, n=5, seed=5), mano)
    path = str(tmp_path / "validation" / "step_10.npz")
    evaluation.save_linear(path, result)
    ids, cols = evaluation.load_linear(path)
    assert ids == result.sample_ids
    assert set(cols) == set(result.linear)
    for key, values in result.linear.items():
        np.testing.assert_array_equal(cols[key], values)
