"""Tests for hiu_jax.metrics: the FreiHAND protocol, PCK/AUC, F-score, pred.json, masks."""
import numpy as np
import pytest
import scipy.linalg
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from hiu_jax import metrics as M

EPS = M.ALIGN_EPS


def random_hands(rng, n, points=21, depth=0.5, spread=0.04):
    """(n, points, 3) metres: Gaussian blobs of `spread` m around (0, 0, depth)."""
    return rng.normal(size=(n, points, 3)) * spread + [0.0, 0.0, depth]


def eps_bias(gt, scale=1.0):
    """Per-point aligned error of an exact similarity (uniform scale `scale`) of `gt`, (N, P).

    With gt_c = gt - mean, n = ||gt_c||_F and pred_c = a gt_c Q (Q orthogonal, a > 0):
    gt_n^T pred_n = a/((n+eps)(a n+eps)) gt_c^T gt_c Q, so R = Q^T, s = a n^2/((n+eps)(a n+eps)),
    and aligned_c = pred_c/(a n+eps) Q^T s (n+eps) = gt_c (a n/(a n+eps))^2: every point is pulled
    toward the centroid by the factor 1 - (a n/(a n+eps))^2 ~ 2 eps/(a n).
    """
    gt_c = gt - gt.mean(1, keepdims=True)
    n = np.linalg.norm(gt_c, axis=(1, 2))
    shrink = 1.0 - (scale * n / (scale * n + EPS)) ** 2
    return shrink[:, None] * np.linalg.norm(gt_c, axis=-1)


# --------------------------------------------------------------------------- alignment


def test_batched_orthogonal_procrustes_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 6, 21, 3))
    r, s = M.orthogonal_procrustes(a, b)
    for i in range(6):
        r_ref, s_ref = scipy.linalg.orthogonal_procrustes(a[i], b[i])
        np.testing.assert_allclose(r[i], r_ref, atol=1e-12)
        assert s[i] == pytest.approx(s_ref, rel=1e-12)
    # Orientation: R minimises ||a R - b||, so no other orthogonal matrix does better.
    q = Rotation.random(20, random_state=1).as_matrix()
    best = np.linalg.norm(a[0] @ r[0] - b[0])
    assert np.all(np.linalg.norm(a[0] @ q - b[0], axis=(1, 2)) >= best)


def test_align_w_scale_matches_a_per_sample_scipy_computation():
    rng = np.random.default_rng(1)
    gt, pred = random_hands(rng, 5), random_hands(rng, 5, depth=0.7, spread=0.06)
    got = M.align_w_scale(gt, pred)
    for i in range(5):
        g = gt[i] - gt[i].mean(0)
        p = pred[i] - pred[i].mean(0)
        g_norm, p_norm = np.linalg.norm(g) + EPS, np.linalg.norm(p) + EPS
        r, s = scipy.linalg.orthogonal_procrustes(g / g_norm, p / p_norm)
        want = (p / p_norm) @ r.T * s * g_norm + gt[i].mean(0)
        np.testing.assert_allclose(got[i], want, rtol=0, atol=1e-14)


def test_similarity_transformed_prediction_aligns_up_to_the_eps_bias():
    rng = np.random.default_rng(2)
    n = 8
    gt_xyz, gt_verts = random_hands(rng, n), random_hands(rng, n, points=778)
    rot = Rotation.random(n, random_state=3).as_matrix()
    scale = rng.uniform(0.5, 2.0, n)
    shift = rng.normal(size=(n, 1, 3)) * 0.2

    def similar(x):
        return scale[:, None, None] * x @ np.swapaxes(rot, 1, 2) + shift

    xyz_pred, verts_pred = similar(gt_xyz), similar(gt_verts)
    aligned, tf = M.align_w_scale(gt_xyz, xyz_pred, return_transform=True)
    np.testing.assert_allclose(tf.rotation, np.swapaxes(rot, 1, 2), atol=1e-12)
    err = M.point_errors(gt_xyz, aligned)
    bias = np.zeros_like(err)
    for i in range(n):
        bias[i] = eps_bias(gt_xyz[i:i + 1], scale[i])[0]
    # The bias is ~2e-8 / ||gt_c|| per metre from the centroid; rounding of ~1 m coordinates
    # adds a few ulps (~1e-16 m each).
    assert 1e-10 < bias.max() < 1e-8
    np.testing.assert_allclose(err, bias, rtol=0, atol=1e-14)

    s = M.freihand_scores(xyz_pred, verts_pred, gt_xyz, gt_verts)
    assert s["pa_mpjpe_mm"] < 1e-5 and s["pa_mpvpe_mm"] < 1e-5
    # Errors are tiny but > 0, so only the t = 0 point of the PCK curve misses: AUC = 98.5 / 99.
    assert s["xyz_al_auc3d"] == pytest.approx(98.5 / 99, abs=1e-12)
    assert s["mesh_al_auc3d"] == pytest.approx(98.5 / 99, abs=1e-12)
    assert s["f_al_score_5"] == 1.0 and s["f_al_score_15"] == 1.0
    assert s["mpjpe_mm"] > 10.0  # not aligned: the transform is visible


