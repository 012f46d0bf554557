"""The evaluation report of both eval.py modes: the table, the per-sample CSV, the plots.

Pred mode (`write_pred_report`, scores of metrics.freihand_scores): scores.json,
per_sample.csv, pck_3d.png, per_joint_error.png, pa_mpjpe_hist.png. Model mode
(`write_model_report`, evaluation.Scores): scores.json, per_sample.csv, pck_3d.png, pck_2d.png,
per_joint_error.png, mask_iou_hist.png, overlays.png. Both go through the same table printer,
CSV writer and figure helpers below. Errors are printed in mm (the official FreiHAND script
prints cm).
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys

import numpy as np

from hiu_jax import metrics, scorers
from hiu_jax.geometry import skeleton

MM_NOTE = "(errors in mm; the official eval.py prints cm, e.g. 7.10 mm = 0.71 cm)"


def fmt(x, spec, unit=""):
    """`x` formatted with `spec` and `unit`, or "n/a" for None."""
    return "n/a" if x is None else format(x, spec) + unit


def print_table(title, rows, notes=(), width=(30, 12), file=sys.stdout):
    """title, then one line per (name, value, extra) row, then the notes."""
    print(title, file=file)
    for name, value, extra in rows:
        print(f"  {name:<{width[0]}} {value:>{width[1]}}   {extra}".rstrip(), file=file)
    for note in notes:
        print(f"  {note}", file=file)


def write_csv(path, header, columns, order=None):
    """The header, then one row per sample in `order` (default 0..N-1): its rank (the "index"
    column), then `columns` (sequences of N str or numbers; NaN or None -> empty, floats with
    6 decimals)."""
    order = range(len(columns[0])) if order is None else order

    def cell(x):
        if x is None or (isinstance(x, (float, np.floating)) and not np.isfinite(x)):
            return ""
        return f"{x:.6f}" if isinstance(x, (float, np.floating)) else x

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for rank, i in enumerate(order):
            w.writerow([rank] + [cell(c[i]) for c in columns])


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=2, allow_nan=False)


# --------------------------------------------------------------------------- figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_dir, name):
    fig.tight_layout()
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def _pck_axes(ax, x, lines, title, xlabel, empty, legend_size=None):
    """One PCK panel: lines [(curve, style, label)] over thresholds x; `empty` when none."""
    for curve, style, label in lines:
        ax.plot(x, curve, style, label=label)
    if lines:
        ax.legend(loc="lower right", fontsize=legend_size)
    else:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)


def pck_figure(panels, legend_size=None):
    """Side-by-side PCK panels sharing the y axis: panels [(x, lines, title, xlabel, empty)]."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(10, 4), sharey=True)
    for ax, panel in zip(axes, panels):
        _pck_axes(ax, *panel, legend_size=legend_size)
    axes[0].set_ylabel("fraction within threshold")
    axes[0].set_ylim(0, 1.02)
    return fig, axes


def per_joint_figure(out_dir, bars, title, ylabel, empty=None):
    """per_joint_error.png: bars [(offset, width, values (21,), label)] over the joints."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(skeleton.NUM_KEYPOINTS)
    for offset, width, values, label, color in bars:
        ax.bar(x + offset, values, width, label=label, color=color)
    if any(label for *_, label, _ in bars):
        ax.legend()
    if not bars:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks(x)
    ax.set_xticklabels(skeleton.JOINT_NAMES, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out_dir, "per_joint_error.png")


def histogram_figure(out_dir, name, values, bins, mean, mean_label, xlabel, empty=None,
                     xlim=None):
    """A histogram of per-sample values with their mean as a dashed line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    if values is None:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
    else:
        ax.hist(values, bins=bins, color="tab:green")
        ax.axvline(mean, color="k", ls="--", label=mean_label)
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    if xlim:
        ax.set_xlim(*xlim)
    return _save(fig, out_dir, name)


# --------------------------------------------------------------------------- pred mode


