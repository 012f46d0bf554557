"""How a recipe's errors fall with the images it sees: train it at several multiples of its
`num_train_steps`, the schedule scaled to match, and plot the final validation scores.

    python -m bench.scaling --config configs/default.py --out runs/scaling \\
        [--factors 0.5,1,2,4] [--plot docs/scaling.png] [--config.KEY=VALUE ...]

Each factor f trains `train.py` in OUT/x<f> with num_train_steps multiplied by f (warmup, the
loss ramp and the decay points follow it; same data and seed), validating 4 times along the way. Runs that
finished are kept and an interrupted one resumes, so the same command picks up where it stopped
(the 4x point of the default recipe takes hours on 2 CPU cores: run it in the background). Then
it writes OUT/scaling.md (one row per finished factor: each score +- its standard error) and
the plot (PA-MPJPE, RR-MPJPE, global rotation error and 2D error against images seen, +-1
standard error bars). Factors not finished yet are listed as such, so a partial curve can be
drawn while the longest runs go on (`--plot-only`).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
PANELS = (("pa_mpjpe_mm", "PA-MPJPE (mm)"), ("rr_mpjpe_mm", "RR-MPJPE (mm)"),
          ("rot_error_deg", "global rotation error (deg)"),
          ("kp2d_heatmap_px", "2D error, heat maps (crop px)"))
TABLE = PANELS + (("pa_mpvpe_mm", "PA-MPVPE (mm)"), ("f5", "F@5"), ("f15", "F@15"),
                  ("mask_iou", "mask IoU"), ("kp2d_mean_px", "2D error, mesh (crop px)"))


def scaled_overrides(config, factor: float) -> list:
    """--config overrides for `factor` times the config's run: num_train_steps (warmup, the
    loss ramp and the decay points follow it in the config files), and 4 validations and
    checkpoints along the way."""
    steps = max(1, int(round(config.num_train_steps * factor)))
    every = max(1, steps // 4)
    return [f"--config.num_train_steps={steps}", f"--config.eval_every_steps={every}",
            f"--config.checkpoint_every_steps={every}"]


def final_row(workdir: str):
    """The last validation row of a finished run's metrics.jsonl, or None if unfinished."""
    from hiu_jax import logs

    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path) or not os.path.exists(os.path.join(workdir, "metrics.jsonl")):
        return None
    steps = json.load(open(path))["num_train_steps"]
    rows = [r for r in logs.read_metrics(workdir)
            if r.get("step") == steps and "eval/pa_mpjpe_mm" in r]
    return rows[-1] if rows else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/default.py")
    parser.add_argument("--out", required=True)
    parser.add_argument("--factors", default="0.5,1,2,4")
    parser.add_argument("--plot", default=None, help="the figure (default OUT/scaling.png)")
    parser.add_argument("--plot-only", action="store_true", help="train nothing")
    args, overrides = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    bad = [a for a in overrides if not a.startswith("--config.")]
    if bad:
        parser.error(f"unknown arguments {bad}")
    from hiu_jax import runs

    try:
        factors = [float(f) for f in args.factors.split(",")]
        config = runs.apply_overrides(runs.load_config_file(args.config), overrides)
    except (ValueError, runs.UserError) as e:
        parser.error(str(e))
    images_per_step = config.batch_size
    results = []
    for factor in factors:
        workdir = os.path.join(args.out, f"x{factor:g}")
        row = final_row(workdir)
        if row is None and not args.plot_only:
            os.makedirs(workdir, exist_ok=True)
            cmd = [sys.executable, str(ROOT / "train.py"), "--config",
                   str(pathlib.Path(args.config).resolve()), "--workdir",
                   str(pathlib.Path(workdir).resolve()), *overrides,
                   *scaled_overrides(config, factor)]
            print(f"[x{factor:g}] $ {' '.join(cmd)}", flush=True)
            with open(os.path.join(workdir, "train.log"), "a") as f:
                code = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
            if code != 0:
                print(f"[x{factor:g}] train.py exited {code}; rerun to resume", file=sys.stderr)
                return code
            row = final_row(workdir)
        results.append((factor, row))
    write_outputs(args.out, args.plot or os.path.join(args.out, "scaling.png"), results,
                  config.num_train_steps, images_per_step)
    return 0


def write_outputs(out, plot, results, base_steps, images_per_step) -> None:
    """OUT/scaling.md and the figure from [(factor, final metrics row or None)]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [(f, r) for f, r in results if r is not None]
    lines = ["| factor | steps | images seen | " + " | ".join(l for _, l in TABLE) + " |",
             "|---|---|---|" + "---|" * len(TABLE)]
    for f, r in results:
        if r is None:
            lines.append(f"| {f:g} | {int(round(base_steps * f))} | - | not finished |")
            continue
        cells = []
        for key, _ in TABLE:
            v, se = r.get(f"eval/{key}"), r.get(f"eval/{key}_se")
            cells.append("-" if v is None else f"{v:.3g} +- {se:.2g}" if se is not None
                         else f"{v:.3g}")
        lines.append(f"| {f:g} | {r['step']} | {r['step'] * images_per_step} | "
                     + " | ".join(cells) + " |")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "scaling.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 4))
    for ax, (key, title) in zip(axes, PANELS):
        pts = [(r["step"] * images_per_step, r[f"eval/{key}"], r.get(f"eval/{key}_se", 0.0))
               for _, r in done if f"eval/{key}" in r]
        if pts:
            x, y, se = map(np.asarray, zip(*pts))
            ax.errorbar(x, y, yerr=se, marker="o", capsize=3)
            ax.set_xscale("log", base=2)
        ax.set_title(title)
        ax.set_xlabel("training images seen")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(plot)), exist_ok=True)
    fig.savefig(plot, dpi=80)
    plt.close(fig)
    print(f"Wrote {os.path.join(out, 'scaling.md')} and {plot}")


if __name__ == "__main__":
    sys.exit(main())
