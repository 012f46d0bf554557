"""Evaluation metrics in NumPy/SciPy: the official FreiHAND protocol, root-relative 3D PCK
(RHD/STB), 2D PCK and mask IoU. No JAX or TensorFlow import, so training-time evaluation and
eval.py share it.

Inputs are validated by hiu_jax.pointsets.check_points (shapes, finiteness); reading and writing
FreiHAND's JSON files (pred.json, the ground-truth lists) is hiu_jax/pointsets.py.

Units: 3D inputs are metres. Functions return metres unless a key or name says otherwise
(``*_mm``); the FreiHAND score keys that the official script writes to ``scores.txt`` follow that
file, whose mean errors are in **centimetres** (see `freihand_scores`).

The FreiHAND protocol (the official evaluation script ``eval.py`` and its ``EvalUtil``),
detail by detail, as implemented here:

- Per-point Euclidean errors, unaligned and after `align_w_scale`; keypoints (21) and mesh (778)
  are aligned separately, each with its own similarity transform.
- `align_w_scale`: centre both sets, divide each by its own Frobenius norm plus 1e-8, rotate the
  prediction by the orthogonal Procrustes solution (any orthogonal R: a mirrored prediction aligns
  exactly, there is no reflection correction), scale by the sum of singular values times the
  ground truth's norm-plus-1e-8, translate to the ground truth's centroid.
- A predicted mesh whose vertex count differs from the ground truth's gets no mesh errors (the
  ``mesh_*`` keys are None here; the official file writes -1 / -100) and is aligned for the
  F-scores with the keypoints' transform *exactly as the official ``align_by_trafo`` applies it*
  (`align_by_transform_official`; see its docstring for how that differs from a true similarity).
- PCK per point: the fraction of samples with error <= t (inclusive, as ``EvalUtil._get_pck``)
  over ``np.linspace(0, 0.05, 100)`` m; AUC = trapezoid(pck, t) / trapezoid(1, t) per point;
  mean error, AUC and curve are averaged over points.
- F-score at 5 and 15 mm on the mesh vertices, raw and aligned: d1 = nearest-neighbour distance
  of each ground-truth vertex to the prediction, d2 = the reverse; "precision" = mean(d1 < th),
  "recall" = mean(d2 < th) (the official names; strict <); F = 2PR / (P + R), 0 when P + R = 0.
  The official script computes F-scores whatever the predicted vertex count.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
from scipy.spatial import cKDTree

from hiu_jax.geometry.skeleton import NUM_KEYPOINTS, NUM_VERTICES
from hiu_jax.pointsets import check_points

ALIGN_EPS = 1e-8  # added to each Frobenius norm in align_w_scale, as in the official script

FREIHAND_PCK_THRESHOLDS = np.linspace(0.0, 0.05, 100)  # metres (official get_measures(0, .05, 100))
FSCORE_THRESHOLDS = (0.005, 0.015)  # metres
# RHD/STB: 20..50 mm in 1 mm steps (31 thresholds, both ends included).
ROOT_RELATIVE_PCK_THRESHOLDS = np.linspace(0.020, 0.050, 31)  # metres
PCK_2D_PIXEL_THRESHOLDS = np.linspace(0.0, 30.0, 31)  # pixels, 1 px steps
PCK_2D_BOX_THRESHOLDS = np.linspace(0.0, 0.5, 51)  # fractions of the hand box's longer side

# The score keys of the official scores.txt, in its order.
FREIHAND_SCORE_KEYS = (
    "xyz_mean3d", "xyz_auc3d", "xyz_al_mean3d", "xyz_al_auc3d",
    "mesh_mean3d", "mesh_auc3d", "mesh_al_mean3d", "mesh_al_auc3d",
    "f_score_5", "f_al_score_5", "f_score_15", "f_al_score_15",
)


# --------------------------------------------------------------------------- alignment


class SimilarityTransform(NamedTuple):
    """The transform `align_w_scale` estimates (batched over leading axes `...`).

    aligned = (pred - pred_centroid) / pred_norm @ rotation.T * scale * gt_norm + gt_centroid

    Attributes:
      rotation: (..., 3, 3) orthogonal R of orthogonal_procrustes(gt_n, pred_n); det may be -1.
      scale: (...,) sum of the singular values of gt_n^T pred_n (dimensionless).
      gt_norm: (...,) ||gt - gt_centroid||_F + 1e-8, metres.
      gt_centroid: (..., 3) metres.
      pred_norm: (...,) ||pred - pred_centroid||_F + 1e-8, metres.
      pred_centroid: (..., 3) metres.
    """

    rotation: np.ndarray
    scale: np.ndarray
    gt_norm: np.ndarray
    gt_centroid: np.ndarray
    pred_norm: np.ndarray
    pred_centroid: np.ndarray


def orthogonal_procrustes(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched ``scipy.linalg.orthogonal_procrustes``: R minimising ||a R - b||_F over orthogonal R.

    R = U V^T with U S V^T = svd(a^T b), and scale = sum(S), as scipy computes them (no det
    correction, so R may be a reflection).

    Args:
      a, b: (..., P, D) real arrays.
    Returns:
      R (..., D, D) and scale (...,).
    """
    u, w, vt = np.linalg.svd(np.swapaxes(a, -1, -2) @ b)
    return u @ vt, w.sum(-1)