def pred_scores_json(scores):
    """The JSON-able part of `metrics.freihand_scores`: official keys, mm keys, their units."""
    out = {k: scores[k] for k in metrics.FREIHAND_SCORE_KEYS}
    for k in ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "mpjpe_mm", "mpvpe_mm", "pa_mpjpe_mm_se",
              "pa_mpvpe_mm_se", "f5_se", "f15_se", "num_samples", "mesh_scored",
              "num_vertices_pred"):
        out[k] = scores[k]
    out["units"] = ("*_mean3d: cm (as the official scores.txt); *_auc3d: AUC of 3D PCK over "
                    "0-5 cm, 100 thresholds; f_*: F-score at 5 / 15 mm; *_mm: millimetres; *_se: "
                    "standard errors over samples; "
                    "null: not scored (mesh vertex count != 778, or no mesh)")
    return out


def fmt_se(s, key, spec, unit=""):
    """s[key] +- its standard error s[key + "_se"] (when scored) with `unit`, or "n/a"."""
    text = scorers.with_se(s, key, spec, " +- ", "n/a")
    return text if text == "n/a" else text + unit


def _aligned_rows(s) -> list:
    """The two headline rows both modes print: PA-MPJPE and PA-MPVPE with their AUCs (and
    standard errors where `s` holds them)."""
    return [("PA-MPJPE (keypoints, aligned)", fmt_se(s, "pa_mpjpe_mm", ".2f", " mm"),
             "AUC 0-50 mm " + fmt(s["xyz_al_auc3d"], ".3f")),
            ("PA-MPVPE (mesh, aligned)", fmt_se(s, "pa_mpvpe_mm", ".2f", " mm"),
             "AUC 0-50 mm " + fmt(s["mesh_al_auc3d"], ".3f"))]


def print_pred_table(s, file=sys.stdout):
    """The pred mode's headline table in mm."""
    rows = _aligned_rows(s) + [
        ("F@5 mm (aligned)", fmt_se(s, "f5", ".3f"), "raw " + fmt(s["f_score_5"], ".3f")),
        ("F@15 mm (aligned)", fmt_se(s, "f15", ".3f"),
         "raw " + fmt(s["f_score_15"], ".3f")),
        ("MPJPE (keypoints, unaligned)", fmt(s["mpjpe_mm"], ".2f", " mm"),
         "AUC 0-50 mm " + fmt(s["xyz_auc3d"], ".3f")),
        ("MPVPE (mesh, unaligned)", fmt(s["mpvpe_mm"], ".2f", " mm"),
         "AUC 0-50 mm " + fmt(s["mesh_auc3d"], ".3f")),
    ]
    notes = [MM_NOTE]
    if s["num_vertices_pred"] is not None and not s["mesh_scored"]:
        notes.append(f"note: the predicted meshes have {s['num_vertices_pred']} vertices, not "
                     f"{skeleton.NUM_VERTICES}: no mesh errors; F-scores use the keypoints' "
                     "transform as the official script applies it")
    print_table(f"FreiHAND evaluation, {s['num_samples']} samples", rows, notes, file=file)


