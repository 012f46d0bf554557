"""Tests for mano_jax.lbs.forward: against an independent float64 NumPy reference, properties of
the layer (translation, mean pose, PCA, batching, jit/vmap/grad/pmap), the procedural model, and
input validation.

Tolerances, from the arithmetic:
- float64 (x64 on): the layer and the reference evaluate the same formulas in different orders;
  each output is a few dozen to a few hundred rounded operations on values of at most ~0.5 m, so
  they agree to ~1e-14 m (measured: 1.1e-16 m). `RTOL64` = 1e-10 x the output scale leaves ~4 orders of margin while
  still catching any error of the formulas (a wrong sign, index or transpose moves points by
  mm, not 1e-10 m).
- float32: the model arrays and the inputs are float32-representable, so the only difference is
  rounding inside the computation: float32 eps 1.2e-7 x magnitudes ~0.2-0.5 m x a few dozen
  accumulated operations (Rodrigues, 4 levels of FK products, 16-term skinning sums, 135-term
  pose correctives) ~ 1e-6 m (measured: 7e-8 m). `ATOL32` = 1e-5 m (10 micrometres) bounds that
  with margin.

x64 is switched on only inside a test (the `x64` fixture), and every float64 model is created
inside that scope, because model arrays take the float dtype active when they are made.

Jit compilations are kept few: the reference comparisons and most properties run eagerly with
one batch size (op by op; each op is compiled once per shape and dtype, then reused), and the
few compiled functions live at module level.
"""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.spatial.transform import Rotation

from mano_jax.lbs import forward
from mano_jax.model import MANO_PARENTS, model_from_arrays
from mano_jax.procedural import procedural_model
from tests.mano_jax import reference as ref

ATOL32 = 1e-5  # metres; see the module docstring
RTOL64 = 1e-10  # relative to the largest output coordinate; see the module docstring
NUM_BETAS = 10
B = 2  # batch size everywhere, so eager ops compiled for one test are reused by the others

# Custom fingertip ids (thumb, index, middle, ring, pinky) unlike any preset.
CUSTOM_TIPS = (700, 10, 333, 501, 2)


# ---------------------------------------------------------------------------------------------
# Random MANO-format models




def _f32(x):
    """float32-representable float64 values: the float32 model and the reference see the same."""
    return np.asarray(x, np.float32).astype(np.float64)


@functools.lru_cache(maxsize=None)
def random_arrays(seed: int = 0) -> dict:
    """Random arrays in the official MANO format and shapes, at hand-like scales.

    v_template ~ 5 cm noise (points within ~0.2 m), small shape and pose directions, row-stochastic
    (sparse, non-negative) J_regressor so the joints are spread out like real ones, Dirichlet
    skinning weights, a NON-orthonormal PCA basis and a random hands_mean.
    """
    rng = np.random.default_rng(seed)
    j_regressor = np.zeros((16, 778))
    for joint in range(16):
        cols = rng.choice(778, size=20, replace=False)
        j_regressor[joint, cols] = rng.random(20) + 0.1
    j_regressor /= j_regressor.sum(axis=1, keepdims=True)
    kintree = np.zeros((2, 16), np.int64)
    kintree[0] = [2**32 - 1 if p < 0 else p for p in MANO_PARENTS]
    kintree[1] = np.arange(16)
    arrays = {
        "v_template": 0.05 * rng.standard_normal((778, 3)),
        "shapedirs": 0.003 * rng.standard_normal((778, 3, NUM_BETAS)),
        "posedirs": 0.002 * rng.standard_normal((778, 3, 135)),
        "J_regressor": j_regressor,
        "weights": rng.dirichlet(np.full(16, 0.3), size=778),
        "kintree_table": kintree,
        "f": rng.integers(0, 778, size=(1538, 3)).astype(np.uint32),
        "hands_components": np.eye(45) + 0.3 * rng.standard_normal((45, 45)),
        "hands_mean": 0.3 * rng.standard_normal(45),
    }
    return {k: (_f32(v) if v.dtype == np.float64 else v) for k, v in arrays.items()}


