"""Shared pytest setup.

Four fake CPU devices are requested before JAX touches a backend (it reads XLA_FLAGS once, when
the first backend starts), so data-parallel tests can run anywhere; single-device code is
unaffected. The tests' programs are small and compiled once each, so XLA's CPU backend compiles
the same HLO without LLVM's optimisation passes (as FAST_COMPILE in tests/model_fixtures.py
does for subprocesses): compilation, most of the suite's time, is ~1.5x faster, and every test
keeps its tolerance.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4"
                      " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402  (after XLA_FLAGS)
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def x64():
    """Runs the test with float64 enabled (jax.enable_x64 is a context manager in jax 0.10);
    create models inside the test so their arrays take float64."""
    before = jnp.zeros(()).dtype
    with jax.enable_x64(True):
        assert jnp.zeros(()).dtype == jnp.float64
        yield
    assert jnp.zeros(()).dtype == before
