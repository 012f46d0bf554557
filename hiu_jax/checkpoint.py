"""Orbax checkpoints of a TrainState: the last N, and the best by validation PA-MPJPE.

    <workdir>/checkpoints/last/<step>/{state, meta}   newest config.keep_checkpoints
    <workdir>/checkpoints/best/<step>/{state, meta}   the lowest validation PA-MPJPE so far

Orbax writes each step into a temporary directory and renames it when complete, so a run killed
at any moment (kill -9 included) leaves every earlier checkpoint intact; an unfinished one is
never read. Saving is asynchronous; `close()` waits for it. Every process calls save and restore
(Orbax coordinates multi-host writes). The state is saved unreplicated (a pmap-replicated
state would be stored once per device).

A step that is there but cannot be read (a truncated or damaged file, e.g. from a disk that
filled up or a copy cut short) is corrupt: `restore` logs a warning naming its directory, leaves
it where it is, and falls back to the next older step; only when every step is corrupt does it
raise CorruptCheckpointError listing them. Before training saves a step whose number a corrupt
directory holds, that directory is renamed `<step>.corrupt` (still kept; Orbax ignores it).
"""
from __future__ import annotations

import logging
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

BEST_METRIC = "pa_mpjpe_mm"
CORRUPT_SUFFIX = ".corrupt"  # a corrupt step directory set aside before its step is saved anew

log = logging.getLogger(__name__)


class CorruptCheckpointError(ValueError):
    """No step of a checkpoint directory can be read. `corrupt`: [(step directory, reason)]."""

    def __init__(self, directory: str, corrupt: list):
        listing = "; ".join(f"{path} ({reason})" for path, reason in corrupt)
        super().__init__(f"every checkpoint in {directory} is corrupt: {listing}")
        self.corrupt = list(corrupt)


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
        self._corrupt = {"last": set(), "best": set()}  # steps found corrupt by restore

    def latest_step(self):
        return self.last.latest_step()

    def save(self, step: int, state, meta: dict, *, force: bool = False) -> None:
        """Saves `state` (unreplicated, host or device arrays) at `step` into last/."""
        self._set_aside_corrupt("last", int(step))
        self.last.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(_to_host(state)), meta=ocp.args.JsonSave(meta)),
            force=force)

    def save_best(self, step: int, state, meta: dict, metrics: dict) -> None:
        """Offers `state` to best/; kept only if metrics[BEST_METRIC] is the lowest so far."""
        if not np.isfinite(metrics.get(BEST_METRIC, np.nan)):
            return
        self._set_aside_corrupt("best", int(step))
        self.best.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(_to_host(state)), meta=ocp.args.JsonSave(meta)),
            metrics={BEST_METRIC: float(metrics[BEST_METRIC])}, force=True)

    def restore(self, template, step=None, *, which: str = "last", partial: bool = False):
        """(state, meta) at `step` (default: the latest) shaped like `template`, or None.

        partial: restore only the entries of `template` (a dict naming some of the saved
        state's fields, e.g. {"params", "batch_stats"}: no optimiser needed to restore a model
        for inference); the other saved arrays are not read.
        With no `step`, a corrupt newest step is skipped (a warning names its directory) for
        the next older one. Raises CorruptCheckpointError when every candidate step is corrupt,
        and Orbax's own error when a step reads fine but does not fit `template`.
        """
        manager = self._manager_for(which)
        if step is not None:
            candidates = [int(step)]
        else:
            candidates = sorted(manager.all_steps(), reverse=True)
            best = manager.best_step() if which == "best" else None
            if best is not None:  # best/ keeps one step; try the best first should it keep more
                candidates = [best] + [s for s in candidates if s != best]
        if not candidates:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_host(template))
        if partial:
            state_args = ocp.args.PyTreeRestore(
                item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                partial_restore=True)
        else:
            state_args = ocp.args.StandardRestore(abstract)
        corrupt = []
        for s in candidates:
            try:
                restored = manager.restore(s, args=ocp.args.Composite(
                    state=state_args, meta=ocp.args.JsonRestore()))
            except Exception:  # noqa: BLE001  Orbax and TensorStore raise many types
                reason = _unreadable(manager, s, partial)
                if reason is None:  # the step reads without the template: it does not fit it
                    raise
                path = _step_dir(manager, s)
                corrupt.append((path, reason))
                self._corrupt[which].add(s)
                continue
            if partial:
                _check_fits(manager, s, abstract)
            if corrupt:
                log.warning("corrupt checkpoint(s), kept as they are: %s; restored the older %s "
                            "instead", "; ".join(f"{p} ({r})" for p, r in corrupt),
                            _step_dir(manager, s))
            return restored.state, restored.meta
        raise CorruptCheckpointError(str(manager.directory), corrupt)

    def _manager_for(self, which: str):
        if which not in ("last", "best"):
            raise ValueError(f"which must be 'last' or 'best', got {which!r}")
        return self.last if which == "last" else self.best

    def _set_aside_corrupt(self, which: str, step: int) -> None:
        """Renames a corrupt directory of `step` (found by restore) to <step>.corrupt, so that
        Orbax can save the step again; the corrupt files are kept for inspection."""
        if step not in self._corrupt[which]:
            return
        manager = self._manager_for(which)
        path = _step_dir(manager, step)
        if jax.process_index() == 0 and os.path.isdir(path):
            target, n = path + CORRUPT_SUFFIX, 1
            while os.path.exists(target):
                target, n = f"{path}{CORRUPT_SUFFIX}{n}", n + 1
            os.rename(path, target)
            log.warning("moved the corrupt checkpoint %s to %s before saving step %d again",
                        path, target, step)
        if jax.process_count() > 1:
            ocp.multihost.sync_global_processes(f"hiu_set_aside_{which}_{step}")
        self._corrupt[which].discard(step)
        manager.reload()

    def wait(self) -> None:
        self.last.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.last.close()
        self.best.close()


