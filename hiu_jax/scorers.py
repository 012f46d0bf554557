"""The scorers: one small pure function per metric, registered in one table (`SCORERS`).

A scorer is `scorer(s: Samples) -> Scored`: every value it defines (None where no sample has its
labels), its per-sample columns, the per-sample values behind its standard errors and its curves.
Its registration says how people see it: a unit per value (scores.json) and `Show` entries (the
report's table, the console line, the validation-curve panels, the ablation table).
`evaluation.score` runs every scorer in registration order and merges what they return; the
console line (`evaluation.summary`), metrics.jsonl and TensorBoard (train.py), scores.json,
per_sample.csv and the table (report.py) loop over that result and over `shown()`.

Adding a metric is one decorated function here (or anywhere, before `evaluation.score` runs):

    @register("thumb_tip", units={"thumb_tip_mm": "mm, wrist-relative thumb-tip error"},
              show=(Show("thumb_tip_mm", "Thumb tip error", ".2f", "mm", short="thumb tip"),))
    def thumb_tip(s):
        gt = s.gt_xyz - s.gt_xyz[:, :1]  # wrist-relative, as the prediction
        err = 1000.0 * np.linalg.norm(s.pred_xyz[:, 4] - gt[:, 4], axis=-1)
        return mean_over(s, s.has_3d, "thumb_tip_mm", err[s.has_3d], column_too=True)

The formulas are metrics.py's (the FreiHAND protocol and the 2D/mask metrics); these functions
pick the samples that carry each label and name the results.
"""
from __future__ import annotations

import re
from typing import Callable, NamedTuple

import jax.numpy as jnp
import numpy as np

import mano_jax
from hiu_jax import metrics
from hiu_jax.geometry import projection
from hiu_jax.geometry import skeleton
from mano_jax import rotations


class Samples(NamedTuple):
    """What every scorer reads: per-sample predictions and labels (N samples).

    p: Evaluator.predictions (network outputs and "gt_" + batch key).
    pred_xyz (N, 21, 3), pred_verts (N, 778, 3): the prediction, root-relative, metres, in the
      dataset's camera frame (left hands mirrored back).
    gt_xyz (N, 21, 3), gt_verts (N, 778, 3): the absolute labels in the same frame.
    has_3d, has_3d_mesh (3D joints and mesh), has_2d (2D labels with a visible keypoint),
      has_mask, has_mano: (N,) bool, the samples carrying each label.
    mano_model: the hand model (None: no mean-hand baseline).
    progress: called with 1 per sample during the F-score pass, or None.
    """

    p: dict
    pred_xyz: np.ndarray
    pred_verts: np.ndarray
    gt_xyz: np.ndarray
    gt_verts: np.ndarray
    has_3d: np.ndarray
    has_3d_mesh: np.ndarray
    has_2d: np.ndarray
    has_mask: np.ndarray
    has_mano: np.ndarray
    mano_model: object = None
    progress: Callable | None = None

    @property
    def n(self) -> int:
        return len(self.has_3d)


class Scored(NamedTuple):
    """What a scorer returns.

    values: key -> float, or None where no sample has the labels; every key of its `units`.
    per_sample: column -> (N,) float64, NaN where not scored (per_sample.csv, Scores.per_sample).
    linear: key of `values` -> (N,) float64, NaN where not scored, whose mean is values[key]
      exactly; gives "<key>_se" (metrics.standard_error) and paired differences between runs.
    curves: name -> array or (thresholds, curve), for the report's figures.
    """

    values: dict
    per_sample: dict = {}
    linear: dict = {}
    curves: dict = {}


