"""Rotation conversions: axis-angle, rotation matrices, unit quaternions and the 6D representation.
The project's one home for rotation maths (the network, the losses, the metrics and the input
pipeline's augmentation take them from here).

All functions are pure, batched over any leading axes, and have finite values and gradients
everywhere, including exactly zero rotation (the Taylor branches use the "double where" so that
the untaken branch never produces a NaN gradient). Those with an `xp` argument (the array
namespace: jax.numpy by default, numpy, or tensorflow.experimental.numpy for tf.data) use only
operations the three share.
"""
from __future__ import annotations

import jax.numpy as jnp

# Below this squared angle the closed forms lose precision in float32; Taylor series are exact to
# float64 rounding there (next omitted term ~ theta^6 / 5040 < 1e-15).
_SMALL_ANGLE_SQ = 1e-4


def skew(v):
    """Cross-product matrices. v: (..., 3) -> (..., 3, 3) with skew(v) @ u = v x u."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    zero = jnp.zeros_like(x)
    return jnp.stack(
        [
            jnp.stack([zero, -z, y], -1),
            jnp.stack([z, zero, -x], -1),
            jnp.stack([-y, x, zero], -1),
        ],
        -2,
    )


def axis_angle_to_matrix(axis_angle):
    """Rodrigues' formula. axis_angle: (..., 3) radians (direction = axis) -> (..., 3, 3).

    R = I + (sin t / t) K + ((1 - cos t) / t^2) K^2 with K = skew(axis_angle), t = |axis_angle|;
    (1 - cos t) is evaluated as 2 sin^2(t / 2) to keep float32 precision at small angles.
    """
    theta_sq = jnp.sum(axis_angle * axis_angle, axis=-1)
    small = theta_sq < _SMALL_ANGLE_SQ
    safe_sq = jnp.where(small, 1.0, theta_sq)
    theta = jnp.sqrt(safe_sq)
    half_sin = jnp.sin(0.5 * theta)
    a = jnp.where(small, 1.0 - theta_sq / 6.0 + theta_sq**2 / 120.0, jnp.sin(theta) / theta)
    b = jnp.where(small, 0.5 - theta_sq / 24.0 + theta_sq**2 / 720.0, 2.0 * half_sin**2 / safe_sq)
    return jnp.eye(3, dtype=axis_angle.dtype) + _rotation_minus_identity(axis_angle, a, b)


def _rotation_minus_identity(v, a, b):
    """a K + b K^2 for K = skew(v), written out entry by entry (one elementwise expression; a
    batched 3 x 3 matmul for K^2 is a separate, slower op on CPU). v: (..., 3); a, b: (...)."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    xy, xz, yz = x * y, x * z, y * z
    xx, yy, zz = x * x, y * y, z * z
    ax, ay, az = a * x, a * y, a * z
    rows = [[-b * (yy + zz), b * xy - az, b * xz + ay],
            [b * xy + az, -b * (xx + zz), b * yz - ax],
            [b * xz - ay, b * yz + ax, -b * (xx + yy)]]
    return jnp.stack([jnp.stack(row, -1) for row in rows], -2)