def write_pred_report(out_dir, scores):
    """scores.json, per_sample.csv and the pred mode's plots; prints the table. Returns the
    names of the files written."""
    print_pred_table(scores)
    write_json(os.path.join(out_dir, "scores.json"), pred_scores_json(scores))
    ps, n = scores["per_sample"], scores["num_samples"]

    def col(key, factor=1.0):
        return [None] * n if ps[key] is None else [factor * float(x) for x in ps[key]]

    write_csv(os.path.join(out_dir, "per_sample.csv"),
              ["index", "kp_al_mean_mm", "mesh_al_mean_mm", "f5_al", "f15_al"],
              [col("kp_al_mean_m", 1000.0), col("mesh_al_mean_m", 1000.0),
               col("f_al_score_5"), col("f_al_score_15")])
    c = scores["curves"]
    panels = []
    for kind, title in (("xyz", "keypoints (21)"), ("mesh", "mesh (778)")):
        lines = [(c[key], style, f"{label} (AUC {scores[auc]:.3f})")
                 for key, auc, label, style in ((kind + "_al", f"{kind}_al_auc3d", "aligned", "-"),
                                                (kind, f"{kind}_auc3d", "unaligned", "--"))
                 if c[key] is not None]
        panels.append((1000.0 * c["thresholds"], lines, f"3D PCK, {title}", "threshold (mm)",
                       "not scored"))
    fig, _ = pck_figure(panels)
    _save(fig, out_dir, "pck_3d.png")
    per_joint_figure(out_dir, [(0.0, 0.8, scores["per_joint_al_mean_mm"], None, "tab:blue")],
                     f"Per-joint error after alignment (PA-MPJPE {scores['pa_mpjpe_mm']:.2f} mm)",
                     "aligned mean error (mm)")
    per_sample = 1000.0 * ps["kp_al_mean_m"]
    histogram_figure(out_dir, "pa_mpjpe_hist.png", per_sample,
                     max(10, min(100, int(math.sqrt(len(per_sample))) * 2)),
                     scores["pa_mpjpe_mm"], "mean", "per-sample PA-MPJPE (mm)")
    return ["scores.json", "per_sample.csv", "pck_3d.png", "per_joint_error.png",
            "pa_mpjpe_hist.png"]


# --------------------------------------------------------------------------- model mode


def model_rows(s) -> list:
    """The model mode's table rows: every score a scorer shows in the table (scorers.Show.name),
    in registration order, each +- its standard error with its unit and its detail."""
    rows = []
    for show in scorers.shown():
        if not show.name:
            continue
        unit = " " + show.unit if show.unit else ""
        value = "meaningless" if show.meaningless else fmt_se(s, show.key, show.spec, unit)
        rows.append((show.name, value, scorers.fill(show.detail, s, "n/a")))
    return rows


def print_model_table(s, file=sys.stdout):
    """The model mode's headline table: `model_rows` (each mean over samples +- its standard
    error; the official unaligned numbers marked meaningless), then the throughput."""
    rows = model_rows(s) + [
        ("Throughput", fmt(s["samples_per_second"], ".1f", " samples/s"),
         f"{s['devices']['count']} x {s['devices']['kind']}, batch {s['batch_size']}, "
         f"warm-up (compilation) {s['warmup_seconds']:.1f} s excluded"),
    ]
    title = (f"{s['dataset']}/{s['split']}: {s['num_samples']} samples ({s['num_samples_3d']} "
             f"with 3D + mesh, {s['num_samples_2d']} with 2D, {s['num_samples_mask']} with "
             f"masks); checkpoint {s['checkpoint']['which']} step {s['checkpoint']['step']}")
    print_table(title, rows, ["scores: mean +- standard error over samples"], width=(42, 18),
                file=file)


