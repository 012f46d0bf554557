"""Run logs: <workdir>/metrics.jsonl (one JSON object per log step) and TensorBoard events.

Only process 0 writes (`enabled=False` elsewhere). Each JSON line is flushed when written, so a
crash loses nothing that was logged.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np


class MetricWriter:
    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        self.workdir = workdir
        self._jsonl = None
        self._tb = None
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", buffering=1)
            import tensorflow as tf  # tf.summary writes the TensorBoard event files

            self._tf = tf
            self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

    def write_config(self, config) -> None:
        if self.enabled:
            with open(os.path.join(self.workdir, "config.json"), "w") as f:
                f.write(config.to_json_best_effort(indent=2))

    def scalars(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        clean = {k: _plain(v) for k, v in values.items()}
        self._jsonl.write(json.dumps(dict(clean, step=int(step))) + "\n")
        with self._tb.as_default():
            for k, v in clean.items():
                if isinstance(v, (int, float)) and k != "step" and math.isfinite(v):
                    self._tf.summary.scalar(k, v, step=int(step))
        self._tb.flush()

    def images(self, step: int, images: dict) -> None:
        """images: name -> (H, W, 3) float in [0, 1]."""
        if not self.enabled:
            return
        with self._tb.as_default():
            for name, img in images.items():
                self._tf.summary.image(name, np.clip(np.asarray(img, np.float32), 0, 1)[None],
                                       step=int(step))
        self._tb.flush()

    def close(self) -> None:
        if self._jsonl:
            self._jsonl.close()
        if self._tb:
            self._tb.close()


def _plain(v):
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN; keep it visible as text
    return v


def read_metrics(workdir: str) -> list:
    """The logged rows of <workdir>/metrics.jsonl as dicts, in order."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def curve_panels() -> list:
    """Panels of the validation-curves figure, [(title, [(metric key, label, style)], y label)]:
    every score a scorer draws (hiu_jax.scorers.Show.panel), grouped by panel in registration
    order. A key with a standard error "<key>_se" in the rows is drawn with a +-1 standard error
    band."""
    from hiu_jax import scorers

    panels = {}
    for show in scorers.shown():
        if show.panel:
            series, _ = panels.setdefault(show.panel, ([], show.unit))
            series.append(("eval/" + show.key, show.name or show.short or show.key,
                             show.style))
    return [(title, series, unit) for title, (series, unit) in panels.items()]


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def plot_validation_curves(rows, path: str) -> bool:
    """Writes a PNG of the validation curves (`curve_panels`) of metrics rows (`read_metrics`),
    each score with a +-1 standard error band where the rows hold one.

    Returns False (and writes nothing) when no row holds a validation score."""
    evals = [r for r in rows if any(k.startswith("eval/") for k in r)]
    if not evals:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = curve_panels()
    rows_of_4 = -(-(len(panels) + 1) // 4)  # one cell left for nothing, as before
    fig, axes = plt.subplots(rows_of_4, 4, figsize=(20, 4 * rows_of_4), squeeze=False)
    for ax, (title, series, unit) in zip(axes.ravel(), panels):
        for key, label, style in series:
            pts = [(r["step"], r[key], r.get(key + "_se")) for r in evals if _finite(r.get(key))]
            if not pts:
                continue
            steps, values, ses = zip(*pts)
            line, = ax.plot(steps, values, style, marker="o", markersize=3, label=label)
            band = [(x, y, se) for x, y, se in pts if _finite(se)]
            if band:
                x, y, se = map(np.asarray, zip(*band))
                ax.fill_between(x, y - se, y + se, color=line.get_color(), alpha=0.2, lw=0)
        ax.set_title(title)
        ax.set_xlabel("step")
        if unit:
            ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True
