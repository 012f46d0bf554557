"""Evaluating a model: predictions on all local devices, then one scoring function.

Used by train.py (periodic validation) and eval.py (model mode): both build the evaluation
batches (datasets/) and hand them to the `Evaluator`, which never reads a dataset itself.
Predictions run under jax.pmap with the variables replicated; every host evaluates its own slice
of the split and the per-sample results are gathered so that every host computes the same
scores. `score` is the one definition of every number both report:

- 3D: the official FreiHAND scores (hiu_jax/metrics.py) of the root-relative prediction against
  the absolute ground truth (root_3d + joints_3d), both in the dataset's camera frame: the
  pipeline mirrors left hands (x -> -x, batch key "mirrored"), `score` mirrors them back. The
  aligned scores are exact; the unaligned official ones compare a root-relative prediction with
  absolute labels. Root-relative errors and PCK (rr_*) compare both relative to their wrist.
- 2D: errors in crop pixels over visible keypoints, averaged per joint and then over joints
  (the FreiHAND EvalUtil convention, as every other mean here and as the PCK curves beside it).
- Mask IoU: the predicted probability resized bilinearly to the ground truth's size, then
  thresholded at 0.5 (what a user who upsamples the mask gets).
- Diagnostics of why a model does (not) learn: the mean-hand baseline, rotation, size, camera.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import jax_utils
from tqdm import tqdm

import mano_jax
from hiu_jax import losses, metrics, visualize
from hiu_jax.geometry import cameras, skeleton
from mano_jax import rotations

# What is kept per sample: prediction name -> network output, and ground truth -> batch key.
PREDICTIONS = ("joints_3d", "vertices", "joints_2d", "cam", "keypoints_heatmap", "global_rotmat",
               "mano_pose", "mano_betas")
TARGETS = ("joints_3d", "root_3d", "vertices", "keypoints_2d", "keypoint_visibility", "mask",
           "has_3d", "has_mesh", "has_mask", "has_2d", "has_mano", "mano_pose", "valid",
           "sample_id", "mirrored")
# Per-sample columns of `Scores.per_sample` (NaN where a sample has no label for it).
PER_SAMPLE = ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5_al", "f15_al", "rr_mpjpe_mm", "rr_mpvpe_mm",
              "kp2d_mean_px", "mask_iou", "rot_error_deg")
# The scores that are means over samples: each has a `Scores.linear` column whose mean is the
# score, and a standard error "<key>_se" in `Scores.values` (metrics.standard_error).
WITH_STANDARD_ERROR = ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "rr_mpjpe_mm", "rr_mpvpe_mm",
                       "rot_error_deg", "kp2d_mean_px", "kp2d_heatmap_px", "mask_iou",
                       "hand_size_mm", "baseline/pa_mpjpe_mm", "baseline/pa_mpvpe_mm")
SE_SUFFIX = "_se"
# The WITH_STANDARD_ERROR keys whose linear values are a PER_SAMPLE column as it is.
LINEAR_IS_PER_SAMPLE = {"pa_mpjpe_mm": "pa_mpjpe_mm", "pa_mpvpe_mm": "pa_mpvpe_mm", "f5": "f5_al",
                        "f15": "f15_al", "rr_mpjpe_mm": "rr_mpjpe_mm",
                        "rr_mpvpe_mm": "rr_mpvpe_mm", "rot_error_deg": "rot_error_deg",
                        "mask_iou": "mask_iou"}


def predict_fn(model):
    """pmap'd inference, the one predict function (eval, validation, infer.py): (replicated
    variables, images [D, B, N, N, 3] in [0, 1]) -> dict of [D, B, ...]: joints_3d (21, 3) and
    vertices (778, 3) root-relative metres; joints_2d (21, 2) the mesh's joints and
    keypoints_heatmap (21, 2) the heat maps' soft-argmax, crop pixels; cam (3,) the
    weak-perspective camera; global_rotmat (3, 3); mano_pose (48,) axis-angle radians
    (flat_hand_mean False); mano_betas (10,); mask_prob (mask_size, mask_size) in [0, 1]."""

    def predict(variables, images):
        out = model.apply(variables, images, train=False)
        crop, m = images.shape[1], out["heatmaps"][-1].shape[1]
        return {"joints_3d": out["joints_3d"], "vertices": out["vertices"],
                "joints_2d": out["joints_2d"], "cam": out["cam"][-1],
                "keypoints_heatmap": cameras.heatmap_to_crop(out["keypoints_hm"], crop, m),
                "global_rotmat": out["mano_rotmats"][:, 0], "mano_pose": out["mano_pose"],
                "mano_betas": out["mano_betas"],
                "mask_prob": jax.nn.sigmoid(out["mask_logits"][-1][..., 0])}

    return jax.pmap(predict)


class Evaluator:
    """Runs the model over the batches it is given (an iterable of the pipeline's evaluation
    batches, [devices, B, ...] per key) and scores it."""

    def __init__(self, model, mano_model):
        self.model = model
        self.mano_model = mano_model
        self._predict = predict_fn(model)

    def predictions(self, state, batches, *, max_batches=None, progress=True, keep_images=True):
        """Per-sample predictions and targets ("gt_" + batch key; valid samples only), gathered
        over hosts, in the order the batches hold them.

        max_batches: stop after this many (None or 0: all). keep_images: also return the input
        crops as "image" (N, H, W, 3) float32; False saves that memory on large splits (e.g.
        3.1 GB for FreiHAND's 3,960 crops at 256 px)."""
        variables = jax_utils.replicate({"params": state.params, "batch_stats": state.batch_stats})
        keep = {k: [] for k in PREDICTIONS + ("mask_prob",) + tuple("gt_" + t for t in TARGETS)}
        images = []
        for i, batch in enumerate(tqdm(batches, desc="eval", unit="batch",
                                       disable=not progress or jax.process_index() != 0)):
            if max_batches and i >= max_batches:
                break
            out = jax.device_get(self._predict(variables, batch["image"]))
            for k, v in out.items():
                keep[k].append(_flat(v))
            for t in TARGETS:
                keep["gt_" + t].append(_flat(batch[t]))
            if keep_images:
                images.append(_flat(batch["image"]))
        result = {k: np.concatenate(v) for k, v in keep.items() if v}
        if keep_images:
            result["image"] = np.concatenate(images)
        result = _gather_over_hosts(result)
        valid = result["gt_valid"] > 0
        return {k: v[valid] for k, v in result.items()}

    def evaluate(self, state, batches, *, progress=True, max_batches=None) -> "Scores":
        """`score` of the predictions on `batches` (no images kept)."""
        p = self.predictions(state, batches, progress=progress, max_batches=max_batches,
                             keep_images=False)
        return score(p, self.mano_model)

    def run(self, state, batches, *, progress=True, max_batches=None) -> dict:
        """The validation scores: `score(...).values` of the predictions on `batches`, without
        the meaningless OFFICIAL_UNALIGNED_KEYS and the scores the split has no labels for."""
        return validation_values(self.evaluate(state, batches, progress=progress,
                                               max_batches=max_batches))

    def panels(self, state, batches, count: int) -> dict:
        """TensorBoard pictures of the first `count` samples of `batches` (its first batch)."""
        p = self.predictions(state, batches, progress=False, max_batches=1)
        faces = np.asarray(self.mano_model.faces)
        return {f"eval/sample_{i}": visualize.panel(p["image"][i], p["joints_2d"][i],
                                                    p["mask_prob"][i], p["vertices"][i], faces,
                                                    p["cam"][i])
                for i in range(min(count, len(p["image"])))}


def mean_hand(mano_model):
    """The constant baseline: the hand model at its mean pose (flat_hand_mean=False, zero pose)
    with zero shape, root-relative. -> (joints (21, 3), vertices (778, 3)) metres."""
    out = mano_jax.forward(mano_model, jnp.zeros((1, 48)), jnp.zeros((1, 10)),
                           flat_hand_mean=False)
    root = out.joints[0, :1]
    return np.asarray(out.joints[0] - root), np.asarray(out.vertices[0] - root)


def hand_size(joints_3d):
    """Sum of the 20 bone lengths (..., 21, 3) -> (...), same unit."""
    d = joints_3d[..., skeleton.BONE_CHILDREN, :] - joints_3d[..., skeleton.BONE_PARENTS, :]
    return np.linalg.norm(d, axis=-1).sum(-1)


def geodesic_degrees(r_pred, r_gt):
    """The angle of R_pred^T R_gt in degrees; (..., 3, 3) each -> (...)."""
    trace = np.einsum("...ij,...ij->...", r_pred, r_gt)
    return np.degrees(np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0)))