_MODELS: dict = {}


def random_model(side: str = "right", seed: int = 0):
    """The random model for `side` in the float dtype active now (cached per dtype)."""
    dtype = jnp.zeros((), dtype=float).dtype
    key = (side, seed, str(dtype))
    if key not in _MODELS:
        model = model_from_arrays(random_arrays(seed), side, source=f"random {side}")
        assert model.v_template.dtype == dtype
        _MODELS[key] = model
    return _MODELS[key]


def random_axis_angle(rng, *shape):
    return _f32(0.6 * rng.standard_normal(shape + (48,)))


def assert_close(got, want, what=""):
    """Float64 runs: RTOL64 x the output scale; float32 runs: ATOL32 metres."""
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert np.all(np.isfinite(got)), what
    if got.dtype == np.float64:
        atol = RTOL64 * max(np.abs(want).max(), 1e-3)
    else:
        assert got.dtype == np.float32, (what, got.dtype)
        atol = ATOL32
    np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=what)


def as_dict(out) -> dict:
    return {key: getattr(out, key) for key in ("vertices", "joints", "skeleton")}


def assert_outputs_close(out, want: dict, what=""):
    for key in ("vertices", "joints", "skeleton"):
        assert_close(getattr(out, key), want[key], f"{what} {key}")


# ---------------------------------------------------------------------------------------------
# 1. Reference comparison: every pose input kind, flat mean, joint kind/order, tips, side, trans.

# (pose_space, k, flat_hand_mean, joint_kind, joint_order, tips, side, trans, betas)
# trans: "batch" (B, 3), "shared" (3,) or None; betas: "batch" (B, 10) or "shared5" (5,).
CASES = [
    ("axis_angle", None, False, "regressed", "openpose", "freihand", "right", "batch", "batch"),
    ("axis_angle", None, True, "fk", "mano", "manopth", "left", None, "shared5"),
    ("axis_angle", None, False, "fk", "openpose", CUSTOM_TIPS, "left", "shared", "batch"),
    ("pca", 1, False, "fk", "openpose", "manopth", "right", "batch", "batch"),
    ("pca", 6, True, "regressed", "mano", CUSTOM_TIPS, "left", "batch", "shared5"),
    ("pca", 6, False, "regressed", "openpose", "ho3d", "right", None, "batch"),
    ("pca", 45, False, "regressed", "openpose", "manopth", "left", None, "batch"),
    ("pca", 45, True, "fk", "mano", "smplx", "right", "shared", "batch"),
    ("rotmat", None, True, "regressed", "openpose", CUSTOM_TIPS, "right", "batch", "batch"),
    ("rotmat", None, True, "fk", "mano", "freihand", "left", None, "shared5"),
]


def _case_inputs(case, seed):
    space, k, flat, kind, order, tips, side, trans_kind, betas_kind = case
    rng = np.random.default_rng(seed)
    if space == "axis_angle":
        pose = random_axis_angle(rng, B)
    elif space == "pca":
        pose = _f32(np.concatenate([0.6 * rng.standard_normal((B, 3)),
                                    0.5 * rng.standard_normal((B, k))], axis=1))
    else:
        pose = _f32(Rotation.random(B * 16, random_state=seed).as_matrix().reshape(B, 16, 3, 3))
    betas = _f32(rng.standard_normal((B, NUM_BETAS) if betas_kind == "batch" else (5,)))
    trans = {"batch": _f32(0.1 * rng.standard_normal((B, 3))),
             "shared": _f32(0.1 * rng.standard_normal(3)), None: None}[trans_kind]
    return pose, betas, trans