def _step_dir(manager, step: int) -> str:
    """The directory of `step` (Orbax's default step names: the number itself)."""
    return os.path.join(str(manager.directory), str(step))


def _unreadable(manager, step: int, partial: bool = False):
    """Why `step` cannot be read at all (the first line of the error), or None if it can.

    Reads the step without a template (the arrays as stored), so that a checkpoint which merely
    does not fit a model is told apart from damaged files. partial: read it with the handler a
    partial restore uses (a manager keeps the handler it restored with first).
    """
    state = ocp.args.PyTreeRestore() if partial else ocp.args.StandardRestore()
    try:
        manager.restore(step, args=ocp.args.Composite(state=state, meta=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001
        text = str(e).strip()
        first = text.splitlines()[0] if text else ""
        first = first if len(first) <= 200 else first[:200] + " ..."
        return f"{type(e).__name__}: {first}" if first else type(e).__name__
    return None


def _check_fits(manager, step: int, abstract) -> None:
    """Raises ValueError unless the saved state's entries named by `abstract` (a dict of
    ShapeDtypeStruct trees) have exactly its paths and shapes. A partial restore alone would
    leave a missing entry as a ShapeDtypeStruct and ignore an extra one."""
    saved = ocp.PyTreeCheckpointer().metadata(
        os.path.join(_step_dir(manager, step), "state")).item_metadata.tree

    def shapes(tree):
        return {jax.tree_util.keystr(path): tuple(getattr(leaf, "shape", ()))
                for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}

    want = shapes(abstract)
    have = shapes({key: saved.get(key, {}) for key in abstract})
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    wrong = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    if missing or extra or wrong:
        parts = [f"{len(names)} {what} (first: {', '.join(names[:3])})"
                 for names, what in ((missing, "arrays missing from the checkpoint"),
                                     (extra, "saved arrays the model does not have"),
                                     (wrong, "arrays of another shape")) if names]
        raise ValueError(f"{_step_dir(manager, step)} does not fit the model: "
                         + "; ".join(parts))


def _to_host(tree):
    """Device arrays -> NumPy (an unreplicated, fully addressable copy)."""
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


def restore_variables(checkpoint_dir: str, template: dict, *, which: str = "last"):
    """(variables, meta): the model variables {"params", "batch_stats"} shaped like `template`
    (the same dict, e.g. from runs.variables_template) from a workdir or a checkpoints
    directory, for evaluation and inference: only those two are read (Orbax partial restore),
    so no optimiser is built. Raises FileNotFoundError naming the directory if empty."""
    workdir = checkpoint_dir
    if os.path.basename(os.path.normpath(checkpoint_dir)) in ("last", "best"):
        which = os.path.basename(os.path.normpath(checkpoint_dir))
        workdir = os.path.dirname(os.path.dirname(os.path.normpath(checkpoint_dir)))
    directory = os.path.join(workdir, "checkpoints", which)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no checkpoints under {directory}")
    ckpts = Checkpoints(workdir)
    try:
        restored = ckpts.restore({"params": template["params"],
                                  "batch_stats": template["batch_stats"]}, which=which,
                                 partial=True)
    finally:
        ckpts.close()
    if restored is None:
        raise FileNotFoundError(f"{directory} holds no checkpoint")
    variables, meta = restored
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}, meta