class Scores(NamedTuple):
    """The result of `score`.

    values: every score, JSON-able (None where the split has no label for it); see `score`.
      Each key of WITH_STANDARD_ERROR also has "<key>_se", its standard error over samples.
    per_sample: `PER_SAMPLE` name -> (N,) float64, NaN where not scored.
    linear: WITH_STANDARD_ERROR key -> (N,) float64, NaN where not scored: per-sample values
      whose mean is the score exactly (a 2D score's per-joint means linearised,
      metrics.per_point_mean_influence), from which standard errors and paired differences
      between models on the same samples follow (metrics.paired_difference).
    curves: the PCK curves and per-joint errors of the plots (only what was scored).
    sample_ids: N str; mirrored: (N,) bool, left hands the pipeline mirrored.
    pred_xyz (N, 21, 3), pred_verts (N, 778, 3): the prediction root-relative, metres, in the
      dataset's camera frame (mirrored back), as pred.json holds it.
    """

    values: dict
    per_sample: dict
    linear: dict
    curves: dict
    sample_ids: list
    mirrored: np.ndarray
    pred_xyz: np.ndarray
    pred_verts: np.ndarray


def unmirror(points, mirrored):
    """The pipeline's left-hand mirror x -> -x (camera frame) undone where `mirrored`:
    points (N, ..., 3), mirrored (N,) bool -> float64 copy."""
    out = np.array(points, np.float64)
    out[np.asarray(mirrored, bool), ..., 0] *= -1.0
    return out


