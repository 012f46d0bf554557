"""One tiny trained run per session (per pytest-xdist worker that needs it), shared by
tests/test_eval_model.py, tests/test_infer.py, tests/test_train.py and tests/bench/test_ablation.py.

`tiny_run` generates 16 + 8 synthetic hands at 96 px (python -m datasets.synthetic_generator), then
trains configs/tiny.py for 12 steps with train.py (a lighter network than tiny.py's: one stack, one
regressor iteration, no silhouette term; batch 8 over the 4 fake CPU devices of
tests/conftest.py), with a NaN image batch injected at step index NAN_STEP, a checkpoint every
CHECKPOINT_EVERY steps (all kept) and metrics every step: it is also tests/test_train.py's
uninterrupted reference run, which its killed and resumed runs repeat with the same command
(`TinyRun.train_args`). CPU time is almost all XLA compilation, so every subprocess of these
tests
- shares one persistent JAX compilation cache (JAX_COMPILATION_CACHE_DIR): eval.py, infer.py,
  the ablation's and test_train.py's train.py runs reuse the programs this run compiled (the
  train step, whose schedule depends on num_train_steps, the predict step, the mesh renderer);
- compiles with LLVM optimisation off (XLA_FLAGS --xla_backend_optimization_level=0
  --xla_llvm_disable_expensive_passes=true): train.py's compile CPU time drops from ~62 s to
  ~41 s (2 cores); the tiny programs run a few steps, so their speed does not matter.

The run is built once per session whoever asks first: the test modules import the fixture, and
the memo below makes a second request reuse the first run.
"""
import os
import subprocess
import sys
from typing import NamedTuple

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_TRAIN, NUM_EVAL, IMAGE_SIZE = 16, 8, 96
TRAIN_STEPS, CHECKPOINT_EVERY, NAN_STEP = 12, 2, 2
FAST_COMPILE = " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"

_MEMO = {}


class TinyRun(NamedTuple):
    workdir: str  # train.py's work directory (config.json, checkpoints/)
    synthetic_dir: str  # the generated dataset (FreiHAND layout, evaluation GT included)
    env: dict  # environment for the subprocesses (shared compilation cache)
    train_args: list  # train.py and its arguments but --workdir (python ARGS --workdir=DIR)
    stdout: str  # train.py's console output


def run_python(args, env, timeout=300):
    """`python ARGS` in the repository root; returns the CompletedProcess (text)."""
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def tiny_run_once(tmp_path_factory) -> TinyRun:
    if "run" in _MEMO:
        return _MEMO["run"]
    root = tmp_path_factory.mktemp("tiny_run")
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(root / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + FAST_COMPILE).strip())
    syn = str(root / "synthetic")
    r = run_python(["-m", "datasets.synthetic_generator", "--out", syn, "--num", str(NUM_TRAIN),
                    "--num-eval", str(NUM_EVAL), "--size", str(IMAGE_SIZE)], env)
    assert r.returncode == 0, r.stderr[-3000:]
    workdir = str(root / "run")
    train_args = [
        "train.py", "--config", "configs/tiny.py", f"--config.num_train_steps={TRAIN_STEPS}",
        f"--config.data.synthetic_dir={syn}", f"--config.pipeline.data_dir={root / 'tfds'}",
        f"--config.data.synthetic_num_train={NUM_TRAIN}",
        f"--config.data.synthetic_num_eval={NUM_EVAL}",
        "--config.model.num_stacks=1", "--config.model.regressor_iterations=1",
        "--config.loss.terms.silhouette=0",
        f"--config.checkpoint_every_steps={CHECKPOINT_EVERY}",
        "--config.log_every_steps=1", "--config.eval_every_steps=1000",
        "--config.image_every_steps=1000", f"--config.debug_nan_steps=({NAN_STEP},)",
        "--config.keep_checkpoints=10",  # keep them all, to compare runs step by step
    ]
    r = run_python(train_args + [f"--workdir={workdir}"], env)
    assert r.returncode == 0, r.stderr[-3000:]
    for which in ("last", "best"):
        assert os.path.isdir(os.path.join(workdir, "checkpoints", which, str(TRAIN_STEPS))), which
    _MEMO["run"] = TinyRun(workdir, syn, env, train_args, r.stdout)
    return _MEMO["run"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    return tiny_run_once(tmp_path_factory)