def test_mirrored_prediction_aligns_exactly_because_reflections_are_allowed():
    rng = np.random.default_rng(4)
    gt_xyz, gt_verts = random_hands(rng, 3), random_hands(rng, 3, points=778)
    mirror = np.array([-1.0, 1.0, 1.0])  # x -> -x: a left hand from a right one
    aligned, tf = M.align_w_scale(gt_xyz, gt_xyz * mirror, return_transform=True)
    np.testing.assert_allclose(np.linalg.det(tf.rotation), -1.0, atol=1e-12)
    np.testing.assert_allclose(M.point_errors(gt_xyz, aligned), eps_bias(gt_xyz), atol=1e-14)

    s = M.freihand_scores(gt_xyz * mirror, gt_verts * mirror, gt_xyz, gt_verts)
    assert s["pa_mpjpe_mm"] < 1e-5 and s["pa_mpvpe_mm"] < 1e-5
    assert s["f_al_score_5"] == 1.0
    # A rotation-only (det +1, Umeyama-style) alignment could not undo the mirror.
    g = gt_xyz[0] - gt_xyz[0].mean(0)
    p = (gt_xyz[0] * mirror) - (gt_xyz[0] * mirror).mean(0)
    u, _, vt = np.linalg.svd(g.T @ p)
    d = np.diag([1.0, 1.0, np.linalg.det(u @ vt)])
    proper = p @ (u @ d @ vt).T
    assert np.mean(np.linalg.norm(proper - g, axis=1)) > 1e-3


def test_official_keypoint_transform_for_non_mano_meshes():
    # With perfect keypoints R = I and s * gt_norm = n^2/(n + eps) ~ n: the official
    # align_by_trafo scales the mesh by ~n about its own centroid (it never divides by pred_norm).
    rng = np.random.default_rng(5)
    gt_xyz, verts = random_hands(rng, 2), random_hands(rng, 2, points=50)
    _, tf = M.align_w_scale(gt_xyz, gt_xyz.copy(), return_transform=True)
    n = np.linalg.norm(gt_xyz - gt_xyz.mean(1, keepdims=True), axis=(1, 2))
    got = M.align_by_transform_official(verts, tf)
    centroid = verts.mean(1, keepdims=True)
    want = (verts - centroid) * (n ** 2 / (n + EPS))[:, None, None] + centroid
    np.testing.assert_allclose(got, want, atol=1e-14)


# --------------------------------------------------------------------------- PCK / AUC


def test_pck_is_inclusive_and_auc_matches_hand_computation():
    thr = M.FREIHAND_PCK_THRESHOLDS
    for k in (1, 37, 99):
        m = M.error_measures(np.full((3, 1), thr[k]), thr)
        # pck = 1 from index k on (<= is inclusive): trapezoid = h (99 - k + 1/2), norm 99 h.
        assert m["auc"] == pytest.approx((99.5 - k) / 99, abs=1e-12)
        assert m["curve"][k] == 1.0 and m["curve"][k - 1] == 0.0
    assert M.error_measures(np.zeros((2, 4)), thr)["auc"] == pytest.approx(1.0, abs=1e-12)
    assert M.error_measures(np.full((2, 4), 0.051), thr)["auc"] == 0.0

    errors = np.array([[0.005], [0.01]])
    m = M.error_measures(errors, np.array([0.0, 0.01, 0.02]))
    np.testing.assert_array_equal(m["curve"], [0.0, 1.0, 1.0])
    # (0 + 1)/2 * 0.01 + (1 + 1)/2 * 0.01 = 0.015, over 0.02.
    assert m["auc"] == pytest.approx(0.75, abs=1e-12)
    assert m["mean"] == pytest.approx(0.0075, abs=1e-15)