def decode_sample_ids(ids) -> list:
    """(..., L) uint8, UTF-8 zero-padded (the pipeline's "sample_id") -> a flat list of str."""
    ids = np.asarray(ids, np.uint8)
    return [bytes(row).rstrip(b"\0").decode("utf-8") for row in ids.reshape(-1, ids.shape[-1])]


def sample_order(ids) -> np.ndarray:
    """Indices sorting sample ids: numerically when every id is an integer (FreiHAND's
    evaluation index), else as text; stable."""
    if not len(ids):
        return np.zeros(0, int)
    keys = [int(i) for i in ids] if all(i.isdigit() for i in ids) else list(ids)
    return np.argsort(np.asarray(keys, dtype=object), kind="stable")


def resize_probabilities(prob, hw):
    """(N, h, w) probabilities -> (N, H, W) by bilinear resizing (PIL, pixel centres at
    integers as hiu_jax/geometry), clipped to [0, 1]; unchanged when the sizes are equal."""
    if prob.shape[1:] == tuple(hw):
        return prob
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(np.asarray(m, np.float32), mode="F").resize(
        (hw[1], hw[0]), Image.BILINEAR)) for m in prob]).clip(0.0, 1.0)


FREIHAND_HEADLINE = ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "mpjpe_mm", "mpvpe_mm")
# The official unaligned scores: they compare the root-relative prediction with absolute labels,
# so they are meaningless for this network (eval.py keeps them in scores.json, marked so).
OFFICIAL_UNALIGNED_KEYS = ("xyz_mean3d", "xyz_auc3d", "mesh_mean3d", "mesh_auc3d", "f_score_5",
                           "f_score_15", "mpjpe_mm", "mpvpe_mm")