class Show(NamedTuple):
    """How one value is shown. Templates hold "{key:spec}" fields filled from the scores
    ("n/a" in the table, "-" on the console where a key is not scored).

    key: the value; name: its row in the report's table ("" none); spec: its format; unit:
    printed after it ("mm", "px", "deg"; "" a fraction); short: its label on the console line
    ("" none); detail: the table row's third column (template); aside: in parentheses after it
    on the console (template); panel: the validation-curve panel it is drawn in ("" none) with
    line style `style`; better: "lower" or "higher" when the ablation table compares it, with
    format `fine_spec` (default `spec`; differences between runs may need more digits);
    meaningless: the table says so instead of the value (the official unaligned scores)."""

    key: str
    name: str
    spec: str
    unit: str = ""
    short: str = ""
    detail: str = ""
    aside: str = ""
    panel: str = ""
    style: str = "-"
    better: str = ""
    fine_spec: str = ""
    meaningless: bool = False


class Scorer(NamedTuple):
    """A registered metric: its function, a unit text per value key, how it is shown, and the
    keys it defines that are meaningless for this network (kept in scores.json, not logged)."""

    name: str
    fn: Callable[[Samples], Scored]
    units: dict
    show: tuple
    meaningless: tuple = ()


SCORERS: dict[str, Scorer] = {}


def register(name: str, *, units: dict, show=(), meaningless=()):
    """Decorator: registers `fn(samples) -> Scored` as scorer `name` (run in registration
    order). units: every value key it returns -> its unit and meaning (scores.json)."""

    def wrap(fn):
        if name in SCORERS:
            raise ValueError(f"scorer {name!r} is registered twice")
        SCORERS[name] = Scorer(name, fn, dict(units), tuple(show), tuple(meaningless))
        return fn

    return wrap


def shown() -> list:
    """Every scorer's `Show` entries, in registration order."""
    return [entry for scorer in SCORERS.values() for entry in scorer.show]


def units() -> dict:
    """Every value key -> its unit and meaning, in registration order."""
    return {k: v for scorer in SCORERS.values() for k, v in scorer.units.items()}


def meaningless_keys() -> tuple:
    """The keys every scorer marks meaningless for this network."""
    return tuple(k for scorer in SCORERS.values() for k in scorer.meaningless)


def fill(template: str, scores: dict, missing: str) -> str:
    """`template` with each "{key:spec}" replaced by format(scores[key], spec), or `missing`
    where the key is not a number in `scores`."""

    def one(match):
        v = scores.get(match.group(1))
        return format(v, match.group(2)) if isinstance(v, (int, float)) else missing

    return re.sub(r"\{([^:{}]+):([^{}]*)\}", one, template)


def with_se(scores: dict, key: str, spec: str, sep: str = "+-", missing: str = "-") -> str:
    """scores[key] formatted with `spec`, then `sep` and its standard error "<key>_se" (when
    finite), e.g. "12.41+-0.21"; `missing` when the key is not a number in `scores`."""
    v = scores.get(key)
    if not isinstance(v, (int, float)):
        return missing
    se = scores.get(key + "_se")
    return format(v, spec) + (f"{sep}{format(se, spec)}" if isinstance(se, (int, float))
                              and np.isfinite(se) else "")


# --------------------------------------------------------------------------- helpers


def column(n: int, where: np.ndarray, values) -> np.ndarray:
    """(N,) float64: `values` at the samples `where` (bool (N,)), NaN elsewhere."""
    out = np.full(n, np.nan)
    out[where] = values
    return out


def unscored(n: int, keys=(), columns=(), linear=()) -> Scored:
    """A scorer's result when no sample has its labels: None values, NaN columns."""
    return Scored({k: None for k in keys}, {k: np.full(n, np.nan) for k in columns},
                  {k: np.full(n, np.nan) for k in linear})


def mean_over(s: Samples, where: np.ndarray, key: str, values, column_too: bool = False) -> Scored:
    """The score `key` = the mean of per-sample `values` over the samples `where`, with those
    values as its linear values (and as the per-sample column `key` when `column_too`)."""
    if not where.any():
        return unscored(s.n, [key], [key] if column_too else (), [key])
    c = column(s.n, where, values)
    return Scored({key: float(c[where].mean())}, {key: c.copy()} if column_too else {},
                  {key: c})


