"""Micro training setups shared by tests/hiu_jax/test_training.py and tests/_multihost_child.py
(so that a child process rebuilds exactly the same network, state and batch).

XLA compilation dominates these tests (~20 s per train-step variant at full optimisation on
2 cores, even for this micro network: the MANO layer and the loss terms are most of the graph).
So the network is the tiny config cut to one stack, one regressor iteration and a few channels,
the initial state is drawn with NumPy instead of a jitted `model.init` (which alone compiles for
~17 s), and the steps are compiled with LLVM optimisation off (FAST_COMPILE): the same HLO
program, so the same arithmetic up to float32 rounding, compiled in about half the time.
"""
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from hiu_jax import training  # noqa: E402

# Per-compilation XLA options: `jitted.lower(...).compile(compiler_options=FAST_COMPILE)`.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

GLOBAL_BATCH = 8  # 2 images per device on 4 devices
SGD_LR = 0.01
SGD_MOMENTUM = 0.9


def micro_config():
    """configs/tiny.py with a one-stack, few-channel network and no silhouette term (the soft
    rasteriser is a per-sample term like the others, aggregated by the same code; it only adds
    compile time here). Its activation is GELU: the data-parallel tests compare gradients of
    two evaluations that differ by float32 rounding, and a ReLU network's gradient jumps where
    rounding moves a pre-activation across 0 (hiu_jax/models.py ACTIVATIONS)."""
    from configs import tiny

    config = tiny.get_config()
    m = config.model
    m.num_stacks = 1
    m.regressor_iterations = 1
    m.stem_channels = (4, 8)
    m.encoder_widths = (2, 4, 4, 8)
    m.decoder_width = 8
    m.feature_channels = (8, 8, 8, 8)
    m.regressor_hidden = (16, 16)
    m.activation = "gelu"
    config.loss.terms.silhouette = 0.0
    return config


class SmallNet(nn.Module):
    """Conv -> BatchNorm (statistics over `bn_axis_name`) -> ReLU -> heat-map and mask heads: the
    smallest network whose gradients depend on cross-device BatchNorm statistics, with the
    outputs of the "heatmaps" and "mask" loss terms (16 px for a 64 px crop). It compiles in
    about a second, where HIUNet's train step takes ~10 s: the two-process test uses it."""

    bn_axis_name: object = None

    @nn.compact
    def __call__(self, images, *, train):
        x = nn.Conv(8, (4, 4), strides=(4, 4), use_bias=False)(images * 2.0 - 1.0)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         axis_name=self.bn_axis_name)(x)
        x = nn.relu(x)
        return {"heatmaps": [nn.Conv(21, (1, 1), name="heat")(x)],
                "mask_logits": [nn.Conv(1, (3, 3), name="mask")(x)]}


def small_config():
    """micro_config() with only SmallNet's loss terms."""
    config = micro_config()
    for term in config.loss.terms.keys():
        config.loss.terms[term] = 0.0
    config.loss.terms.heatmaps, config.loss.terms.mask = 1000.0, 1.0
    return config


def sgd():
    """SGD with momentum: after the first step from zero momentum, the optimiser state's trace is
    exactly the gradient the step applied, and params_1 = params_0 - lr * grad."""
    return optax.sgd(SGD_LR, momentum=SGD_MOMENTUM)


def initial_state(model, config, tx, seed=0):
    """A TrainState with NumPy-drawn variables of the model's shapes (deterministic in `seed`):
    kernels ~ N(0, 1/fan_in) (the regressor's output layer 100x smaller, as its own init), norm
    scales ~ 1 + N(0, 0.1^2), biases and running means ~ N(0, 0.1^2), running variances in
    [1, 1.2]. Any finite values serve the equivalence tests; these keep every output O(1)."""
    shape = (1, config.crop_size, config.crop_size, 3)
    abstract = jax.eval_shape(lambda k: model.init(k, jnp.zeros(shape), train=False),
                              jax.random.key(0))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        names = [getattr(p, "key", str(p)) for p in path]
        s = leaf.shape
        if names[-1] == "kernel":
            w = rng.normal(0, 1, s) / np.sqrt(np.prod(s[:-1]))
            return w * (0.01 if "delta" in names else 1.0)
        if names[-1] == "scale":
            return 1 + rng.normal(0, 0.1, s)
        if names[-1] == "var":
            return 1 + rng.uniform(0, 0.2, s)
        return rng.normal(0, 0.1, s)  # biases, running means

    variables = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.asarray(draw(p, x), jnp.float32), abstract)
    params = variables["params"]
    return training.TrainState(
        step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables["batch_stats"],
        opt_state=tx.init(params), rng=jax.random.key_data(jax.random.key(seed + 1)),
        nonfinite_run=jnp.zeros((), jnp.int32), nonfinite_total=jnp.zeros((), jnp.int32),
        apply_fn=model.apply, tx=tx)


def global_batch(config, size=GLOBAL_BATCH):
    """A fixed global batch with the pipeline's keys (bench.model_stats.fake_batch, seed 0), as
    NumPy arrays of leading dimension `size`."""
    from bench.model_stats import fake_batch

    return {k: np.asarray(v) for k, v in fake_batch(config, size).items()}


def split_for_devices(batch, devices):
    """[B, ...] -> [devices, B / devices, ...] (the pipeline's per-host layout for pmap)."""
    return {k: v.reshape((devices, -1) + v.shape[1:]) for k, v in batch.items()}


def flat_leaves(tree):
    """{"path": np.ndarray} of a pytree (for saving and comparing)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in flat}