def score(p, mano_model=None, progress=None) -> Scores:
    """Every score of per-sample predictions `p` (see Evaluator.predictions).

    values:
    - FreiHAND (samples with 3D and mesh labels): the official keys (metrics.FREIHAND_SCORE_KEYS)
      and pa_mpjpe_mm, pa_mpvpe_mm, f5, f15, mpjpe_mm, mpvpe_mm; "baseline/<key>" the same
      aligned scores of the constant mean hand (`mean_hand`, needs mano_model);
    - root-relative, no alignment: rr_mpjpe_mm, rr_xyz_auc_0_50mm, rr_pck_auc_20_50mm (RHD/STB
      31 thresholds 20..50 mm) on 3D labels, rr_mpvpe_mm, rr_mesh_auc_0_50mm with meshes;
    - 2D, crop pixels: kp2d_mean_px (the mesh's projected joints), pck2d_auc_0_30px,
      kp2d_mean_box, pck2d_box_auc_0_05 (errors / the GT keypoint box side), kp2d_heatmap_px
      (the heat maps' soft-argmax);
    - "<key>_se": the standard error over samples of each WITH_STANDARD_ERROR key;
    - mask_iou; diagnostics rot_error_deg (global rotation, samples with MANO labels),
      hand_size_mm and label/hand_size_mm (sum of bone lengths), cam_scale and label/cam_scale
      (the labels' weak-perspective fit);
    - num_samples, num_samples_3d (3D + mesh), num_samples_2d, num_samples_mask.
    progress: called with 1 per sample during the F-score pass (e.g. tqdm.update).
    """
    n = len(p["gt_valid"])
    mirrored = np.asarray(p["gt_mirrored"]) > 0
    pred_xyz, pred_verts = unmirror(p["joints_3d"], mirrored), unmirror(p["vertices"], mirrored)
    root = p["gt_root_3d"][:, None, :]
    gt_xyz = unmirror(p["gt_joints_3d"] + root, mirrored)  # absolute, the dataset's frame
    gt_verts = unmirror(p["gt_vertices"] + root, mirrored)
    ps = {k: np.full(n, np.nan) for k in PER_SAMPLE}
    linear = {k: np.full(n, np.nan) for k in WITH_STANDARD_ERROR}
    curves = {}
    out = {k: None for k in metrics.FREIHAND_SCORE_KEYS + FREIHAND_HEADLINE + (
        "rr_mpjpe_mm", "rr_mpvpe_mm", "rr_pck_auc_20_50mm", "rr_xyz_auc_0_50mm",
        "rr_mesh_auc_0_50mm", "kp2d_mean_px", "pck2d_auc_0_30px", "kp2d_mean_box",
        "pck2d_box_auc_0_05", "mask_iou")}
    thr = metrics.FREIHAND_PCK_THRESHOLDS

    has3d = p["gt_has_3d"] > 0
    sel = has3d & (p["gt_has_mesh"] > 0)
    if sel.any():
        fs = metrics.freihand_scores(pred_xyz[sel], pred_verts[sel], gt_xyz[sel], gt_verts[sel],
                                     progress=progress)
        out.update({k: fs[k] for k in metrics.FREIHAND_SCORE_KEYS + FREIHAND_HEADLINE})
        f = fs["per_sample"]
        ps["pa_mpjpe_mm"][sel] = 1000.0 * f["kp_al_mean_m"]
        ps["pa_mpvpe_mm"][sel] = 1000.0 * f["mesh_al_mean_m"]
        ps["f5_al"][sel], ps["f15_al"][sel] = f["f_al_score_5"], f["f_al_score_15"]
        curves.update(xyz_al=fs["curves"]["xyz_al"], mesh_al=fs["curves"]["mesh_al"],
                      per_joint_al_mm=fs["per_joint_al_mean_mm"])
        err_v = metrics.point_errors(gt_verts[sel] - gt_xyz[sel][:, :1], pred_verts[sel])
        ps["rr_mpvpe_mm"][sel] = 1000.0 * err_v.mean(1)
        mesh_rr = metrics.error_measures(err_v, thr)
        out.update(rr_mpvpe_mm=1000.0 * mesh_rr["mean"], rr_mesh_auc_0_50mm=mesh_rr["auc"])
        curves["mesh_rr"] = mesh_rr["curve"]
        if mano_model is not None:
            joints, verts = mean_hand(mano_model)
            m = int(sel.sum())
            b = metrics.freihand_scores(np.broadcast_to(joints, (m,) + joints.shape),
                                        np.broadcast_to(verts, (m,) + verts.shape),
                                        gt_xyz[sel], gt_verts[sel])
            out.update({f"baseline/{k}": float(b[k])
                        for k in ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15")})
            linear["baseline/pa_mpjpe_mm"][sel] = 1000.0 * b["per_sample"]["kp_al_mean_m"]
            linear["baseline/pa_mpvpe_mm"][sel] = 1000.0 * b["per_sample"]["mesh_al_mean_m"]
    if has3d.any():
        err_j = metrics.point_errors(gt_xyz[has3d] - gt_xyz[has3d][:, :1], pred_xyz[has3d])
        ps["rr_mpjpe_mm"][has3d] = 1000.0 * err_j.mean(1)
        xyz_rr = metrics.error_measures(err_j, thr)
        out.update(rr_mpjpe_mm=1000.0 * xyz_rr["mean"], rr_xyz_auc_0_50mm=xyz_rr["auc"],
                   rr_pck_auc_20_50mm=metrics.root_relative_pck(pred_xyz[has3d],
                                                                gt_xyz[has3d])["auc"])
        curves.update(xyz_rr=xyz_rr["curve"], per_joint_rr_mm=1000.0 * xyz_rr["per_point_mean"])
        linear["hand_size_mm"][has3d] = 1000.0 * hand_size(pred_xyz[has3d])
        out["hand_size_mm"] = float(linear["hand_size_mm"][has3d].mean())
        out["label/hand_size_mm"] = float(hand_size(gt_xyz[has3d]).mean() * 1000)

    has_mano = p["gt_has_mano"] > 0
    if has_mano.any() and "global_rotmat" in p:
        r_gt = np.asarray(rotations.axis_angle_to_matrix(jnp.asarray(
            p["gt_mano_pose"][has_mano, :3], jnp.float32)))
        ps["rot_error_deg"][has_mano] = geodesic_degrees(p["global_rotmat"][has_mano], r_gt)
        out["rot_error_deg"] = float(ps["rot_error_deg"][has_mano].mean())

    has2d = (p["gt_has_2d"] > 0) & (p["gt_keypoint_visibility"].sum(1) > 0)
    if has2d.any():
        vis = p["gt_keypoint_visibility"][has2d] > 0
        uv_pred, uv_gt = p["joints_2d"][has2d], p["gt_keypoints_2d"][has2d]
        px = metrics.pck_2d(uv_pred, uv_gt, vis)
        err = metrics.point_errors(uv_gt.astype(np.float64), uv_pred.astype(np.float64))
        ps["kp2d_mean_px"][has2d] = (err * vis).sum(1) / vis.sum(1)
        linear["kp2d_mean_px"][has2d] = metrics.per_point_mean_influence(err, vis)
        out.update(kp2d_mean_px=px["mean_error_px"], pck2d_auc_0_30px=px["auc"])
        curves["pck2d_px"] = (px["thresholds"], px["curve"])
        if (metrics.hand_box_size(uv_gt, vis) > 0).any():
            box = metrics.pck_2d_normalised(uv_pred, uv_gt, vis)
            out.update(kp2d_mean_box=box["mean_error"], pck2d_box_auc_0_05=box["auc"])
            curves["pck2d_box"] = (box["thresholds"], box["curve"])
        if "keypoints_heatmap" in p:
            out["kp2d_heatmap_px"] = metrics.pck_2d(p["keypoints_heatmap"][has2d], uv_gt,
                                                    vis)["mean_error_px"]
            linear["kp2d_heatmap_px"][has2d] = metrics.per_point_mean_influence(
                metrics.point_errors(uv_gt.astype(np.float64),
                                     p["keypoints_heatmap"][has2d].astype(np.float64)), vis)
        out["cam_scale"] = float(p["cam"][has2d, 0].mean())
        fit_ok = has2d & has3d
        if fit_ok.any():
            crop = p["gt_mask"].shape[1]  # the crop's masks are at the crop's size
            fit, valid = losses.weak_perspective_fit(
                jnp.asarray(p["gt_joints_3d"][fit_ok]), jnp.asarray(p["gt_keypoints_2d"][fit_ok]),
                jnp.asarray(p["gt_keypoint_visibility"][fit_ok]), crop)
            fit, valid = np.asarray(fit), np.asarray(valid)
            if valid.any():
                out["label/cam_scale"] = float(fit[valid, 0].mean())

    has_mask = p["gt_has_mask"] > 0
    if has_mask.any():
        gt = p["gt_mask"][has_mask][..., 0]
        iou = metrics.mask_iou(resize_probabilities(p["mask_prob"][has_mask], gt.shape[1:]), gt)
        ps["mask_iou"][has_mask] = iou
        out["mask_iou"] = float(iou.mean())
        curves["mask_iou"] = iou

    linear.update({key: ps[column].copy() for key, column in LINEAR_IS_PER_SAMPLE.items()})
    for key in WITH_STANDARD_ERROR:
        out[key + SE_SUFFIX] = (None if out.get(key) is None
                                else metrics.standard_error(linear[key]))
    out.update(num_samples=n, num_samples_3d=int(sel.sum()), num_samples_2d=int(has2d.sum()),
               num_samples_mask=int(has_mask.sum()))
    return Scores(out, ps, linear, curves, decode_sample_ids(p["gt_sample_id"]), mirrored, pred_xyz,
                  pred_verts)


def validation_values(scores: "Scores") -> dict:
    """The values train.py logs: `scores.values` without the meaningless
    OFFICIAL_UNALIGNED_KEYS and the scores the split has no labels for."""
    return {k: v for k, v in scores.values.items()
            if v is not None and k not in OFFICIAL_UNALIGNED_KEYS}


def save_linear(path: str, scores: "Scores") -> None:
    """Writes the per-sample values behind the scores (`Scores.linear`, NaN where not scored)
    and the sample ids to an .npz at `path` (atomically), for `load_linear`."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    arrays = {k.replace("/", "__"): v for k, v in scores.linear.items()}
    tmp = path + ".tmp.npz"
    np.savez(tmp, sample_id=np.asarray(scores.sample_ids, dtype=str), **arrays)
    os.replace(tmp, path)


def load_linear(path: str) -> tuple[list, dict]:
    """(sample ids, WITH_STANDARD_ERROR key -> (N,) values) of a `save_linear` file."""
    with np.load(path) as f:
        ids = [str(i) for i in f["sample_id"]]
        return ids, {k.replace("__", "/"): np.asarray(f[k]) for k in f.files if k != "sample_id"}


def with_se(scores: dict, key: str, spec: str) -> str:
    """scores[key] formatted with `spec`, then "+-" its standard error (when known), e.g.
    "12.41+-0.21"; "-" when the key is not scored."""
    v = scores.get(key)
    if not isinstance(v, (int, float)):
        return "-"
    se = scores.get(key + SE_SUFFIX)
    return format(v, spec) + (f"+-{format(se, spec)}" if isinstance(se, (int, float))
                              and np.isfinite(se) else "")


def summary(scores: dict) -> str:
    """One line: the 3D scores (the aligned FreiHAND ones beside what a user of the mesh gets
    without alignment: root-relative error and global rotation), each +- its standard error,
    the mean-hand baseline's, then 2D, mask and the diagnostics."""
    def get(key, fmt):
        v = scores.get(key)
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    parts = [f"PA-MPJPE {with_se(scores, 'pa_mpjpe_mm', '.2f')} mm (mean hand {get('baseline/pa_mpjpe_mm', '.1f')})",
             f"RR-MPJPE {with_se(scores, 'rr_mpjpe_mm', '.1f')} mm",
             f"rotation {with_se(scores, 'rot_error_deg', '.1f')} deg",
             f"PA-MPVPE {with_se(scores, 'pa_mpvpe_mm', '.2f')} mm (mean hand {get('baseline/pa_mpvpe_mm', '.1f')})",
             f"F@5 {with_se(scores, 'f5', '.3f')}",
             f"F@15 {with_se(scores, 'f15', '.3f')} (mean hand {get('baseline/f15', '.3f')})",
             f"mask IoU {with_se(scores, 'mask_iou', '.3f')}",
             f"2D px: mesh {with_se(scores, 'kp2d_mean_px', '.2f')}, heat maps "
             f"{with_se(scores, 'kp2d_heatmap_px', '.2f')}",
             f"hand size {get('hand_size_mm', '.0f')} / {get('label/hand_size_mm', '.0f')} mm",
             f"cam s {get('cam_scale', '.2f')} / {get('label/cam_scale', '.2f')}"]
    return ", ".join(parts)


def _flat(x):
    x = np.asarray(x)
    return x.reshape((-1,) + x.shape[2:])


def _gather_over_hosts(arrays: dict) -> dict:
    """Concatenates every host's per-sample arrays (padded to equal length, then trimmed)."""
    if jax.process_count() == 1:
        return arrays
    from jax.experimental import multihost_utils

    n = len(next(iter(arrays.values())))
    counts = np.asarray(multihost_utils.process_allgather(jnp.asarray([n]))).reshape(-1)
    top = int(counts.max())
    out = {}
    for k, v in arrays.items():
        padded = np.concatenate([v, np.zeros((top - n,) + v.shape[1:], v.dtype)])
        g = np.asarray(multihost_utils.process_allgather(padded))  # (hosts, top, ...)
        out[k] = np.concatenate([g[h, :c] for h, c in enumerate(counts)])
    return out