def mean_hand(mano_model):
    """The constant baseline: the hand model at its mean pose (flat_hand_mean=False, zero pose)
    with zero shape, root-relative. -> (joints (21, 3), vertices (778, 3)) metres."""
    out = mano_jax.forward(mano_model, jnp.zeros((1, 48)), jnp.zeros((1, 10)),
                           flat_hand_mean=False)
    root = out.joints[0, :1]
    return np.asarray(out.joints[0] - root), np.asarray(out.vertices[0] - root)


def hand_size(keypoints_3d):
    """Sum of the 20 bone lengths (..., 21, 3) -> (...), same unit."""
    d = keypoints_3d[..., skeleton.BONE_CHILDREN, :] - keypoints_3d[..., skeleton.BONE_PARENTS, :]
    return np.linalg.norm(d, axis=-1).sum(-1)


def geodesic_degrees(r_pred, r_gt):
    """The angle of R_pred^T R_gt in degrees; (..., 3, 3) each -> (...)."""
    trace = np.einsum("...ij,...ij->...", r_pred, r_gt)
    return np.degrees(np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0)))


def resize_probabilities(prob, hw):
    """(N, h, w) probabilities -> (N, H, W) by bilinear resizing (PIL, pixel centres at
    integers as hiu_jax/geometry), clipped to [0, 1]; unchanged when the sizes are equal."""
    if prob.shape[1:] == tuple(hw):
        return prob
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(np.asarray(m, np.float32), mode="F").resize(
        (hw[1], hw[0]), Image.BILINEAR)) for m in prob]).clip(0.0, 1.0)


# --------------------------------------------------------------------------- 3D

FREIHAND_HEADLINE = ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "mpjpe_mm", "mpvpe_mm")
# The official unaligned scores: they compare the root-relative prediction with absolute labels,
# so they are meaningless for this network (eval.py keeps them in scores.json, marked so).
OFFICIAL_UNALIGNED_KEYS = ("xyz_mean3d", "xyz_auc3d", "mesh_mean3d", "mesh_auc3d", "f_score_5",
                           "f_score_15", "mpjpe_mm", "mpvpe_mm")
FREIHAND_COLUMNS = {"pa_mpjpe_mm": "pa_mpjpe_mm", "pa_mpvpe_mm": "pa_mpvpe_mm", "f5": "f5_al",
                    "f15": "f15_al"}  # linear key -> its per-sample column


@register(
    "freihand",
    units={**{k: "cm (as the official scores.txt)" for k in metrics.FREIHAND_SCORE_KEYS
              if k.endswith("mean3d")},
           **{k: "AUC of 3D PCK over 0-5 cm, 100 thresholds, after alignment (xyz_al, mesh_al) "
                 "or official unaligned" for k in metrics.FREIHAND_SCORE_KEYS
              if k.endswith("auc3d")},
           **{k: "F-score at 5 / 15 mm" for k in metrics.FREIHAND_SCORE_KEYS
              if k.startswith("f_")},
           "pa_mpjpe_mm": "mm, keypoints after Procrustes alignment",
           "pa_mpvpe_mm": "mm, mesh after Procrustes alignment",
           "f5": "F-score at 5 mm after alignment", "f15": "F-score at 15 mm after alignment",
           "mpjpe_mm": "mm, official unaligned", "mpvpe_mm": "mm, official unaligned"},
    show=(Show("pa_mpjpe_mm", "PA-MPJPE (keypoints, aligned)", ".2f", "mm", short="PA-MPJPE",
               detail="AUC 0-50 mm {xyz_al_auc3d:.3f}",
               aside="mean hand {baseline/pa_mpjpe_mm:.1f}",
               panel="3D joints", better="lower"),
          Show("pa_mpvpe_mm", "PA-MPVPE (mesh, aligned)", ".2f", "mm", short="PA-MPVPE",
               detail="AUC 0-50 mm {mesh_al_auc3d:.3f}",
               aside="mean hand {baseline/pa_mpvpe_mm:.1f}",
               panel="3D mesh", better="lower"),
          Show("f5", "F@5 mm (aligned)", ".3f", short="F@5", panel="F-scores and mask",
               better="higher", fine_spec=".4f"),
          Show("f15", "F@15 mm (aligned)", ".3f", short="F@15",
               aside="mean hand {baseline/f15:.3f}", panel="F-scores and mask", better="higher",
               fine_spec=".4f"),
          Show("mpjpe_mm", "MPJPE / MPVPE, raw F (official unaligned)", ".2f", "mm",
               detail="pred.json is root-relative (see scores.json)", meaningless=True)),
    meaningless=OFFICIAL_UNALIGNED_KEYS)
