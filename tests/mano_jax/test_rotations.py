"""Tests for mano_jax.rotations against SciPy and against the math.

Tolerances: in float64 every conversion is a few dozen rounded operations on values of magnitude
<= 1 (matrix entries, quaternion components) or <= pi (angles), so errors are a few ulp, ~1e-15;
the bounds below (1e-14 absolute, 1e-13 relative to the angle) leave an order of magnitude of
margin. In float32 (eps 1.2e-7) the same count of operations gives ~1e-6 at most.

x64 is enabled only inside a test (the `x64` fixture); inputs are made inside that scope.
Every function is called through `jax.jit` (module level, compiled once per shape and dtype):
for these small graphs one compilation is several times cheaper than op-by-op dispatch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.spatial.transform import Rotation

from mano_jax import rotations

TOL64 = 1e-14  # absolute, for matrix entries and unit quaternions
REL64 = 1e-13  # axis-angle error relative to the angle
TOL32 = 1e-6

# Compiled once per input shape and dtype.
aa_to_matrix = jax.jit(rotations.axis_angle_to_matrix)
matrix_to_aa = jax.jit(rotations.matrix_to_axis_angle)
matrix_to_quat = jax.jit(rotations.matrix_to_quaternion)
quat_to_aa = jax.jit(rotations.quaternion_to_axis_angle)
quat_mul = jax.jit(rotations.quaternion_multiply)
d6_to_matrix = jax.jit(rotations.rotation_6d_to_matrix)
matrix_to_d6 = jax.jit(rotations.matrix_to_rotation_6d)
skew = jax.jit(rotations.skew)

# Rodrigues switches to its Taylor series below theta^2 = 1e-4, i.e. theta = 0.01.
THRESHOLD = 0.01




def unit_axes(rng, n):
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def axis_angles(angles, seed=0, per_angle=3):
    """(len(angles) * per_angle, 3) axis-angle vectors with the given angles, random axes."""
    rng = np.random.default_rng(seed)
    angles = np.repeat(np.asarray(angles, np.float64), per_angle)
    return unit_axes(rng, len(angles)) * angles[:, None]


def scipy_matrix(aa):
    return Rotation.from_rotvec(np.array(aa, np.float64)).as_matrix()


def rotation_error(matrices):
    """max |R R^T - I| and max |det R - 1| over a batch."""
    m = np.asarray(matrices, np.float64)
    orth = np.abs(m @ np.swapaxes(m, -1, -2) - np.eye(3)).max()
    det = np.abs(np.linalg.det(m) - 1.0).max()
    return orth, det


# Axis-angle vectors for Rodrigues: zero, tiny, both sides of the Taylor threshold, large angles
# (beyond pi and 2 pi), and random vectors.
RODRIGUES_ANGLES = [1e-12, 1e-8, 1e-4, THRESHOLD * (1 - 1e-9), THRESHOLD * (1 + 1e-9), 0.3, 1.0,
                    2.5, np.pi - 1e-7, np.pi, 4.0, 7.0, 10.0]


def rodrigues_inputs():
    rng = np.random.default_rng(1)
    return np.concatenate([axis_angles(RODRIGUES_ANGLES), 1.5 * rng.standard_normal((30, 3))])


# ---------------------------------------------------------------------------------------------
# axis_angle_to_matrix


def test_skew_is_the_cross_product_matrix(x64):
    rng = np.random.default_rng(2)
    v, u = rng.standard_normal((2, 5, 3))
    got = np.einsum("nab,nb->na", np.asarray(skew(jnp.asarray(v))), u)
    np.testing.assert_allclose(got, np.cross(v, u), rtol=0, atol=TOL64)


def test_axis_angle_to_matrix_matches_scipy_float64(x64):
    aa = rodrigues_inputs()
    got = np.asarray(aa_to_matrix(jnp.asarray(aa)))
    assert got.dtype == np.float64 and got.shape == (len(aa), 3, 3)
    np.testing.assert_allclose(got, scipy_matrix(aa), rtol=0, atol=TOL64)
    orth, det = rotation_error(got)
    assert orth < TOL64 and det < TOL64


def test_axis_angle_to_matrix_float32():
    aa = rodrigues_inputs().astype(np.float32)
    got = np.asarray(aa_to_matrix(jnp.asarray(aa)))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, scipy_matrix(aa.astype(np.float64)), rtol=0, atol=TOL32)
    orth, det = rotation_error(got)
    assert orth < TOL32 and det < TOL32


def test_axis_angle_to_matrix_leading_axes(x64):
    aa = rodrigues_inputs()[:24].reshape(2, 3, 4, 3)
    got = np.asarray(aa_to_matrix(jnp.asarray(aa)))
    assert got.shape == (2, 3, 4, 3, 3)
    np.testing.assert_allclose(got.reshape(-1, 3, 3), scipy_matrix(aa.reshape(-1, 3)),
                               rtol=0, atol=TOL64)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_zero_rotation_is_exactly_identity_with_skew_generator_derivative(dtype):
    """R(0) = I exactly, and dR/dw_k at 0 = skew(e_k) (the so(3) generators), finite, both AD
    modes. At w = 0 the Taylor coefficients are exactly 1 and 1/2, so the derivative is exact."""
    with jax.enable_x64(dtype == "float64"):
        zero = jnp.zeros(3, dtype)
        np.testing.assert_array_equal(aa_to_matrix(zero), np.eye(3))
        generators = np.stack([np.asarray(skew(jnp.eye(3, dtype=dtype)[k]))
                               for k in range(3)], axis=-1)  # (3, 3, k)
        np.testing.assert_array_equal(generators[:, :, 0], [[0, 0, 0], [0, 0, -1], [0, 1, 0]])
        for jac in (jax.jacfwd, jax.jacrev):
            d = np.asarray(jax.jit(jac(rotations.axis_angle_to_matrix))(zero))
            assert d.shape == (3, 3, 3) and np.all(np.isfinite(d))
            np.testing.assert_allclose(d, generators, rtol=0, atol=1e-15)


@pytest.mark.parametrize("angle", [0.0, 1e-5, THRESHOLD * 0.99, THRESHOLD * 1.01, 0.7, 3.0])
def test_axis_angle_to_matrix_check_grads(x64, angle):
    """Both branches (Taylor below theta = 0.01, closed form above) have correct derivatives.
    Central differences (step 1e-4) are accurate to ~1e-8 here; check_grads allows 1e-5."""
    aa = axis_angles([angle], seed=3, per_angle=2)
    check_grads(aa_to_matrix, (jnp.asarray(aa),), order=1, modes=("fwd", "rev"))


# ---------------------------------------------------------------------------------------------
# matrix_to_axis_angle, quaternions


ROUND_TRIP_ANGLES = [1e-9, 1e-7, 1e-3, THRESHOLD, 0.3, 1.0, 2.0, 3.0, np.pi - 1e-3]
NEAR_PI_ANGLES = [np.pi - 1e-6, np.pi - 1e-9, np.pi]


def assert_axis_angle_close(got, want, rel):
    """|got - want| <= rel * angle, row by row (components may be ~0 while the angle is not)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err = np.linalg.norm(got - want, axis=-1)
    angle = np.linalg.norm(want, axis=-1)
    assert np.all(err <= rel * angle), np.max(err / angle)


