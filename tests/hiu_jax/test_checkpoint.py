"""Corrupt checkpoints: restore falls back to the newest intact step and keeps the corrupt one."""
import logging
import os

import numpy as np
import pytest

from hiu_jax import checkpoint

STEPS = (1, 2, 3)


def _state(step):
    """A tiny state whose values tell the steps apart."""
    return {"w": np.full((64,), step, np.float32), "b": np.arange(3, dtype=np.float32)}


TEMPLATE = _state(0)


@pytest.fixture
def workdir(tmp_path):
    """A work directory with checkpoints/last/{1,2,3} of `_state(step)`."""
    ckpts = checkpoint.Checkpoints(str(tmp_path), keep=len(STEPS))
    for s in STEPS:
        ckpts.save(s, _state(s), {"step": s})
    ckpts.wait()
    ckpts.close()
    return str(tmp_path)


def _step_dir(workdir, step):
    return os.path.join(workdir, "checkpoints", "last", str(step))


def _truncate_state(step_dir):
    """Cuts every file of the step's array data to half its size."""
    for root, _, files in os.walk(os.path.join(step_dir, "state")):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)


def _truncate_meta_json(step_dir):
    path = os.path.join(step_dir, "meta", "metadata")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _restore(workdir, step=None):
    ckpts = checkpoint.Checkpoints(workdir, keep=len(STEPS))
    try:
        return ckpts.restore(TEMPLATE, step)
    finally:
        ckpts.close()


@pytest.mark.parametrize("damage", [_truncate_state, _truncate_meta_json])
def test_corrupt_newest_falls_back_to_the_previous_step(workdir, damage, caplog):
    damage(_step_dir(workdir, 3))
    with caplog.at_level(logging.WARNING, logger=checkpoint.__name__):
        state, meta = _restore(workdir)
    assert meta == {"step": 2} and np.all(state["w"] == 2)
    assert _step_dir(workdir, 3) in caplog.text and "corrupt" in caplog.text
    assert os.path.isdir(_step_dir(workdir, 3))  # kept, not deleted
    for s in (1, 2):  # every earlier step stays restorable
        state, meta = _restore(workdir, s)
        assert meta == {"step": s} and np.all(state["w"] == s)


def test_restore_variables_falls_back_too(tmp_path, caplog):
    """eval.py and infer restore through restore_variables: params and batch_stats only, from
    a template without the optimiser state (which is saved but never read)."""
    from flax import struct

    @struct.dataclass
    class State:
        params: dict
        batch_stats: dict
        opt_state: dict

    work = str(tmp_path)
    ckpts = checkpoint.Checkpoints(work, keep=len(STEPS))
    for s in STEPS:
        ckpts.save(s, State(params=_state(s), batch_stats={"m": np.full(2, s, np.float32)},
                            opt_state={"mu": np.zeros(5, np.float32)}), {"step": s})
    ckpts.wait()
    ckpts.close()
    _truncate_state(_step_dir(work, 3))
    template = {"params": TEMPLATE, "batch_stats": {"m": np.zeros(2, np.float32)}}
    with caplog.at_level(logging.WARNING, logger=checkpoint.__name__):
        variables, meta = checkpoint.restore_variables(
            os.path.join(work, "checkpoints", "last"), template)
    assert meta == {"step": 2} and np.all(variables["params"]["w"] == 2)
    assert set(variables) == {"params", "batch_stats"} and np.all(variables["batch_stats"]["m"] == 2)
    assert _step_dir(work, 3) in caplog.text


def test_every_checkpoint_corrupt_is_one_error_listing_them(workdir):
    for s in STEPS:
        (_truncate_state if s % 2 else _truncate_meta_json)(_step_dir(workdir, s))
    with pytest.raises(checkpoint.CorruptCheckpointError) as e:
        _restore(workdir)
    assert "every checkpoint in" in str(e.value)
    for s in STEPS:
        assert _step_dir(workdir, s) in str(e.value)
        assert os.path.isdir(_step_dir(workdir, s))


def test_a_checkpoint_that_does_not_fit_the_template_is_not_called_corrupt(workdir):
    with pytest.raises(ValueError) as e:
        ckpts = checkpoint.Checkpoints(workdir)
        try:
            ckpts.restore(dict(TEMPLATE, extra=np.zeros(2, np.float32)))
        finally:
            ckpts.close()
    assert not isinstance(e.value, checkpoint.CorruptCheckpointError)


def test_training_saves_over_a_corrupt_step_after_setting_it_aside(workdir):
    """Resumed from step 2, the run saves step 3 again; the corrupt 3 becomes 3.corrupt."""
    _truncate_state(_step_dir(workdir, 3))
    ckpts = checkpoint.Checkpoints(workdir, keep=len(STEPS))
    try:
        _, meta = ckpts.restore(TEMPLATE)
        assert meta == {"step": 2}
        ckpts.save(3, _state(30), {"step": 3})
        ckpts.wait()
    finally:
        ckpts.close()
    assert os.path.isdir(_step_dir(workdir, 3) + checkpoint.CORRUPT_SUFFIX)
    state, meta = _restore(workdir)
    assert meta == {"step": 3} and np.all(state["w"] == 30)
