"""Tests for hiu_jax.mano_fit: fitting MANO to 3D and to 2D keypoints, and input validation.

The targets are hands sampled from the procedural model itself (a global rotation drawn uniformly
on SO(3), plausible finger poses from `procedural.sample_poses`, betas ~ N(0, 1) clipped to
[-2, 2], a random translation), so an exact fit exists and the bounds are about the optimiser.
Everything runs in float32 on CPU; each fit function is compiled once per module (fixtures).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hiu_jax.geometry.projection import project_pinhole
from hiu_jax.mano_fit import FitResult, FitSettings, fit, fit_to_keypoints_2d, fit_to_keypoints_3d
from mano_jax.lbs import forward
from mano_jax.procedural import procedural_model, sample_poses

BATCH = 16
# Compiled once: op-by-op (eager) execution of the forward pass costs seconds on 2 CPU cores.
forward_jit = jax.jit(forward, static_argnames=("flat_hand_mean",))
IMAGE_SIZE = 224  # a crop: 1 px here is about the annotation noise of hand keypoints


@pytest.fixture(scope="module")
def model():
    return procedural_model()


def sample_hands(seed, batch, translation):
    """Poses (B, 48) with flat_hand_mean=True semantics, betas (B, 10), trans (B, 3), float32."""
    rng = np.random.default_rng(seed)
    global_rotation = Rotation.random(batch, random_state=seed).as_rotvec()
    pose = np.concatenate([global_rotation, sample_poses(rng, batch)], axis=1)
    betas = np.clip(rng.standard_normal((batch, 10)), -2.0, 2.0)
    return pose.astype(np.float32), betas.astype(np.float32), translation(rng).astype(np.float32)


@pytest.fixture(scope="module")
def hands_3d(model):
    pose, betas, trans = sample_hands(0, BATCH, lambda rng: rng.uniform(-0.5, 0.5, (BATCH, 3)))
    joints = forward_jit(model, pose, betas, trans, flat_hand_mean=True).joints
    return np.asarray(joints)


@pytest.fixture(scope="module")
def fit_3d(model, hands_3d):
    # flat_hand_mean=False for the result while the targets were made with True: the fit must
    # convert its pose to the caller's convention.
    return fit_to_keypoints_3d(model, hands_3d, flat_hand_mean=False)


def intrinsics(batch, seed=1):
    """(B, 3, 3) pinhole intrinsics of 224 x 224 crops, focal lengths 450..550 px."""
    rng = np.random.default_rng(seed)
    K = np.zeros((batch, 3, 3), np.float32)
    K[:, 0, 0] = K[:, 1, 1] = rng.uniform(450.0, 550.0, batch)
    K[:, :2, 2] = IMAGE_SIZE / 2
    K[:, 2, 2] = 1.0
    return K


@pytest.fixture(scope="module")
def hands_2d(model):
    def translation(rng):
        return np.stack([rng.uniform(-0.03, 0.03, BATCH), rng.uniform(-0.03, 0.03, BATCH),
                         rng.uniform(0.4, 0.7, BATCH)], axis=1)

    pose, betas, trans = sample_hands(2, BATCH, translation)
    joints = forward_jit(model, pose, betas, trans, flat_hand_mean=True).joints
    K = intrinsics(BATCH)
    keypoints = np.asarray(project_pinhole(jnp.asarray(K), joints))
    return keypoints, K


@pytest.fixture(scope="module")
def fit_2d(model, hands_2d):
    keypoints, K = hands_2d
    return fit_to_keypoints_2d(model, keypoints, K, flat_hand_mean=True)


# ---------------------------------------------------------------------------------------------
# 3D


def test_fit_3d_recovers_every_sampled_hand_below_1mm(fit_3d, hands_3d):
    assert isinstance(fit_3d, FitResult) and fit_3d.unit == "m"
    assert fit_3d.pose.shape == (BATCH, 48) and fit_3d.betas.shape == (BATCH, 10)
    assert fit_3d.trans.shape == (BATCH, 3) and fit_3d.joints.shape == (BATCH, 21, 3)
    assert fit_3d.joints.dtype == jnp.float32
    assert fit_3d.keypoints_2d is None and fit_3d.reprojection_error is None
    # The error from the joints themselves, not only the reported one.
    error = np.linalg.norm(np.asarray(fit_3d.joints) - hands_3d, axis=-1).mean(-1)
    np.testing.assert_allclose(np.asarray(fit_3d.mean_error), error, rtol=1e-4, atol=1e-7)
    assert error.max() < 1e-3, f"mean joint errors (mm): {np.round(error * 1e3, 3)}"


def test_fit_3d_joints_are_forward_of_the_result(model, fit_3d):
    again = forward_jit(model, fit_3d.pose, fit_3d.betas, fit_3d.trans, flat_hand_mean=False).joints
    np.testing.assert_allclose(np.asarray(again), np.asarray(fit_3d.joints), atol=1e-6)
    flat_pose = fit_3d.pose.at[:, 3:].add(model.hands_mean)  # the same hand, other convention
    flat = forward_jit(model, flat_pose, fit_3d.betas, fit_3d.trans, flat_hand_mean=True).joints
    np.testing.assert_allclose(np.asarray(flat), np.asarray(fit_3d.joints), atol=1e-5)


def test_fit_3d_ignores_joints_with_zero_weight(model, hands_3d):
    weights = np.ones((BATCH, 21), np.float32)
    hidden = [4, 8, 10, 20]  # two fingertips, a PIP and the pinky tip
    weights[:, hidden] = 0.0
    corrupted = hands_3d.copy()
    corrupted[:, hidden] += 0.3  # 30 cm off: must have no influence
    result = fit(model, keypoints_3d=corrupted, weights=weights, flat_hand_mean=True)
    visible = np.ones(21, bool)
    visible[hidden] = False
    error = np.linalg.norm(np.asarray(result.joints) - hands_3d, axis=-1)[:, visible].mean(-1)
    assert error.max() < 1e-3, f"visible-joint errors (mm): {np.round(error * 1e3, 3)}"
    np.testing.assert_allclose(np.asarray(result.mean_error), error, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# 2D


def test_fit_2d_reprojects_every_sampled_hand_below_1px(fit_2d, hands_2d):
    keypoints, K = hands_2d
    assert fit_2d.unit == "px" and fit_2d.keypoints_2d.shape == (BATCH, 21, 2)
    reprojected = np.asarray(project_pinhole(jnp.asarray(K), fit_2d.joints))
    np.testing.assert_allclose(np.asarray(fit_2d.keypoints_2d), reprojected, atol=1e-3)
    error = np.linalg.norm(reprojected - keypoints, axis=-1).mean(-1)
    np.testing.assert_allclose(np.asarray(fit_2d.reprojection_error), error, rtol=1e-3,
                               atol=1e-4)
    assert error.max() < 1.0, f"mean reprojection errors (px): {np.round(error, 3)}"


def test_fit_2d_gives_a_finite_hand_in_front_of_the_camera(model, fit_2d):
    for name in ("pose", "betas", "trans", "joints"):
        assert np.all(np.isfinite(np.asarray(getattr(fit_2d, name)))), name
    joints = np.asarray(fit_2d.joints)
    assert np.all(joints[..., 2] > 0.1), "every joint in front of the camera"
    extent = np.linalg.norm(joints - joints[:, :1], axis=-1).max(-1)  # wrist to farthest joint
    assert np.all((extent > 0.08) & (extent < 0.35)), f"hand extents (m): {extent}"
    assert np.abs(np.asarray(fit_2d.betas)).max() < 5.0
    again = forward_jit(model, fit_2d.pose, fit_2d.betas, fit_2d.trans, flat_hand_mean=True).joints
    np.testing.assert_allclose(np.asarray(again), joints, atol=1e-6)


def test_fit_2d_ignores_invisible_keypoints(model, hands_2d):
    keypoints, K = hands_2d
    visibility = np.ones((BATCH, 21), np.float32)
    hidden = [0, 4, 12, 17]  # the wrist, two tips and a knuckle
    visibility[:, hidden] = 0.0
    corrupted = keypoints.copy()
    corrupted[:, hidden] = -5000.0  # far off the image: must have no influence
    result = fit(model, keypoints_2d=corrupted, K=K, visibility=visibility, flat_hand_mean=False)
    seen = np.ones(21, bool)
    seen[hidden] = False
    error = np.linalg.norm(np.asarray(result.keypoints_2d) - keypoints, axis=-1)[:, seen].mean(-1)
    np.testing.assert_allclose(np.asarray(result.mean_error), error, rtol=1e-3, atol=1e-4)
    assert error.max() < 1.0, f"visible-keypoint errors (px): {np.round(error, 3)}"
    assert np.all(np.isfinite(np.asarray(result.joints)))


# ---------------------------------------------------------------------------------------------
# Validation


def good_2d():
    return np.zeros((2, 21, 2), np.float32) + np.arange(21, dtype=np.float32)[:, None], \
        np.array([[500.0, 0, 112], [0, 500, 112], [0, 0, 1]], np.float32)


@pytest.mark.parametrize("kwargs, match", [
    (dict(keypoints_3d=np.zeros((2, 20, 3))), r"keypoints_3d must have shape \(B, 21, 3\)"),
    (dict(keypoints_3d=np.zeros((21, 3))), r"keypoints_3d must have shape"),
    (dict(keypoints_3d=np.zeros((0, 21, 3))), r"keypoints_3d holds no hands"),
    (dict(keypoints_3d=np.full((2, 21, 3), np.nan)), r"keypoints_3d holds non-finite"),
    (dict(keypoints_3d=np.zeros((2, 21, 3)), weights=np.ones((2, 20))), r"weights must have shape"),
    (dict(keypoints_3d=np.zeros((2, 21, 3)), weights=-np.ones((2, 21))), r"weights must be non-neg"),
    (dict(keypoints_3d=np.zeros((2, 21, 3)), weights=np.eye(2, 21) * 0), r"weights: hand 0 has 0"),
    (dict(keypoints_3d=np.zeros((2, 21, 3)), settings=FitSettings(steps=3)),
     r"settings.steps must be an int >= 10"),
    (dict(keypoints_3d=np.zeros((2, 21, 3)), settings=FitSettings(learning_rate=0.0)),
     r"settings.learning_rate must be > 0"),
    (dict(keypoints_3d=np.zeros((2, 21, 3)), settings=FitSettings(shape_prior_weight=np.inf)),
     r"settings.shape_prior_weight"),
    (dict(keypoints_3d=np.zeros((2, 21, 3)), settings=FitSettings(joint_kind="tips")),
     r"settings.joint_kind must be one of"),
    (dict(keypoints_3d=np.zeros((2, 21, 3)), settings=FitSettings(tips="nope")),
     r"unknown fingertip preset 'nope'"),
    (dict(keypoints_3d=np.zeros((2, 21, 3)), K=np.eye(3)), r"K is only used with keypoints_2d"),
    (dict(), r"fit needs a target"),
    (dict(keypoints_3d=np.zeros((2, 21, 3)), keypoints_2d=np.zeros((2, 21, 2)), K=np.eye(3)),
     r"not both"),
    (dict(keypoints_2d=np.zeros((2, 21, 2))), r"keypoints_2d needs the camera intrinsics K"),
    (dict(keypoints_2d=good_2d()[0], K=np.zeros((3, 3))), r"K has non-positive focal length"),
    (dict(keypoints_2d=good_2d()[0],
          K=np.array([[500.0, 500.0, 1.0], [500.0, 500.0, 1.0], [0.0, 0.0, 1.0]])), r"K is singular"),
    (dict(keypoints_2d=good_2d()[0], K=np.eye(4)), r"K must have shape \(3, 3\) or \(2, 3, 3\)"),
    (dict(keypoints_2d=good_2d()[0], K=np.full((3, 3), np.inf)), r"K holds non-finite"),
    (dict(keypoints_2d=np.zeros((2, 21, 3)), K=good_2d()[1]), r"keypoints_2d must have shape"),
    (dict(keypoints_2d=good_2d()[0], K=good_2d()[1], visibility=np.eye(2, 21)),
     r"visibility: hand 0 has 1 joints with positive weight, at least 2"),
    (dict(keypoints_2d=good_2d()[0], K=good_2d()[1], weights=np.ones((2, 21))),
     r"weights is for keypoints_3d"),
])
def test_fit_rejects_bad_input_naming_it(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(model, flat_hand_mean=True, **kwargs)


def test_fit_rejects_a_model_that_is_not_a_mano_model():
    with pytest.raises(TypeError, match="model must be a mano_jax.MANOModel"):
        fit_to_keypoints_3d({"v_template": None}, np.zeros((1, 21, 3)), flat_hand_mean=True)


def test_flat_hand_mean_is_required_and_boolean(model):
    with pytest.raises(TypeError, match="flat_hand_mean"):
        fit_to_keypoints_3d(model, np.zeros((1, 21, 3)))
    with pytest.raises(ValueError, match="flat_hand_mean must be True or False, got None"):
        fit_to_keypoints_3d(model, np.zeros((1, 21, 3)), flat_hand_mean=None)