def test_pck_curves_match_direct_comparison_and_respect_validity():
    rng = np.random.default_rng(6)
    err = rng.uniform(0, 0.06, size=(50, 7))
    err[3, 2] = M.FREIHAND_PCK_THRESHOLDS[40]  # exactly on a threshold
    valid = rng.uniform(size=err.shape) > 0.3
    valid[:, 5] = False  # a point never valid
    thr = M.FREIHAND_PCK_THRESHOLDS
    got = M.pck_curves(err, thr, valid)
    for p in range(7):
        if p == 5:
            assert np.all(np.isnan(got[p]))
            continue
        want = (err[valid[:, p], p][:, None] <= thr).mean(0)
        np.testing.assert_array_equal(got[p], want)
    m = M.error_measures(err, thr, valid)
    kept = [p for p in range(7) if p != 5]
    per_point = [err[valid[:, p], p].mean() for p in kept]
    assert m["mean"] == pytest.approx(np.mean(per_point), rel=1e-12)
    assert np.isnan(m["per_point_mean"][5])


# --------------------------------------------------------------------------- F-score


def points_on_z_axis(offsets_x):
    """GT points (0, 0, 2k) and predictions (dx_k, 0, 2k): nearest neighbours pair up and the
    distances are exactly |dx_k| (y and z differences are exactly 0; sqrt(x^2) == |x| in IEEE)."""
    z = 2.0 * np.arange(len(offsets_x))
    gt = np.stack([np.zeros_like(z), np.zeros_like(z), z], 1)
    pred = np.stack([np.asarray(offsets_x, float), np.zeros_like(z), z], 1)
    return gt, pred


def test_fscore_threshold_is_strict_and_matches_hand_computation():
    gt, pred = points_on_z_axis([0.0, 0.004, 0.005, 0.02])
    d = cKDTree(pred).query(gt)[0]
    assert d[2] == 0.005  # exactly on the 5 mm threshold
    f, p, r = M.fscore(gt, pred, 0.005)
    assert (p, r, f) == (0.5, 0.5, 0.5)  # 0.005 is not < 0.005
    f, p, r = M.fscore(gt, pred, 0.015)
    assert (p, r, f) == (0.75, 0.75, 0.75)
    # One extra far prediction: precision (GT -> pred) stays 2/4, recall (pred -> GT) drops to 2/5.
    far = np.vstack([pred, [[1.0, 1.0, 100.0]]])
    f, p, r = M.fscore(gt, far, 0.005)
    assert (p, r) == (0.5, 0.4)
    assert f == pytest.approx(2 * 0.5 * 0.4 / 0.9, abs=1e-15)
    assert M.fscore(gt, pred + [0.1, 0, 0], 0.015)[0] == 0.0


def test_batch_fscores_equal_per_sample_fscores():
    rng = np.random.default_rng(7)
    gt = random_hands(rng, 4, points=300)
    preds = (gt + rng.normal(size=gt.shape) * 0.006, random_hands(rng, 4, points=120))
    ticks = []
    got = M.batch_fscores(gt, preds, (0.005, 0.015), progress=ticks.append)
    assert ticks == [1] * 4
    for k, pred in enumerate(preds):
        for i in range(4):
            for j, th in enumerate((0.005, 0.015)):
                assert got[k, i, j] == pytest.approx(M.fscore(gt[i], pred[i], th)[0], abs=1e-15)


# --------------------------------------------------------------------------- freihand_scores


def test_freihand_scores_keys_units_and_per_sample_arrays():
    rng = np.random.default_rng(8)
    gt_xyz, gt_verts = random_hands(rng, 6), random_hands(rng, 6, points=778)
    xyz_pred = gt_xyz + rng.normal(size=gt_xyz.shape) * 0.01
    verts_pred = gt_verts + rng.normal(size=gt_verts.shape) * 0.01
    s = M.freihand_scores(xyz_pred, verts_pred, gt_xyz, gt_verts)
    assert all(s[k] is not None for k in M.FREIHAND_SCORE_KEYS)
    err = np.linalg.norm(xyz_pred - gt_xyz, axis=-1)
    assert s["xyz_mean3d"] == pytest.approx(100 * err.mean(), rel=1e-12)  # cm, as scores.txt
    assert s["mpjpe_mm"] == pytest.approx(1000 * err.mean(), rel=1e-12)
    assert s["pa_mpjpe_mm"] == pytest.approx(10 * s["xyz_al_mean3d"], rel=1e-12)
    assert s["pa_mpjpe_mm"] < s["mpjpe_mm"]
    assert (s["f5"], s["f15"]) == (s["f_al_score_5"], s["f_al_score_15"])
    ps = s["per_sample"]
    assert ps["kp_al_mean_m"].shape == (6,) and ps["kp_al_errors_m"].shape == (6, 21)
    assert np.mean(ps["kp_al_mean_m"]) * 1000 == pytest.approx(s["pa_mpjpe_mm"], rel=1e-12)
    assert np.mean(ps["f_al_score_15"]) == pytest.approx(s["f15"], abs=1e-15)
    assert s["per_joint_al_mean_mm"].shape == (21,)
    assert s["curves"]["xyz_al"].shape == (100,)


