"""Evaluating a model: predictions on all local devices, then one scoring function.

Used by train.py (periodic validation) and eval.py (model mode): both build the evaluation
batches (datasets/) and hand them to the `Evaluator`, which never reads a dataset itself.
Predictions run under jax.pmap with the variables replicated; every host evaluates its own slice
of the split and the per-sample results are gathered so that every host computes the same
scores. `score` runs the registered scorers (hiu_jax/scorers.py: one pure function per metric,
with its unit and how it is shown) on the predictions, with the left hands the pipeline mirrored
(x -> -x, batch key "mirrored") mirrored back and the absolute labels (root_3d + keypoints_3d) in
the dataset's camera frame; `summary` (the console line), train.py's logs and report.py loop over
what they return.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import jax_utils
from tqdm import tqdm

from hiu_jax import metrics, scorers, visualize
from hiu_jax.geometry import crops

# What is kept per sample: prediction name -> network output, and ground truth -> batch key.
PREDICTIONS = ("keypoints_3d", "vertices", "keypoints_2d", "cam", "keypoints_heatmap", "global_rotmat",
               "mano_pose", "mano_betas")
TARGETS = ("keypoints_3d", "root_3d", "vertices", "keypoints_2d", "keypoint_visibility", "mask",
           "has_3d", "has_mesh", "has_mask", "has_2d", "has_mano", "mano_pose", "valid",
           "sample_id", "mirrored")
SE_SUFFIX = "_se"  # "<key>_se": the standard error over samples of a mean score


def predict_fn(model):
    """pmap'd inference, the one predict function (eval, validation, infer.py): (replicated
    variables, images [D, B, N, N, 3] in [0, 1]) -> dict of [D, B, ...]: keypoints_3d (21, 3) and
    vertices (778, 3) root-relative metres; keypoints_2d (21, 2) the mesh's joints and
    keypoints_heatmap (21, 2) the heat maps' soft-argmax, crop pixels; cam (3,) the
    weak-perspective camera; global_rotmat (3, 3); mano_pose (48,) axis-angle radians
    (flat_hand_mean False); mano_betas (10,); mask_prob (mask_size, mask_size) in [0, 1]."""

    def predict(variables, images):
        out = model.apply(variables, images, train=False)
        crop, m = images.shape[1], out["heatmaps"][-1].shape[1]
        return {"keypoints_3d": out["keypoints_3d"], "vertices": out["vertices"],
                "keypoints_2d": out["keypoints_2d"], "cam": out["cam"][-1],
                "keypoints_heatmap": crops.heatmap_to_crop(out["keypoints_hm"], crop, m),
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
        """The validation scores: `validation_values` of the predictions on `batches`."""
        return validation_values(self.evaluate(state, batches, progress=progress,
                                               max_batches=max_batches))

    def panels(self, state, batches, count: int) -> dict:
        """TensorBoard pictures of the first `count` samples of `batches` (its first batch)."""
        p = self.predictions(state, batches, progress=False, max_batches=1)
        faces = np.asarray(self.mano_model.faces)
        return {f"eval/sample_{i}": visualize.panel(p["image"][i], p["keypoints_2d"][i],
                                                    p["mask_prob"][i], p["vertices"][i], faces,
                                                    p["cam"][i])
                for i in range(min(count, len(p["image"])))}


class Scores(NamedTuple):
    """The result of `score`.

    values: every score, JSON-able (None where the split has no label for it); see `score`.
      Each key of `linear` also has "<key>_se", its standard error over samples.
    per_sample: the scorers' per-sample columns, name -> (N,) float64, NaN where not scored.
    linear: score key -> (N,) float64, NaN where not scored: per-sample values whose mean is
      the score exactly (a 2D score's per-joint means linearised,
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


def score(p, mano_model=None, progress=None) -> Scores:
    """Every score of per-sample predictions `p` (see Evaluator.predictions): each registered
    scorer (hiu_jax/scorers.py, in registration order) run on the same `scorers.Samples`.

    values: every scorer's values (None where the split has no labels for them); "<key>_se",
    the standard error over samples (metrics.standard_error) of each key a scorer gives linear
    values for; num_samples, num_samples_3d (3D + mesh), num_samples_2d, num_samples_mask.
    progress: called with 1 per sample during the F-score pass (e.g. tqdm.update).
    """
    mirrored = np.asarray(p["gt_mirrored"]) > 0
    root = p["gt_root_3d"][:, None, :]
    has_3d = p["gt_has_3d"] > 0
    s = scorers.Samples(
        p=p, pred_xyz=unmirror(p["keypoints_3d"], mirrored),
        pred_verts=unmirror(p["vertices"], mirrored),
        gt_xyz=unmirror(p["gt_keypoints_3d"] + root, mirrored),  # absolute, the dataset's frame
        gt_verts=unmirror(p["gt_vertices"] + root, mirrored),
        has_3d=has_3d, has_3d_mesh=has_3d & (p["gt_has_mesh"] > 0),
        has_2d=(p["gt_has_2d"] > 0) & (p["gt_keypoint_visibility"].sum(1) > 0),
        has_mask=p["gt_has_mask"] > 0, has_mano=p["gt_has_mano"] > 0,
        mano_model=mano_model, progress=progress)
    values, per_sample, linear, curves = {}, {}, {}, {}
    for scorer in scorers.SCORERS.values():
        r = scorer.fn(s)
        if set(r.values) != set(scorer.units):
            raise ValueError(f"scorer {scorer.name!r} returned {sorted(r.values)}, registered "
                             f"units for {sorted(scorer.units)}")
        values.update(r.values)
        per_sample.update(r.per_sample)
        curves.update(r.curves)
        linear.update(r.linear)
        for key, column in r.linear.items():
            values[key + SE_SUFFIX] = (None if r.values[key] is None
                                       else metrics.standard_error(column))
    values.update(num_samples=s.n, num_samples_3d=int(s.has_3d_mesh.sum()),
                  num_samples_2d=int(s.has_2d.sum()), num_samples_mask=int(s.has_mask.sum()))
    return Scores(values, per_sample, linear, curves, decode_sample_ids(p["gt_sample_id"]),
                  mirrored, s.pred_xyz, s.pred_verts)


def units(values: dict) -> dict:
    """Each key of `values` (Scores.values) -> its unit and meaning (scores.json's "units")."""
    known = dict(scorers.units(), num_samples="samples", num_samples_3d="samples with 3D + mesh",
                 num_samples_2d="samples with 2D", num_samples_mask="samples with masks")
    out = {}
    for key in values:
        if key in known:
            out[key] = known[key]
        elif key.endswith(SE_SUFFIX) and key[:-len(SE_SUFFIX)] in known:
            out[key] = "the standard error over samples of " + key[:-len(SE_SUFFIX)]
    return out


def validation_values(scores: "Scores") -> dict:
    """The values train.py logs: `scores.values` without the keys scorers mark meaningless
    (the official unaligned ones) and the scores the split has no labels for."""
    meaningless = scorers.meaningless_keys()
    return {k: v for k, v in scores.values.items() if v is not None and k not in meaningless}


def save_linear(path: str, scores: "Scores") -> None:
    """Writes the per-sample values behind the scores (`Scores.linear`, NaN where not scored)
    and the sample ids to an .npz at `path` (atomically), for `load_linear`."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    arrays = {k.replace("/", "__"): v for k, v in scores.linear.items()}
    tmp = path + ".tmp.npz"
    np.savez(tmp, sample_id=np.asarray(scores.sample_ids, dtype=str), **arrays)
    os.replace(tmp, path)


def load_linear(path: str) -> tuple[list, dict]:
    """(sample ids, score key -> (N,) linear values) of a `save_linear` file."""
    with np.load(path) as f:
        ids = [str(i) for i in f["sample_id"]]
        return ids, {k.replace("__", "/"): np.asarray(f[k]) for k in f.files if k != "sample_id"}


def summary(scores: dict) -> str:
    """One line: every score a scorer shows on the console (scorers.Show.short), in
    registration order, each +- its standard error, with its unit and its aside."""
    parts = []
    for show in scorers.shown():
        if not show.short:
            continue
        text = f"{show.short} {scorers.with_se(scores, show.key, show.spec)}"
        text += f" {show.unit}" if show.unit else ""
        if show.aside:
            text += f" ({scorers.fill(show.aside, scores, '-')})"
        parts.append(text)
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