def _frobenius_norm(x: np.ndarray) -> np.ndarray:
    """||x||_F over the last two axes, (..., P, D) -> (...), without overflow or underflow:
    each set is divided by its largest |entry| before squaring (1e200 m**2 would be inf)."""
    big = np.max(np.abs(x), axis=(-2, -1))
    safe = np.where(big > 0, big, 1.0)
    scaled = x / safe[..., None, None]
    return np.sqrt(np.sum(scaled * scaled, axis=(-2, -1))) * np.where(big > 0, big, 0.0)


def align_w_scale(gt: np.ndarray, pred: np.ndarray, return_transform: bool = False):
    """The official FreiHAND similarity alignment of `pred` onto `gt` (batched).

    gt_n = (gt - mean(gt)) / (||gt - mean(gt)||_F + 1e-8), pred_n likewise;
    R, s = orthogonal_procrustes(gt_n, pred_n)  (gt_n R ~ pred_n, so gt_n ~ pred_n R^T);
    aligned = pred_n @ R^T * s * (||gt - mean(gt)||_F + 1e-8) + mean(gt).
    No reflection correction: a mirrored prediction aligns exactly. The norms are taken after
    scaling each set to a largest |entry| of 1, so any finite scale (1e-300..1e300) aligns.

    Args:
      gt, pred: (..., P, 3) metres; the same P (point correspondence).
    Returns:
      aligned (..., P, 3) metres, and with `return_transform` also the `SimilarityTransform`.
    """
    gt_centroid = gt.mean(-2)
    pred_centroid = pred.mean(-2)
    gt_c = gt - gt_centroid[..., None, :]
    pred_c = pred - pred_centroid[..., None, :]
    gt_norm = _frobenius_norm(gt_c) + ALIGN_EPS
    pred_norm = _frobenius_norm(pred_c) + ALIGN_EPS
    pred_n = pred_c / pred_norm[..., None, None]
    rotation, scale = orthogonal_procrustes(gt_c / gt_norm[..., None, None], pred_n)
    aligned = (pred_n @ np.swapaxes(rotation, -1, -2)) * (scale * gt_norm)[..., None, None] \
        + gt_centroid[..., None, :]
    if return_transform:
        return aligned, SimilarityTransform(rotation, scale, gt_norm, gt_centroid, pred_norm,
                                            pred_centroid)
    return aligned


def align_by_transform_official(points: np.ndarray, transform: SimilarityTransform) -> np.ndarray:
    """Applies a keypoint transform to other points *as the official ``align_by_trafo`` does*.

    out = (x - mean(x)) @ R^T * scale * gt_norm + (gt_centroid - pred_centroid) + mean(x)

    Unlike the similarity that `align_w_scale` applied to the keypoints, this does not divide by
    pred_norm, and it rotates about the points' own centroid and then shifts by the keypoint
    centroid difference. So even a perfect prediction comes out scaled by about ||keypoints_c||
    (~0.2). FreiHAND uses it only for meshes whose vertex count is not 778 (F-scores only);
    reproduced for score parity with the official server.

    Args:
      points: (..., V, 3) metres; transform: from `align_w_scale(..., return_transform=True)`,
        with the same leading axes.
    Returns:
      (..., V, 3) metres.
    """
    centroid = points.mean(-2, keepdims=True)
    shift = (transform.gt_centroid - transform.pred_centroid)[..., None, :]
    return ((points - centroid) @ np.swapaxes(transform.rotation, -1, -2)
            * (transform.scale * transform.gt_norm)[..., None, None] + shift + centroid)


