"""train.py as a user runs it: kill -9 and resume, SIGTERM, an injected NaN step, bad overrides.

Three training processes (configs/tiny.py with one stack, one regressor iteration and no
silhouette term, batch 8 over the 4 fake CPU devices of tests/conftest.py, 12 steps, a
checkpoint every 2 steps, metrics every step):

  A   uninterrupted, with a NaN image batch injected at step index 2 (the 3rd step): the
      session's tiny run (tests/model_fixtures.py), the reference run and the non-finite test;
  B   the same command, killed with SIGKILL once checkpoints/last/4 exists;
  B'  the same command again (but checkpointing only when signalled): resumes from B's newest
      checkpoint, then gets SIGTERM two or three steps later and must save and exit 143.

XLA CPU runs an identical program on identical inputs identically, and the pipeline resumes on
exactly the batches an uninterrupted run would read, so every step B and B' log must equal A's.
(Not a tolerance: the same executable, loaded from the persistent cache, on the same batches;
we still allow 1e-6 relative on the loss so that a harmless change of fusion in a future XLA
would not fail the test, while any wrong batch, optimiser state or step count changes it at
~1e-2 or more.)

Cost: B and B' share A's persistent JAX compilation cache, its dataset and its LLVM-optimisation-
off XLA flags, so every program they run is a cache hit; A itself is the session's shared run.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from tests.model_fixtures import (CHECKPOINT_EVERY, NAN_STEP, REPO, TRAIN_STEPS,  # noqa: F401
                                  tiny_run)

STEPS = TRAIN_STEPS
RUN_TIMEOUT_S = 300
LOSS_RTOL = 1e-6  # see the module docstring
assert (STEPS, CHECKPOINT_EVERY) == (12, 2)  # B is killed at step 4 and resumed 2-3 steps later


@pytest.fixture(scope="module")
def setup(tiny_run, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("train")
    return SimpleNamespace(root=root, env=tiny_run.env, args=[sys.executable, *tiny_run.train_args])


class Run:
    """train.py in the background, its stdout and stderr in files."""

    def __init__(self, setup, workdir, extra=()):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.out_path = os.path.join(self.workdir, f"stdout{time.monotonic_ns()}.txt")
        self.err_path = self.out_path.replace("stdout", "stderr")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen([*setup.args, f"--workdir={self.workdir}", *extra],
                                         cwd=REPO, env=setup.env, stdout=out, stderr=err)
        self.deadline = time.monotonic() + RUN_TIMEOUT_S

    def output(self):
        with open(self.out_path) as f, open(self.err_path) as g:
            return f.read(), g.read()

    def describe(self):
        out, err = self.output()
        return f"exit {self.proc.poll()}\nstdout:\n{out[-2000:]}\nstderr:\n{err[-5000:]}"

    def wait_for(self, condition, what):
        """Polls condition() until true; fails if the process ends first or times out."""
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"train.py ended before {what}: {self.describe()}")
            if time.monotonic() > self.deadline:
                self.proc.kill()
                pytest.fail(f"no {what} within {RUN_TIMEOUT_S} s: {self.describe()}")
            time.sleep(0.05)

    def finish(self):
        try:
            self.proc.wait(timeout=max(self.deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"train.py did not finish within {RUN_TIMEOUT_S} s: {self.describe()}")
        return self.proc.returncode


def read_rows(workdir):
    """metrics.jsonl's training rows (those with a loss), in order."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.read().splitlines()
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        if "loss" in row:
            rows.append(row)
    return rows


def checkpoint_steps(workdir):
    """The finished checkpoint steps in checkpoints/last (Orbax renames a step's temporary
    directory to <step> when the step is complete)."""
    last = os.path.join(workdir, "checkpoints", "last")
    if not os.path.isdir(last):
        return []
    return sorted(int(d) for d in os.listdir(last) if d.isdigit())


def restore(workdir, step):
    """The TrainState saved at `step`, as a dict of NumPy arrays (no template needed)."""
    import orbax.checkpoint as ocp

    path = os.path.join(workdir, "checkpoints", "last", str(step), "state")
    return ocp.StandardCheckpointer().restore(path)


def _leaves(tree):
    import jax

    return {jax.tree_util.keystr(p): np.asarray(x)
            for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def assert_same_state(got, want, what):
    got, want = _leaves(got), _leaves(want)
    assert got.keys() == want.keys(), what
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=f"{what}: {k}")


def assert_same_losses(rows, reference, what):
    """Each row's loss (and every other logged number but the throughput) equals the reference
    run's row of the same step."""
    by_step = {r["step"]: r for r in reference}
    assert rows, f"{what}: no rows"
    for row in rows:
        ref = by_step[row["step"]]
        for key, value in row.items():
            if key in ("images_per_second", "cpu_percent", "step") or not isinstance(
                    value, (int, float)):
                continue
            np.testing.assert_allclose(value, ref[key], rtol=LOSS_RTOL, atol=0,
                                       err_msg=f"{what}: {key} at step {row['step']}")