def _case_id(case):
    space, k, flat, kind, order, tips, side, trans, betas = case
    tips = tips if isinstance(tips, str) else "custom"
    return (f"{space}{k or ''}-flat{int(flat)}-{kind}-{order}-{tips}-{side}"
            f"-trans_{trans}-betas_{betas}")


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_matches_numpy_reference(case, precision):
    space, k, flat, kind, order, tips, side, trans_kind, betas_kind = case
    pose, betas, trans = _case_inputs(case, seed=CASES.index(case))
    with jax.enable_x64(precision == "float64"):
        model = random_model(side)
        out = forward(model, pose, betas, trans, flat_hand_mean=flat, pose_space=space,
                      joint_kind=kind, tips=tips, joint_order=order)
    want = ref.forward_batch(random_arrays(), pose, betas, trans, side=side, flat_hand_mean=flat,
                             pose_space=space, joint_kind=kind, tips=tips, joint_order=order)
    assert out.vertices.shape == (B, 778, 3)
    assert out.joints.shape == (B, 21, 3)
    assert out.skeleton.shape == (B, 16, 3)
    assert out.vertices.dtype == np.dtype(precision)
    assert_outputs_close(out, want, _case_id(case))


def test_reference_tips_and_order_are_the_documented_ones():
    """Pins the reference's own conventions (the tip ids and joint order written out in
    tests/mano_jax/reference.py), so the comparison above checks the layer against those tip ids
    and that order, not against itself."""
    arrays = random_arrays()
    pose = np.zeros(48)
    out = ref.forward_one(arrays, pose, np.zeros(10), side="left", flat_hand_mean=True,
                          tips="manopth", joint_order="openpose")
    v = out["vertices"]
    # Rest pose, zero betas: every skinning transform is [I | 0], so v = (sum_k w_k) T; the random
    # weights sum to 1 only up to their float32 rounding.
    np.testing.assert_allclose(v, arrays["weights"].sum(1, keepdims=True) * arrays["v_template"],
                               rtol=0, atol=1e-15)
    tips_left = [745, 317, 445, 556, 673]
    np.testing.assert_array_equal(out["joints"][[4, 8, 12, 16, 20]], v[tips_left])
    mano_to_openpose_wrist_thumb = [0, 13, 14, 15]
    np.testing.assert_array_equal(out["joints"][:4],
                                  (arrays["J_regressor"] @ v)[mano_to_openpose_wrist_thumb])
    out_r = ref.forward_one(arrays, pose, np.zeros(10), side="right", flat_hand_mean=True,
                            tips="manopth", joint_order="mano")
    np.testing.assert_array_equal(out_r["joints"][16:], v[[745, 317, 444, 556, 673]])


def test_left_manopth_middle_tip_is_445(x64):
    """side='left' changes manopth's middle tip (444 -> 445), and only that tip."""
    pose = np.zeros((B, 48))
    outs = {side: forward(random_model(side), pose, np.zeros(10), flat_hand_mean=True,
                          tips="manopth", joint_order="mano") for side in ("right", "left")}
    v = np.asarray(outs["right"].vertices[0])
    np.testing.assert_array_equal(outs["right"].joints[0, 16:], v[[745, 317, 444, 556, 673]])
    np.testing.assert_array_equal(outs["left"].joints[0, 16:], v[[745, 317, 445, 556, 673]])


def test_rotmat_requires_flat_hand_mean():
    rot = jnp.broadcast_to(jnp.eye(3), (B, 16, 3, 3))
    with pytest.raises(ValueError, match="flat_hand_mean"):
        forward(random_model(), rot, jnp.zeros(10), flat_hand_mean=False, pose_space="rotmat")


# ---------------------------------------------------------------------------------------------
# 2. Properties


