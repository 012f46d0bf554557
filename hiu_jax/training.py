"""Training: the state, the optimiser, one pure per-device train step, and its parallel wrappers.

The step is written once (`train_step`, with an optional axis name). `pmap_step` runs it under
`jax.pmap` with gradients and BatchNorm statistics averaged over the named axis (the default);
`mesh_step` runs the same function under `jax.jit` over a `NamedSharding` device mesh, where the
batch is one global array and BatchNorm statistics are global without a collective.

A non-finite loss or gradient never reaches the parameters: the update is replaced by the old
state (step still advances) and counted; `TrainState.nonfinite_run` is the current run of such
steps, which the caller uses to stop with a clear message.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import NamedSharding, PartitionSpec as P

from hiu_jax import losses


class TrainState(struct.PyTreeNode):
    """Everything a checkpoint must hold to resume exactly.

    step: int32, steps taken (skipped non-finite steps included).
    params, batch_stats: the model variables (float32).
    opt_state: the optimiser state.
    rng: uint32 key data (2,), the base of every step's dropout key.
    nonfinite_run: int32, consecutive steps skipped for a non-finite loss or gradient.
    nonfinite_total: int32, all skipped steps.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array
    nonfinite_run: jax.Array
    nonfinite_total: jax.Array
    apply_fn: Callable = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)


def learning_rate_schedule(config) -> optax.Schedule:
    """Linear warmup to config.learning_rate, then cosine decay to 0 or step decay.

    config.lr_schedule: "cosine" or "step" (multiply by config.lr_decay_factor at each step
    round(f * num_train_steps) of f in config.lr_decay_fractions, each in (0, 1)).
    """
    total, warmup = int(config.num_train_steps), int(config.warmup_steps)
    if warmup < 0 or warmup >= total:
        raise ValueError(f"warmup_steps must be in [0, num_train_steps), got {warmup} of {total}")
    if config.lr_schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, warmup, total, 0.0)
    if config.lr_schedule == "step":
        fractions = tuple(config.lr_decay_fractions)
        if not all(isinstance(f, (int, float)) and 0 < f < 1 for f in fractions):
            raise ValueError(f"lr_decay_fractions = {fractions!r} must be fractions of the run "
                             "in (0, 1)")
        warm = optax.linear_schedule(0.0, config.learning_rate, max(warmup, 1))
        boundaries = {int(round(f * total)) - warmup: config.lr_decay_factor for f in fractions}
        decay = optax.piecewise_constant_schedule(config.learning_rate, boundaries)
        return optax.join_schedules([warm, decay], [warmup])
    raise ValueError(f"lr_schedule must be 'cosine' or 'step', got {config.lr_schedule!r}")


def weight_decay_mask(params):
    """True for convolution and dense kernels; False for biases and normalisation parameters."""
    flat = flax.traverse_util.flatten_dict(params)
    return flax.traverse_util.unflatten_dict({k: k[-1] == "kernel" for k in flat})


def make_optimizer(config) -> optax.GradientTransformation:
    """AdamW with warmup + decay, global-norm clipping, decay masked off norms and biases, and
    gradient accumulation over config.grad_accum_steps micro-batches."""
    tx = optax.chain(
        optax.clip_by_global_norm(config.grad_clip_norm),
        optax.adamw(learning_rate_schedule(config), b1=0.9, b2=0.999,
                    weight_decay=config.weight_decay, mask=weight_decay_mask),
    )
    if config.grad_accum_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=int(config.grad_accum_steps))
    return tx


def create_train_state(model, config, rng, input_shape) -> TrainState:
    """Initialises the model (jitted) and the optimiser. input_shape: (B, H, W, 3)."""
    init_rng, state_rng = jax.random.split(rng)

    @jax.jit
    def init(key):
        return model.init(key, jnp.zeros(input_shape, jnp.float32), train=False)

    variables = init(init_rng)
    tx = make_optimizer(config)
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=variables["params"],
        batch_stats=variables["batch_stats"], opt_state=tx.init(variables["params"]),
        rng=jax.random.key_data(state_rng), nonfinite_run=jnp.zeros((), jnp.int32),
        nonfinite_total=jnp.zeros((), jnp.int32), apply_fn=model.apply, tx=tx)