def test_zero_predictor_errors_are_distances_to_origin_and_to_the_gt_centroid():
    rng = np.random.default_rng(9)
    gt_xyz, gt_verts = random_hands(rng, 5), random_hands(rng, 5, points=778)
    s = M.freihand_scores(np.zeros_like(gt_xyz), np.zeros_like(gt_verts), gt_xyz, gt_verts)
    # Unaligned: |gt|. Aligned: pred_n = 0 so s = 0 and every point lands on the GT centroid.
    assert s["mpjpe_mm"] == pytest.approx(1000 * np.linalg.norm(gt_xyz, axis=-1).mean(), rel=1e-12)
    to_centroid = np.linalg.norm(gt_xyz - gt_xyz.mean(1, keepdims=True), axis=-1).mean()
    assert s["pa_mpjpe_mm"] == pytest.approx(1000 * to_centroid, rel=1e-12)
    assert s["mpjpe_mm"] > 400 and s["pa_mpjpe_mm"] > 40 and s["pa_mpvpe_mm"] > 40
    assert s["xyz_auc3d"] == 0.0 and s["f_score_5"] == 0.0 and s["f_score_15"] == 0.0
    assert s["f_al_score_15"] < 0.2


def test_mesh_with_other_vertex_count_gets_no_mesh_scores_and_the_keypoint_transform():
    rng = np.random.default_rng(10)
    gt_xyz, gt_verts = random_hands(rng, 4), random_hands(rng, 4, points=778)
    xyz_pred = gt_xyz + rng.normal(size=gt_xyz.shape) * 0.005
    verts_pred = gt_verts[:, :700] + rng.normal(size=(4, 700, 3)) * 0.005
    s = M.freihand_scores(xyz_pred, verts_pred, gt_xyz, gt_verts)
    assert not s["mesh_scored"] and s["num_vertices_pred"] == 700
    for k in ("mesh_mean3d", "mesh_auc3d", "mesh_al_mean3d", "mesh_al_auc3d", "mpvpe_mm",
              "pa_mpvpe_mm"):
        assert s[k] is None
    assert s["per_sample"]["mesh_al_mean_m"] is None and s["curves"]["mesh_al"] is None
    _, tf = M.align_w_scale(gt_xyz, xyz_pred, return_transform=True)
    aligned = M.align_by_transform_official(verts_pred, tf)
    for i in range(4):
        assert s["per_sample"]["f_al_score_15"][i] == pytest.approx(
            M.fscore(gt_verts[i], aligned[i], 0.015)[0], abs=1e-15)
        assert s["per_sample"]["f_score_5"][i] == pytest.approx(
            M.fscore(gt_verts[i], verts_pred[i], 0.005)[0], abs=1e-15)
    full = M.freihand_scores(xyz_pred, gt_verts, gt_xyz, gt_verts)
    assert s["pa_mpjpe_mm"] == full["pa_mpjpe_mm"] and full["mesh_scored"]
    none = M.freihand_scores(xyz_pred, None, gt_xyz, gt_verts)
    assert none["f5"] is None and none["pa_mpvpe_mm"] is None
    assert none["pa_mpjpe_mm"] == full["pa_mpjpe_mm"]


def test_freihand_scores_validation_names_the_fault():
    rng = np.random.default_rng(11)
    gt_xyz, gt_verts = random_hands(rng, 3), random_hands(rng, 3, points=778)
    bad = gt_xyz.copy()
    bad[2, 7, 1] = np.nan
    with pytest.raises(ValueError, match=r"xyz_pred: sample 2 .*nan.* point 7"):
        M.freihand_scores(bad, None, gt_xyz, gt_verts)
    with pytest.raises(ValueError, match=r"xyz_pred: 2 samples, expected 3"):
        M.freihand_scores(gt_xyz[:2], None, gt_xyz, gt_verts)
    with pytest.raises(ValueError,
                       match=r"xyz_pred: expected shape \(N, 21, 3\), found \(3, 20, 3\)"):
        M.freihand_scores(gt_xyz[:, :20], None, gt_xyz, gt_verts)
    with pytest.raises(ValueError, match=r"verts_gt: expected shape \(N, 778, 3\)"):
        M.freihand_scores(gt_xyz, None, gt_xyz, gt_verts[:, :500])



