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

from hiu_jax import metrics, visualize

# What is kept per sample: prediction name -> network output, and ground truth -> batch key.
PREDICTIONS = ("joints_3d", "vertices", "joints_2d", "cam")
TARGETS = ("joints_3d", "vertices", "keypoints_2d", "keypoint_visibility", "mask", "has_3d",
           "has_mesh", "has_mask", "has_2d", "valid")


def predict_fn(model):
    """pmap'd inference: (replicated variables, images [D, B, H, W, 3]) -> dict of [D, B, ...]."""

    def predict(variables, images):
        out = model.apply(variables, images, train=False)
        return {"joints_3d": out["joints_3d"], "vertices": out["vertices"],
                "joints_2d": out["joints_2d"], "cam": out["cam"][-1],
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
        from datasets import pipeline

        if self._builder is None:
            c = self.config
            name = c.data.eval_source
            self._builder = pipeline.make_builder(
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
        return score(p)

    def panels(self, state, count: int) -> dict:
        """TensorBoard pictures of the first `count` evaluation samples."""
        p = self.predictions(state, progress=False, max_batches=1)
        faces = np.asarray(self.mano_model.faces)
        return {f"eval/sample_{i}": visualize.panel(p["image"][i], p["joints_2d"][i],
                                                    p["mask_prob"][i], p["vertices"][i], faces,
                                                    p["cam"][i])
                for i in range(min(count, len(p["image"])))}


def score(p) -> dict:
    """Scores of per-sample predictions (see Evaluator.predictions)."""
    out = {"num_samples": int(len(p["gt_valid"]))}
    has3d = (p["gt_has_3d"] > 0) & (p["gt_has_mesh"] > 0)
    if has3d.any():
        s = metrics.freihand_scores(p["joints_3d"][has3d], p["vertices"][has3d],
                                    p["gt_joints_3d"][has3d], p["gt_vertices"][has3d])
        out.update({k: float(s[k]) for k in ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15")})
        # Root-relative (not aligned) joint error: what the network must get right by itself.
        rr = np.linalg.norm(p["joints_3d"][has3d] - p["gt_joints_3d"][has3d], axis=-1)
        out["rr_mpjpe_mm"] = float(rr.mean() * 1000)
    has_mask = p["gt_has_mask"] > 0
    if has_mask.any():
        pred, gt = p["mask_prob"][has_mask], p["gt_mask"][has_mask][..., 0]
        out["mask_iou"] = float(metrics.mean_iou(upsample_to(pred, gt.shape[1:]), gt))
    has2d = p["gt_has_2d"] > 0
    if has2d.any():
        vis = p["gt_keypoint_visibility"][has2d]
        err = np.linalg.norm(p["joints_2d"][has2d] - p["gt_keypoints_2d"][has2d], axis=-1)
        out["kp2d_px"] = float((err * vis).sum() / max(vis.sum(), 1))
    return out


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
