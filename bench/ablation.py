"""The ablation harness: train variants of a recipe on the same data with the same seed, validate
each at the same steps, and tell which differences are real.

    python -m bench.ablation --config configs/default.py --steps 2000 --out runs/abl \\
        [--eval-every 500] [--config.KEY=VALUE ...]          (options for every variant) \\
        --variant base \\
        --variant pof10 --config.loss.terms.pof=10.0 \\
        --variant wide  --config.model.decoder_width=64 ...

Every `--config.KEY=VALUE` before the first `--variant` applies to all variants; each one after
a `--variant NAME` belongs to that variant. Each variant trains with `train.py` (same config
file, seed, data and batches; `num_train_steps` = --steps, validation every --eval-every steps)
in OUT/NAME, and its console goes to OUT/NAME/train.log. Then the harness writes:

- OUT/ablation.md and OUT/ablation.csv: one row per variant, each score at the last step as
  mean +- standard error over the validation samples, and the difference to the first variant
  with the standard error of that difference. Variants are scored on the same samples, so the
  difference is paired (per sample, `metrics.paired_difference`): its standard error is much
  smaller than either score's, and |difference| > 2 standard errors is a difference the
  validation set resolves (about 95 %).
- OUT/ablation_curves.png: every variant's validation curves with +-1 standard error bands.

Interrupted (Ctrl-C, SIGTERM, a crash), the same command resumes: finished variants are kept,
the interrupted one resumes from its last checkpoint on the batches it would have seen. A
command that changes a finished variant's options is refused (OUT/ablation.json records them).
"""
from __future__ import annotations

import csv
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]  # the repository: train.py runs there
RECORD = "ablation.json"


def compared_scores() -> list:
    """The compared scores, [(key, label, format, better)]: every score a scorer marks with a
    direction (hiu_jax.scorers.Show.better), in its fine format."""
    from hiu_jax import scorers

    return [(show.key, f"{show.short} {show.unit}".strip(), show.fine_spec or show.spec,
             show.better) for show in scorers.shown() if show.better]


class UsageError(Exception):
    """A bad command line, or one that contradicts the run recorded in OUT; exit 2."""