@pytest.fixture(scope="module")
def run_a(tiny_run):  # noqa: F811
    return SimpleNamespace(workdir=tiny_run.workdir, rows=read_rows(tiny_run.workdir),
                           out=tiny_run.stdout)


@pytest.fixture(scope="module")
def run_b(setup, run_a):
    """B: SIGKILL once checkpoints/last/4 exists; B': resume, SIGTERM 2-3 steps later."""
    workdir = str(setup.root / "B")
    b = Run(setup, workdir)
    b.wait_for(lambda: 4 in checkpoint_steps(workdir), "checkpoints/last/4")
    os.kill(b.proc.pid, signal.SIGKILL)
    assert b.finish() == -signal.SIGKILL
    killed_rows = read_rows(workdir)
    resume_step = max(checkpoint_steps(workdir))
    steps_after_kill = checkpoint_steps(workdir)
    restored = {s: restore(workdir, s) for s in steps_after_kill}

    # B' checkpoints only when signalled: regular saves take long enough (Orbax's synchronous
    # part, under load) that a signal sent after an even step's row would land in that step's
    # save, and the signal's own save would then never run here. (That case is handled too: a
    # step already saved is not saved twice, which Orbax refuses.) The checkpoint interval is
    # not part of the training: same program, same batches.
    b2 = Run(setup, workdir, extra=["--config.checkpoint_every_steps=1000"])
    b2.wait_for(lambda: any(r["step"] >= resume_step + 2
                            for r in read_rows(workdir)[len(killed_rows):]),
                f"a logged step >= {resume_step + 2} after resuming")
    os.kill(b2.proc.pid, signal.SIGTERM)
    code = b2.finish()
    out, _ = b2.output()
    return SimpleNamespace(workdir=workdir, killed_rows=killed_rows, resume_step=resume_step,
                           steps_after_kill=steps_after_kill, restored=restored, code=code,
                           out=out, describe=b2.describe(),
                           resumed_rows=read_rows(workdir)[len(killed_rows):])


def test_injected_nan_step_is_skipped(run_a):
    rows = {r["step"]: r for r in run_a.rows}
    assert sorted(rows) == list(range(1, STEPS + 1))
    bad = rows[NAN_STEP + 1]  # the step with index NAN_STEP is logged as step NAN_STEP + 1
    assert bad["finite"] == 0 and bad["loss"] == "nan" and bad["nonfinite_steps"] == 1
    for step, row in rows.items():
        assert row["nonfinite_steps"] == (0 if step <= NAN_STEP else 1), step
        if step != NAN_STEP + 1:
            assert row["finite"] == 1 and np.isfinite(row["loss"]), step
    # Training went on from the untouched parameters: the loss decreased over the run.
    assert rows[STEPS]["loss"] < rows[1]["loss"]
    state = restore(run_a.workdir, STEPS)
    assert int(state["step"]) == STEPS and int(state["nonfinite_total"]) == 1
    assert int(state["nonfinite_run"]) == 0
    for part in ("params", "opt_state", "batch_stats"):
        for path, leaf in _leaves(state[part]).items():
            if np.issubdtype(leaf.dtype, np.floating):
                assert np.all(np.isfinite(leaf)), f"{part}{path} is not finite"
    assert f"Done: {STEPS} steps" in run_a.out


def test_kill_9_then_resume_repeats_the_uninterrupted_run(run_a, run_b):
    # Everything B logged before the kill, and everything B' logged after resuming.
    assert_same_losses(run_b.killed_rows, run_a.rows, "B before SIGKILL")
    resumed = run_b.resumed_rows
    assert [r["step"] for r in resumed] == list(range(run_b.resume_step + 1,
                                                      resumed[-1]["step"] + 1))
    assert len(resumed) >= 2
    assert_same_losses(resumed, run_a.rows, "B' after resuming")
    assert f"at step {run_b.resume_step}" in run_b.out  # "Resuming <workdir> at step N"
    # Every checkpoint the kill left is complete: each restores, with the same structure.
    assert run_b.resume_step >= 4 and 4 in run_b.steps_after_kill
    shapes = None
    for step, state in run_b.restored.items():
        assert int(state["step"]) == step
        got = {k: v.shape for k, v in _leaves(state).items()}
        shapes = shapes or got
        assert got == shapes, step
    # And they hold A's states at the same steps, bit for bit (the same training).
    assert set(run_b.steps_after_kill) <= set(checkpoint_steps(run_a.workdir))
    for step in run_b.steps_after_kill:
        assert_same_state(run_b.restored[step], restore(run_a.workdir, step), f"B step {step}")


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(run_a, run_b):
    assert run_b.code == 143, run_b.describe  # 128 + SIGTERM: preempted, saved, resumable
    match = re.search(r"SIGTERM: saved a checkpoint at step (\d+)", run_b.out)
    assert match, run_b.describe
    saved = int(match.group(1))
    assert saved >= run_b.resume_step + 2 and saved >= 3
    assert saved == run_b.resumed_rows[-1]["step"]  # the step it had finished
    # The signal's save is the only one B' made.
    assert checkpoint_steps(run_b.workdir) == sorted(run_b.steps_after_kill + [saved])
    state = restore(run_b.workdir, saved)
    assert int(state["step"]) == saved
    if saved in checkpoint_steps(run_a.workdir):  # A saved every 2 steps
        # The resumed run's state equals the uninterrupted run's, bit for bit.
        assert_same_state(state, restore(run_a.workdir, saved), f"B' step {saved}")