def write_model_report(out_dir, values, result, order):
    """scores.json (`values`), per_sample.csv (sorted by `order`) and the model mode's plots
    from `result` (evaluation.Scores); prints the table. Returns the names of the files."""
    write_json(os.path.join(out_dir, "scores.json"), values)
    sides = ["left" if m else "right" for m in result.mirrored]
    write_csv(os.path.join(out_dir, "per_sample.csv"),
              ["index", "sample_id", "hand_side"] + list(result.per_sample),
              [result.sample_ids, sides] + list(result.per_sample.values()), order)
    curves, thr_mm = result.curves, 1000.0 * metrics.FREIHAND_PCK_THRESHOLDS
    panels = []
    for kind, title, rr_auc in (("xyz", "keypoints (21)", "rr_xyz_auc_0_50mm"),
                                ("mesh", "mesh (778)", "rr_mesh_auc_0_50mm")):
        lines = []
        if f"{kind}_al" in curves:
            lines.append((curves[f"{kind}_al"], "-",
                          f"aligned (PA), AUC {values[f'{kind}_al_auc3d']:.3f}"))
        if f"{kind}_rr" in curves:
            lines.append((curves[f"{kind}_rr"], "--", f"root-relative, AUC {values[rr_auc]:.3f}"))
        panels.append((thr_mm, lines, f"3D PCK, {title}", "threshold (mm)",
                       "no 3D labels in this split"))
    fig, axes = pck_figure(panels, legend_size=8)
    if values["rr_pck_auc_20_50mm"] is not None:
        axes[0].axvspan(20, 50, color="0.9", zorder=0,
                        label=f"RR AUC 20-50 mm {values['rr_pck_auc_20_50mm']:.3f}")
        axes[0].legend(loc="lower right", fontsize=8)
    _save(fig, out_dir, "pck_3d.png")
    panels = []
    for key, xlabel, auc_key, title in (
            ("pck2d_px", "threshold (crop pixels)", "pck2d_auc_0_30px", "2D PCK, pixels"),
            ("pck2d_box", "threshold (fraction of the hand box side)", "pck2d_box_auc_0_05",
             "2D PCK, box-normalised")):
        t, c = curves.get(key, (None, None))
        lines = [] if t is None else [(c, "-", f"AUC {values[auc_key]:.3f}")]
        panels.append((t, lines, title, xlabel, "no 2D labels in this split"))
    fig, _ = pck_figure(panels)
    _save(fig, out_dir, "pck_2d.png")
    bars = []
    if "per_joint_rr_mm" in curves:
        if "per_joint_al_mm" in curves:
            bars.append((-0.2, 0.4, curves["per_joint_al_mm"], "aligned (PA)", None))
        bars.append((0.2, 0.4, curves["per_joint_rr_mm"], "root-relative", None))
    per_joint_figure(out_dir, bars, "Per-joint 3D error", "mean error (mm)",
                     "no 3D labels in this split")
    histogram_figure(out_dir, "mask_iou_hist.png", curves.get("mask_iou"), np.linspace(0, 1, 21),
                     values["mask_iou"], f"mean {fmt(values['mask_iou'], '.3f')}", "mask IoU",
                     "no mask labels in this split", xlim=(0, 1))
    print_model_table(values)
    return ["scores.json", "per_sample.csv", "pred.json", "pck_3d.png", "pck_2d.png",
            "per_joint_error.png", "mask_iou_hist.png"]


def write_overlay_page(path, q, result, faces, count):
    """overlays.png: `count` samples (pipeline read order), each image + predicted skeleton |
    mask | shaded mesh (visualize.display_panel), with its id and errors above; two columns.
    q: Evaluator.predictions with images; result: evaluation.Scores of the same samples (the
    first len(q["image"]) of them)."""
    from PIL import Image, ImageDraw

    from hiu_jax import visualize

    count = min(count, len(q["image"]))
    faces = np.asarray(faces)
    crop = q["image"].shape[1]
    size = max(crop, 128)
    label_h = 16
    cols = 1 if count <= 3 else 2
    rows = -(-count // cols)
    tile_w, tile_h = 3 * size, size + label_h
    page = Image.new("RGB", (cols * tile_w, rows * tile_h), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    ps = result.per_sample
    for i in range(count):
        pred = {k: q[k][i] for k in ("keypoints_2d", "mask_prob", "vertices", "cam")}
        tile = visualize.display_panel(q["image"][i], pred, faces, size)
        x, y = (i % cols) * tile_w, (i // cols) * tile_h
        page.paste(Image.fromarray(visualize.to_uint8(tile)), (x, y + label_h))
        text = result.sample_ids[i] + (" (left, mirrored)" if result.mirrored[i] else "")
        for key, spec in (("pa_mpjpe_mm", "PA {:.1f} mm"), ("rr_mpjpe_mm", "RR {:.1f} mm"),
                          ("kp2d_mean_px", "2D {:.1f} px"), ("mask_iou", "IoU {:.2f}")):
            if np.isfinite(ps[key][i]):
                text += "  " + spec.format(ps[key][i])
        draw.text((x + 4, y + 2), text, fill=(0, 0, 0))
    page.save(path)