def train_step(state: TrainState, batch, *, loss_cfg, mano_model, axis_name=None):
    """One optimisation step on one device's batch (leading axis B). Pure.

    Under pmap (axis_name set) the loss is this device's share of the global loss (see
    losses.total_loss), so the mean of the per-device gradients is the global gradient, and
    BatchNorm averages its statistics over the axis inside the model.
    Returns (new_state, metrics), metrics global (equal on every device).
    """
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    if axis_name is not None:
        key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))

    def loss_fn(params):
        outputs, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats}, batch["image"], train=True,
            mutable=["batch_stats"], rngs={"dropout": key})
        loss, metrics = losses.total_loss(outputs, batch, loss_cfg, mano_model=mano_model,
                                          axis_name=axis_name, step=state.step)
        return loss, (metrics, updates["batch_stats"])

    (_, (metrics, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    if axis_name is not None:
        grads = jax.lax.pmean(grads, axis_name)
    # One finite check on the global norm: it is non-finite iff some gradient is (or its squares
    # overflow float32, which is no usable step either). A per-leaf check compiles ~5x slower.
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(optax.tree.norm(grads))
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    keep = functools.partial(jax.tree.map, lambda new, old: jnp.where(finite, new, old))
    new_state = state.replace(
        step=state.step + 1, params=keep(params, state.params),
        opt_state=keep(opt_state, state.opt_state),
        batch_stats=keep(batch_stats, state.batch_stats),
        nonfinite_run=jnp.where(finite, 0, state.nonfinite_run + 1),
        nonfinite_total=state.nonfinite_total + (~finite).astype(jnp.int32))
    metrics = dict(metrics, grad_norm=optax.tree.norm(grads), finite=finite.astype(jnp.float32))
    return new_state, metrics


# ----------------------------------------------------------------------------------------------
# Parallel wrappers.

AXIS = "batch"


def replicate(tree):
    """Copies a pytree onto every local device as [D, ...] arrays, sharded exactly as pmap's
    outputs are (a mesh over the local devices with axis AXIS). flax's jax_utils.replicate uses
    another axis name, which makes the second call of a pmapped step compile again."""
    devices = jax.local_devices()
    sharding = NamedSharding(jax.sharding.Mesh(np.asarray(devices), (AXIS,)), P(AXIS))
    n = len(devices)
    return jax.tree.map(
        lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), sharding), tree)


def pmap_step(loss_cfg, mano_model):
    """train_step under jax.pmap over the local devices; state replicated, batch [D, B, ...]."""
    step = functools.partial(train_step, loss_cfg=loss_cfg, mano_model=mano_model, axis_name=AXIS)
    return jax.pmap(step, axis_name=AXIS, donate_argnums=(0,))


def make_mesh():
    """A 1-D mesh over every device of every host, axis "data" (Auto axis type: XLA chooses
    the shardings of the intermediates; the batch's and the state's are given)."""
    return jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))


def mesh_step(loss_cfg, mano_model, mesh):
    """train_step under jax.jit with the batch sharded over `mesh` and the state replicated."""
    step = functools.partial(train_step, loss_cfg=loss_cfg, mano_model=mano_model, axis_name=None)
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(step, in_shardings=(replicated, sharded), out_shardings=(replicated, replicated),
                   donate_argnums=(0,))


def global_batch_from_local(batch, mesh):
    """A host-local batch [D_local, B, ...] -> global jax.Arrays sharded over the mesh's "data"."""
    sharding = NamedSharding(mesh, P("data"))

    def one(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, x.reshape((-1,) + x.shape[2:]))

    return jax.tree.map(one, batch)
