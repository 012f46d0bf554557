"""Fixtures shared by the mano_jax tests."""
import jax
import jax.numpy as jnp
import pytest


@pytest.fixture
def x64():
    """Runs the test with float64 enabled (jax.enable_x64 is a context manager in jax 0.10);
    create models inside the test so their arrays take float64."""
    before = jnp.zeros(()).dtype
    with jax.enable_x64(True):
        assert jnp.zeros(()).dtype == jnp.float64
        yield
    assert jnp.zeros(()).dtype == before
