"""HIU-JAX evaluation: FreiHAND scores, reports and plots.

Two modes. Model-free (score a FreiHAND submission file against the evaluation GT):

    python eval.py --pred pred.json --gt DIR [--out DIR]

- pred.json: the FreiHAND submission layout, a JSON list [xyz_list, verts_list] with N entries
  of 21x3 keypoints and N entries of Vx3 vertices (778 for MANO), metres, evaluation order
  (`hiu_jax.metrics.write_pred_json` writes it).
- DIR holds evaluation_xyz.json and evaluation_verts.json (FreiHAND_pub_v2_eval).
- Writes into --out (default: the pred file's directory): scores.json (the official scores.txt
  keys, mean errors in cm as that file has them, plus mm headline keys), per_sample.csv,
  pck_3d.png, per_joint_error.png, pa_mpjpe_hist.png. Prints a table in mm.

Everything is validated before anything is scored: counts, shapes and finiteness; a user error
exits with status 2 and one line naming the sample at fault.

Model mode (run a trained model over a split, then score and report):

    python eval.py --workdir runs/default [--which last|best] [--dataset NAME] [--split SPLIT]
        [--out DIR] [--num-overlay 16] [--batch-size B] [--data-dir D] [--manual-dir M]
    python eval.py --checkpoint runs/default/checkpoints/best [--config configs/default.py] ...

- The config is the run's <workdir>/config.json (train.py writes it; rebuilt on the configs/*.py
  it was derived from, see hiu_jax.infer.config_from_json) unless --config names a file.
- --dataset: a builder of datasets.pipeline.BUILDER_MODULES (default: the config's
  data.eval_source); --split: default the config's data.eval_split. The crops are the pipeline's
  evaluation crops (square around the ground-truth hand box, no augmentation; left hands
  mirrored, and their predictions mirrored back for pred.json and the 3D scores).
- The model runs on every local device (hiu_jax.evaluation.Evaluator, jax.pmap) after a warm-up
  pass over the first batch(es) that compiles it (and gives the overlay page its crops);
  samples/s is measured over the full pass, end to end (input pipeline construction and reading
  included, compilation excluded).
- Writes into --out (default <workdir>/eval_<dataset>_<split>): scores.json, per_sample.csv,
  pred.json, pck_3d.png, pck_2d.png, per_joint_error.png, mask_iou_hist.png, overlays.png.

pred.json convention (model mode): the network predicts ROOT-RELATIVE geometry (wrist = joint 0
at the origin) and no absolute root (one could be estimated from the test-time K and the
weak-perspective camera; not done here), so pred.json holds the root-relative keypoints and
vertices, metres, camera axes, sorted by sample id (= FreiHAND's evaluation index); no ground
truth goes into it. The aligned (PA) scores, the aligned F-scores and the AUCs after alignment
are invariant to a translation of the prediction, so they are exact; the official UNALIGNED
numbers (xyz_mean3d, xyz_auc3d, mesh_mean3d, mesh_auc3d, f_score_5/15, mpjpe_mm, mpvpe_mm)
compare a root-relative prediction with absolute ground truth and are meaningless: scores.json
keeps them (the official script computes them from the same file) and the table marks them so. The
meaningful unaligned numbers are the root-relative ones (rr_mpjpe_mm, rr_mpvpe_mm, 3D PCK AUC
20-50 mm): prediction and ground truth both relative to their own wrist, no scale or rotation.
`eval.py --pred <out>/pred.json --gt <FreiHAND_pub_v2_eval>` reproduces every official key.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys

import numpy as np

from hiu_jax import metrics


class UserError(Exception):
    """Bad input from the command line or the files it names; reported in one line, exit 2."""


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's default also prints the usage)
        print(f"eval.py: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def parse_args(argv):
    parser = _ArgumentParser(
        description="HIU-JAX evaluation: score FreiHAND predictions (pred.json) and write a "
                    "report with plots.")
    parser.add_argument("--pred", help="pred.json: [xyz_list, verts_list] in metres")
    parser.add_argument("--gt", help="directory with evaluation_xyz.json, evaluation_verts.json")
    parser.add_argument("--out", help="output directory (default: the pred file's directory; "
                                      "model mode: <workdir>/eval_<dataset>_<split>)")
    parser.add_argument("--set-name", default="evaluation",
                        help="GT file prefix: <set-name>_xyz.json, <set-name>_verts.json")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    model = parser.add_argument_group("model mode: run a trained model over a split")
    model.add_argument("--workdir", help="training work directory (config.json, checkpoints/)")
    model.add_argument("--checkpoint",
                       help="a work directory, its checkpoints/ or checkpoints/last|best")
    model.add_argument("--config", help="config file (default: <workdir>/config.json)")
    model.add_argument("--which", choices=("last", "best"),
                       help="checkpoints/last (default) or checkpoints/best; best was selected "
                            "on train.py's evaluation split, so it is biased on that split")
    model.add_argument("--dataset", help="dataset builder (default: the config's eval_source)")
    model.add_argument("--split", help="split (default: the config's eval_split)")
    model.add_argument("--batch-size", type=int,
                       help="global evaluation batch (default: the config's batch_size)")
    model.add_argument("--data-dir", help="tfds data_dir (default: the config's)")
    model.add_argument("--manual-dir", help="the dataset's raw files (default: the config's)")
    model.add_argument("--num-overlay", type=int, default=16,
                       help="samples on the overlay page overlays.png (0: none)")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- loading


def _load_json(path, what):
    if not os.path.isfile(path):
        raise UserError(f"{what} not found: {path}")
    try:
        return metrics.read_json(path)
    except ValueError as e:
        raise UserError(f"{what} {e}") from None


def load_ground_truth(gt_dir, set_name="evaluation"):
    """(xyz (N, 21, 3), verts (N, 778, 3)) float64 metres from a FreiHAND eval GT directory."""
    xyz_path = os.path.join(gt_dir, f"{set_name}_xyz.json")
    verts_path = os.path.join(gt_dir, f"{set_name}_verts.json")
    xyz_list = _load_json(xyz_path, "GT keypoint file")
    verts_list = _load_json(verts_path, "GT vertex file")
    try:
        xyz = metrics.stack_samples(xyz_path, xyz_list, metrics.NUM_KEYPOINTS)
        verts = metrics.stack_samples(verts_path, verts_list, metrics.NUM_MANO_VERTICES)
    except (TypeError, ValueError) as e:
        raise UserError(str(e)) from None
    if len(xyz) != len(verts):
        raise UserError(f"GT files disagree: {len(xyz)} keypoint sets in {xyz_path}, "
                        f"{len(verts)} meshes in {verts_path}")
    return xyz, verts


def load_prediction(pred_path, num_samples):
    """(xyz (N, 21, 3), verts (N, V, 3)) float64 metres from pred.json, validated against N."""
    if not os.path.isfile(pred_path):
        raise UserError(f"prediction file not found: {pred_path}")
    try:
        xyz_list, verts_list = metrics.read_pred_json(pred_path)
    except ValueError as e:
        raise UserError(str(e)) from None
    for name, items in (("keypoint sets", xyz_list), ("meshes", verts_list)):
        if len(items) != num_samples:
            raise UserError(f"{pred_path} has {len(items)} {name} but the ground truth has "
                            f"{num_samples} samples")
    try:
        xyz = metrics.stack_samples(f"{pred_path} keypoints", xyz_list, metrics.NUM_KEYPOINTS)
        verts = metrics.stack_samples(f"{pred_path} vertices", verts_list)
    except ValueError as e:
        raise UserError(str(e)) from None
    return xyz, verts


# --------------------------------------------------------------------------- report


def _fmt(x, spec, unit=""):
    return "n/a" if x is None else format(x, spec) + unit


def print_table(scores, file=sys.stdout):
    """The headline table in mm (the official script prints cm: divide by 10 to compare)."""
    s = scores
    rows = [
        ("PA-MPJPE (keypoints, aligned)", _fmt(s["pa_mpjpe_mm"], ".2f", " mm"),
         "AUC 0-50 mm " + _fmt(s["xyz_al_auc3d"], ".3f")),
        ("PA-MPVPE (mesh, aligned)", _fmt(s["pa_mpvpe_mm"], ".2f", " mm"),
         "AUC 0-50 mm " + _fmt(s["mesh_al_auc3d"], ".3f")),
        ("F@5 mm (aligned)", _fmt(s["f_al_score_5"], ".3f"), "raw " + _fmt(s["f_score_5"], ".3f")),
        ("F@15 mm (aligned)", _fmt(s["f_al_score_15"], ".3f"),
         "raw " + _fmt(s["f_score_15"], ".3f")),
        ("MPJPE (keypoints, unaligned)", _fmt(s["mpjpe_mm"], ".2f", " mm"),
         "AUC 0-50 mm " + _fmt(s["xyz_auc3d"], ".3f")),
        ("MPVPE (mesh, unaligned)", _fmt(s["mpvpe_mm"], ".2f", " mm"),
         "AUC 0-50 mm " + _fmt(s["mesh_auc3d"], ".3f")),
    ]
    print(f"FreiHAND evaluation, {s['num_samples']} samples", file=file)
    for name, value, extra in rows:
        print(f"  {name:<30} {value:>12}   {extra}", file=file)
    print("  (errors in mm; the official eval.py prints cm, e.g. 7.10 mm = 0.71 cm)", file=file)
    if s["num_vertices_pred"] is not None and not s["mesh_scored"]:
        print(f"  note: the predicted meshes have {s['num_vertices_pred']} vertices, not "
              f"{metrics.NUM_MANO_VERTICES}: no mesh errors; F-scores use the keypoints' "
              "transform as the official script applies it", file=file)


def scores_json(scores):
    """The JSON-able part of `freihand_scores`: official keys, mm keys, and what they mean."""
    out = {k: scores[k] for k in metrics.FREIHAND_SCORE_KEYS}
    for k in ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "mpjpe_mm", "mpvpe_mm", "num_samples",
              "mesh_scored", "num_vertices_pred"):
        out[k] = scores[k]
    out["units"] = ("*_mean3d: cm (as the official scores.txt); *_auc3d: AUC of 3D PCK over "
                    "0-5 cm, 100 thresholds; f_*: F-score at 5 / 15 mm; *_mm: millimetres; "
                    "null: not scored (mesh vertex count != 778, or no mesh)")
    return out


def write_per_sample_csv(path, scores):
    ps = scores["per_sample"]
    n = scores["num_samples"]

    def col(key, factor=1.0):
        v = ps[key]
        return [""] * n if v is None else [f"{factor * x:.6f}" for x in v]

    columns = (col("kp_al_mean_m", 1000.0), col("mesh_al_mean_m", 1000.0),
               col("f_al_score_5"), col("f_al_score_15"))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "kp_al_mean_mm", "mesh_al_mean_mm", "f5_al", "f15_al"])
        for i in range(n):
            w.writerow([i] + [c[i] for c in columns])


def write_plots(out_dir, scores):
    """pck_3d.png, per_joint_error.png, pa_mpjpe_hist.png; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    c = scores["curves"]
    thr_mm = 1000.0 * c["thresholds"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, kind, title in ((axes[0], "xyz", "keypoints (21)"), (axes[1], "mesh", "mesh (778)")):
        for key, label, style in ((kind + "_al", "aligned", "-"), (kind, "unaligned", "--")):
            if c[key] is not None:
                auc = scores[f"{kind}_al_auc3d" if key.endswith("_al") else f"{kind}_auc3d"]
                ax.plot(thr_mm, c[key], style, label=f"{label} (AUC {auc:.3f})")
        if c[kind] is None:
            ax.text(0.5, 0.5, "not scored", ha="center", transform=ax.transAxes)
        else:
            ax.legend(loc="lower right")
        ax.set_title(f"3D PCK, {title}")
        ax.set_xlabel("threshold (mm)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction within threshold")
    axes[0].set_ylim(0, 1.02)
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "pck_3d.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar(range(metrics.NUM_KEYPOINTS), scores["per_joint_al_mean_mm"], color="tab:blue")
    ax.set_xticks(range(metrics.NUM_KEYPOINTS))
    ax.set_xticklabels(metrics.JOINT_NAMES, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("aligned mean error (mm)")
    ax.set_title(f"Per-joint error after alignment (PA-MPJPE {scores['pa_mpjpe_mm']:.2f} mm)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "per_joint_error.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    per_sample = 1000.0 * scores["per_sample"]["kp_al_mean_m"]
    ax.hist(per_sample, bins=max(10, min(100, int(math.sqrt(len(per_sample))) * 2)),
            color="tab:green")
    ax.axvline(scores["pa_mpjpe_mm"], color="k", ls="--", label="mean")
    ax.set_xlabel("per-sample PA-MPJPE (mm)")
    ax.set_ylabel("samples")
    ax.legend()
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "pa_mpjpe_hist.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


# --------------------------------------------------------------------------- modes


def run_pred_mode(pred_path, gt_dir, out_dir, set_name="evaluation", progress=True) -> int:
    """Scores a pred.json against the GT in gt_dir and writes the report into out_dir."""
    if not os.path.isfile(pred_path):
        raise UserError(f"prediction file not found: {pred_path}")
    xyz_gt, verts_gt = load_ground_truth(gt_dir, set_name)
    xyz_pred, verts_pred = load_prediction(pred_path, len(xyz_gt))
    out_dir = out_dir or os.path.dirname(os.path.abspath(pred_path))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output directory {out_dir}: {e}") from None

    from tqdm import tqdm

    with tqdm(total=len(xyz_gt), desc="F-scores", unit="sample", disable=not progress,
              file=sys.stderr) as bar:
        scores = metrics.freihand_scores(xyz_pred, verts_pred, xyz_gt, verts_gt,
                                         progress=bar.update)
    print_table(scores)
    with open(os.path.join(out_dir, "scores.json"), "w") as f:
        json.dump(scores_json(scores), f, indent=2)
    write_per_sample_csv(os.path.join(out_dir, "per_sample.csv"), scores)
    write_plots(out_dir, scores)
    print(f"wrote scores.json, per_sample.csv, pck_3d.png, per_joint_error.png, "
          f"pa_mpjpe_hist.png to {out_dir}")
    return 0


# --------------------------------------------------------------------------- model mode

PRED_JSON_CONVENTION = (
    "root-relative: keypoints and vertices minus the predicted wrist (joint 0), metres, camera "
    "axes, sorted by sample id (FreiHAND: the evaluation index). Aligned scores are exact; the "
    "official unaligned scores (xyz_mean3d, mesh_mean3d, f_score_5/15, mpjpe_mm, mpvpe_mm) "
    "compare it with absolute ground truth and are meaningless; use rr_* instead.")
OFFICIAL_UNALIGNED_KEYS = ("xyz_mean3d", "xyz_auc3d", "mesh_mean3d", "mesh_auc3d", "f_score_5",
                           "f_score_15", "mpjpe_mm", "mpvpe_mm")


def _sample_key(ids):
    """Sort key of sample ids: numeric when every id is an integer (FreiHAND), else text."""
    if all(i.isdigit() for i in ids):
        return [int(i) for i in ids]
    return list(ids)


def read_sample_info(builder, split):
    """Per sample, in the order the evaluation pipeline reads them (each host's slice in host
    order, files in order): sample_id, hand_side (1 = left), has_3d, has_mesh, keypoints_3d
    (21, 3) and vertices (778, 3) float64 metres, the dataset's own camera frame."""
    import jax
    import tensorflow_datasets as tfds

    keys = ("sample_id", "hand_side", "has_3d", "has_mesh", "keypoints_3d", "vertices")
    rows = {k: [] for k in keys}
    count = jax.process_count()
    for index in range(count):
        host_split = tfds.split_for_jax_process(split, process_index=index, process_count=count)
        ds = builder.as_dataset(
            split=host_split, shuffle_files=False,
            decoders={"image": tfds.decode.SkipDecoding(), "mask": tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(try_autocache=False))
        ds = ds.map(lambda ex: {k: ex[k] for k in keys})
        for ex in tfds.as_numpy(ds):
            for k in keys:
                rows[k].append(ex[k])
    out = {k: np.asarray(v) for k, v in rows.items()}
    out["sample_id"] = [s.decode() if isinstance(s, bytes) else str(s) for s in rows["sample_id"]]
    out["keypoints_3d"] = out["keypoints_3d"].astype(np.float64).reshape(-1, 21, 3)
    out["vertices"] = out["vertices"].astype(np.float64).reshape(-1, metrics.NUM_MANO_VERTICES, 3)
    for k in ("hand_side", "has_3d", "has_mesh"):
        out[k] = out[k].astype(bool)
    return out


def _unmirror(points, left):
    """Undo the pipeline's left-hand mirror x -> -x (camera frame) where `left`."""
    out = np.array(points, np.float64)
    out[left, ..., 0] *= -1.0
    return out


def _resize_probs(prob, hw):
    """(N, h, w) probabilities -> (N, H, W) by bilinear resizing (no-op when equal)."""
    if prob.shape[1:] == tuple(hw):
        return prob
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(p.astype(np.float32), mode="F").resize(
        (hw[1], hw[0]), Image.BILINEAR)) for p in prob]).clip(0.0, 1.0)


def compute_model_scores(p, info, progress=True):
    """Every score of the model mode from Evaluator predictions `p` and `read_sample_info`.

    Returns (scores, per_sample, order, curves, pred_xyz, pred_verts): scores (JSON-able dict),
    per_sample (dict of (N,) arrays, NaN where not scored, in the pipeline's read order), order
    (indices sorting the samples by id), curves (for the plots), pred_xyz (N, 21, 3) and
    pred_verts (N, 778, 3) root-relative, unmirrored, in read order.
    """
    from tqdm import tqdm

    n = len(p["gt_valid"])
    if len(info["sample_id"]) != n:
        raise RuntimeError(f"the evaluation pipeline gave {n} samples but the split holds "
                           f"{len(info['sample_id'])}")
    left = info["hand_side"]
    pred_xyz = _unmirror(p["joints_3d"], left)
    pred_verts = _unmirror(p["vertices"], left)
    has3d = info["has_3d"] & (p["gt_has_3d"] > 0)
    # The pipeline's ground truth (crop frame, root-relative) must be the dataset's, sample by
    # sample: this checks the read order of read_sample_info and the un-mirroring.
    gt_xyz = info["keypoints_3d"]
    if has3d.any():
        rr_pipeline = _unmirror(p["gt_joints_3d"], left)[has3d]
        rr_dataset = (gt_xyz - gt_xyz[:, :1])[has3d]
        worst = float(np.max(np.abs(rr_pipeline - rr_dataset)))
        if not worst < 1e-4:
            raise RuntimeError(f"the pipeline's 3D labels differ from the dataset's by {worst} m: "
                               "the sample order of the evaluation and of the sample ids differ")
    per_sample = {k: np.full(n, np.nan) for k in (
        "pa_mpjpe_mm", "pa_mpvpe_mm", "f5_al", "f15_al", "rr_mpjpe_mm", "rr_mpvpe_mm",
        "kp2d_mean_px", "mask_iou")}
    curves = {}
    scores = {k: None for k in metrics.FREIHAND_SCORE_KEYS}
    scores.update(pa_mpjpe_mm=None, pa_mpvpe_mm=None, f5=None, f15=None, mpjpe_mm=None,
                  mpvpe_mm=None, rr_mpjpe_mm=None, rr_mpvpe_mm=None, rr_pck_auc_20_50mm=None,
                  rr_xyz_auc_0_50mm=None, rr_mesh_auc_0_50mm=None)

    sel = has3d & info["has_mesh"] & (p["gt_has_mesh"] > 0)
    if sel.any():
        with tqdm(total=int(sel.sum()), desc="F-scores", unit="sample", disable=not progress,
                  file=sys.stderr) as bar:
            fs = metrics.freihand_scores(pred_xyz[sel], pred_verts[sel], gt_xyz[sel],
                                         info["vertices"][sel], progress=bar.update)
        scores.update({k: fs[k] for k in metrics.FREIHAND_SCORE_KEYS})
        scores.update({k: fs[k] for k in ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "mpjpe_mm",
                                          "mpvpe_mm")})
        ps = fs["per_sample"]
        per_sample["pa_mpjpe_mm"][sel] = 1000.0 * ps["kp_al_mean_m"]
        per_sample["pa_mpvpe_mm"][sel] = 1000.0 * ps["mesh_al_mean_m"]
        per_sample["f5_al"][sel] = ps["f_al_score_5"]
        per_sample["f15_al"][sel] = ps["f_al_score_15"]
        curves["xyz_al"] = fs["curves"]["xyz_al"]
        curves["mesh_al"] = fs["curves"]["mesh_al"]
        curves["per_joint_al_mm"] = fs["per_joint_al_mean_mm"]
        thr = metrics.FREIHAND_PCK_THRESHOLDS
        err_v = metrics.point_errors(info["vertices"][sel] - gt_xyz[sel][:, :1], pred_verts[sel])
        per_sample["rr_mpvpe_mm"][sel] = 1000.0 * err_v.mean(1)
        mesh_rr = metrics.error_measures(err_v, thr)
        scores["rr_mpvpe_mm"] = 1000.0 * mesh_rr["mean"]
        scores["rr_mesh_auc_0_50mm"] = mesh_rr["auc"]
        curves["mesh_rr"] = mesh_rr["curve"]
    if has3d.any():
        thr = metrics.FREIHAND_PCK_THRESHOLDS
        err_j = metrics.point_errors(gt_xyz[has3d] - gt_xyz[has3d][:, :1], pred_xyz[has3d])
        per_sample["rr_mpjpe_mm"][has3d] = 1000.0 * err_j.mean(1)
        xyz_rr = metrics.error_measures(err_j, thr)
        scores["rr_mpjpe_mm"] = 1000.0 * xyz_rr["mean"]
        scores["rr_xyz_auc_0_50mm"] = xyz_rr["auc"]
        curves["xyz_rr"] = xyz_rr["curve"]
        curves["per_joint_rr_mm"] = 1000.0 * xyz_rr["per_point_mean"]
        rr = metrics.root_relative_pck(pred_xyz[has3d], gt_xyz[has3d])
        scores["rr_pck_auc_20_50mm"] = rr["auc"]

    has2d = (p["gt_has_2d"] > 0) & (p["gt_keypoint_visibility"].sum(1) > 0)
    scores.update(kp2d_mean_px=None, pck2d_auc_0_30px=None, kp2d_mean_box=None,
                  pck2d_box_auc_0_05=None)
    if has2d.any():
        vis = p["gt_keypoint_visibility"][has2d] > 0
        uv_pred, uv_gt = p["joints_2d"][has2d], p["gt_keypoints_2d"][has2d]
        px = metrics.pck_2d(uv_pred, uv_gt, vis)
        err = metrics.point_errors(uv_gt.astype(np.float64), uv_pred.astype(np.float64))
        per_sample["kp2d_mean_px"][has2d] = (err * vis).sum(1) / vis.sum(1)
        scores.update(kp2d_mean_px=px["mean_error_px"], pck2d_auc_0_30px=px["auc"])
        curves["pck2d_px"] = (px["thresholds"], px["curve"])
        if (metrics.hand_box_size(uv_gt, vis) > 0).any():
            box = metrics.pck_2d_normalised(uv_pred, uv_gt, vis)
            scores.update(kp2d_mean_box=box["mean_error"], pck2d_box_auc_0_05=box["auc"])
            curves["pck2d_box"] = (box["thresholds"], box["curve"])

    has_mask = p["gt_has_mask"] > 0
    scores["mask_iou"] = None
    if has_mask.any():
        gt = p["gt_mask"][has_mask][..., 0]
        pred = _resize_probs(p["mask_prob"][has_mask], gt.shape[1:])
        iou = metrics.mask_iou(pred, gt)
        per_sample["mask_iou"][has_mask] = iou
        scores["mask_iou"] = float(iou.mean())
        curves["mask_iou"] = iou

    scores.update(num_samples=n, num_samples_3d=int(sel.sum()), num_samples_2d=int(has2d.sum()),
                  num_samples_mask=int(has_mask.sum()))
    order = np.argsort(np.asarray(_sample_key(info["sample_id"]), dtype=object), kind="stable") \
        if n else np.zeros(0, int)
    return scores, per_sample, order, curves, pred_xyz, pred_verts


