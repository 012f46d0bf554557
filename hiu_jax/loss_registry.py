"""The loss-term registry and the `loss` config block: which terms exist, and how a config
selects and weights them. The terms themselves are in hiu_jax/losses.py.

    @register("my_term", flag="has_3d")          # a term: fn(outputs, batch, cfg) -> (B,)
    def my_term(outputs, batch, cfg): ...

    config.loss.terms.my_term = 10.0             # and one config line turns it on

`LOSS_KEYS` names every key of the block; the config files state every value (there are no
defaults here), and `validate_loss_config` rejects an unknown, missing or bad key with a message
naming it.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Callable, Tuple

import jax.numpy as jnp

from hiu_jax.config_blocks import check_keys

KEYPOINT_LOSSES = ("l1", "smooth_l1")
SILHOUETTE_LOSSES = ("l2", "bce")
POF_REGIONS = ("mesh", "magnitude")
RESERVED_NAMES = ("loss",)  # metric keys that a term may not take


# ----------------------------------------------------------------------------------------------
# The registry


@dataclasses.dataclass(frozen=True)
class Term:
    """A registered loss term: fn(outputs, batch, cfg) -> (B,); flags: names of the batch's 0/1
    availability fields multiplied together (() = self-supervised: every valid sample)."""

    name: str
    fn: Callable
    flags: Tuple[str, ...]


REGISTRY: dict = {}


def register(name: str, flag=None):
    """Decorator: registers `fn(outputs, batch, cfg) -> (B,)` as the loss term `name`.

    flag: None (self-supervised), a batch field name such as "has_3d", or a tuple of names whose
    product gates the term. Raises ValueError for a taken or reserved name.
    """
    if flag is None:
        flags = ()
    elif isinstance(flag, str):
        flags = (flag,)
    else:
        flags = tuple(flag)
        if not all(isinstance(f, str) for f in flags):
            raise ValueError(f"term {name!r}: flag must be None, a str or a tuple of str, "
                             f"got {flag!r}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"a term name must be a non-empty str, got {name!r}")
    if name in RESERVED_NAMES:
        raise ValueError(f"term name {name!r} is reserved for a metric")

    def decorator(fn):
        if name in REGISTRY:
            raise ValueError(f"loss term {name!r} is already registered (by "
                             f"{REGISTRY[name].fn.__module__}.{REGISTRY[name].fn.__qualname__})")
        REGISTRY[name] = Term(name, fn, flags)
        return fn

    return decorator


# ----------------------------------------------------------------------------------------------
# The config block

# Every key of the `loss` block and what it means. The values live in the config files only
# (configs/default.py states and explains each one); this library reads `cfg.key` and validates.
LOSS_KEYS = {
    "terms": "term name -> weight; 0 switches a term off (it is then not computed)",
    "stack_weights": "one weight per stack (heatmaps, mask, pof); () = 1 for every stack",
    "iteration_weights": "one weight per regressor iteration (keypoints_2d/3d); () = 1 for each",
    "keypoint_loss": f"one of {KEYPOINT_LOSSES}, for keypoints_2d and keypoints_consistency",
    "smooth_l1_beta": "smooth-L1 knee, crop-normalised units (> 0)",
    "mask_dice": "True: add a Dice loss to the mask term",
    "mask_dice_weight": "its weight inside the mask term",
    "silhouette_loss": f"one of {SILHOUETTE_LOSSES}",
    "silhouette_sigma": "soft rasteriser sigma, mask pixels^2 (> 0)",
    "softargmax_temperature": "T of softmax(H / T) over the heat-map pixels (> 0)",
    "keypoints_consistency_confidence": "weight joints by clip(max of their heat map, 0, 1)",
    "pof_consistency_region": f"one of {POF_REGIONS}",
    "pof_consistency_width": "half-width of the mesh's bone region, heat-map pixels (> 0)",
    "silhouette_size": "side of the rendered silhouette, px; 0 = the mask logits' side",
    "ramp_terms": "terms whose weight ramps in from ramp_start_step to ramp_end_step",
    "ramp_start_step": "the ramp's start (int >= 0): weight x clip((step - start) / (end - "
                       "start), 0, 1)",
    "ramp_end_step": "the ramp's end (int >= start); start = end = 0: full weight from step 0",
}


def level_weights(values, count: int, what: str, per: str) -> Tuple[float, ...]:
    weights = tuple(float(w) for w in values)
    if not weights:
        return (1.0,) * count
    if len(weights) != count:
        raise ValueError(f"loss config: {what} = {weights} has {len(weights)} entries, but the "
                         f"outputs have {count} {per}; give {count} weights or () for all 1")
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(f"loss config: {what} = {weights} must be finite and >= 0")
    return weights


def validate_loss_config(loss_cfg) -> dict:
    """Checks a loss block; returns {name: weight} of the active terms (weight != 0).

    Raises ValueError naming the bad field: an unknown or missing key, an unknown
    term (listing the registered names), a weight that is not a finite number >= 0, an unknown
    option of a switch.
    """
    check_keys(loss_cfg, LOSS_KEYS, "loss")
    active = {}
    for name, weight in loss_cfg.terms.items():
        if name not in REGISTRY:
            raise ValueError(f"loss config: unknown loss term {name!r}; registered terms: "
                             f"{sorted(REGISTRY)}")
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not (
                math.isfinite(weight) and weight >= 0):
            raise ValueError(f"loss config: terms.{name} = {weight!r} must be a finite number >= 0")
        if weight:
            active[name] = float(weight)
    for field, options in (("keypoint_loss", KEYPOINT_LOSSES),
                           ("silhouette_loss", SILHOUETTE_LOSSES),
                           ("pof_consistency_region", POF_REGIONS)):
        if loss_cfg[field] not in options:
            raise ValueError(f"loss config: {field} = {loss_cfg[field]!r} must be one of {options}")
    for field in ("smooth_l1_beta", "silhouette_sigma", "softargmax_temperature",
                  "pof_consistency_width"):
        if not (math.isfinite(loss_cfg[field]) and loss_cfg[field] > 0):
            raise ValueError(f"loss config: {field} = {loss_cfg[field]!r} must be finite and > 0")
    for name in loss_cfg.ramp_terms:
        if name not in REGISTRY:
            raise ValueError(f"loss config: ramp_terms names unknown term {name!r}; registered "
                             f"terms: {sorted(REGISTRY)}")
    start, end = loss_cfg.ramp_start_step, loss_cfg.ramp_end_step
    if not all(isinstance(r, numbers.Integral) and not isinstance(r, bool) and r >= 0
               for r in (start, end)) or end < start:
        raise ValueError(f"loss config: ramp_start_step = {start!r}, ramp_end_step = {end!r} "
                         "must be ints with 0 <= start <= end")
    return active


# Terms that compare the network's mesh vertices or MANO parameters with labels: they mean
# something only when the labels were made with the network's own hand model.
MANO_LABEL_TERMS = ("vertices", "mano_pose", "mano_betas")


def check_label_hand_model(loss_cfg, mano_labelled_sources, mano_path) -> None:
    """Refuses to train MANO_LABEL_TERMS on labels of the licensed MANO model with another hand.

    mano_labelled_sources: the names of the training sources whose vertex / MANO labels come
    from the licensed model (datasets.registry.MANO_LABELLED that the run mixes in); mano_path:
    config.model.mano_path ('' = the procedural hand, whose vertex i is another surface point and
    whose pose and shape spaces are its own). Raises ValueError naming the flag to set.
    """
    active = [t for t in MANO_LABEL_TERMS if t in loss_cfg.terms and loss_cfg.terms[t] > 0]
    sources = list(mano_labelled_sources)
    if mano_path or not active or not sources:
        return
    zero = " ".join(f"--config.loss.terms.{t}=0" for t in active)
    raise ValueError(
        f"the loss terms {', '.join(active)} compare the mesh and MANO parameters with labels of "
        f"{', '.join(sources)}, which were made with the licensed MANO model, but the network "
        f"uses the procedural hand (a different surface and parameter space): pass "
        f"--config.model.mano_path=/path/to/MANO_RIGHT.pkl, or switch those terms off with {zero}")


def ramp_factor(loss_cfg, step):
    """clip((step - start) / (end - start), 0, 1) for start, end = ramp_start_step,
    ramp_end_step; 1 when step is None or end == 0. step: a scalar (traced or not)."""
    start, end = int(loss_cfg.ramp_start_step), int(loss_cfg.ramp_end_step)
    if step is None or end == 0:
        return 1.0
    return jnp.clip((jnp.asarray(step, jnp.float32) - start) / max(end - start, 1), 0.0, 1.0)