def test_matrix_to_axis_angle_round_trip(x64):
    """Angles in (0, pi - 1e-3]: the axis-angle vector itself comes back."""
    aa = axis_angles(ROUND_TRIP_ANGLES, seed=4)
    back = matrix_to_aa(jnp.asarray(scipy_matrix(aa)))
    assert back.dtype == jnp.float64
    assert_axis_angle_close(back, aa, REL64)


def test_matrix_to_axis_angle_near_pi(x64):
    """Near and at pi the axis sign is ambiguous: compare the rotations, and the angle stays in
    [0, pi]."""
    aa = axis_angles(NEAR_PI_ANGLES, seed=5)
    matrices = scipy_matrix(aa)
    back = np.asarray(matrix_to_aa(jnp.asarray(matrices)))
    np.testing.assert_allclose(scipy_matrix(back), matrices, rtol=0, atol=TOL64)
    angle = np.linalg.norm(back, axis=-1)
    assert np.all(angle <= np.pi + 1e-15)
    np.testing.assert_allclose(angle, np.linalg.norm(aa, axis=-1), rtol=0, atol=1e-12)


def test_matrix_to_axis_angle_float32():
    aa = axis_angles([1e-4, 1e-2, 0.5, 2.0, 3.0, np.pi - 1e-3, np.pi], seed=6)
    matrices = scipy_matrix(aa)
    back = matrix_to_aa(jnp.asarray(matrices, jnp.float32))
    assert back.dtype == jnp.float32
    np.testing.assert_allclose(scipy_matrix(np.asarray(back, np.float64)), matrices, rtol=0,
                               atol=TOL32)


