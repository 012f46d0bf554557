"""HIU-JAX evaluation: FreiHAND scores, reports and plots.

Mode available now, model-free (score a FreiHAND submission file against the evaluation GT):

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

Mode to come (needs a trained model from train.py): --workdir/--checkpoint, run the model on the
evaluation set, then the same scoring and report.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys

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
    parser.add_argument("--out", help="output directory (default: the pred file's directory)")
    parser.add_argument("--set-name", default="evaluation",
                        help="GT file prefix: <set-name>_xyz.json, <set-name>_verts.json")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    model = parser.add_argument_group("model mode (not available yet)")
    model.add_argument("--workdir", help="training work directory (needs train.py)")
    model.add_argument("--checkpoint", help="checkpoint to evaluate (needs train.py)")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- loading


def _load_json(path, what):
    if not os.path.isfile(path):
        raise UserError(f"{what} not found: {path}")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise UserError(f"{what} {path} is not valid JSON ({e})") from None


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


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.workdir or args.checkpoint:
            raise UserError("--workdir/--checkpoint: not available yet: needs a trained model "
                            "(train.py); use --pred pred.json --gt DIR to score a prediction file")
        if not (args.pred and args.gt):
            raise UserError("give --pred pred.json and --gt DIR (see --help)")
        return run_pred_mode(args.pred, args.gt, args.out, args.set_name,
                             progress=not args.no_progress)
    except UserError as e:
        print(f"eval.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
