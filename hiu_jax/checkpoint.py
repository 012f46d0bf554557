"""Orbax checkpoints of a TrainState: the last N, and the best by validation PA-MPJPE.

    <workdir>/checkpoints/last/<step>/{state, meta}   newest config.keep_checkpoints
    <workdir>/checkpoints/best/<step>/{state, meta}   the lowest validation PA-MPJPE so far

Orbax writes each step into a temporary directory and renames it when complete, so a run killed
at any moment (kill -9 included) leaves every earlier checkpoint intact; an unfinished one is
never read. Saving is asynchronous; `close()` waits for it. Every process calls save and restore
(Orbax coordinates multi-host writes). The state is saved unreplicated (pmap copies would be
stored once per device otherwise: jax-stack.md P7).
"""
from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

BEST_METRIC = "pa_mpjpe_mm"


def _manager(directory, *, max_to_keep, best=False):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=True, create=True,
        best_fn=(lambda m: m[BEST_METRIC]) if best else None, best_mode="min",
        keep_checkpoints_without_metrics=not best)
    return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                                 item_names=("state", "meta"))


class Checkpoints:
    """The workdir's checkpoint managers. meta: a JSON-able dict (data position, counters)."""

    def __init__(self, workdir: str, keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {keep}")
        root = os.path.join(workdir, "checkpoints")
        self.last = _manager(os.path.join(root, "last"), max_to_keep=keep)
        self.best = _manager(os.path.join(root, "best"), max_to_keep=1, best=True)

    def latest_step(self):
        return self.last.latest_step()

    def save(self, step: int, state, meta: dict, *, force: bool = False) -> None:
        """Saves `state` (unreplicated, host or device arrays) at `step` into last/."""
        self.last.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(_to_host(state)), meta=ocp.args.JsonSave(meta)),
            force=force)

    def save_best(self, step: int, state, meta: dict, metrics: dict) -> None:
        """Offers `state` to best/; kept only if metrics[BEST_METRIC] is the lowest so far."""
        if not np.isfinite(metrics.get(BEST_METRIC, np.nan)):
            return
        self.best.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(_to_host(state)), meta=ocp.args.JsonSave(meta)),
            metrics={BEST_METRIC: float(metrics[BEST_METRIC])}, force=True)

    def restore(self, template, step=None, *, which: str = "last"):
        """(state, meta) at `step` (default: the latest) shaped like `template`, or None."""
        manager = self.last if which == "last" else self.best
        step = manager.latest_step() if step is None else step
        if which == "best" and step is None:
            step = manager.best_step()
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_host(template))
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return restored.state, restored.meta

    def wait(self) -> None:
        self.last.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.last.close()
        self.best.close()


def _to_host(tree):
    """Device arrays -> NumPy (an unreplicated, fully addressable copy)."""
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


def restore_variables(checkpoint_dir: str, template_state, *, which: str = "last"):
    """The model variables {"params", "batch_stats"} from a workdir or a checkpoints directory,
    for evaluation and inference. Raises FileNotFoundError naming the directory if empty."""
    workdir = checkpoint_dir
    if os.path.basename(os.path.normpath(checkpoint_dir)) in ("last", "best"):
        which = os.path.basename(os.path.normpath(checkpoint_dir))
        workdir = os.path.dirname(os.path.dirname(os.path.normpath(checkpoint_dir)))
    if not os.path.isdir(os.path.join(workdir, "checkpoints", which)):
        raise FileNotFoundError(f"no checkpoints under {os.path.join(workdir, 'checkpoints', which)}")
    ckpts = Checkpoints(workdir)
    try:
        restored = ckpts.restore(template_state, which=which)
    finally:
        ckpts.close()
    if restored is None:
        raise FileNotFoundError(f"{os.path.join(workdir, 'checkpoints', which)} holds no checkpoint")
    state, meta = restored
    return {"params": state.params, "batch_stats": state.batch_stats}, meta