def freihand(s: Samples) -> Scored:
    """The official FreiHAND scores (metrics.freihand_scores) of the samples with 3D joints and
    a mesh: the aligned ones are exact; the unaligned ones compare a root-relative prediction
    with absolute labels."""
    keys = metrics.FREIHAND_SCORE_KEYS + FREIHAND_HEADLINE
    sel = s.has_3d_mesh
    if not sel.any():
        return unscored(s.n, keys, FREIHAND_COLUMNS.values(), FREIHAND_COLUMNS)
    fs = metrics.freihand_scores(s.pred_xyz[sel], s.pred_verts[sel], s.gt_xyz[sel],
                                 s.gt_verts[sel], progress=s.progress)
    f = fs["per_sample"]
    ps = {"pa_mpjpe_mm": column(s.n, sel, 1000.0 * f["kp_al_mean_m"]),
          "pa_mpvpe_mm": column(s.n, sel, 1000.0 * f["mesh_al_mean_m"]),
          "f5_al": column(s.n, sel, f["f_al_score_5"]),
          "f15_al": column(s.n, sel, f["f_al_score_15"])}
    return Scored({k: fs[k] for k in keys}, ps,
                  {key: ps[c].copy() for key, c in FREIHAND_COLUMNS.items()},
                  {"xyz_al": fs["curves"]["xyz_al"], "mesh_al": fs["curves"]["mesh_al"],
                   "per_joint_al_mm": fs["per_joint_al_mean_mm"]})


BASELINE_KEYS = ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15")


@register(
    "mean_hand",
    units={f"baseline/{k}": "the constant mean hand's " + k for k in BASELINE_KEYS},
    show=(Show("baseline/pa_mpjpe_mm", "", ".1f", "mm", panel="3D joints", style=":"),
          Show("baseline/pa_mpvpe_mm", "", ".1f", "mm", panel="3D mesh", style=":"),
          Show("baseline/f15", "", ".3f", panel="F-scores and mask", style=":")))
def baseline(s: Samples) -> Scored:
    """The aligned FreiHAND scores of the constant mean hand (`mean_hand`) on the samples with
    3D joints and a mesh: what a network that ignores the image gets (needs s.mano_model)."""
    keys = [f"baseline/{k}" for k in BASELINE_KEYS]
    linear = ("baseline/pa_mpjpe_mm", "baseline/pa_mpvpe_mm")
    sel = s.has_3d_mesh
    if not sel.any() or s.mano_model is None:
        return unscored(s.n, keys, (), linear)
    joints, verts = mean_hand(s.mano_model)
    m = int(sel.sum())
    b = metrics.freihand_scores(np.broadcast_to(joints, (m,) + joints.shape),
                                np.broadcast_to(verts, (m,) + verts.shape),
                                s.gt_xyz[sel], s.gt_verts[sel])
    return Scored({f"baseline/{k}": float(b[k]) for k in BASELINE_KEYS}, {},
                  {f"baseline/{key}": column(s.n, sel, 1000.0 * b["per_sample"][name])
                   for key, name in (("pa_mpjpe_mm", "kp_al_mean_m"),
                                     ("pa_mpvpe_mm", "mesh_al_mean_m"))})


def wrist_relative_errors(s: Samples, sel, gt_points, pred_points):
    """The errors of root-relative `pred_points` (N, P, 3) against `gt_points` (N, P, 3) minus
    the label's wrist, over the samples `sel` (N,) bool -> (per-sample mean error (N,) mm, NaN
    elsewhere; metrics.error_measures of the errors over the FreiHAND thresholds, metres)."""
    err = metrics.point_errors(gt_points[sel] - s.gt_xyz[sel][:, :1], pred_points[sel])
    return (column(s.n, sel, 1000.0 * err.mean(1)),
            metrics.error_measures(err, metrics.FREIHAND_PCK_THRESHOLDS))