def test_bad_override_is_rejected_with_a_clear_message(tmp_path):
    """A value of the right type but not a valid choice: train.py's own check, before any data
    or work directory is touched. (Type errors, e.g. --config.batch_size=abc, are absl's flag
    parser's "FATAL Flags parsing error: flag --config.batch_size=abc: invalid literal ...".)"""
    r = subprocess.run([sys.executable, "train.py", "--config", "configs/tiny.py",
                        f"--workdir={tmp_path / 'run'}", "--config.parallel=foo"], cwd=REPO,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True,
                       text=True, timeout=RUN_TIMEOUT_S)
    assert r.returncode == 1
    assert "train.py: parallel must be 'pmap' or 'mesh', got 'foo'" in r.stderr, r.stderr[-3000:]
    assert not os.path.exists(tmp_path / "run")  # rejected before anything was written


def _train_fails_at_start_up(tmp_path, *args, workdir=None):
    workdir = workdir or tmp_path / "run"
    return subprocess.run([sys.executable, "train.py", "--config", "configs/tiny.py",
                           f"--workdir={workdir}", *args], cwd=REPO,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)


def _last_line(stderr):
    lines = [line for line in stderr.strip().splitlines() if line.startswith("train.py:")]
    assert lines and "Traceback" not in stderr, stderr[-3000:]
    return lines[-1]


def test_unknown_config_key_is_one_line(tmp_path):
    r = _train_fails_at_start_up(tmp_path, "--config.no_such_key=1")
    assert r.returncode == 2
    assert _last_line(r.stderr) == ("train.py: bad --config override: the config has no key "
                                    "'no_such_key'")


@pytest.mark.parametrize("key", ["checkpoint_every_steps", "eval_every_steps"])
def test_zero_interval_is_refused_at_start_up(tmp_path, key):
    r = _train_fails_at_start_up(tmp_path, f"--config.{key}=0")
    assert r.returncode == 1
    assert _last_line(r.stderr) == (f"train.py: config.{key} must be a positive number of "
                                    "steps, got 0")
    assert not os.path.exists(tmp_path / "run")


def test_workdir_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    r = _train_fails_at_start_up(tmp_path, workdir=tmp_path / "file" / "run")
    assert r.returncode == 1
    assert _last_line(r.stderr).startswith(
        f"train.py: cannot create the work directory {tmp_path / 'file' / 'run'}: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_checkpoint_directory_fails_fast(tmp_path):
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    checkpoints.chmod(0o500)
    try:
        r = _train_fails_at_start_up(tmp_path)
    finally:
        checkpoints.chmod(0o700)
    assert r.returncode == 1
    assert _last_line(r.stderr).startswith(
        f"train.py: the checkpoint directory {checkpoints} is not writable")


def test_preempted_exit_status_is_128_plus_the_signal():
    import train

    assert train.preempted_exit_status("SIGTERM") == 143
    assert train.preempted_exit_status("SIGINT") == 130


def test_cpu_devices_sets_the_host_device_count_before_jax_starts(monkeypatch):
    """config.cpu_devices becomes XLA's host device count when JAX has not started and
    XLA_FLAGS does not set it already; otherwise nothing changes. A bad value is refused."""
    import train

    monkeypatch.delitem(sys.modules, "jax", raising=False)  # as in a fresh `python train.py`
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    train.split_cpu_into_devices(2)
    assert os.environ["XLA_FLAGS"] == ("--xla_cpu_enable_fast_math=false "
                                       "--xla_force_host_platform_device_count=2")
    train.split_cpu_into_devices(3)  # the count is set already (by the user or above): kept
    assert os.environ["XLA_FLAGS"].endswith("device_count=2")
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="config.cpu_devices must be an int >= 1"):
            train.split_cpu_into_devices(bad)