# --------------------------------------------------------------------------- errors, PCK, AUC


def point_errors(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Euclidean distance per point: (..., P, D) x 2 -> (..., P), in the inputs' unit."""
    return np.sqrt(np.sum((gt - pred) ** 2, axis=-1))


def pck_curves(errors: np.ndarray, thresholds: np.ndarray,
               valid: Optional[np.ndarray] = None) -> np.ndarray:
    """Per-point PCK: the fraction of valid samples with error <= t (inclusive, as EvalUtil).

    Args:
      errors: (N, P) non-negative errors.
      thresholds: (T,) ascending, same unit as `errors`.
      valid: (N, P) bool, or None for all valid.
    Returns:
      (P, T) fractions in [0, 1]; NaN rows for points with no valid sample.
    """
    thresholds = np.asarray(thresholds, np.float64)
    if thresholds.ndim != 1 or len(thresholds) < 2 or np.any(np.diff(thresholds) <= 0):
        raise ValueError(f"thresholds must be a 1-D ascending array of >= 2 values, "
                         f"got {thresholds}")
    n, p = errors.shape
    t = len(thresholds)
    valid = np.ones((n, p), bool) if valid is None else np.asarray(valid, bool)
    # err <= thresholds[k]  <=>  k >= searchsorted(thresholds, err, side="left").
    first = np.searchsorted(thresholds, errors, side="left")  # (N, P) in [0, T]
    flat = (np.arange(p) * (t + 1) + first)[valid]
    counts = np.bincount(flat, minlength=p * (t + 1)).reshape(p, t + 1)
    within = np.cumsum(counts, axis=1)[:, :t]
    num_valid = valid.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(num_valid[:, None] > 0, within / num_valid[:, None], np.nan)


def auc(pck: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Normalised area under PCK curves: trapezoid(pck, t) / trapezoid(1, t) over the last axis."""
    thresholds = np.asarray(thresholds, np.float64)
    return np.trapezoid(pck, thresholds, axis=-1) / np.trapezoid(np.ones_like(thresholds),
                                                                 thresholds)


def error_measures(errors: np.ndarray, thresholds: np.ndarray,
                   valid: Optional[np.ndarray] = None) -> dict:
    """The official ``EvalUtil.get_measures``: per-point mean, median, PCK and AUC, averaged over
    the points that have at least one valid sample.

    Args:
      errors: (N, P); thresholds: (T,) ascending; valid: (N, P) bool or None (all valid).
    Returns:
      dict: mean, median, auc (floats, the unit of `errors` for mean/median), curve (T,),
      thresholds (T,), per_point_mean (P,) (NaN for points without data).
    """
    valid = np.ones(errors.shape, bool) if valid is None else np.asarray(valid, bool)
    num_valid = valid.sum(0)
    has = num_valid > 0
    if not has.any():
        raise ValueError("no valid error at any point")
    curves = pck_curves(errors, thresholds, valid)[has]
    masked = np.where(valid, errors, np.nan)[:, has]
    per_point_mean = np.full(errors.shape[1], np.nan)
    per_point_mean[has] = np.nanmean(masked, axis=0)
    return dict(mean=float(per_point_mean[has].mean()),
                median=float(np.nanmedian(masked, axis=0).mean()),
                auc=float(auc(curves, thresholds).mean()),
                curve=curves.mean(0), thresholds=np.asarray(thresholds, np.float64),
                per_point_mean=per_point_mean)


# --------------------------------------------------------------------------- standard errors


def standard_error(values) -> float:
    """The standard error of the mean of per-sample `values` (N,): std (ddof 1) / sqrt(n) over
    the finite ones; NaN with fewer than two. A score's mean +- 2 standard errors brackets what
    the same model would score on another draw of as many samples (about 95 %)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return float("nan")
    return float(np.std(v, ddof=1) / np.sqrt(len(v)))


def paired_difference(a, b) -> tuple[float, float, int]:
    """(mean(b - a), its standard error, n) over the samples where both per-sample columns
    (N,) are finite: the difference of two models scored on the same samples. Pairing removes
    the samples' own difficulty, so its standard error is far below that of either mean."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired columns must have one shape, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    d = b[ok] - a[ok]
    return (float(d.mean()) if len(d) else float("nan")), standard_error(d), int(ok.sum())


def per_point_mean_influence(errors: np.ndarray, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """Per-sample linearised values u (N,) of M = mean over points of (per-point mean error over
    its valid samples), the statistic of `error_measures` (points with no valid sample dropped).

    u_i = M + (1 / P) sum_p (N / n_p) v_ip (e_ip - m_p), with m_p the per-point means and n_p
    their counts, so mean(u) = M exactly and standard_error(u) is the delta-method standard
    error of M. With every point valid, u_i is the sample's mean error over its points. Samples
    with no valid point get NaN (they do not enter M).
    errors: (N, P); valid: (N, P) bool or None (all valid).
    """
    errors = np.asarray(errors, np.float64)
    valid = np.ones(errors.shape, bool) if valid is None else np.asarray(valid, bool)
    n = errors.shape[0]
    counts = valid.sum(0)
    has = counts > 0
    if not has.any():
        return np.full(n, np.nan)
    e, v = errors[:, has], valid[:, has]
    m_p = np.where(v, e, 0.0).sum(0) / counts[has]
    dev = np.where(v, e - m_p, 0.0) * (n / counts[has])
    u = m_p.mean() + dev.mean(1)
    return np.where(valid.any(1), u, np.nan)


# --------------------------------------------------------------------------- F-score


def fscore_from_distances(d_gt_to_pred: np.ndarray, d_pred_to_gt: np.ndarray,
                          threshold: float) -> tuple[float, float, float]:
    """F-score from nearest-neighbour distances, with the official (swapped) names.

    precision = mean(d_gt_to_pred < th), recall = mean(d_pred_to_gt < th) (strict <),
    F = 2PR / (P + R), 0 when P + R == 0.
    Returns: (f, precision, recall).
    """
    precision = float(np.mean(d_gt_to_pred < threshold))
    recall = float(np.mean(d_pred_to_gt < threshold))
    total = precision + recall
    return (2.0 * precision * recall / total if total > 0 else 0.0), precision, recall


def fscore(gt: np.ndarray, pred: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """F-score of one point cloud pair, (V, 3) and (W, 3) metres, at `threshold` metres.

    Returns: (f, precision, recall) as `fscore_from_distances`.
    """
    d_gt_to_pred = cKDTree(pred).query(gt, k=1)[0]
    d_pred_to_gt = cKDTree(gt).query(pred, k=1)[0]
    return fscore_from_distances(d_gt_to_pred, d_pred_to_gt, threshold)


def batch_fscores(gt: np.ndarray, preds: Sequence[np.ndarray], thresholds: Sequence[float],
                  progress: Optional[Callable[[int], object]] = None) -> np.ndarray:
    """F-scores of several predictions of each sample against the same ground truth.

    One KD-tree per ground-truth sample serves every prediction; one per prediction sample. The
    queries stop at max(thresholds) (`distance_upper_bound`): a farther neighbour reads as inf,
    which fails `d < th` exactly as its true distance would.

    Args:
      gt: (N, V, 3) metres.
      preds: K arrays (N, W, 3) metres (e.g. raw and aligned).
      thresholds: (T,) metres.
      progress: called with 1 after each sample (e.g. tqdm's update).
    Returns:
      (K, N, T) F-scores.
    """
    thresholds = np.asarray(thresholds, np.float64)
    bound = float(thresholds.max())
    n = gt.shape[0]
    out = np.zeros((len(preds), n, len(thresholds)))
    for i in range(n):
        gt_tree = cKDTree(gt[i])
        for k, pred in enumerate(preds):
            d_gt_to_pred = cKDTree(pred[i]).query(gt[i], k=1, distance_upper_bound=bound)[0]
            d_pred_to_gt = gt_tree.query(pred[i], k=1, distance_upper_bound=bound)[0]
            precision = (d_gt_to_pred[:, None] < thresholds).mean(0)
            recall = (d_pred_to_gt[:, None] < thresholds).mean(0)
            total = precision + recall
            with np.errstate(invalid="ignore"):
                out[k, i] = np.where(total > 0, 2 * precision * recall / total, 0.0)
        if progress is not None:
            progress(1)
    return out


# --------------------------------------------------------------------------- FreiHAND


def freihand_scores(xyz_pred, verts_pred, xyz_gt, verts_gt,
                    progress: Optional[Callable[[int], object]] = None) -> dict:
    """The official FreiHAND evaluation of N predictions, with mm headline keys and per-sample data.

    Args:
      xyz_pred: (N, 21, 3) keypoints, metres, FreiHAND order.
      verts_pred: (N, V, 3) mesh vertices, metres, or None (no mesh: no mesh scores, no F-scores).
        V != 778: no mesh errors (None), F-scores after `align_by_transform_official` with the
        keypoints' transform, as the official script does.
      xyz_gt: (N, 21, 3); verts_gt: (N, 778, 3) metres.
      progress: called with 1 per sample during the F-score pass (e.g. ``tqdm.update``).
    Returns:
      dict with
      - the official scores.txt keys (`FREIHAND_SCORE_KEYS`) with the official units: the
        ``*_mean3d`` keys in **centimetres** (the script multiplies by 100 before writing), AUCs
        in [0, 1] over 0..5 cm, F-scores in [0, 1]; ``mesh_*`` None when not scored, ``f_*`` None
        without a mesh;
      - headline keys in mm: mpjpe_mm, pa_mpjpe_mm, mpvpe_mm, pa_mpvpe_mm (None when not scored),
        f5, f15 (= the aligned F-scores, as papers report them);
      - num_samples, mesh_scored (bool), num_vertices_pred (V or None);
      - curves: thresholds (100,) metres and the mean PCK curves xyz, xyz_al, mesh, mesh_al
        (mesh ones None when not scored);
      - per_joint_al_mean_mm: (21,) aligned mean error per joint;
      - per_sample: kp_mean_m, kp_al_mean_m (N,), mesh_mean_m, mesh_al_mean_m (N,) or None,
        f_score_5, f_al_score_5, f_score_15, f_al_score_15 (N,) or None, kp_al_errors_m (N, 21).
    """
    xyz_gt = check_points("xyz_gt", xyz_gt, NUM_KEYPOINTS)
    n = xyz_gt.shape[0]
    xyz_pred = check_points("xyz_pred", xyz_pred, NUM_KEYPOINTS, num_samples=n)
    verts_gt = check_points("verts_gt", verts_gt, NUM_VERTICES, num_samples=n)
    if verts_pred is not None:
        verts_pred = check_points("verts_pred", verts_pred, None, num_samples=n)
    thr = FREIHAND_PCK_THRESHOLDS

    kp_err = point_errors(xyz_gt, xyz_pred)
    xyz_al, kp_transform = align_w_scale(xyz_gt, xyz_pred, return_transform=True)
    kp_al_err = point_errors(xyz_gt, xyz_al)
    kp = error_measures(kp_err, thr)
    kp_al = error_measures(kp_al_err, thr)

    mesh_scored = verts_pred is not None and verts_pred.shape[1] == verts_gt.shape[1]
    mesh = mesh_al = mesh_err = mesh_al_err = None
    fs = None
    if verts_pred is not None:
        if mesh_scored:
            verts_al = align_w_scale(verts_gt, verts_pred)
            mesh_err = point_errors(verts_gt, verts_pred)
            mesh_al_err = point_errors(verts_gt, verts_al)
            mesh = error_measures(mesh_err, thr)
            mesh_al = error_measures(mesh_al_err, thr)
        else:
            verts_al = align_by_transform_official(verts_pred, kp_transform)
        fs = batch_fscores(verts_gt, (verts_pred, verts_al), FSCORE_THRESHOLDS, progress)

    def cm(m):
        return None if m is None else 100.0 * m["mean"]

    def mm(m):
        return None if m is None else 1000.0 * m["mean"]

    def mean_f(k, j):
        return None if fs is None else float(fs[k, :, j].mean())

    scores = dict(
        xyz_mean3d=cm(kp), xyz_auc3d=kp["auc"], xyz_al_mean3d=cm(kp_al), xyz_al_auc3d=kp_al["auc"],
        mesh_mean3d=cm(mesh), mesh_auc3d=None if mesh is None else mesh["auc"],
        mesh_al_mean3d=cm(mesh_al), mesh_al_auc3d=None if mesh_al is None else mesh_al["auc"],
        f_score_5=mean_f(0, 0), f_al_score_5=mean_f(1, 0),
        f_score_15=mean_f(0, 1), f_al_score_15=mean_f(1, 1),
    )
    scores.update(
        mpjpe_mm=mm(kp), pa_mpjpe_mm=mm(kp_al), mpvpe_mm=mm(mesh), pa_mpvpe_mm=mm(mesh_al),
        f5=scores["f_al_score_5"], f15=scores["f_al_score_15"],
        num_samples=n, mesh_scored=bool(mesh_scored),
        num_vertices_pred=None if verts_pred is None else int(verts_pred.shape[1]),
        curves=dict(thresholds=thr.copy(), xyz=kp["curve"], xyz_al=kp_al["curve"],
                    mesh=None if mesh is None else mesh["curve"],
                    mesh_al=None if mesh_al is None else mesh_al["curve"]),
        per_joint_al_mean_mm=1000.0 * kp_al["per_point_mean"],
        per_sample=dict(
            kp_mean_m=kp_err.mean(1), kp_al_mean_m=kp_al_err.mean(1),
            mesh_mean_m=None if mesh_err is None else mesh_err.mean(1),
            mesh_al_mean_m=None if mesh_al_err is None else mesh_al_err.mean(1),
            f_score_5=None if fs is None else fs[0, :, 0],
            f_al_score_5=None if fs is None else fs[1, :, 0],
            f_score_15=None if fs is None else fs[0, :, 1],
            f_al_score_15=None if fs is None else fs[1, :, 1],
            kp_al_errors_m=kp_al_err),
    )
    ps = scores["per_sample"]
    for key, column, factor in (("pa_mpjpe_mm", "kp_al_mean_m", 1000.0),
                                ("pa_mpvpe_mm", "mesh_al_mean_m", 1000.0),
                                ("f5", "f_al_score_5", 1.0), ("f15", "f_al_score_15", 1.0)):
        scores[key + "_se"] = None if ps[column] is None else factor * standard_error(ps[column])
    return scores


# --------------------------------------------------------------------------- RHD / STB 3D PCK


def root_relative_pck(xyz_pred, xyz_gt, visibility=None,
                      thresholds: np.ndarray = ROOT_RELATIVE_PCK_THRESHOLDS, root: int = 0) -> dict:
    """Root-relative 3D PCK and AUC (RHD/STB protocol), no scale or rotation alignment.

    Both skeletons are translated so that joint `root` (the wrist) is at the origin; errors are
    then per-joint distances. The root's error is 0 by construction and counts like any joint
    (as in the EvalUtil-based scripts); mask it in `visibility` to leave it out. PCK per joint
    uses error <= t over `thresholds` (default 20..50 mm, 31 thresholds at 1 mm), averaged over
    joints with any visible sample.

    Args:
      xyz_pred, xyz_gt: (N, J, 3) metres.
      visibility: (N, J) bool (which GT joints count), or None for all.
      thresholds: (T,) metres, ascending.
    Returns:
      dict: auc, mean_error_mm, curve (T,), thresholds (T,) metres, per_joint_mean_mm (J,).
    """
    xyz_gt = check_points("xyz_gt", xyz_gt)
    xyz_pred = check_points("xyz_pred", xyz_pred, xyz_gt.shape[1], xyz_gt.shape[0])
    valid = _check_visibility(visibility, xyz_gt.shape[:2])
    err = point_errors(xyz_gt - xyz_gt[:, root:root + 1], xyz_pred - xyz_pred[:, root:root + 1])
    m = error_measures(err, thresholds, valid)
    return dict(auc=m["auc"], mean_error_mm=1000.0 * m["mean"], curve=m["curve"],
                thresholds=m["thresholds"], per_joint_mean_mm=1000.0 * m["per_point_mean"])


def _check_visibility(visibility, shape) -> np.ndarray:
    if visibility is None:
        return np.ones(shape, bool)
    v = np.asarray(visibility)
    if v.shape != tuple(shape):
        raise ValueError(f"visibility: expected shape {tuple(shape)}, found {v.shape}")
    return v.astype(bool)


# --------------------------------------------------------------------------- 2D PCK


def pck_2d(uv_pred, uv_gt, visibility=None,
           thresholds: np.ndarray = PCK_2D_PIXEL_THRESHOLDS) -> dict:
    """2D PCK and AUC in pixels over visible ground-truth keypoints.

    Args:
      uv_pred, uv_gt: (N, J, 2) pixels; visibility: (N, J) bool or None (all visible).
      thresholds: (T,) pixels, ascending (default 0..30 px in 1 px steps).
    Returns:
      dict: auc, mean_error_px, curve (T,), thresholds (T,), per_joint_mean_px (J,).
    """
    uv_gt = check_points("uv_gt", uv_gt, dims=2)
    uv_pred = check_points("uv_pred", uv_pred, uv_gt.shape[1], uv_gt.shape[0], dims=2)
    valid = _check_visibility(visibility, uv_gt.shape[:2])
    m = error_measures(point_errors(uv_gt, uv_pred), thresholds, valid)
    return dict(auc=m["auc"], mean_error_px=m["mean"], curve=m["curve"],
                thresholds=m["thresholds"], per_joint_mean_px=m["per_point_mean"])


def hand_box_size(uv_gt, visibility=None) -> np.ndarray:
    """Longer side of the axis-aligned box of each sample's visible GT keypoints.

    Args: uv_gt (N, J, 2) pixels; visibility (N, J) bool or None.
    Returns: (N,) pixels; 0 where fewer than two distinct visible keypoints span the box.
    """
    uv_gt = check_points("uv_gt", uv_gt, dims=2)
    valid = _check_visibility(visibility, uv_gt.shape[:2])[..., None]
    lo = np.where(valid, uv_gt, np.inf).min(1)
    hi = np.where(valid, uv_gt, -np.inf).max(1)
    side = np.max(hi - lo, axis=-1)
    return np.where(np.isfinite(side), side, 0.0)


def pck_2d_normalised(uv_pred, uv_gt, visibility=None,
                      thresholds: np.ndarray = PCK_2D_BOX_THRESHOLDS) -> dict:
    """2D PCK and AUC with errors divided by the hand box size (`hand_box_size`).

    Samples whose box size is 0 (no or one visible keypoint) cannot be normalised: they are left
    out and listed in `excluded_samples`.

    Args:
      uv_pred, uv_gt: (N, J, 2) pixels; visibility: (N, J) bool or None.
      thresholds: (T,) fractions of the box side, ascending (default 0..0.5 in steps of 0.01).
    Returns:
      dict: auc, mean_error (fraction of the box), curve (T,), thresholds (T,),
      excluded_samples (list of ints).
    """
    uv_gt = check_points("uv_gt", uv_gt, dims=2)
    uv_pred = check_points("uv_pred", uv_pred, uv_gt.shape[1], uv_gt.shape[0], dims=2)
    valid = _check_visibility(visibility, uv_gt.shape[:2])
    box = hand_box_size(uv_gt, valid)
    ok = box > 0
    err = point_errors(uv_gt, uv_pred) / np.where(ok, box, 1.0)[:, None]
    m = error_measures(err, thresholds, valid & ok[:, None])
    return dict(auc=m["auc"], mean_error=m["mean"], curve=m["curve"],
                thresholds=m["thresholds"],
                excluded_samples=[int(i) for i in np.flatnonzero(~ok)])


# --------------------------------------------------------------------------- masks


def binarize_mask(name: str, mask, threshold: float = 0.5) -> np.ndarray:
    """(N, H, W) bool or values in [0, 1] -> bool (value > threshold); errors name the sample."""
    m = np.asarray(mask)
    if m.ndim != 3:
        raise ValueError(f"{name}: expected shape (N, H, W), found {m.shape}")
    if m.dtype == bool:
        return m
    m = m.astype(np.float64)
    bad = np.argwhere(~((m >= 0) & (m <= 1)))  # also catches NaN
    if len(bad):
        i = tuple(int(j) for j in bad[0])
        raise ValueError(f"{name}: sample {i[0]} has value {m[i]} at pixel ({i[1]}, {i[2]}); "
                         "masks must be bool or in [0, 1]")
    return m > threshold


def mask_iou(pred, gt, threshold: float = 0.5) -> np.ndarray:
    """Per-sample IoU of binary masks: |P and G| / |P or G|.

    Args:
      pred, gt: (N, H, W) bool, or probabilities in [0, 1] binarised as value > threshold.
    Returns:
      (N,) IoU in [0, 1]; by convention 1 where both masks are empty (nothing to find, nothing
      found).
    """
    p = binarize_mask("pred mask", pred, threshold)
    g = binarize_mask("gt mask", gt, threshold)
    if p.shape != g.shape:
        raise ValueError(f"pred mask shape {p.shape} != gt mask shape {g.shape}")
    inter = np.sum(p & g, axis=(1, 2))
    union = np.sum(p | g, axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def mean_iou(pred, gt, threshold: float = 0.5) -> float:
    """Mean over samples of `mask_iou`."""
    return float(mask_iou(pred, gt, threshold).mean())