def parse_command_line(argv) -> dict:
    """{config, steps, out, eval_every, common: [overrides], variants: [(name, [overrides])]}.

    Raises UsageError naming the argument at fault."""
    opts = {"config": "configs/default.py", "steps": None, "out": None, "eval_every": None}
    common, variants = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        key, eq, value = arg.partition("=")
        if arg.startswith("--config.") and key != "--config":
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"{arg} has no value")
                value, i = argv[i + 1], i + 1
            (variants[-1][1] if variants else common).append(f"{key}={value}")
        elif key in ("--config", "--steps", "--out", "--eval-every", "--variant"):
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"{key} has no value")
                value, i = argv[i + 1], i + 1
            if key == "--variant":
                if not value or "/" in value or value.startswith("."):
                    raise UsageError(f"--variant {value!r}: a name is one non-empty path part")
                if value in [n for n, _ in variants]:
                    raise UsageError(f"--variant {value!r} is given twice")
                variants.append((value, []))
            elif variants:
                raise UsageError(f"{key} must come before the first --variant")
            else:
                opts[key[2:].replace("-", "_")] = value
        elif arg in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        else:
            raise UsageError(f"unknown argument {arg!r}")
        i += 1
    for key in ("steps", "out"):
        if opts[key] is None:
            raise UsageError(f"--{key} is required")
    for key in ("steps", "eval_every"):
        if opts[key] is not None:
            try:
                opts[key] = int(opts[key])
            except ValueError:
                raise UsageError(f"--{key.replace('_', '-')} must be a whole number of steps, "
                                 f"got {opts[key]!r}") from None
            if opts[key] <= 0:
                raise UsageError(f"--{key.replace('_', '-')} must be positive, got {opts[key]}")
    if not variants:
        raise UsageError("give at least one --variant NAME (the first is the reference)")
    if not os.path.isfile(opts["config"]):
        raise UsageError(f"config file not found: {opts['config']}")
    opts["eval_every"] = opts["eval_every"] or max(1, opts["steps"] // 4)
    return dict(opts, common=common, variants=variants)


def train_command(run: dict, name: str, overrides) -> list:
    """train.py's command line for one variant (absolute paths: it runs in the repository)."""
    out = pathlib.Path(run["out"]).resolve()
    return [sys.executable, str(ROOT / "train.py"), "--config",
            str(pathlib.Path(run["config"]).resolve()), "--workdir", str(out / name),
            f"--config.num_train_steps={run['steps']}",
            f"--config.eval_every_steps={run['eval_every']}",
            f"--config.checkpoint_every_steps={run['eval_every']}", *run["common"], *overrides]


def check_record(run: dict) -> None:
    """Writes OUT/ablation.json, or checks a rerun against it: the same config file, steps and
    validation cadence, and each recorded variant with the same options. New variants may be
    added to a finished ablation."""
    path = os.path.join(run["out"], RECORD)
    mine = {"config": os.path.abspath(run["config"]), "steps": run["steps"],
            "eval_every": run["eval_every"], "common": run["common"],
            "variants": {n: o for n, o in run["variants"]}}
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        for key in ("config", "steps", "eval_every", "common"):
            if old[key] != mine[key]:
                raise UsageError(f"{path} records {key} = {old[key]!r}, this command gives "
                                 f"{mine[key]!r}; use another --out")
        for name, overrides in mine["variants"].items():
            if name in old["variants"] and old["variants"][name] != overrides:
                raise UsageError(f"{path} records variant {name!r} as {old['variants'][name]}, "
                                 f"this command gives {overrides}; use another name or --out")
        mine["variants"] = dict(old["variants"], **mine["variants"])
    os.makedirs(run["out"], exist_ok=True)
    with open(path, "w") as f:
        json.dump(mine, f, indent=2)


def validation_file(run: dict, name: str, step: int) -> str:
    return os.path.join(run["out"], name, "validation", f"step_{step}.npz")


_CHILDREN = []  # the running train.py, to pass a SIGTERM on to


def _forward_sigterm(signum, _frame):
    """SIGTERM to the harness: train.py saves its checkpoint and exits 143 (a Ctrl-C reaches
    both already, through the terminal's process group)."""
    for proc in _CHILDREN:
        proc.send_signal(signum)


def train_variant(run: dict, name: str, overrides) -> None:
    """Trains (or resumes, or skips when finished) one variant; its console to train.log.
    Raises SystemExit with train.py's status when it fails or is interrupted."""
    if os.path.exists(validation_file(run, name, run["steps"])):
        print(f"[{name}] finished already", flush=True)
        return
    os.makedirs(os.path.join(run["out"], name), exist_ok=True)
    log = os.path.join(run["out"], name, "train.log")
    cmd = train_command(run, name, overrides)
    print(f"[{name}] training {run['steps']} steps, log {log}\n  $ {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    with open(log, "a") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        _CHILDREN.append(proc)
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # the child got the same SIGINT: let it save its checkpoint
            code = proc.wait()
        finally:
            _CHILDREN.remove(proc)
    if code != 0:
        tail = open(log).read().strip().splitlines()[-1:] or [""]
        what = ("interrupted: run the same command to resume" if code in (130, 143)
                else f"failed: {tail[0]}")
        print(f"[{name}] train.py exited {code}, {what}", file=sys.stderr, flush=True)
        sys.exit(code)
    print(f"[{name}] done in {(time.perf_counter() - start) / 60:.1f} min", flush=True)


def read_scores(run: dict, name: str, step: int):
    """(sample ids, key -> per-sample values) of a variant's validation at `step`."""
    from hiu_jax import evaluation

    return evaluation.load_linear(validation_file(run, name, step))


def compare(run: dict) -> list:
    """One row per variant: name, then per score (mean, se, diff, diff_se) at the last step,
    the difference to the first variant paired over the samples both scored."""
    from hiu_jax import metrics

    step, rows = run["steps"], []
    ref_ids, ref = read_scores(run, run["variants"][0][0], step)
    for name, overrides in run["variants"]:
        ids, cols = read_scores(run, name, step)
        if ids != ref_ids:
            raise UsageError(f"variant {name!r} was validated on other samples than "
                             f"{run['variants'][0][0]!r} (different data?): no paired comparison")
        row = {"variant": name, "overrides": " ".join(o.replace("--config.", "")
                                                      for o in overrides) or "(reference)"}
        for key, *_ in compared_scores():
            v = cols.get(key)
            if v is None or not np.isfinite(v).any():
                continue
            d, d_se, _ = metrics.paired_difference(ref[key], v)
            row[key] = (float(np.nanmean(v)), metrics.standard_error(v), d, d_se)
        rows.append(row)
    return rows


def write_tables(run: dict, rows: list) -> None:
    """OUT/ablation.csv (numbers) and OUT/ablation.md (mean +- se, difference +- se)."""
    ref = run["variants"][0][0]
    scores = compared_scores()
    header = ["variant", "overrides"]
    for key, *_ in scores:
        header += [key, key + "_se", key + "_diff", key + "_diff_se"]
    with open(os.path.join(run["out"], "ablation.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            cells = [r["variant"], r["overrides"]]
            for key, *_ in scores:
                cells += ["" if key not in r else f"{x:.6g}" for x in r.get(key, (0,) * 4)]
            w.writerow(cells)
    scored = [s for s in scores if any(s[0] in r for r in rows)]
    lines = [f"# Ablation: {len(rows)} variants of {run['config']}, {run['steps']} steps",
             "",
             f"Scores at step {run['steps']} on the validation split: mean +- standard error "
             f"over samples; below each, the difference to `{ref}` +- its paired standard "
             "error (**bold**: |difference| > 2 standard errors, resolved at about 95 %).",
             "", "| variant | " + " | ".join(label for _, label, *_ in scored) + " |",
             "|---|" + "---|" * len(scored)]
    for r in rows:
        cells, diffs = [], []
        for key, label, spec, better in scored:
            if key not in r:
                cells.append("-")
                diffs.append("")
                continue
            m, se, d, d_se = r[key]
            cells.append(f"{format(m, spec)} +- {format(se, spec)}")
            if r["variant"] == ref:
                diffs.append("")
            else:
                text = f"{d:+{spec}} +- {format(d_se, spec)}"
                diffs.append(f"**{text}**" if math.isfinite(d_se) and abs(d) > 2 * d_se
                             else text)
        lines.append(f"| {r['variant']} | " + " | ".join(cells) + " |")
        if r["variant"] != ref:
            lines.append("| diff | " + " | ".join(diffs) + " |")
    lines += ["", "Variants (`--config.` overrides on top of the common ones: "
              f"{' '.join(run['common']) or 'none'}):", ""]
    lines += [f"- `{r['variant']}`: {r['overrides']}" for r in rows]
    with open(os.path.join(run["out"], "ablation.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


CURVES = (("pa_mpjpe_mm", "PA-MPJPE (mm)"), ("rr_mpjpe_mm", "RR-MPJPE (mm)"),
          ("rot_error_deg", "global rotation error (deg)"), ("pa_mpvpe_mm", "PA-MPVPE (mm)"),
          ("f5", "F@5"), ("f15", "F@15"), ("mask_iou", "mask IoU"),
          ("kp2d_heatmap_px", "2D error, heat maps (crop px)"))


def write_curves(run: dict) -> None:
    """OUT/ablation_curves.png: each variant's validation curves (metrics.jsonl) with +-1
    standard error bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hiu_jax import logs

    fig, axes = plt.subplots(2, 4, figsize=(20, 8))
    for ax, (key, title) in zip(axes.ravel(), CURVES):
        for name, _ in run["variants"]:
            rows = [r for r in logs.read_metrics(os.path.join(run["out"], name))
                    if isinstance(r.get(f"eval/{key}"), (int, float))]
            if not rows:
                continue
            x = np.asarray([r["step"] for r in rows])
            y = np.asarray([r[f"eval/{key}"] for r in rows], float)
            se = np.asarray([r.get(f"eval/{key}_se", np.nan) for r in rows], float)
            line, = ax.plot(x, y, marker="o", markersize=3, label=name)
            ax.fill_between(x, y - se, y + se, color=line.get_color(), alpha=0.2, lw=0)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(run["out"], "ablation_curves.png"), dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    try:
        run = parse_command_line(sys.argv[1:] if argv is None else argv)
        check_record(run)
    except UsageError as e:
        print(f"ablation.py: {e}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _forward_sigterm)
    for name, overrides in run["variants"]:
        train_variant(run, name, overrides)
    try:
        rows = compare(run)
    except UsageError as e:
        print(f"ablation.py: {e}", file=sys.stderr)
        return 1
    write_tables(run, rows)
    write_curves(run)
    print(open(os.path.join(run["out"], "ablation.md")).read())
    print(f"Wrote {run['out']}/ablation.md, ablation.csv and ablation_curves.png", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