@register(
    "root_relative_joints",
    units={"rr_mpjpe_mm": "mm, wrist-relative, no alignment",
           "rr_xyz_auc_0_50mm": "AUC of wrist-relative 3D PCK over 0-50 mm, 100 thresholds",
           "rr_pck_auc_20_50mm": "AUC of wrist-relative 3D PCK, 31 thresholds 20..50 mm "
                                 "(RHD/STB style)"},
    show=(Show("rr_mpjpe_mm", "RR-MPJPE (wrist-relative, no alignment)", ".2f", "mm",
               short="RR-MPJPE", detail="3D PCK AUC 20-50 mm {rr_pck_auc_20_50mm:.3f}",
               panel="3D joints", better="lower"),))
def root_relative_joints(s: Samples) -> Scored:
    """The keypoints' error with prediction and label both relative to their wrist, no scale
    or rotation: what a user of the predicted joints gets (samples with 3D joints)."""
    keys = ("rr_mpjpe_mm", "rr_xyz_auc_0_50mm", "rr_pck_auc_20_50mm")
    sel = s.has_3d
    if not sel.any():
        return unscored(s.n, keys, ["rr_mpjpe_mm"], ["rr_mpjpe_mm"])
    per, rr = wrist_relative_errors(s, sel, s.gt_xyz, s.pred_xyz)
    return Scored({"rr_mpjpe_mm": 1000.0 * rr["mean"], "rr_xyz_auc_0_50mm": rr["auc"],
                   "rr_pck_auc_20_50mm": metrics.root_relative_pck(s.pred_xyz[sel],
                                                                   s.gt_xyz[sel])["auc"]},
                  {"rr_mpjpe_mm": per}, {"rr_mpjpe_mm": per.copy()},
                  {"xyz_rr": rr["curve"], "per_joint_rr_mm": 1000.0 * rr["per_point_mean"]})


@register(
    "root_relative_mesh",
    units={"rr_mpvpe_mm": "mm, mesh relative to the wrist, no alignment",
           "rr_mesh_auc_0_50mm": "AUC of wrist-relative mesh 3D PCK over 0-50 mm, 100 "
                                 "thresholds"},
    show=(Show("rr_mpvpe_mm", "RR-MPVPE (wrist-relative, no alignment)", ".2f", "mm",
               short="RR-MPVPE", detail="3D PCK AUC 0-50 mm {rr_mesh_auc_0_50mm:.3f}",
               panel="3D mesh"),))
def root_relative_mesh(s: Samples) -> Scored:
    """The vertices' error relative to the wrist, no alignment (samples with 3D and mesh)."""
    keys = ("rr_mpvpe_mm", "rr_mesh_auc_0_50mm")
    if not s.has_3d_mesh.any():
        return unscored(s.n, keys, ["rr_mpvpe_mm"], ["rr_mpvpe_mm"])
    per, rr = wrist_relative_errors(s, s.has_3d_mesh, s.gt_verts, s.pred_verts)
    return Scored({"rr_mpvpe_mm": 1000.0 * rr["mean"], "rr_mesh_auc_0_50mm": rr["auc"]},
                  {"rr_mpvpe_mm": per}, {"rr_mpvpe_mm": per.copy()}, {"mesh_rr": rr["curve"]})


@register(
    "global_rotation",
    units={"rot_error_deg": "degrees, geodesic angle to the label's MANO global rotation"},
    show=(Show("rot_error_deg", "Global rotation error", ".2f", "deg", short="rotation",
               detail="geodesic angle to the label's MANO global rotation",
               panel="Global rotation", better="lower"),))