def print_model_table(s, file=sys.stdout):
    """The headline table of the model mode (mm; official unaligned numbers marked)."""
    def row(name, value, extra=""):
        print(f"  {name:<42} {value:>15}   {extra}".rstrip(), file=file)

    print(f"{s['dataset']}/{s['split']}: {s['num_samples']} samples ({s['num_samples_3d']} with "
          f"3D + mesh, {s['num_samples_2d']} with 2D, {s['num_samples_mask']} with masks); "
          f"checkpoint {s['checkpoint']['which']} step {s['checkpoint']['step']}", file=file)
    row("PA-MPJPE (keypoints, aligned)", _fmt(s["pa_mpjpe_mm"], ".2f", " mm"),
        "AUC 0-50 mm " + _fmt(s["xyz_al_auc3d"], ".3f"))
    row("PA-MPVPE (mesh, aligned)", _fmt(s["pa_mpvpe_mm"], ".2f", " mm"),
        "AUC 0-50 mm " + _fmt(s["mesh_al_auc3d"], ".3f"))
    row("F@5 mm / F@15 mm (aligned)",
        _fmt(s["f5"], ".3f") + " / " + _fmt(s["f15"], ".3f"))
    row("RR-MPJPE (wrist-relative, no alignment)", _fmt(s["rr_mpjpe_mm"], ".2f", " mm"),
        "3D PCK AUC 20-50 mm " + _fmt(s["rr_pck_auc_20_50mm"], ".3f"))
    row("RR-MPVPE (wrist-relative, no alignment)", _fmt(s["rr_mpvpe_mm"], ".2f", " mm"),
        "3D PCK AUC 0-50 mm " + _fmt(s["rr_mesh_auc_0_50mm"], ".3f"))
    row("MPJPE / MPVPE, raw F (official unaligned)", "meaningless",
        "pred.json is root-relative (see scores.json)")
    row("2D keypoint error (crop pixels)", _fmt(s["kp2d_mean_px"], ".2f", " px"),
        "PCK AUC 0-30 px " + _fmt(s["pck2d_auc_0_30px"], ".3f") + ", box-normalised AUC 0-0.5 "
        + _fmt(s["pck2d_box_auc_0_05"], ".3f"))
    row("Mask IoU", _fmt(s["mask_iou"], ".3f"))
    row("Throughput", _fmt(s["samples_per_second"], ".1f", " samples/s"),
        f"{s['devices']['count']} x {s['devices']['kind']}, batch {s['batch_size']}, "
        f"warm-up (compilation) {s['warmup_seconds']:.1f} s excluded")