def test_matrix_to_axis_angle_at_identity():
    """Zero exactly at I; in float32 (the training dtype) the derivative along a skew perturbation
    skew(w) is w (the log map's linearisation at the identity), finite in both AD modes."""
    dtype = jnp.float32
    with jax.enable_x64(False):
        eye = jnp.eye(3, dtype=dtype)
        np.testing.assert_array_equal(matrix_to_aa(eye), np.zeros(3))
        w = jnp.asarray([0.3, -0.2, 0.7], dtype)
        c = jnp.asarray([-0.5, 0.4, 0.9], dtype)
        tol = 1e-6
        tangent, cotangent = _log_derivatives(eye, skew(w), c)
        assert np.all(np.isfinite(np.asarray(cotangent)))
        np.testing.assert_allclose(tangent, w, rtol=0, atol=tol)  # forward mode
        # Reverse mode: <vjp(c), skew(w)> = <c, jvp(skew(w))> = <c, w>.
        np.testing.assert_allclose(jnp.sum(cotangent * skew(w)), jnp.dot(c, w), rtol=0, atol=tol)


@jax.jit
def _log_derivatives(matrix, matrix_tangent, cotangent):
    """jvp and vjp of matrix_to_axis_angle at `matrix`."""
    _, tangent = jax.jvp(rotations.matrix_to_axis_angle, (matrix,), (matrix_tangent,))
    _, f_vjp = jax.vjp(rotations.matrix_to_axis_angle, matrix)
    return tangent, f_vjp(cotangent)[0]


def quaternion_inputs():
    """Random rotations plus identity, small angles and (near-)half turns."""
    aa = np.concatenate([Rotation.random(40, random_state=7).as_rotvec(), np.zeros((1, 3)),
                         axis_angles([1e-3, 0.5, np.pi - 1e-3], seed=8)])
    return aa


def test_matrix_to_quaternion_matches_scipy(x64):
    aa = quaternion_inputs()
    q = np.asarray(matrix_to_quat(jnp.asarray(scipy_matrix(aa))))
    assert q.shape == (len(aa), 4)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, rtol=0, atol=TOL64)
    assert np.all(q[:, 0] >= 0)
    want = Rotation.from_rotvec(aa).as_quat(scalar_first=True)  # (w, x, y, z)
    want = np.where(want[:, :1] < 0, -want, want)
    np.testing.assert_allclose(q, want, rtol=0, atol=TOL64)


def test_matrix_to_quaternion_half_turns(x64):
    """w = 0: the sign of q is free, but q must be unit and represent the same rotation."""
    aa = axis_angles([np.pi], seed=9, per_angle=6)
    aa[:3] = np.pi * np.eye(3)  # half turns about the coordinate axes
    q = np.asarray(matrix_to_quat(jnp.asarray(scipy_matrix(aa))))
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, rtol=0, atol=TOL64)
    np.testing.assert_allclose(Rotation.from_quat(q, scalar_first=True).as_matrix(),
                               scipy_matrix(aa), rtol=0, atol=TOL64)


