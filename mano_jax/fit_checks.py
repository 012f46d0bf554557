"""Validation of the fitting functions' inputs, at the public boundary (concrete NumPy values).

Each check raises ValueError (TypeError for the model) naming the argument at fault and, for a
batch, the first hand at fault; each returns the value as a NumPy array of the model's dtype.
"""
from __future__ import annotations

import numpy as np

from mano_jax import camera
from mano_jax.lbs import JOINT_KINDS, JOINT_ORDERS, tip_vertex_ids
from mano_jax.model import MANOModel

NUM_KEYPOINTS = 21


def check_model(model):
    """Raises TypeError unless `model` is a MANOModel."""
    if not isinstance(model, MANOModel):
        raise TypeError(f"model must be a mano_jax.MANOModel, got {type(model).__name__}")


def as_float_array(value, name, model):
    """`value` as a finite NumPy array of the model's float dtype."""
    try:
        array = np.asarray(value, dtype=np.asarray(model.v_template).dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array: {error}") from None
    if not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0]
        raise ValueError(f"{name} holds non-finite values (first at index {tuple(bad)})")
    return array


def check_weights(value, name, batch, model, minimum_visible=1):
    """(B, 21) non-negative joint weights with >= `minimum_visible` positive per hand (None: 1)."""
    dtype = np.asarray(model.v_template).dtype
    if value is None:
        return np.ones((batch, NUM_KEYPOINTS), dtype)
    weights = as_float_array(value, name, model)
    if weights.shape != (batch, NUM_KEYPOINTS):
        raise ValueError(f"{name} must have shape ({batch}, 21), got {weights.shape}")
    if np.any(weights < 0):
        raise ValueError(f"{name} must be non-negative, got min {weights.min()}")
    count = np.sum(weights > 0, axis=1)
    if np.any(count < minimum_visible):
        hand = int(np.argmax(count < minimum_visible))
        raise ValueError(f"{name}: hand {hand} has {int(count[hand])} joints with positive "
                         f"weight, at least {minimum_visible} needed")
    return weights


def check_intrinsics(K, batch, model):
    """(3, 3) or (B, 3, 3) pinhole intrinsics (mano_jax.camera.check_intrinsics) -> (B, 3, 3) of
    the model's float dtype."""
    K = camera.check_intrinsics(as_float_array(K, "K", model), batch=batch)
    return np.ascontiguousarray(np.broadcast_to(K, (batch, 3, 3)))


def check_options(model, flat_hand_mean, steps, learning_rate, joint_kind, tips, joint_order,
                  pose_prior_weight, shape_prior_weight):
    """The scalar options; returns the joint definition (tip vertex ids, joint_kind, order)."""
    if not isinstance(flat_hand_mean, (bool, np.bool_)):
        raise ValueError(f"flat_hand_mean must be True or False, got {flat_hand_mean!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 10:
        raise ValueError(f"steps must be an int >= 10, got {steps!r}")
    for name, value in (("learning_rate", learning_rate), ("pose_prior_weight", pose_prior_weight),
                        ("shape_prior_weight", shape_prior_weight)):
        if not np.isscalar(value) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if joint_kind not in JOINT_KINDS:
        raise ValueError(f"joint_kind must be one of {JOINT_KINDS}, got {joint_kind!r}")
    if joint_order not in JOINT_ORDERS:
        raise ValueError(f"joint_order must be one of {JOINT_ORDERS}, got {joint_order!r}")
    tip_ids = tip_vertex_ids(tips, model.side)
    if min(tip_ids) < 0 or max(tip_ids) >= model.num_vertices:
        raise ValueError(f"tips: fingertip ids {tip_ids} outside 0..{model.num_vertices - 1}")
    return dict(tips=tip_ids, joint_kind=joint_kind, joint_order=joint_order)