def test_translation_adds_exactly(x64):
    """trans moves vertices, FK joints and skeleton by exactly trans (float64 rounding of one
    addition: |error| <= 1 ulp of ~0.5 m ~ 1e-16; bound 1e-14). Regressed joints move by
    (J_regressor @ 1) trans: the random rows sum to 1 only up to float32 rounding (~1e-8), and
    the layer regresses from the translated vertices."""
    model = random_model()
    rng = np.random.default_rng(1)
    pose, betas = random_axis_angle(rng, B), rng.standard_normal((B, NUM_BETAS))
    trans = 0.2 * rng.standard_normal((B, 3))
    row_sums = random_arrays()["J_regressor"].sum(axis=1)
    expected = {"vertices": np.broadcast_to(trans[:, None], (B, 778, 3)),
                "skeleton": np.broadcast_to(trans[:, None], (B, 16, 3))}
    for kind in ("regressed", "fk"):
        base = forward(model, pose, betas, flat_hand_mean=False, joint_kind=kind)
        moved = forward(model, pose, betas, trans, flat_hand_mean=False, joint_kind=kind,
                        joint_order="mano")
        base_mano = forward(model, pose, betas, flat_hand_mean=False, joint_kind=kind,
                            joint_order="mano")
        joints16 = trans[:, None] * (row_sums[:, None] if kind == "regressed" else 1.0)
        expected["joints"] = np.concatenate(
            [np.broadcast_to(joints16, (B, 16, 3)), np.broadcast_to(trans[:, None], (B, 5, 3))], 1)
        for key in ("vertices", "joints", "skeleton"):
            old = getattr(base_mano if key == "joints" else base, key)
            delta = np.asarray(getattr(moved, key)) - np.asarray(old)
            np.testing.assert_allclose(delta, expected[key], rtol=0, atol=1e-14,
                                       err_msg=f"{kind} {key}")
    # A shared (3,) translation broadcasts over the batch.
    shared = forward(model, pose, betas, trans[0], flat_hand_mean=False)
    np.testing.assert_allclose(np.asarray(shared.vertices) - np.asarray(base.vertices),
                               np.broadcast_to(trans[0], (B, 778, 3)), rtol=0, atol=1e-14)


def test_mean_pose_equivalence(x64):
    """flat_hand_mean=False at p == flat_hand_mean=True at p + [0, 0, 0, hands_mean]."""
    model = random_model()
    rng = np.random.default_rng(2)
    pose, betas = random_axis_angle(rng, B), rng.standard_normal((B, NUM_BETAS))
    mean = forward(model, pose, betas, flat_hand_mean=False)
    shifted = pose + np.concatenate([np.zeros(3), random_arrays()["hands_mean"]])
    flat = forward(model, shifted, betas, flat_hand_mean=True)
    assert_outputs_close(flat, as_dict(mean))
    # ... and the mean really matters (guards against a test that passes trivially).
    plain = forward(model, pose, betas, flat_hand_mean=True)
    assert np.abs(np.asarray(plain.vertices) - np.asarray(mean.vertices)).max() > 1e-3


@pytest.mark.parametrize("k", [1, 6, 45])
def test_pca_equals_axis_angle_of_projected_fingers(x64, k):
    """pca coefficients c == axis_angle with fingers c @ hands_components[:k], both flat values."""
    model = random_model()
    rng = np.random.default_rng(3)
    pose = np.concatenate([0.6 * rng.standard_normal((B, 3)), 0.5 * rng.standard_normal((B, k))], 1)
    betas = rng.standard_normal(NUM_BETAS)
    fingers = pose[:, 3:] @ random_arrays()["hands_components"][:k]
    as_axis_angle = np.concatenate([pose[:, :3], fingers], axis=1)
    for flat in (False, True):
        pca = forward(model, pose, betas, flat_hand_mean=flat, pose_space="pca")
        aa = forward(model, as_axis_angle, betas, flat_hand_mean=flat)
        assert_outputs_close(pca, as_dict(aa), f"k={k} flat={flat}")


def test_pca_with_45_components_is_still_pca(x64):
    """45 coefficients go through the (non-identity) basis; smplx's silent switch to axis-angle
    at 45 (smplx#192) would give the second result."""
    model = random_model()
    pose = random_axis_angle(np.random.default_rng(4), B)
    pca = forward(model, pose, np.zeros(10), flat_hand_mean=True, pose_space="pca")
    aa = forward(model, pose, np.zeros(10), flat_hand_mean=True, pose_space="axis_angle")
    assert np.abs(np.asarray(pca.vertices) - np.asarray(aa.vertices)).max() > 1e-3


# Compiled forward with the options static; each (options, shapes, dtype) compiles once.
_jit_forward = jax.jit(forward, static_argnames=(
    "flat_hand_mean", "pose_space", "joint_kind", "tips", "joint_order"))


