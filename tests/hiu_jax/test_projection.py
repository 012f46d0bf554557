"""hiu_jax.geometry.projection.project_pinhole: the hand-computed pinhole, batching, min_depth, and the same
numbers from jax.numpy, NumPy and tensorflow.experimental.numpy.

Tolerances: a projection is 9 multiply-adds and a division on values of ~1e3 px, so float64
agrees to ~1e-13 px (atol 1e-9 leaves margin) and float32 to ~1e-4 px (rtol 1e-6 of ~1e3 px)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiu_jax.geometry.projection import project_pinhole

K_SKEW = np.array([[500.0, 10.0, 112.0], [0.0, 400.0, 100.0], [0.0, 0.0, 1.0]])


def random_cameras(rng, batch, n):
    """(B, 3, 3) intrinsics and (B, N, 3) points 0.3..0.8 m in front of the camera."""
    K = np.zeros((batch, 3, 3))
    K[:, 0, 0], K[:, 1, 1] = rng.uniform(300, 700, batch), rng.uniform(300, 700, batch)
    K[:, 0, 1] = rng.uniform(-5, 5, batch)
    K[:, :2, 2] = rng.uniform(80, 150, (batch, 2))
    K[:, 2, 2] = 1.0
    points = np.concatenate([rng.uniform(-0.1, 0.1, (batch, n, 2)),
                             rng.uniform(0.3, 0.8, (batch, n, 1))], -1)
    return K, points


def test_hand_computed_example():
    # u = (fx x + s y) / z + cx, v = fy y / z + cy.
    points = np.array([[0.1, -0.05, 0.5], [0.0, 0.0, 2.0]])
    want = [[112 + (500 * 0.1 + 10 * -0.05) / 0.5, 100 + 400 * -0.05 / 0.5], [112.0, 100.0]]
    np.testing.assert_allclose(project_pinhole(K_SKEW, points, xp=np), want, rtol=0, atol=1e-12)
    assert project_pinhole(K_SKEW, points, xp=np).shape == (2, 2)


def test_numpy_and_jax_agree(x64):
    K, points = random_cameras(np.random.default_rng(0), 4, 21)
    want = project_pinhole(K, points, xp=np)
    got = project_pinhole(jnp.asarray(K), jnp.asarray(points))
    assert isinstance(got, jax.Array) and got.dtype == jnp.float64 and got.shape == (4, 21, 2)
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-9)
    jitted = jax.jit(project_pinhole, static_argnames="min_depth")
    np.testing.assert_allclose(np.asarray(jitted(K, points, min_depth=1e-3)), want, atol=1e-9)


def test_batched_K_broadcasts_like_a_loop():
    K, points = random_cameras(np.random.default_rng(1), 3, 5)
    loop = np.stack([project_pinhole(K[b], points[b], xp=np) for b in range(3)])
    np.testing.assert_allclose(project_pinhole(K, points, xp=np), loop, rtol=0, atol=1e-9)
    # One K for a batch, and a K per hand over several candidate poses (B, H, N, 3).
    np.testing.assert_allclose(project_pinhole(K[0], points, xp=np)[1],
                               project_pinhole(K[0], points[1], xp=np), rtol=0, atol=1e-9)
    many = np.stack([points, 2 * points], 1)  # (3, 2, 5, 3): doubling a point keeps its pixel
    out = project_pinhole(K[:, None], many, xp=np)
    assert out.shape == (3, 2, 5, 2)
    np.testing.assert_allclose(out[:, 0], loop, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out[:, 1], loop, rtol=0, atol=1e-9)


def test_min_depth_clamps_only_near_and_behind_points():
    points = jnp.array([[0.1, -0.05, 0.5], [0.02, 0.01, -1.0], [0.02, 0.01, 0.0]])
    clamped = np.asarray(project_pinhole(jnp.asarray(K_SKEW), points, min_depth=1e-3))
    plain = np.asarray(project_pinhole(jnp.asarray(K_SKEW), points))
    np.testing.assert_array_equal(clamped[0], plain[0])
    assert np.all(np.isfinite(clamped)) and not np.all(np.isfinite(plain[2]))
    # Behind the camera: K X = (fx x + s y + cx z, fy y + cy z, z), divided by 1 mm instead.
    x, y, z = 0.02, 0.01, -1.0
    want = [(500 * x + 10 * y + 112 * z) / 1e-3, (400 * y + 100 * z) / 1e-3]
    np.testing.assert_allclose(clamped[1], want, rtol=1e-6)
    grad = jax.grad(lambda p: jnp.sum(project_pinhole(jnp.asarray(K_SKEW), p, min_depth=1e-3)))
    assert np.all(np.isfinite(np.asarray(grad(points))))


def test_tensorflow_numpy_agrees():
    tf = pytest.importorskip("tensorflow")
    tnp = pytest.importorskip("tensorflow.experimental.numpy")
    K, points = random_cameras(np.random.default_rng(2), 2, 7)
    K32, points32 = K.astype(np.float32), points.astype(np.float32)
    want = project_pinhole(K32, points32, xp=np)
    eager = project_pinhole(tf.constant(K32), tf.constant(points32), min_depth=1e-3, xp=tnp)
    assert eager.dtype == tf.float32 and tuple(eager.shape) == (2, 7, 2)
    np.testing.assert_allclose(eager.numpy(), want, rtol=1e-6)
    graph = tf.function(lambda k, p: project_pinhole(k, p, xp=tnp))
    np.testing.assert_allclose(graph(tf.constant(K32[0]), tf.constant(points32)).numpy(),
                               project_pinhole(K32[0], points32, xp=np), rtol=1e-6)
