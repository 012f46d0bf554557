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