def global_rotation(s: Samples) -> Scored:
    """The geodesic angle between the predicted and the labelled global rotation (samples with
    MANO labels)."""
    sel = s.has_mano
    if not sel.any() or "global_rotmat" not in s.p:
        return unscored(s.n, ["rot_error_deg"], ["rot_error_deg"], ["rot_error_deg"])
    r_gt = np.asarray(rotations.axis_angle_to_matrix(jnp.asarray(
        s.p["gt_mano_pose"][sel, :3], jnp.float32)))
    return mean_over(s, sel, "rot_error_deg", geodesic_degrees(s.p["global_rotmat"][sel], r_gt),
                     column_too=True)


# --------------------------------------------------------------------------- 2D and mask


@register(
    "keypoints_2d",
    units={"kp2d_mean_px": "crop pixels, the mesh's projected joints, mean per joint then over "
                           "joints",
           "pck2d_auc_0_30px": "AUC of 2D PCK over 0-30 crop pixels",
           "kp2d_mean_box": "fraction of the GT keypoint box side, mean per joint then over "
                            "joints",
           "pck2d_box_auc_0_05": "AUC of 2D PCK over 0-0.5 of the GT keypoint box side"},
    show=(Show("kp2d_mean_px", "2D keypoint error (crop pixels)", ".2f", "px", short="2D mesh",
               detail="PCK AUC 0-30 px {pck2d_auc_0_30px:.3f}, box-normalised AUC 0-0.5 "
                      "{pck2d_box_auc_0_05:.3f}",
               panel="2D keypoints", better="lower", fine_spec=".3f"),))
def keypoints_2d(s: Samples) -> Scored:
    """The projected mesh joints against the visible 2D labels, crop pixels and box-normalised
    (samples with 2D labels). Per-joint means, then the mean over joints (FreiHAND's EvalUtil);
    its linear values are metrics.per_point_mean_influence."""
    keys = ("kp2d_mean_px", "pck2d_auc_0_30px", "kp2d_mean_box", "pck2d_box_auc_0_05")
    sel = s.has_2d
    if not sel.any():
        return unscored(s.n, keys, ["kp2d_mean_px"], ["kp2d_mean_px"])
    vis = s.p["gt_keypoint_visibility"][sel] > 0
    uv_pred, uv_gt = s.p["keypoints_2d"][sel], s.p["gt_keypoints_2d"][sel]
    px = metrics.pck_2d(uv_pred, uv_gt, vis)
    err = metrics.point_errors(uv_gt.astype(np.float64), uv_pred.astype(np.float64))
    values = {"kp2d_mean_px": px["mean_error_px"], "pck2d_auc_0_30px": px["auc"],
              "kp2d_mean_box": None, "pck2d_box_auc_0_05": None}
    curves = {"pck2d_px": (px["thresholds"], px["curve"])}
    if (metrics.hand_box_size(uv_gt, vis) > 0).any():
        box = metrics.pck_2d_normalised(uv_pred, uv_gt, vis)
        values.update(kp2d_mean_box=box["mean_error"], pck2d_box_auc_0_05=box["auc"])
        curves["pck2d_box"] = (box["thresholds"], box["curve"])
    return Scored(values, {"kp2d_mean_px": column(s.n, sel, (err * vis).sum(1) / vis.sum(1))},
                  {"kp2d_mean_px": column(s.n, sel, metrics.per_point_mean_influence(err, vis))},
                  curves)


@register(
    "keypoints_2d_heatmap",
    units={"kp2d_heatmap_px": "crop pixels, the heat maps' soft-argmax, mean per joint then "
                              "over joints"},
    show=(Show("kp2d_heatmap_px", "2D keypoint error, heat maps", ".2f", "px",
               short="2D heat maps", panel="2D keypoints", better="lower", fine_spec=".3f"),))
