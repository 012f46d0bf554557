"""Does the default main job learn? Runs `python train.py` from an empty data directory and prints
its validation curve next to the constant mean-hand baseline, with the wall time.

    python -m bench.learning_bench [--workdir runs/learning_bench] [--keep] [-- --config.x=y ...]

Everything after `--` goes to train.py. The synthetic data and its TFDS build go into the work
directory (empty on start unless --keep), so data generation counts in the wall time, as on a
fresh machine. The figures are those of the run's metrics.jsonl; the curves are also drawn in
<workdir>/validation_curves.png. Targets (on 2 CPU cores in at most 45 minutes, validation on
>= 1024 images): PA-MPJPE and PA-MPVPE <= 9 mm, F@5 >= 0.60, F@15 >= 0.96, mask IoU >= 0.88,
heat-map 2D error <= 4% of the crop, global rotation error <= 15 deg, RR-MPJPE <= 20 mm.
"""
import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]  # the repository: train.py runs there
from bench.machine import cpu_model, usable_cores  # noqa: E402

COLUMNS = (("step", "step", "d"), ("eval/pa_mpjpe_mm", "PA-MPJPE", ".2f"),
           ("eval/rr_mpjpe_mm", "RR-MPJPE", ".1f"), ("eval/rot_error_deg", "rot err deg", ".1f"),
           ("eval/pa_mpvpe_mm", "PA-MPVPE", ".2f"), ("eval/f5", "F@5", ".3f"),
           ("eval/f15", "F@15", ".3f"), ("eval/mask_iou", "mask IoU", ".3f"),
           ("eval/kp2d_mean_px", "2D mesh px", ".2f"), ("eval/kp2d_heatmap_px", "2D heat px", ".2f"),
           ("eval/hand_size_mm", "size mm", ".0f"), ("eval/cam_scale", "cam s", ".2f"))


def cell(row, key, spec):
    """row[key] with its standard error (row[key + "_se"]) when logged, else "-"."""
    v = row.get(key)
    if not isinstance(v, (int, float)):
        return "-"
    se = row.get(key + "_se")
    return format(v, spec) + (f" +- {format(se, spec)}" if isinstance(se, (int, float)) else "")


def table(rows):
    """The validation rows of metrics.jsonl as a Markdown table (mean +- standard error)."""
    head = "| " + " | ".join(name for _, name, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(cell(r, k, f) for k, _, f in COLUMNS) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/learning_bench")
    parser.add_argument("--keep", action="store_true",
                        help="resume in an existing work directory instead of starting empty")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    workdir = pathlib.Path(args.workdir).resolve()
    if workdir.exists() and not args.keep:
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "train.py", f"--workdir={workdir}",
           f"--config.data.synthetic_dir={workdir / 'data' / 'synthetic'}",
           f"--config.pipeline.data_dir={workdir / 'data' / 'tfds'}", *extra]
    print(f"CPU: {cpu_model()}, {usable_cores()} usable cores\n$ {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    code = subprocess.call(cmd, cwd=ROOT)
    minutes = (time.perf_counter() - start) / 60
    with open(workdir / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    evals = [r for r in rows if "eval/pa_mpjpe_mm" in r]
    print(f"\ntrain.py exited {code} after {minutes:.1f} min wall (data generation included)\n")
    print(table(evals))
    if evals:
        last = evals[-1]
        print(f"\nconstant mean hand on the same split: PA-MPJPE "
              f"{last.get('eval/baseline/pa_mpjpe_mm', float('nan')):.1f} mm, PA-MPVPE "
              f"{last.get('eval/baseline/pa_mpvpe_mm', float('nan')):.1f} mm, F@15 "
              f"{last.get('eval/baseline/f15', float('nan')):.3f}")
    print(f"curves: {workdir / 'validation_curves.png'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
