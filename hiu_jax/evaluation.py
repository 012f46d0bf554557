"""Evaluating a model on a split: predictions on all local devices, then the shared metrics.

Used by train.py (periodic validation) and eval.py (reports). Predictions run under jax.pmap with
the variables replicated; every host evaluates its own slice of the split and the per-sample
results are gathered so that every host computes the same scores.
"""
from __future__ import annotations

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
               "mano_betas")
TARGETS = ("joints_3d", "vertices", "keypoints_2d", "keypoint_visibility", "mask", "has_3d",
           "has_mesh", "has_mask", "has_2d", "has_mano", "mano_pose", "valid")


def predict_fn(model):
    """pmap'd inference: (replicated variables, images [D, B, H, W, 3]) -> dict of [D, B, ...]."""

    def predict(variables, images):
        out = model.apply(variables, images, train=False)
        crop, m = images.shape[1], out["heatmaps"][-1].shape[1]
        return {"joints_3d": out["joints_3d"], "vertices": out["vertices"],
                "joints_2d": out["joints_2d"], "cam": out["cam"][-1],
                "keypoints_heatmap": cameras.heatmap_to_crop(out["keypoints_hm"], crop, m),
                "global_rotmat": out["mano_rotmats"][:, 0], "mano_betas": out["mano_betas"],
                "mask_prob": jax.nn.sigmoid(out["mask_logits"][-1][..., 0])}

    return jax.pmap(predict)


class Evaluator:
    """Runs the model over config.data.eval_source / eval_split and scores it."""

    def __init__(self, config, model, mano_model):
        self.config = config
        self.model = model
        self.mano_model = mano_model
        self._predict = predict_fn(model)
        self._builder = None

    def _batches(self):
        from datasets import pipeline, registry

        if self._builder is None:
            c = self.config
            name = c.data.eval_source
            self._builder = registry.make_builder(
                name, data_dir=c.pipeline.data_dir, manual_dir=c.pipeline.manual_dirs.get(name),
                builder_config=c.pipeline.builder_configs.get(name))
        return pipeline.make_dataset(self._builder, self.config.data.eval_split,
                                     config=self.config.pipeline,
                                     global_batch_size=self.config.batch_size, train=False)

    def predictions(self, state, *, max_batches=None, progress=True, keep_images=True):
        """Per-sample predictions and targets (valid samples only), gathered over hosts.

        keep_images: also return the input crops as "image" (N, H, W, 3) float32; False saves
        that memory on large splits (e.g. 3.1 GB for FreiHAND's 3,960 crops at 256 px)."""
        variables = jax_utils.replicate({"params": state.params, "batch_stats": state.batch_stats})
        keep = {k: [] for k in PREDICTIONS + ("mask_prob",) + tuple("gt_" + t for t in TARGETS)}
        limit = max_batches or self.config.data.eval_max_batches or None
        images = []
        for i, batch in enumerate(tqdm(self._batches(), desc="eval", unit="batch",
                                       disable=not progress or jax.process_index() != 0)):
            if limit and i >= limit:
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

    def run(self, state, *, progress=True, max_batches=None) -> dict:
        """Scores: FreiHAND metrics on samples with 3D and mesh labels, mask IoU, 2D error."""
        p = self.predictions(state, progress=progress, max_batches=max_batches)
        return score(p, self.mano_model)

    def panels(self, state, count: int) -> dict:
        """TensorBoard pictures of the first `count` evaluation samples."""
        p = self.predictions(state, progress=False, max_batches=1)
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