def matrix_to_quaternion(matrix):
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as (w, x, y, z), w >= 0.

    Shepperd's method: of the four algebraically equal formulas, each entry uses the one whose
    divisor is largest, so the result is well conditioned for every rotation.
    """
    m = matrix
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 * q_i^2 for each component, and the candidate quaternions scaled by 4 * q_i.
    diag = jnp.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1
    )
    candidates = jnp.stack(
        [
            jnp.stack([diag[..., 0], m21 - m12, m02 - m20, m10 - m01], -1),
            jnp.stack([m21 - m12, diag[..., 1], m10 + m01, m02 + m20], -1),
            jnp.stack([m02 - m20, m10 + m01, diag[..., 2], m21 + m12], -1),
            jnp.stack([m10 - m01, m02 + m20, m21 + m12, diag[..., 3]], -1),
        ],
        -2,
    )
    best = jnp.argmax(diag, axis=-1)
    chosen = jnp.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    scale = jnp.take_along_axis(diag, best[..., None], axis=-1)
    q = chosen / (2.0 * jnp.sqrt(jnp.maximum(scale, 1e-12)))
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    return jnp.where(q[..., :1] < 0, -q, q)


def rotation_z(theta, *, xp=jnp):
    """theta (...) radians -> R_z (..., 3, 3), rotating x towards y about the z (optical) axis."""
    c, s = xp.cos(theta), xp.sin(theta)
    zero, one = xp.zeros_like(c), xp.ones_like(c)
    return xp.stack([xp.stack([c, -s, zero], -1), xp.stack([s, c, zero], -1),
                     xp.stack([zero, zero, one], -1)], -2)


def axis_angle_to_quaternion(axis_angle, *, xp=jnp):
    """Axis-angle (..., 3) radians -> unit quaternions (..., 4) as (w, x, y, z):
    (cos(t / 2), sin(t / 2) axis), t = |axis_angle|; Taylor series below t = 1e-6."""
    theta_sq = xp.sum(axis_angle * axis_angle, axis=-1)
    small = theta_sq < 1e-12
    theta = xp.sqrt(xp.where(small, 1.0, theta_sq))
    # sin(t / 2) / t and cos(t / 2), with their limits 1/2 and 1 at t -> 0.
    k = xp.where(small, 0.5 - theta_sq / 48.0, xp.sin(0.5 * theta) / theta)
    w = xp.where(small, 1.0 - theta_sq / 8.0, xp.cos(0.5 * theta))
    return xp.concatenate([w[..., None], axis_angle * k[..., None]], -1)


def quaternion_multiply(a, b, *, xp=jnp):
    """Hamilton product a b of quaternions (..., 4) as (w, x, y, z); broadcasts; not normalised.

    For unit quaternions, a b is the rotation b followed by a."""
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return xp.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                      aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw],
                     -1)


def quaternion_to_axis_angle(quaternion, *, xp=jnp):
    """Unit quaternions (..., 4) as (w, x, y, z) -> axis-angle (..., 3), angle in [0, pi]."""
    q = xp.where(quaternion[..., :1] < 0, -quaternion, quaternion)
    w, v = q[..., 0], q[..., 1:]
    sin_sq = xp.sum(v * v, axis=-1)
    small = sin_sq < 1e-8
    sin_half = xp.sqrt(xp.where(small, 1.0, sin_sq))
    angle = 2.0 * xp.arctan2(sin_half, w)
    # angle / sin(angle / 2) = 2 atan(s / w) / s = (2 / w) (1 - s^2 / (3 w^2) + O(s^4)), s = |v|.
    factor = xp.where(small, 2.0 / w * (1.0 - sin_sq / (3.0 * w * w)), angle / sin_half)
    return v * factor[..., None]


def matrix_to_axis_angle(matrix):
    """Rotation matrices (..., 3, 3) -> axis-angle (..., 3), angle in [0, pi]."""
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def rotation_6d_to_matrix(d6):
    """The continuous 6D representation (Zhou et al., CVPR 2019) -> rotation matrices.

    d6: (..., 6), the first two columns of R stacked as (r00, r10, r20, r01, r11, r21);
    Gram-Schmidt makes them orthonormal and the third column is their cross product.
    Returns (..., 3, 3).
    """
    a1, a2 = d6[..., 0:3], d6[..., 3:6]
    b1 = a1 / jnp.linalg.norm(a1, axis=-1, keepdims=True).clip(1e-8)
    a2 = a2 - jnp.sum(b1 * a2, axis=-1, keepdims=True) * b1
    b2 = a2 / jnp.linalg.norm(a2, axis=-1, keepdims=True).clip(1e-8)
    b3 = jnp.cross(b1, b2)
    return jnp.stack([b1, b2, b3], axis=-1)


def matrix_to_rotation_6d(matrix):
    """Rotation matrices (..., 3, 3) -> 6D (..., 6): the first two columns, column-major."""
    return jnp.concatenate([matrix[..., :, 0], matrix[..., :, 1]], axis=-1)