def write_model_csv(path, per_sample, order, info):
    cols = ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5_al", "f15_al", "rr_mpjpe_mm", "rr_mpvpe_mm",
            "kp2d_mean_px", "mask_iou")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("index", "sample_id", "hand_side") + cols)
        for rank, i in enumerate(order):
            side = "left" if info["hand_side"][i] else "right"
            w.writerow([rank, info["sample_id"][i], side] + [
                "" if not np.isfinite(per_sample[c][i]) else f"{per_sample[c][i]:.6f}"
                for c in cols])


def _no_data(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def write_model_plots(out_dir, scores, curves):
    """pck_3d.png, pck_2d.png, per_joint_error.png, mask_iou_hist.png; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []

    def save(fig, name):
        fig.tight_layout()
        paths.append(os.path.join(out_dir, name))
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)

    thr_mm = 1000.0 * metrics.FREIHAND_PCK_THRESHOLDS
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, kind, title in ((axes[0], "xyz", "keypoints (21)"), (axes[1], "mesh", "mesh (778)")):
        drawn = False
        if f"{kind}_al" in curves:
            ax.plot(thr_mm, curves[f"{kind}_al"],
                    label=f"aligned (PA), AUC {scores[f'{kind}_al_auc3d']:.3f}")
            drawn = True
        if f"{kind}_rr" in curves:
            auc = scores["rr_xyz_auc_0_50mm" if kind == "xyz" else "rr_mesh_auc_0_50mm"]
            ax.plot(thr_mm, curves[f"{kind}_rr"], "--", label=f"root-relative, AUC {auc:.3f}")
            drawn = True
        if kind == "xyz" and scores["rr_pck_auc_20_50mm"] is not None:
            ax.axvspan(20, 50, color="0.9", zorder=0,
                       label=f"RR AUC 20-50 mm {scores['rr_pck_auc_20_50mm']:.3f}")
        if drawn:
            ax.legend(loc="lower right", fontsize=8)
        else:
            _no_data(ax, "no 3D labels in this split")
        ax.set_title(f"3D PCK, {title}")
        ax.set_xlabel("threshold (mm)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction within threshold")
    axes[0].set_ylim(0, 1.02)
    save(fig, "pck_3d.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, xlabel, auc_key in (
            (axes[0], "pck2d_px", "threshold (crop pixels)", "pck2d_auc_0_30px"),
            (axes[1], "pck2d_box", "threshold (fraction of the hand box side)",
             "pck2d_box_auc_0_05")):
        if key in curves:
            t, c = curves[key]
            ax.plot(t, c, label=f"AUC {scores[auc_key]:.3f}")
            ax.legend(loc="lower right")
        else:
            _no_data(ax, "no 2D labels in this split")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_title("2D PCK, pixels")
    axes[1].set_title("2D PCK, box-normalised")
    axes[0].set_ylabel("fraction within threshold")
    axes[0].set_ylim(0, 1.02)
    save(fig, "pck_2d.png")

    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(metrics.NUM_KEYPOINTS)
    if "per_joint_rr_mm" in curves:
        if "per_joint_al_mm" in curves:
            ax.bar(x - 0.2, curves["per_joint_al_mm"], 0.4, label="aligned (PA)")
        ax.bar(x + 0.2, curves["per_joint_rr_mm"], 0.4, label="root-relative")
        ax.legend()
    else:
        _no_data(ax, "no 3D labels in this split")
    ax.set_xticks(x)
    ax.set_xticklabels(metrics.JOINT_NAMES, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("mean error (mm)")
    ax.set_title("Per-joint 3D error")
    ax.grid(axis="y", alpha=0.3)
    save(fig, "per_joint_error.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    if "mask_iou" in curves:
        ax.hist(curves["mask_iou"], bins=np.linspace(0, 1, 21), color="tab:green")
        ax.axvline(scores["mask_iou"], color="k", ls="--", label=f"mean {scores['mask_iou']:.3f}")
        ax.legend()
    else:
        _no_data(ax, "no mask labels in this split")
    ax.set_xlabel("mask IoU")
    ax.set_ylabel("samples")
    ax.set_xlim(0, 1)
    save(fig, "mask_iou_hist.png")
    return paths


def write_overlay_page(path, q, info, per_sample, faces, count):
    """overlays.png: `count` samples (pipeline read order), each image + predicted skeleton |
    mask | shaded mesh (visualize.panel), with its id and errors above; two columns."""
    from PIL import Image, ImageDraw

    from hiu_jax import infer

    count = min(count, len(q["image"]))
    crop = q["image"].shape[1]
    size = max(crop, 128)
    label_h = 16
    cols = 1 if count <= 3 else 2
    rows = -(-count // cols)
    tile_w, tile_h = 3 * size, size + label_h
    page = Image.new("RGB", (cols * tile_w, rows * tile_h), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    for i in range(count):
        pred = {k: q[k][i] for k in ("joints_2d", "mask_prob", "vertices", "cam")}
        tile = infer.display_panel(q["image"][i], pred, faces, size)
        x, y = (i % cols) * tile_w, (i // cols) * tile_h
        page.paste(Image.fromarray(infer.to_uint8(tile)), (x, y + label_h))
        text = f"{info['sample_id'][i]}" + (" (left, mirrored)" if info["hand_side"][i] else "")
        for key, fmt in (("pa_mpjpe_mm", "PA {:.1f} mm"), ("rr_mpjpe_mm", "RR {:.1f} mm"),
                         ("kp2d_mean_px", "2D {:.1f} px"), ("mask_iou", "IoU {:.2f}")):
            if np.isfinite(per_sample[key][i]):
                text += "  " + fmt.format(per_sample[key][i])
        draw.text((x + 4, y + 2), text, fill=(0, 0, 0))
    page.save(path)


def _device_summary():
    import jax

    devices = jax.local_devices()
    return {"count": len(devices), "platform": devices[0].platform,
            "kind": devices[0].device_kind, "processes": jax.process_count()}


def run_model_mode(args) -> int:
    """Runs a checkpoint over a split, then writes the report (see the module docstring)."""
    from hiu_jax import infer

    if args.workdir and args.checkpoint:
        raise UserError("give --workdir or --checkpoint, not both")
    if args.num_overlay < 0:
        raise UserError(f"--num-overlay must be >= 0, got {args.num_overlay}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    progress = not args.no_progress
    try:
        workdir, which = infer.resolve_checkpoint(args.workdir or args.checkpoint, args.which)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        config, config_source = infer.run_config(workdir, args.config,
                                                 log=lambda m: print(m, file=sys.stderr))
    except infer.UserError as e:
        raise UserError(str(e)) from None

    import jax

    from datasets import registry as pipeline  # moved: datasets/registry.py

    dataset = args.dataset or config.data.eval_source
    split = args.split or config.data.eval_split
    if dataset not in pipeline.BUILDER_MODULES:
        raise UserError(f"--dataset {dataset!r} is not a dataset builder; known: "
                        f"{', '.join(sorted(pipeline.BUILDER_MODULES))}")
    batch_size = args.batch_size or int(config.batch_size)
    if batch_size % jax.device_count():
        raise UserError(f"the batch size {batch_size} is not divisible by the "
                        f"{jax.device_count()} devices; give --batch-size")
    config.batch_size = batch_size
    config.data.eval_source = dataset
    config.data.eval_split = split
    config.data.eval_max_batches = 0  # the whole split
    if args.data_dir:
        config.pipeline.data_dir = args.data_dir
    if args.manual_dir:
        config.pipeline.manual_dirs[dataset] = args.manual_dir
    manual_dir = config.pipeline.manual_dirs.get(dataset)
    try:
        builder = pipeline.make_builder(
            dataset, data_dir=config.pipeline.data_dir, manual_dir=manual_dir,
            builder_config=config.pipeline.builder_configs.get(dataset))
    except Exception as e:  # tfds reports a missing manual download in many ways
        first = (str(e).strip().splitlines() or [""])[0]
        raise UserError(f"dataset {dataset} (data_dir {config.pipeline.data_dir!r}, manual_dir "
                        f"{manual_dir!r}) cannot be read or prepared: {type(e).__name__}: "
                        f"{first}") from None
    if split not in builder.info.splits:
        raise UserError(f"dataset {dataset} has no split {split!r}; it has "
                        f"{', '.join(sorted(builder.info.splits))}")
    if builder.info.splits[split].num_examples == 0:
        raise UserError(f"{dataset}/{split} is empty")
    out_dir = args.out or os.path.join(workdir, f"eval_{dataset}_{split}")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output directory {out_dir}: {e}") from None

    import time
    from types import SimpleNamespace

    from hiu_jax import evaluation

    try:
        loaded = infer.load_model(workdir, which=which, config=(config, config_source))
    except infer.UserError as e:
        raise UserError(str(e)) from None
    print(f"{loaded.workdir}: checkpoint {which}, step {loaded.step}; config {config_source}; "
          f"{dataset}/{split} ({builder.info.splits[split].num_examples} samples) on "
          f"{jax.device_count()} {jax.devices()[0].platform} device(s)", flush=True)
    evaluator = evaluation.Evaluator(config, loaded.model, loaded.model.mano_model)
    state = SimpleNamespace(**loaded.variables)
    # Warm-up (compiles the model): the first batches, which also give the overlay page's crops.
    start = time.perf_counter()
    q = evaluator.predictions(state, max_batches=max(1, -(-args.num_overlay // batch_size)),
                              progress=False, keep_images=args.num_overlay > 0)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    p = evaluator.predictions(state, progress=progress, keep_images=False)
    seconds = time.perf_counter() - start
    n = len(p["gt_valid"])
    rate = n / seconds

    info = read_sample_info(builder, split)
    scores, per_sample, order, curves, pred_xyz, pred_verts = compute_model_scores(
        p, info, progress)
    metrics.write_pred_json(os.path.join(out_dir, "pred.json"), list(pred_xyz[order]),
                            list(pred_verts[order]))
    scores.update(
        dataset=dataset, split=split, samples_per_second=rate, eval_seconds=seconds,
        warmup_seconds=warmup, batch_size=batch_size, devices=_device_summary(),
        checkpoint={"workdir": os.path.abspath(loaded.workdir), "which": which,
                    "step": loaded.step, "config": config_source},
        pred_json={"file": "pred.json", "convention": PRED_JSON_CONVENTION},
        official_unaligned_keys_meaningless=list(OFFICIAL_UNALIGNED_KEYS),
        crops="the pipeline's evaluation crops: a square of crop_padding x the ground-truth hand "
              "box, no augmentation; left hands mirrored (predictions mirrored back)",
        units="*_mean3d: cm (as the official scores.txt); *_auc3d: AUC of 3D PCK over 0-5 cm, "
              "100 thresholds, after alignment (xyz_al, mesh_al) or official unaligned; f_*: "
              "F-score at 5 / 15 mm; *_mm: millimetres; rr_*: wrist-relative, no alignment "
              "(rr_pck_auc_20_50mm: 31 thresholds 20..50 mm, RHD/STB style); kp2d_*: crop "
              "pixels or fractions of the GT keypoint box side; null: not scored (no labels)")
    with open(os.path.join(out_dir, "scores.json"), "w") as f:
        json.dump(scores, f, indent=2, allow_nan=False)
    write_model_csv(os.path.join(out_dir, "per_sample.csv"), per_sample, order, info)
    names = [os.path.basename(x) for x in write_model_plots(out_dir, scores, curves)]
    if args.num_overlay:
        write_overlay_page(os.path.join(out_dir, "overlays.png"), q, info, per_sample,
                           np.asarray(loaded.model.mano_model.faces), args.num_overlay)
        names.append("overlays.png")
    print_model_table(scores)
    print(f"evaluation: {n} samples in {seconds:.2f} s = {rate:.1f} samples/s "
          f"(warm-up {warmup:.1f} s)")
    print(f"wrote scores.json, per_sample.csv, pred.json, {', '.join(names)} to {out_dir}")
    return 0


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.workdir or args.checkpoint:
            if args.pred or args.gt:
                raise UserError("give either --pred/--gt (score a file) or --workdir/--checkpoint "
                                "(run a model), not both")
            return run_model_mode(args)
        if not (args.pred and args.gt):
            raise UserError("give --pred pred.json and --gt DIR, or --workdir DIR (see --help)")
        return run_pred_mode(args.pred, args.gt, args.out, args.set_name,
                             progress=not args.no_progress)
    except UserError as e:
        print(f"eval.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