def test_batch_row_equals_single_call(x64):
    """Row i of a batch == the same pose as a batch of one and as an unbatched pose."""
    model = random_model()
    rng = np.random.default_rng(5)
    pose, betas = random_axis_angle(rng, B), rng.standard_normal((B, NUM_BETAS))
    trans = 0.1 * rng.standard_normal((B, 3))
    batch = forward(model, pose, betas, trans, flat_hand_mean=False)
    for i in range(B):
        one = _jit_forward(model, pose[i:i + 1], betas[i:i + 1], trans[i:i + 1],
                           flat_hand_mean=False)
        unbatched = _jit_forward(model, pose[i], betas[i], trans[i], flat_hand_mean=False)
        assert unbatched.vertices.shape == (778, 3) and unbatched.joints.shape == (21, 3)
        assert unbatched.skeleton.shape == (16, 3)
        for key in ("vertices", "joints", "skeleton"):
            row = np.asarray(getattr(batch, key)[i])
            assert_close(getattr(one, key)[0], row, f"row {i} {key}")
            assert_close(getattr(unbatched, key), row, f"unbatched {i} {key}")


def test_leading_batch_axes(x64):
    """(B1, B2, 48) poses with (B2, S) betas (broadcast over B1) == one call per B1 slice."""
    model = random_model()
    rng = np.random.default_rng(6)
    pose = random_axis_angle(rng, 3, B)
    betas = rng.standard_normal((B, NUM_BETAS))
    nested = _jit_forward(model, pose, betas, flat_hand_mean=False)
    assert nested.vertices.shape == (3, B, 778, 3)
    assert nested.joints.shape == (3, B, 21, 3) and nested.skeleton.shape == (3, B, 16, 3)
    for i in range(3):
        want = forward(model, pose[i], betas, flat_hand_mean=False)
        for key in ("vertices", "joints", "skeleton"):
            assert_close(getattr(nested, key)[i], getattr(want, key), f"slice {i} {key}")


# The jitted wrapper shared by the float32 jit tests. The model is a traced argument (a pytree);
# the list counts traces.
_TRACES = []


@jax.jit
def _jitted_forward(model, pose, betas, trans):
    _TRACES.append(1)
    return forward(model, pose, betas, trans, flat_hand_mean=False, joint_kind="regressed",
                   tips="freihand", joint_order="openpose")


def _jit_inputs(seed, n=B):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(random_axis_angle(rng, n), jnp.float32),
            jnp.asarray(rng.standard_normal((n, NUM_BETAS)), jnp.float32),
            jnp.asarray(0.1 * rng.standard_normal((n, 3)), jnp.float32))


def test_jit_matches_eager_and_model_is_a_jit_argument():
    """Compiled == eager within the float32 bound (both are float32 evaluations of the same
    expression, each within ~1e-6 m of the exact value), for two models through one trace."""
    for seed in (0, 1):
        model = random_model(seed=seed)
        args = _jit_inputs(seed + 10)
        jitted = _jitted_forward(model, *args)
        eager = forward(model, *args, flat_hand_mean=False)
        for key in ("vertices", "joints", "skeleton"):
            assert getattr(jitted, key).dtype == jnp.float32
            assert_close(getattr(jitted, key), getattr(eager, key), f"seed {seed} {key}")


def test_no_retrace_for_same_shapes():
    _jitted_forward(random_model(), *_jit_inputs(20))
    n_traces = len(_TRACES)
    assert n_traces >= 1
    _jitted_forward(random_model(), *_jit_inputs(21))  # new values, same shapes
    _jitted_forward(random_model(seed=1), *_jit_inputs(22))  # another model, same shapes
    assert len(_TRACES) == n_traces