def score(p, mano_model=None) -> dict:
    """Scores of per-sample predictions (see Evaluator.predictions).

    FreiHAND scores (pa_mpjpe_mm, pa_mpvpe_mm, f5, f15) and root-relative MPJPE on samples with
    3D and mesh labels, mask IoU, the 2D error of the mesh's projected joints (kp2d_px) and of
    the heat maps' soft-argmax (kp2d_heatmap_px), crop pixels. Diagnostics of why a model does
    (not) learn: "baseline/..." the same FreiHAND scores of the constant mean hand (`mean_hand`,
    needs mano_model), rot_error_deg (global rotation, samples with MANO labels), hand_size_mm
    and its label (sum of bone lengths), cam_scale and the labels' weak-perspective fit."""
    out = {"num_samples": int(len(p["gt_valid"]))}
    has3d = (p["gt_has_3d"] > 0) & (p["gt_has_mesh"] > 0)
    if has3d.any():
        s = metrics.freihand_scores(p["joints_3d"][has3d], p["vertices"][has3d],
                                    p["gt_joints_3d"][has3d], p["gt_vertices"][has3d])
        out.update({k: float(s[k]) for k in ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15")})
        # Root-relative (not aligned) joint error: what the network must get right by itself.
        rr = np.linalg.norm(p["joints_3d"][has3d] - p["gt_joints_3d"][has3d], axis=-1)
        out["rr_mpjpe_mm"] = float(rr.mean() * 1000)
        if mano_model is not None:
            joints, verts = mean_hand(mano_model)
            n = int(has3d.sum())
            b = metrics.freihand_scores(np.broadcast_to(joints, (n,) + joints.shape),
                                        np.broadcast_to(verts, (n,) + verts.shape),
                                        p["gt_joints_3d"][has3d], p["gt_vertices"][has3d])
            out.update({f"baseline/{k}": float(b[k])
                        for k in ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15")})
        out["hand_size_mm"] = float(hand_size(p["joints_3d"][has3d]).mean() * 1000)
        out["label/hand_size_mm"] = float(hand_size(p["gt_joints_3d"][has3d]).mean() * 1000)
    has_mano = p["gt_has_mano"] > 0
    if has_mano.any() and "global_rotmat" in p:
        r_gt = np.asarray(rotations.axis_angle_to_matrix(jnp.asarray(
            p["gt_mano_pose"][has_mano, :3], jnp.float32)))
        out["rot_error_deg"] = float(geodesic_degrees(p["global_rotmat"][has_mano], r_gt).mean())
    has_mask = p["gt_has_mask"] > 0
    if has_mask.any():
        pred, gt = p["mask_prob"][has_mask], p["gt_mask"][has_mask][..., 0]
        out["mask_iou"] = float(metrics.mean_iou(upsample_to(pred, gt.shape[1:]), gt))
    has2d = p["gt_has_2d"] > 0
    if has2d.any():
        vis = p["gt_keypoint_visibility"][has2d]
        for key, name in (("joints_2d", "kp2d_px"), ("keypoints_heatmap", "kp2d_heatmap_px")):
            if key in p:
                err = np.linalg.norm(p[key][has2d] - p["gt_keypoints_2d"][has2d], axis=-1)
                out[name] = float((err * vis).sum() / max(vis.sum(), 1))
        out["cam_scale"] = float(p["cam"][has2d, 0].mean())
        fit_ok = has2d & (p["gt_has_3d"] > 0)
        if fit_ok.any():
            crop = p["gt_mask"].shape[1]  # the crop's masks are at the crop's size
            fit, valid = losses.weak_perspective_fit(
                jnp.asarray(p["gt_joints_3d"][fit_ok]), jnp.asarray(p["gt_keypoints_2d"][fit_ok]),
                jnp.asarray(p["gt_keypoint_visibility"][fit_ok]), crop)
            fit, valid = np.asarray(fit), np.asarray(valid)
            if valid.any():
                out["label/cam_scale"] = float(fit[valid, 0].mean())
    return out


def summary(scores: dict) -> str:
    """One line: the FreiHAND scores beside the mean-hand baseline's, then the diagnostics."""
    def get(key, fmt):
        v = scores.get(key)
        return format(v, fmt) if isinstance(v, (int, float)) else "-"

    parts = [f"PA-MPJPE {get('pa_mpjpe_mm', '.1f')} mm (mean hand {get('baseline/pa_mpjpe_mm', '.1f')})",
             f"PA-MPVPE {get('pa_mpvpe_mm', '.1f')} mm (mean hand {get('baseline/pa_mpvpe_mm', '.1f')})",
             f"F@5 {get('f5', '.3f')}", f"F@15 {get('f15', '.3f')} (mean hand {get('baseline/f15', '.3f')})",
             f"mask IoU {get('mask_iou', '.3f')}",
             f"2D px: mesh {get('kp2d_px', '.2f')}, heat maps {get('kp2d_heatmap_px', '.2f')}",
             f"rotation error {get('rot_error_deg', '.1f')} deg",
             f"hand size {get('hand_size_mm', '.0f')} / {get('label/hand_size_mm', '.0f')} mm",
             f"cam s {get('cam_scale', '.2f')} / {get('label/cam_scale', '.2f')}"]
    return ", ".join(parts)


def upsample_to(masks, size):
    """(N, h, w) -> (N, H, W) by pixel repetition; H, W must be integer multiples of h, w."""
    fy, fx = size[0] // masks.shape[1], size[1] // masks.shape[2]
    if (fy * masks.shape[1], fx * masks.shape[2]) != tuple(size):
        raise ValueError(f"predicted masks of {masks.shape[1:]} px cannot be compared with "
                         f"ground truth of {tuple(size)} px: the sizes must be integer multiples")
    return np.repeat(np.repeat(masks, fy, axis=1), fx, axis=2)


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