def keypoints_2d_heatmap(s: Samples) -> Scored:
    """The heat maps' soft-argmax keypoints against the visible 2D labels, crop pixels."""
    sel = s.has_2d
    if not sel.any() or "keypoints_heatmap" not in s.p:
        return unscored(s.n, ["kp2d_heatmap_px"], (), ["kp2d_heatmap_px"])
    vis = s.p["gt_keypoint_visibility"][sel] > 0
    uv_gt, uv = s.p["gt_keypoints_2d"][sel], s.p["keypoints_heatmap"][sel]
    err = metrics.point_errors(uv_gt.astype(np.float64), uv.astype(np.float64))
    return Scored({"kp2d_heatmap_px": metrics.pck_2d(uv, uv_gt, vis)["mean_error_px"]}, {},
                  {"kp2d_heatmap_px": column(s.n, sel, metrics.per_point_mean_influence(err, vis))})


@register(
    "mask_iou",
    units={"mask_iou": "IoU of the probability resized bilinearly to the label's size, then "
                       "> 0.5"},
    show=(Show("mask_iou", "Mask IoU", ".3f", short="mask IoU", panel="F-scores and mask",
               better="higher", fine_spec=".4f"),))
def mask_iou(s: Samples) -> Scored:
    """IoU of the predicted mask with the label (samples with masks): the probability resized
    bilinearly to the label's size (what a user who upsamples it gets), then > 0.5."""
    sel = s.has_mask
    if not sel.any():
        return unscored(s.n, ["mask_iou"], ["mask_iou"], ["mask_iou"])
    gt = s.p["gt_mask"][sel][..., 0]
    iou = metrics.mask_iou(resize_probabilities(s.p["mask_prob"][sel], gt.shape[1:]), gt)
    per = column(s.n, sel, iou)
    return Scored({"mask_iou": float(iou.mean())}, {"mask_iou": per}, {"mask_iou": per.copy()},
                  {"mask_iou": iou})


# --------------------------------------------------------------------------- diagnostics


@register(
    "hand_size",
    units={"hand_size_mm": "mm, the prediction's sum of the 20 bone lengths",
           "label/hand_size_mm": "mm, the labels' sum of the 20 bone lengths"},
    show=(Show("hand_size_mm", "", ".0f", "mm", short="hand size",
               aside="label {label/hand_size_mm:.0f}", panel="Scale"),
          Show("label/hand_size_mm", "", ".0f", "mm", panel="Scale", style=":")))
def hand_size_scorer(s: Samples) -> Scored:
    """Why a model does (not) learn, 1: the size of its hands against the labels' (samples with
    3D joints)."""
    sel = s.has_3d
    if not sel.any():
        return unscored(s.n, ["hand_size_mm", "label/hand_size_mm"], (), ["hand_size_mm"])
    result = mean_over(s, sel, "hand_size_mm", 1000.0 * hand_size(s.pred_xyz[sel]))
    result.values["label/hand_size_mm"] = float(hand_size(s.gt_xyz[sel]).mean() * 1000)
    return result


@register(
    "camera_scale",
    units={"cam_scale": "the predicted weak-perspective scale s",
           "label/cam_scale": "s of the weak-perspective fit of the labels (3D to 2D)"},
    show=(Show("cam_scale", "", ".2f", short="cam s", aside="label {label/cam_scale:.2f}",
               panel="Camera"),
          Show("label/cam_scale", "", ".2f", panel="Camera", style=":")))
def camera_scale(s: Samples) -> Scored:
    """Why a model does (not) learn, 2: the predicted camera scale against the one that fits
    the labels (samples with 2D labels; the fit also needs 3D)."""
    values = {"cam_scale": None, "label/cam_scale": None}
    sel = s.has_2d
    if sel.any():
        values["cam_scale"] = float(s.p["cam"][sel, 0].mean())
    fit_ok = sel & s.has_3d
    if fit_ok.any():
        crop = s.p["gt_mask"].shape[1]  # the crop's masks are at the crop's size
        fit, valid = projection.weak_perspective_fit(
            jnp.asarray(s.p["gt_keypoints_3d"][fit_ok]),
            jnp.asarray(s.p["gt_keypoints_2d"][fit_ok]),
            jnp.asarray(s.p["gt_keypoint_visibility"][fit_ok]), crop)
        fit, valid = np.asarray(fit), np.asarray(valid)
        if valid.any():
            values["label/cam_scale"] = float(fit[valid, 0].mean())
    return Scored(values)