def test_vmap_equals_batched_call():
    model = random_model()
    args = _jit_inputs(23)
    mapped = jax.jit(jax.vmap(lambda m, p, b, t: forward(m, p, b, t, flat_hand_mean=False),
                              in_axes=(None, 0, 0, 0)))(model, *args)
    batched = _jitted_forward(model, *args)
    for key in ("vertices", "joints", "skeleton"):
        assert getattr(mapped, key).shape == getattr(batched, key).shape
        assert_close(getattr(mapped, key), getattr(batched, key), key)


def test_pmap_over_devices_equals_batched_call():
    n = jax.local_device_count()
    if "xla_force_host_platform_device_count=4" in os.environ.get("XLA_FLAGS", "") \
            and jax.default_backend() == "cpu":
        assert n == 4, "tests/conftest.py asked for 4 fake CPU devices"
    if n < 2:
        pytest.skip("needs several devices (tests/conftest.py asks for 4 fake CPU devices)")
    model = random_model()
    pose, betas, trans = _jit_inputs(30, n=n * B)
    split = lambda x: x.reshape((n, B) + x.shape[1:])  # noqa: E731
    sharded = jax.pmap(
        lambda m, p, b, t: forward(m, p, b, t, flat_hand_mean=False), in_axes=(None, 0, 0, 0)
    )(model, split(pose), split(betas), split(trans))
    assert sharded.vertices.shape == (n, B, 778, 3)
    for i in range(n):
        want = _jitted_forward(model, split(pose)[i], split(betas)[i], split(trans)[i])
        for key in ("vertices", "joints", "skeleton"):
            assert_close(getattr(sharded, key)[i], getattr(want, key), f"device {i} {key}")


# check_grads in float64: central differences with step 1e-4 have truncation error
# ~ step^2 * (third derivative) ~ 1e-8 and rounding error ~ 1e-16 / 1e-4, both far below
# check_grads' float64 tolerance (1e-5). At the zero pose every perturbed rotation stays in the
# Taylor branch of Rodrigues (theta^2 ~ 1e-7 < 1e-4), so the Taylor branch's derivatives are
# checked too.


@jax.jit
def _outputs_flat(model, pose, betas, trans):
    out = forward(model, pose, betas, trans, flat_hand_mean=True, joint_kind="regressed")
    return out.vertices, out.joints, out.skeleton


@pytest.mark.parametrize("where", ["random_pose", "zero_pose"])
def test_check_grads_pose_betas_trans(x64, where):
    model = random_model()
    rng = np.random.default_rng(8)
    pose = random_axis_angle(rng, B) if where == "random_pose" else np.zeros((B, 48))
    betas = rng.standard_normal((B, NUM_BETAS))
    trans = 0.1 * rng.standard_normal((B, 3))
    args = tuple(jnp.asarray(a, jnp.float64) for a in (pose, betas, trans))
    if where == "zero_pose":
        assert not np.any(np.asarray(args[0]))  # exactly zero rotation at every joint
    f = functools.partial(_outputs_flat, model)
    check_grads(f, args, order=1, modes=("fwd", "rev"))
    # The exact reverse-mode gradient is finite and not zero.
    outputs, f_vjp = jax.vjp(f, *args)
    grads = f_vjp(jax.tree.map(jnp.ones_like, outputs))
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g))) and np.abs(np.asarray(g)).max() > 1e-6


def test_grad_at_zero_pose_is_finite_float32():
    model = random_model()

    @jax.jit
    @jax.grad
    def grad_fn(pose):
        out = forward(model, pose, jnp.zeros(NUM_BETAS), flat_hand_mean=True, joint_kind="fk")
        return out.vertices.sum() + out.joints.sum()

    g = grad_fn(jnp.zeros((B, 48), jnp.float32))
    assert g.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(g)))
    assert np.abs(np.asarray(g)).max() > 1e-6


# ---------------------------------------------------------------------------------------------
# 3. The procedural model through forward


@pytest.fixture(scope="module")
def procedural_rest():
    """The right procedural hand (float32) at zero pose and betas, OpenPose and MANO order."""
    model = procedural_model("right")
    zeros = jnp.zeros((B, 48)), jnp.zeros((B, NUM_BETAS))
    out = forward(model, *zeros, flat_hand_mean=True, joint_kind="regressed", tips="freihand",
                  joint_order="openpose")
    mano = forward(model, *zeros, flat_hand_mean=True, joint_kind="regressed", tips="freihand",
                   joint_order="mano")
    return model, out, mano


