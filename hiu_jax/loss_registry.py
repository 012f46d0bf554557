"""The loss-term registry and the `loss` config block: which terms exist, and how a config
selects and weights them. The terms themselves are in hiu_jax/losses.py.

    @register("my_term", flag="has_3d")          # a term: fn(outputs, batch, cfg) -> (B,)
    def my_term(outputs, batch, cfg): ...

    config.loss.terms.my_term = 10.0             # and one config line turns it on

`loss_config()` is the one definition of the block's keys and defaults; config files state their
values as data, `resolve_loss_config` fills what a block leaves out, `validate_loss_config`
rejects anything unknown with a message naming it.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Callable, Tuple

import jax.numpy as jnp
import ml_collections

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


def registered_terms() -> dict:
    """name -> Term of every registered term (a copy)."""
    return dict(REGISTRY)


# ----------------------------------------------------------------------------------------------
# The config block


def loss_config() -> ml_collections.ConfigDict:
    """The library's `loss` block: every key it may hold, with its default (term weights, level
    weights, switches and constants). Config files state their own values (configs/default.py);
    resolve_loss_config fills what a block leaves out and validates it."""
    c = ml_collections.ConfigDict()
    # Term name -> weight; 0 switches a term off (it is then not computed).
    c.terms = ml_collections.ConfigDict(dict(
        heatmaps=1000.0,  # MSE of peak-1 Gaussians, per stack (HAMR's heat-map weight)
        heatmap_keypoints=0.0,  # soft-argmax of each stack's heat maps vs the 2D labels
        mask=1.0,  # binary cross-entropy on logits (+ Dice if mask_dice), per stack
        pof=1.0,  # squared error of the POF vectors on the bones' regions, per stack
        joints_2d=10.0,  # per regressor iteration; crop px / crop size
        joints_3d=100.0,  # per regressor iteration; L1, metres
        camera=10.0,  # per iteration; squared error to the labels' weak-perspective fit
        vertices=100.0,  # L1, metres
        mano_pose=1.0,  # mean over 16 joints of |R_pred - R|_F^2 (rotation matrices)
        global_rotation=0.0,  # |R_pred - R|_F^2 of the global rotation alone
        mano_betas=0.1,  # squared error of the 10 shape coefficients
        shape_prior=1e-3,  # ||betas||^2
        pose_prior=1e-4,  # ||finger pose deviation from hands_mean||^2 (radians^2)
        silhouette=1.0,  # self-supervised: rendered mesh vs predicted mask
        joints_consistency=10.0,  # self-supervised: projected mesh joints vs heat-map joints
        pof_consistency=0.1,  # self-supervised: mesh bone directions vs predicted POF
    ))
    c.stack_weights = ()  # one weight per stack (heatmaps, mask, pof); () = 1 for every stack
    c.iteration_weights = ()  # one per regressor iteration (joints_2d/3d); () = 1 for each
    c.keypoint_loss = "smooth_l1"  # "l1" | "smooth_l1", for joints_2d and joints_consistency
    c.smooth_l1_beta = 0.01  # smooth-L1 knee, in crop-normalised units (2.56 px at 256)
    c.mask_dice = False  # add a Dice loss to the mask term
    c.mask_dice_weight = 1.0  # its weight inside the mask term
    c.silhouette_loss = "l2"  # "l2" (squared difference) | "bce" (cross-entropy - target entropy)
    c.silhouette_sigma = 1.0  # soft rasteriser sigma, mask pixels^2 (edge ~ sqrt(sigma) px)
    # Soft-argmax: softmax(H / T) over the pixels. With peak-1 Gaussian heat maps of sigma s, the
    # weights near the peak are a Gaussian of std s sqrt(T), and the background's mass relative to
    # the peak's is about M^2 exp(-1/T) / (2 pi s^2 T): 6e-8 for T = 0.04, M = 64, s = 2.
    c.softargmax_temperature = 0.04
    c.joints_consistency_confidence = True  # weight joints by clip(max of their heat map, 0, 1)
    c.pof_consistency_region = "mesh"  # "mesh": 2D bone region of the mesh joints; "magnitude"
    c.pof_consistency_width = 1.0  # half-width of that region, heat-map pixels (pipeline pof_width)
    c.silhouette_size = 0  # side of the rendered silhouette, px; 0 = the mask logits' side
    # Self-supervised terms whose targets come from untrained heads are ramped in: their weight is
    # multiplied by clip((step - start) / (end - start), 0, 1), ramp_steps = (start, end);
    # (0, 0) = full weight from the first step.
    c.ramp_terms = ("silhouette", "joints_consistency", "pof_consistency")
    c.ramp_steps = (0, 0)
    return c


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


def resolve_loss_config(block) -> ml_collections.ConfigDict:
    """A loss block (ConfigDict or mapping) with loss_config()'s default for every option it
    leaves out, validated (validate_loss_config). Its `terms` are taken as they are: a term it
    does not name is off."""
    resolved = loss_config()
    given = dict(block.items())
    if "terms" not in given:
        raise ValueError("loss config has no 'terms' block (name -> weight); see loss_config()")
    _check_loss_keys(given)
    resolved.terms = ml_collections.ConfigDict(dict(given.pop("terms").items()))
    resolved.update(given)
    validate_loss_config(resolved)
    return resolved


def _check_loss_keys(loss_cfg) -> None:
    valid = tuple(loss_config().keys())
    for key in loss_cfg.keys():
        if key not in valid:
            raise ValueError(f"loss config: unknown key {key!r}; valid keys: {', '.join(valid)}")


def validate_loss_config(loss_cfg) -> dict:
    """Checks a loss block; returns {name: weight} of the active terms (weight != 0).

    Raises ValueError naming the bad field: an unknown key (listing the valid ones), an unknown
    term (listing the registered names), a weight that is not a finite number >= 0, an unknown
    option of a switch.
    """
    if "terms" not in loss_cfg:
        raise ValueError("loss config has no 'terms' block (name -> weight); see loss_config()")
    _check_loss_keys(loss_cfg)
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
        if field in loss_cfg and loss_cfg[field] not in options:
            raise ValueError(f"loss config: {field} = {loss_cfg[field]!r} must be one of {options}")
    for field in ("smooth_l1_beta", "silhouette_sigma", "softargmax_temperature",
                  "pof_consistency_width"):
        if field in loss_cfg and not (math.isfinite(loss_cfg[field]) and loss_cfg[field] > 0):
            raise ValueError(f"loss config: {field} = {loss_cfg[field]!r} must be finite and > 0")
    for name in loss_cfg.get("ramp_terms", ()):
        if name not in REGISTRY:
            raise ValueError(f"loss config: ramp_terms names unknown term {name!r}; registered "
                             f"terms: {sorted(REGISTRY)}")
    ramp = tuple(loss_cfg.get("ramp_steps", (0, 0)))
    if len(ramp) != 2 or not all(isinstance(r, numbers.Integral) and r >= 0 for r in ramp) or \
            ramp[1] < ramp[0]:
        raise ValueError(f"loss config: ramp_steps = {ramp!r} must be two ints 0 <= start <= end")
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
    active = [t for t in MANO_LABEL_TERMS if float(loss_cfg.terms.get(t, 0.0) or 0.0) > 0]
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
    """clip((step - start) / (end - start), 0, 1) for ramp_steps = (start, end); 1 when step is
    None or end == 0. step: a scalar (traced or not)."""
    start, end = (int(r) for r in loss_cfg.get("ramp_steps", (0, 0)))
    if step is None or end == 0:
        return 1.0
    return jnp.clip((jnp.asarray(step, jnp.float32) - start) / max(end - start, 1), 0.0, 1.0)