def test_quaternion_to_axis_angle_matches_scipy_for_both_signs(x64):
    aa = quaternion_inputs()
    q = Rotation.from_rotvec(aa).as_quat(scalar_first=True)
    for sign in (1.0, -1.0):  # q and -q are the same rotation
        got = quat_to_aa(jnp.asarray(sign * q))
        want = Rotation.from_quat(sign * q, scalar_first=True).as_rotvec()
        nonzero = np.linalg.norm(want, axis=-1) > 0
        assert_axis_angle_close(np.asarray(got)[nonzero], want[nonzero], REL64)
        np.testing.assert_array_equal(np.asarray(got)[~nonzero], 0.0)


def test_quaternion_round_trip(x64):
    """matrix -> quaternion -> axis-angle -> matrix is the identity map on rotations."""
    aa = quaternion_inputs()
    matrices = jnp.asarray(scipy_matrix(aa))
    back = aa_to_matrix(
        quat_to_aa(matrix_to_quat(matrices)))
    np.testing.assert_allclose(back, matrices, rtol=0, atol=TOL64)


def test_quaternion_multiply_composes_rotations(x64):
    """q(A) q(B) is q(A B): the product matches SciPy's composition (up to the sign of q)."""
    a, b = quaternion_inputs(), Rotation.random(len(quaternion_inputs()), random_state=11)
    qa = Rotation.from_rotvec(a).as_quat(scalar_first=True)
    qb = b.as_quat(scalar_first=True)
    got = np.asarray(quat_mul(jnp.asarray(qa), jnp.asarray(qb)))
    want = (Rotation.from_rotvec(a) * b).as_quat(scalar_first=True)
    sign = np.where(np.sum(got * want, axis=-1, keepdims=True) < 0, -1.0, 1.0)
    np.testing.assert_allclose(got, sign * want, rtol=0, atol=TOL64)
    # Non-unit factors scale the product: |a b| = |a| |b|; (w, 0) times (0, v) is (0, w v).
    pure = np.asarray(quat_mul(jnp.asarray([2.0, 0, 0, 0]), jnp.asarray([0.0, 1, -2, 3])))
    np.testing.assert_allclose(pure, [0.0, 2, -4, 6], rtol=0, atol=TOL64)


@pytest.mark.parametrize("angle", [1e-5, 1e-4, 1.999e-4])
def test_quaternion_to_axis_angle_small_angle_branch_is_float64_accurate(x64, angle):
    aa = axis_angles([angle], seed=10)
    q = Rotation.from_rotvec(aa).as_quat(scalar_first=True)
    assert_axis_angle_close(quat_to_aa(jnp.asarray(q)), aa, REL64)
    assert_axis_angle_close(matrix_to_aa(jnp.asarray(scipy_matrix(aa))), aa,
                            REL64)


# ---------------------------------------------------------------------------------------------
# 6D representation


def test_rotation_6d_to_matrix_is_gram_schmidt(x64):
    rng = np.random.default_rng(11)
    d6 = rng.standard_normal((40, 6))
    m = np.asarray(d6_to_matrix(jnp.asarray(d6)))
    assert m.shape == (40, 3, 3)
    orth, det = rotation_error(m)
    assert orth < TOL64 and det < TOL64
    a1, a2 = d6[:, :3], d6[:, 3:]
    b1 = a1 / np.linalg.norm(a1, axis=-1, keepdims=True)
    np.testing.assert_allclose(m[:, :, 0], b1, rtol=0, atol=TOL64)
    # The second column is a2 with its b1 component removed, normalised (positive along a2).
    b2 = a2 - np.sum(a2 * b1, -1, keepdims=True) * b1
    b2 /= np.linalg.norm(b2, axis=-1, keepdims=True)
    np.testing.assert_allclose(m[:, :, 1], b2, rtol=0, atol=1e-13)