def test_procedural_rest_pose_joints_are_regressed_template(procedural_rest):
    """At zero pose and betas the mesh is the template and every joint is J_regressor @ T.
    float32 bound: sums of <= 778 non-negative weights (summing to 1) of values <= 0.15 m,
    so rounding is ~1e-7 m; ATOL32 applies."""
    model, out, mano = procedural_rest
    template = np.asarray(model.v_template, np.float64)
    rest_joints = np.asarray(model.J_regressor, np.float64) @ template
    for b in range(B):
        assert_close(mano.vertices[b], template, "vertices")
        assert_close(mano.joints[b, :16], rest_joints, "regressed joints")
        assert_close(mano.skeleton[b], rest_joints, "FK joints")
    vertices = np.asarray(mano.vertices)
    np.testing.assert_array_equal(mano.joints[:, 16:], vertices[:, [744, 320, 443, 555, 672]])
    np.testing.assert_array_equal(out.joints, np.asarray(mano.joints)[:, ref.MANO_TO_OPENPOSE])


def test_procedural_fingertips_are_the_far_end_of_each_finger(procedural_rest):
    """OpenPose order: the tips 4, 8, 12, 16, 20 are farther from the wrist (joint 0) than the
    other joints of their finger (by more than 5 mm), and each finger's joints move away from the
    wrist from base to tip."""
    _, out, _ = procedural_rest
    joints = np.asarray(out.joints[0], np.float64)
    dist = np.linalg.norm(joints - joints[0], axis=-1)
    for finger in range(5):
        chain = dist[1 + 4 * finger: 5 + 4 * finger]
        assert chain[3] > chain[:3].max() + 5e-3, (finger, chain)
        assert np.all(np.diff(chain) > 0), (finger, chain)


# ---------------------------------------------------------------------------------------------
# 4. Input validation


def test_axis_angle_wrong_length_names_pose_space():
    with pytest.raises(ValueError, match="pose_space"):
        forward(random_model(), jnp.zeros((B, 45)), jnp.zeros(10), flat_hand_mean=True)


@pytest.mark.parametrize("n_coeffs", [0, 46])
def test_pca_coefficient_count(n_coeffs):
    with pytest.raises(ValueError, match="PCA"):
        forward(random_model(), jnp.zeros((B, 3 + n_coeffs)), jnp.zeros(10),
                flat_hand_mean=True, pose_space="pca")


def test_invalid_arguments():
    model = random_model()
    pose = jnp.zeros((B, 48))
    call = functools.partial(forward, model, flat_hand_mean=True)
    with pytest.raises(ValueError, match="11 values"):
        call(pose, jnp.zeros(11))
    with pytest.raises(ValueError, match="preset"):
        call(pose, jnp.zeros(10), tips="thumbs_up")
    with pytest.raises(ValueError, match="5 vertex ids"):
        call(pose, jnp.zeros(10), tips=(1, 2, 3, 4))
    with pytest.raises(ValueError, match="outside"):
        call(pose, jnp.zeros(10), tips=(1, 2, 3, 4, 778))
    with pytest.raises(ValueError, match="joint_order"):
        call(pose, jnp.zeros(10), joint_order="freihand")
    with pytest.raises(ValueError, match="joint_kind"):
        call(pose, jnp.zeros(10), joint_kind="smplx")
    with pytest.raises(ValueError, match="pose_space"):
        call(pose, jnp.zeros(10), pose_space="quaternion")
    with pytest.raises(ValueError, match="does not broadcast"):
        call(pose, jnp.zeros((B + 1, 10)))
    with pytest.raises(ValueError, match="trans"):
        call(pose, jnp.zeros(10), jnp.zeros((B, 2)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 16, 3, 3\)"):
        call(jnp.zeros((B, 15, 3, 3)), jnp.zeros(10), pose_space="rotmat")