@pytest.mark.parametrize("factor", [1e300, 1e200, 1e-2])
def test_alignment_is_exact_at_any_large_scale(factor):
    """gt x factor aligns back onto gt: the norms must not overflow (was 43 mm at 1e300).
    (Far below 1e-8 m the official eps added to the norms dominates, by design.)"""
    rng = np.random.default_rng(21)
    gt = random_hands(rng, 2)
    aligned = M.align_w_scale(gt, gt * factor)
    assert np.all(np.isfinite(aligned))
    np.testing.assert_allclose(M.point_errors(gt, aligned), eps_bias(gt, factor), atol=1e-12)


def test_root_relative_pck_ignores_translation_and_matches_hand_auc():
    rng = np.random.default_rng(13)
    gt = random_hands(rng, 4)
    r = M.root_relative_pck(gt + [0.1, -0.2, 0.3], gt)
    assert r["auc"] == pytest.approx(1.0, abs=1e-12) and r["mean_error_mm"] < 1e-9
    pred = gt.copy()
    pred[:, 1:, 0] += 0.0305  # every non-root joint 30.5 mm off; the root has error 0
    vis = np.ones((4, 21), bool)
    vis[:, 0] = False
    r = M.root_relative_pck(pred, gt, vis)
    # thresholds 20..50 mm at 1 mm: pck 0 up to 30 mm (index 10), 1 from 31 mm (index 11):
    # trapezoid = 0.5 + 19 steps, over 30 steps.
    assert r["auc"] == pytest.approx(19.5 / 30, abs=1e-12)
    assert r["mean_error_mm"] == pytest.approx(30.5, abs=1e-9)
    assert len(r["thresholds"]) == 31


def test_pck_2d_pixels_box_normalisation_and_visibility():
    uv_gt = np.array([[[0.0, 0.0], [100.0, 0.0], [0.0, 50.0]]])  # box 100 x 50 -> side 100
    uv_pred = uv_gt + [[[3.0, 4.0], [0.0, 10.0], [0.0, 0.0]]]  # errors 5, 10, 0 px
    uv_pred[0, 2] = [1e3, 1e3]  # far off, but invisible
    vis = np.array([[True, True, False]])
    r = M.pck_2d(uv_pred, uv_gt, vis, thresholds=np.array([0.0, 5.0, 10.0]))
    np.testing.assert_allclose(r["curve"], [0.0, 0.5, 1.0])
    assert r["mean_error_px"] == pytest.approx(7.5)
    assert M.hand_box_size(uv_gt, vis)[0] == 100.0
    assert M.hand_box_size(uv_gt)[0] == 100.0
    r = M.pck_2d_normalised(uv_pred, uv_gt, vis, thresholds=np.array([0.0, 0.05, 0.1]))
    np.testing.assert_allclose(r["curve"], [0.0, 0.5, 1.0])
    assert r["mean_error"] == pytest.approx(0.075) and r["excluded_samples"] == []
    one = np.array([[True, False, False]])
    assert M.pck_2d_normalised(np.concatenate([uv_pred, uv_pred]), np.concatenate([uv_gt, uv_gt]),
                               np.concatenate([vis, one]))["excluded_samples"] == [1]


def test_mask_iou_hand_cases():
    gt = np.zeros((3, 4, 4), bool)
    pred = np.zeros((3, 4, 4))
    gt[0, :2] = True  # 8 pixels
    pred[0, 1:3] = 0.9  # 8 pixels, 4 shared -> 4 / 12
    pred[1, 0, 0] = 0.5  # not > 0.5: empty, and gt empty -> 1 by convention
    gt[2, 0, 0] = True  # gt has 1 pixel, pred empty -> 0
    np.testing.assert_allclose(M.mask_iou(pred, gt), [1 / 3, 1.0, 0.0])
    assert M.mean_iou(pred, gt) == pytest.approx((1 / 3 + 1.0) / 3)
    bad = pred.copy()
    bad[2, 1, 3] = 255
    with pytest.raises(ValueError, match=r"pred mask: sample 2 has value 255.0 at pixel \(1, 3\)"):
        M.mask_iou(bad, gt)