def test_rotation_6d_round_trips(x64):
    matrices = Rotation.random(30, random_state=12).as_matrix()
    d6 = np.asarray(matrix_to_d6(jnp.asarray(matrices)))
    # Layout: the first two columns, (r00, r10, r20, r01, r11, r21).
    np.testing.assert_array_equal(d6, np.concatenate([matrices[:, :, 0], matrices[:, :, 1]], -1))
    np.testing.assert_allclose(d6_to_matrix(jnp.asarray(d6)), matrices,
                               rtol=0, atol=TOL64)
    # And 6D -> matrix -> 6D -> matrix is stable.
    raw = np.random.default_rng(13).standard_normal((30, 6))
    m1 = d6_to_matrix(jnp.asarray(raw))
    m2 = d6_to_matrix(matrix_to_d6(m1))
    np.testing.assert_allclose(m2, m1, rtol=0, atol=TOL64)


def test_rotation_6d_to_matrix_float32():
    d6 = np.random.default_rng(14).standard_normal((2, 5, 6)).astype(np.float32)
    m = d6_to_matrix(jnp.asarray(d6))
    assert m.dtype == jnp.float32 and m.shape == (2, 5, 3, 3)
    orth, det = rotation_error(m)
    assert orth < TOL32 and det < TOL32


def test_axis_angle_to_quaternion_matches_scipy(x64):
    """Including zero and angles below the Taylor switch (t^2 < 1e-12), where the next omitted
    terms (t^4 / 3840 of sin(t/2)/t, t^4 / 384 of cos(t/2)) are below float64 rounding."""
    aa = np.concatenate([quaternion_inputs(), axis_angles([1e-7, 3e-6], seed=10)])
    got = np.asarray(rotations.axis_angle_to_quaternion(jnp.asarray(aa)))
    want = Rotation.from_rotvec(aa).as_quat(scalar_first=True)
    want = np.where(want[:, :1] < 0, -want, want)  # angles <= pi: w >= 0 already
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL64)


def test_rotation_z_matches_scipy(x64):
    theta = np.linspace(-np.pi, np.pi, 9)
    want = Rotation.from_rotvec(theta[:, None] * [0.0, 0.0, 1.0]).as_matrix()
    np.testing.assert_allclose(rotations.rotation_z(jnp.asarray(theta)), want, rtol=0, atol=TOL64)


@pytest.mark.parametrize("namespace", ["numpy", "tensorflow"])
def test_xp_functions_give_the_jax_numbers_in_numpy_and_tensorflow(x64, namespace):
    """The functions with `xp` are one definition for JAX, NumPy and tf.data: float64 inputs give
    the JAX values to float64 rounding (a few operations on O(1) values: atol 1e-14)."""
    if namespace == "numpy":
        xp, to_array = np, np.asarray
    else:
        tf = pytest.importorskip("tensorflow")
        import tensorflow.experimental.numpy as xp
        to_array = tf.constant
    aa, theta = quaternion_inputs(), np.linspace(-3.0, 3.0, len(quaternion_inputs()))
    q = rotations.axis_angle_to_quaternion(jnp.asarray(aa))
    cases = [(rotations.axis_angle_to_quaternion, (aa,), q),
             (rotations.quaternion_multiply, (np.asarray(q), np.asarray(q[::-1])),
              rotations.quaternion_multiply(q, q[::-1])),
             (rotations.quaternion_to_axis_angle, (np.asarray(q),),
              rotations.quaternion_to_axis_angle(q)),
             (rotations.rotation_z, (theta,), rotations.rotation_z(jnp.asarray(theta)))]
    for fn, args, want in cases:
        got = fn(*[to_array(a) for a in args], xp=xp)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-14,
                                   err_msg=fn.__name__)
