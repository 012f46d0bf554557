"""Validation of the fitting functions' inputs, at the public boundary (concrete NumPy values).

Each check raises ValueError (TypeError for the model) naming the argument at fault and, for a
batch, the first hand at fault; each returns the value as a NumPy array of the model's dtype.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from hiu_jax.geometry import projection
from hiu_jax.geometry.skeleton import NUM_KEYPOINTS
from mano_jax.lbs import JOINT_KINDS, JOINT_ORDERS, tip_vertex_ids
from mano_jax.model import MANOModel



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
    """(3, 3) or (B, 3, 3) pinhole intrinsics (hiu_jax.geometry.projection.check_intrinsics) -> (B, 3, 3) of
    the model's float dtype."""
    K = projection.check_intrinsics(as_float_array(K, "K", model), batch=batch)
    return np.ascontiguousarray(np.broadcast_to(K, (batch, 3, 3)))


def check_targets(model, value, name: str, dims: int, unit: str):
    """(B, 21, dims) finite targets in `unit`, B >= 1 -> (the array of the model's dtype, B)."""
    check_model(model)
    targets = as_float_array(value, name, model)
    if targets.ndim != 3 or targets.shape[1:] != (NUM_KEYPOINTS, dims):
        raise ValueError(f"{name} must have shape (B, 21, {dims}) ({unit}), got {targets.shape}")
    if targets.shape[0] < 1:
        raise ValueError(f"{name} holds no hands (B = 0)")
    return targets, targets.shape[0]


def check_settings(model, flat_hand_mean, settings):
    """flat_hand_mean and a `mano_fit.FitSettings`; returns the joint definition (tip vertex
    ids, joint_kind, joint_order)."""
    if not isinstance(flat_hand_mean, (bool, np.bool_)):
        raise ValueError(f"flat_hand_mean must be True or False, got {flat_hand_mean!r}")
    if not (dataclasses.is_dataclass(settings) and type(settings).__name__ == "FitSettings"):
        raise ValueError(f"settings must be a mano_fit.FitSettings, got {type(settings).__name__}")
    steps = settings.steps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 10:
        raise ValueError(f"settings.steps must be an int >= 10, got {steps!r}")
    for name in ("learning_rate", "pose_prior_weight", "shape_prior_weight"):
        value = getattr(settings, name)
        if not np.isscalar(value) or not np.isfinite(value) or value < 0:
            raise ValueError(f"settings.{name} must be a finite number >= 0, got {value!r}")
    if not settings.learning_rate > 0:
        raise ValueError(f"settings.learning_rate must be > 0, got {settings.learning_rate!r}")
    if settings.joint_kind not in JOINT_KINDS:
        raise ValueError(f"settings.joint_kind must be one of {JOINT_KINDS}, got "
                         f"{settings.joint_kind!r}")
    if settings.joint_order not in JOINT_ORDERS:
        raise ValueError(f"settings.joint_order must be one of {JOINT_ORDERS}, got "
                         f"{settings.joint_order!r}")
    tip_ids = tip_vertex_ids(settings.tips, model.side)
    if min(tip_ids) < 0 or max(tip_ids) >= model.num_vertices:
        raise ValueError(f"settings.tips: fingertip ids {tip_ids} outside 0..{model.num_vertices - 1}")
    return dict(tips=tip_ids, joint_kind=settings.joint_kind, joint_order=settings.joint_order)
