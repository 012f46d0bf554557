"""Tests for hiu_jax.training: data-parallel equivalence (pmap, device mesh, two processes),
non-finite steps, the weight-decay mask, the learning-rate schedules and gradient accumulation.

Four fake CPU devices (tests/conftest.py). The network is the micro variant of configs/tiny.py
(tests/_micro_training.py; GELU, so that its gradient is a continuous function of float32
rounding) with a NumPy-drawn initial state, and each step variant is compiled once per module
with LLVM optimisation off: compilation is almost all of this file's CPU time. The equivalence
tests run the same compiled steps on further batches, with partly labelled samples.

The optimiser of the equivalence tests is SGD with momentum 0.9: after one step from zero
momentum its trace is exactly the gradient the step applied (so gradients are compared without
changing train_step) and params_1 = params_0 - lr * grad.

Tolerances. A data-parallel step computes the same sums as the single-device step in another
order: per-device partial sums over 2 images and then a mean over the devices (pmap), or a
sharded reduction (mesh), instead of one sum over 8 images. The largest reductions have
n = 8 images x 32 x 32 pixels ~ 8k terms (the stem convolution's kernel gradient, BatchNorm's
first statistics); reordering a float32 sum of n terms moves it by ~sqrt(n) eps ~ 1e-5 of the
magnitudes summed (eps = 1.2e-7, rounding errors adding as a random walk), and backpropagation
carries such errors into every gradient entry at the scale of the largest cotangents. So a
gradient, parameter step or running statistic may differ by up to RTOL = 1e-5 of the largest
value of its kind (measured: 1e-6 of the largest gradient entry, 6e-8 of the largest running
statistic), and the loss, a weighted sum of a few means, by LOSS_RTOL = 1e-6 (measured 1e-7).
Wrong semantics are orders of magnitude larger: per-device BatchNorm statistics change the
gradients by ~1e-3 relative, a missing or doubled gradient average by a factor of 4
(jax-stack.md section 3).
"""
import functools
import os
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from hiu_jax import models, training
from tests import _micro_training as mt

DEVICES = 4
RTOL = 1e-5  # of the largest value of a kind; see the module docstring
LOSS_RTOL = 1e-6
RTOL_LEAF = 1e-4  # of a gradient leaf's own largest entry: see the partly labelled batches' test
TERM_RTOL = 1e-5  # a term's labelled mean, grad_norm (measured <= 1e-6)


def _host(tree):
    """A NumPy copy (device_put may alias a host array's buffer, and the steps donate theirs)."""
    return jax.tree.map(np.array, jax.device_get(tree))


def _kinds(state):
    """{kind: {path: array}} for the compared parts of a state: grad (the SGD trace), params,
    batch_stats."""
    grad = mt.flat_leaves(state.opt_state[0].trace)
    return {"grad": grad, "params": mt.flat_leaves(state.params),
            "batch_stats": mt.flat_leaves(state.batch_stats)}


def assert_states_close(got, want, rtol=RTOL):
    """Every gradient, parameter and running statistic of `got` within rtol x (the largest
    magnitude of its kind in `want`)."""
    got, want = _kinds(got), _kinds(want)
    for kind in want:
        assert got[kind].keys() == want[kind].keys()
        scale = max(float(np.max(np.abs(v))) for v in want[kind].values())
        worst = max(want[kind], key=lambda k: float(np.max(np.abs(got[kind][k] - want[kind][k]))))
        diff = float(np.max(np.abs(got[kind][worst] - want[kind][worst])))
        assert diff <= rtol * scale, (
            f"{kind} {worst}: max difference {diff:.3g} > {rtol:g} x {scale:.3g} "
            f"(relative {diff / scale:.3g})")


def _replica(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def _assert_replicas_identical(tree):
    """Every device holds bit-identical values (replicas must never drift apart)."""
    for path, leaf in mt.flat_leaves(tree).items():
        for i in range(1, leaf.shape[0]):
            assert np.array_equal(leaf[i], leaf[0], equal_nan=True), f"replica {i} differs: {path}"


@pytest.fixture(scope="module")
def micro():
    if jax.local_device_count() < DEVICES:
        pytest.skip(f"needs {DEVICES} devices (tests/conftest.py sets XLA_FLAGS)")
    config = mt.micro_config()
    model = models.build_model(config.model)
    state = _host(mt.initial_state(model, config, mt.sgd()))
    batch = mt.global_batch(config)
    return SimpleNamespace(config=config, model=model, state=state, batch=batch,
                           mano=model.mano_model,
                           pmap_model=model.clone(bn_axis_name=training.AXIS))


@pytest.fixture(scope="module")
def reference(micro):
    """One single-device jit step (BatchNorm axis None) on the whole global batch."""
    step = jax.jit(functools.partial(training.train_step, loss_cfg=micro.config.loss,
                                     mano_model=micro.mano))
    compiled = step.lower(micro.state, micro.batch).compile(mt.FAST_COMPILE)
    new_state, metrics = _host(compiled(micro.state, micro.batch))
    # The step did something: a finite, non-trivial update of every parameter.
    assert metrics["finite"] == 1 and np.isfinite(metrics["loss"]) and metrics["loss"] > 0
    grads = _kinds(new_state)["grad"]
    zero = [k for k, g in grads.items() if not np.any(g)]
    assert not zero, f"parameters without gradient: {zero}"
    return SimpleNamespace(compiled=compiled, state=new_state, metrics=metrics)


@pytest.fixture(scope="module")
def pmap_run(micro):
    """training.pmap_step (BatchNorm over the pmap axis) on the batch split [4, 2, ...]."""
    step = training.pmap_step(micro.config.loss, micro.mano)
    batch = mt.split_for_devices(micro.batch, DEVICES)

    def fresh(host_state):
        return training.replicate(host_state.replace(apply_fn=micro.pmap_model.apply))

    compiled = step.lower(fresh(micro.state), batch).compile(mt.FAST_COMPILE)
    new_state, metrics = _host(compiled(fresh(micro.state), batch))
    return SimpleNamespace(compiled=compiled, fresh=fresh, batch=batch, state=new_state,
                           metrics=metrics)


@pytest.fixture(scope="module")
def mesh_run(micro):
    """training.mesh_step over training.make_mesh(): the global batch sharded over 4 devices."""
    mesh = training.make_mesh()
    step = training.mesh_step(micro.config.loss, micro.mano, mesh)

    def fresh(host_state):
        return jax.device_put(host_state, NamedSharding(mesh, P()))

    def to_device(batch):
        return training.global_batch_from_local(mt.split_for_devices(batch, DEVICES), mesh)

    batch = to_device(micro.batch)
    compiled = step.lower(fresh(micro.state), batch).compile(mt.FAST_COMPILE)
    new_state, metrics = _host(compiled(fresh(micro.state), batch))
    return SimpleNamespace(compiled=compiled, fresh=fresh, to_device=to_device, state=new_state,
                           metrics=metrics, mesh=mesh)


def test_pmap_step_equals_single_device_step(micro, reference, pmap_run):
    assert mt.flat_leaves(pmap_run.state.params).keys() == mt.flat_leaves(micro.state.params).keys()
    _assert_replicas_identical(pmap_run.state)
    _assert_replicas_identical(pmap_run.metrics)
    assert int(pmap_run.state.step[0]) == 1
    np.testing.assert_allclose(pmap_run.metrics["loss"][0], reference.metrics["loss"],
                               rtol=LOSS_RTOL)
    assert_states_close(_replica(pmap_run.state, 0), reference.state)
    # params_1 = params_0 - lr * grad, with the gradient of the whole global batch.
    for path, p1 in mt.flat_leaves(_replica(pmap_run.state, 0).params).items():
        p0 = mt.flat_leaves(micro.state.params)[path]
        g = mt.flat_leaves(_replica(pmap_run.state, 0).opt_state[0].trace)[path]
        # two float32 roundings (lr * g, then the sum): 2 eps of the largest magnitude
        np.testing.assert_allclose(p1, p0 - np.float32(mt.SGD_LR) * g, rtol=0,
                                   atol=2.4e-7 * max(np.abs(p0).max(), np.abs(p1).max()),
                                   err_msg=path)


def test_mesh_step_equals_single_device_step(reference, mesh_run):
    assert int(mesh_run.state.step) == 1
    np.testing.assert_allclose(mesh_run.metrics["loss"], reference.metrics["loss"], rtol=LOSS_RTOL)
    assert_states_close(mesh_run.state, reference.state)


# Labels missing as in a mix of datasets, one pattern per batch: batch flag -> 1 where sample i of
# the global batch is labelled (samples 2d, 2d + 1 are device d's). A term's global count then
# differs from DEVICES x a device's count, and devices hold different shares of it.
PARTIAL_LABELS = (
    {},  # every sample labelled for everything (the synthetic hands)
    {"has_2d": [1, 1, 1, 1, 1, 1, 1, 0],
     "has_3d": [1, 1, 0, 0, 1, 1, 1, 1],  # device 1: no 3D labels
     "has_mesh": [1, 1, 0, 0, 0, 1, 1, 0],
     "has_mano": [0, 0, 0, 0, 0, 1, 0, 0],  # one MANO-labelled sample in the batch
     "has_mask": [0, 0, 1, 1, 1, 0, 1, 1]},  # device 0: no masks
    {"has_3d": [1, 0, 1, 0, 1, 1, 0, 0],
     "has_mesh": [0, 1, 0, 1, 0, 1, 0, 1],
     "has_mano": [0, 0, 0, 0, 0, 0, 0, 0],  # the MANO terms average over no sample
     "valid": [1, 1, 1, 1, 1, 1, 1, 0]},  # a padding sample
)


def partly_labelled_batch(config, pattern):
    """The module's global batch with new images and labels (drawn with seed `pattern`) and the
    flags of PARTIAL_LABELS[pattern]; in the partly labelled patterns ~30% of the keypoints are
    invisible and sample 3 has none visible."""
    rng = np.random.default_rng(pattern)
    batch = dict(mt.global_batch(config))
    f32 = np.float32
    for key, draw in (("image", lambda s: rng.uniform(0, 1, s)),
                      ("keypoints_2d", lambda s: rng.uniform(0, config.crop_size, s)),
                      ("keypoints_3d", lambda s: rng.normal(0, 0.05, s)),
                      ("mano_pose", lambda s: rng.normal(0, 0.2, s))):
        batch[key] = draw(batch[key].shape).astype(f32)
    for flag, values in PARTIAL_LABELS[pattern].items():
        batch[flag] = np.asarray(values, f32)
    if PARTIAL_LABELS[pattern]:
        visibility = (rng.uniform(size=batch["keypoint_visibility"].shape) < 0.7).astype(f32)
        visibility[3] = 0
        batch["keypoint_visibility"] = visibility
    return batch


def test_data_parallel_gradients_equal_single_device_on_partly_labelled_batches(
        micro, reference, pmap_run, mesh_run):
    """pmap_step and mesh_step on 4 devices vs one device, from the same state, on batches whose
    samples are labelled for different terms (a term's global count is not 4 x a device's, and
    the devices hold different shares of it): every term's count exactly, its mean, the loss and
    grad_norm to float32 rounding, and every leaf of the gradient (the SGD trace) within RTOL of
    the largest gradient entry (as the other equivalence tests) and within RTOL_LEAF of the
    leaf's own largest entry.

    RTOL_LEAF: a leaf's gradient is a sum over the ~8k pixels of 8 images, taken in another order
    (module docstring), so it moves by ~sqrt(8k) eps ~ 1e-5 of the magnitude of its summands,
    which exceeds the sum's where they cancel (a BatchNorm scale's or bias's gradient). Measured
    with these and 6 more batches: median 2.5e-6, 97% of the leaves <= 1e-5, at most 4.4e-5
    (BatchNorm scales) of the leaf's largest entry. Wrong semantics are far larger: a missing or
    doubled average is a factor 4; taking a term's global count as 4 x a device's (right only
    when every sample is labelled, so the tests above cannot see it) moves the camera term's
    mean by 0.375 on pattern 1. The micro network's activation is GELU: with ReLU a
    pre-activation within ~1e-6 of 0 can change sign between the two evaluations, and its unit's
    gradient jumps (~1e-3 of a convolution's gradient; hiu_jax/models.py ACTIVATIONS)."""
    for pattern in range(len(PARTIAL_LABELS)):
        batch = partly_labelled_batch(micro.config, pattern)
        want_state, want = _host(reference.compiled(micro.state, batch))
        p_state, p_metrics = _host(pmap_run.compiled(pmap_run.fresh(micro.state),
                                                     mt.split_for_devices(batch, DEVICES)))
        _assert_replicas_identical(p_state)
        m_state, m_metrics = _host(mesh_run.compiled(mesh_run.fresh(micro.state),
                                                     mesh_run.to_device(batch)))
        assert want["finite"] == 1
        if not any(PARTIAL_LABELS[pattern].get("has_mano", [1])):
            assert want["count/mano_pose"] == 0 and want["mano_pose"] == 0
        for name, state, metrics in (("pmap", _replica(p_state, 0), _replica(p_metrics, 0)),
                                     ("mesh", m_state, m_metrics)):
            where = f"{name}, pattern {pattern}"
            for key, value in want.items():
                if key.startswith("count/"):
                    assert metrics[key] == value, f"{where}: {key}"
                else:
                    np.testing.assert_allclose(metrics[key], value, rtol=TERM_RTOL, atol=0,
                                               err_msg=f"{where}: {key}")
            got, ref = _kinds(state)["grad"], _kinds(want_state)["grad"]
            scale = max(float(np.max(np.abs(g))) for g in ref.values())
            for path, g in ref.items():
                atol = min(RTOL * scale, RTOL_LEAF * float(np.max(np.abs(g))))
                np.testing.assert_allclose(got[path], g, rtol=0, atol=atol,
                                           err_msg=f"{where}: gradient {path}")


def _nan_images(batch, index):
    images = np.array(batch["image"])
    images[index] = np.nan
    return dict(batch, image=images)


def _assert_skipped(before, after, step):
    """A skipped step: params, opt_state and batch_stats bit-identical, counters advanced."""
    for part in ("params", "opt_state", "batch_stats"):
        b, a = mt.flat_leaves(getattr(before, part)), mt.flat_leaves(getattr(after, part))
        assert b.keys() == a.keys()
        for path in b:
            assert np.array_equal(a[path], b[path]), f"{part}{path} changed on a skipped step"
    assert int(after.step) == step
    assert int(after.nonfinite_run) == 1 and int(after.nonfinite_total) == 1


def test_pmap_nonfinite_batch_leaves_state_unchanged(pmap_run):
    """A NaN image on one device only: the gradient average spreads it to every device, so all
    replicas skip the update together (and stay identical)."""
    state1 = pmap_run.state  # after one finite step: non-zero momentum trace
    bad = dict(pmap_run.batch, image=np.array(pmap_run.batch["image"]))
    bad["image"][1, 0] = np.nan  # images [4, 2, ...]: device 1's first image
    state2, metrics = _host(pmap_run.compiled(pmap_run.fresh(_replica(state1, 0)), bad))
    _assert_replicas_identical(state2)
    assert np.all(metrics["finite"] == 0) and np.all(np.isnan(metrics["loss"]))
    for i in range(DEVICES):
        _assert_skipped(_replica(state1, 0), _replica(state2, i), step=2)
    # The next finite step updates again and ends the run of skipped steps (the total stays).
    state3, metrics = _host(pmap_run.compiled(pmap_run.fresh(_replica(state2, 0)),
                                              pmap_run.batch))
    assert np.all(metrics["finite"] == 1)
    s3 = _replica(state3, 0)
    assert int(s3.step) == 3 and int(s3.nonfinite_run) == 0 and int(s3.nonfinite_total) == 1
    changed = [k for k, v in mt.flat_leaves(s3.params).items()
               if not np.array_equal(v, mt.flat_leaves(state1.params)[k][0])]
    assert len(changed) == len(mt.flat_leaves(s3.params))


def test_mesh_nonfinite_batch_leaves_state_unchanged(micro, mesh_run):
    state1 = mesh_run.state
    state2, metrics = _host(mesh_run.compiled(mesh_run.fresh(state1),
                                              mesh_run.to_device(_nan_images(micro.batch, 5))))
    assert metrics["finite"] == 0 and np.isnan(metrics["loss"])
    _assert_skipped(state1, state2, step=2)


def test_weight_decay_mask_is_true_exactly_for_kernels(micro):
    params = micro.state.params
    mask = mt.flat_leaves(training.weight_decay_mask(params))
    leaves = mt.flat_leaves(params)
    assert mask.keys() == leaves.keys()
    kinds = {path.rsplit("[", 1)[-1].strip("]'") for path in leaves}
    assert kinds == {"kernel", "bias", "scale"}  # convs, dense layers, BatchNorm
    for path, m in mask.items():
        is_kernel = path.endswith("['kernel']")
        assert bool(m) is is_kernel, path
        assert is_kernel == (leaves[path].ndim >= 2), path  # kernels are the matrices/filters
    # And make_optimizer's AdamW decays exactly those: with zero gradients the first update is
    # -lr * wd * p on kernels (Adam's moments stay 0) and exactly 0 elsewhere. (SmallNet's few
    # parameters: the same mask function, a program that compiles in well under a second.)
    config = mt.small_config()
    config.warmup_steps = 0  # the first step at the full learning rate
    config.weight_decay = 0.1
    small = _host(mt.initial_state(mt.SmallNet(), config, mt.sgd())).params
    values = mt.flat_leaves(small)
    decayed = mt.flat_leaves(training.weight_decay_mask(small))
    assert sum(map(bool, decayed.values())) == 3 and len(decayed) == 7  # 3 convs; 2 biases, BN
    tx = training.make_optimizer(config)
    zeros = jax.tree.map(np.zeros_like, small)
    updates = mt.flat_leaves(jax.jit(tx.update)(zeros, tx.init(small), small)[0])
    for path, u in updates.items():
        want = -config.learning_rate * config.weight_decay * values[path] if decayed[path] else 0
        np.testing.assert_allclose(u, want, rtol=1e-6, atol=0, err_msg=path)


def _schedule_config(kind):
    from configs import tiny

    config = tiny.get_config()
    config.learning_rate = 1e-3
    config.num_train_steps = 110
    config.warmup_steps = 10
    config.lr_schedule = kind
    config.lr_decay_fractions = (50 / 110, 80 / 110)
    config.lr_decay_factor = 0.1
    return config


@pytest.mark.parametrize("kind, expected", [
    # linear warmup 0 -> 1e-3 over 10 steps, then 1e-3 * (1 + cos(pi * (t - 10) / 100)) / 2
    ("cosine", {0: 0.0, 5: 5e-4, 10: 1e-3, 35: 1e-3 * (1 + np.cos(np.pi / 4)) / 2, 60: 5e-4,
                85: 1e-3 * (1 + np.cos(3 * np.pi / 4)) / 2, 110: 0.0}),
    # the same warmup, then x0.1 at step 50 and again at step 80
    ("step", {0: 0.0, 5: 5e-4, 10: 1e-3, 49: 1e-3, 50: 1e-4, 79: 1e-4, 80: 1e-5, 109: 1e-5}),
])
def test_learning_rate_schedule_values(kind, expected):
    schedule = training.learning_rate_schedule(_schedule_config(kind))
    for step, want in expected.items():
        # float32 arithmetic of a few operations: ~1e-7 relative; cos(pi/2) etc. to 1e-10 abs
        np.testing.assert_allclose(float(schedule(step)), want, rtol=1e-6, atol=1e-10,
                                   err_msg=f"{kind} schedule at step {step}")


def test_learning_rate_schedule_rejects_bad_settings():
    config = _schedule_config("cosine")
    config.warmup_steps = 110
    with pytest.raises(ValueError, match="warmup_steps"):
        training.learning_rate_schedule(config)
    config = _schedule_config("linear")
    with pytest.raises(ValueError, match="lr_schedule"):
        training.learning_rate_schedule(config)


class _LinearHeads(nn.Module):
    """Heat maps and mask logits as single convolutions of the image. Without BatchNorm the loss
    of a batch is a mean of per-image values, so the mean gradient of two half batches equals the
    full batch's gradient (up to float32 rounding)."""

    @nn.compact
    def __call__(self, images, *, train):
        del train
        self.variable("batch_stats", "unused", lambda: jnp.zeros((1,)))  # train_step's collection
        heat = nn.Conv(21, (4, 4), strides=(4, 4), name="heat")(images)  # 64 -> 16 px
        mask = nn.Conv(1, (3, 3), name="mask")(images)
        return {"heatmaps": [heat], "mask_logits": [mask]}


def test_grad_accumulation_equals_one_full_batch_step(micro):
    """make_optimizer with grad_accum_steps=2 (optax.MultiSteps around clip + AdamW): two
    half-batch steps apply one update with the averaged gradient, the update a single step on
    the full batch applies."""
    def config_for(accum):
        config = mt.micro_config()
        for term in config.loss.terms.keys():
            config.loss.terms[term] = 0.0
        config.loss.terms.heatmaps, config.loss.terms.mask = 1000.0, 1.0
        config.warmup_steps, config.grad_accum_steps = 0, accum
        return config

    model = _LinearHeads()
    shape = (1, 64, 64, 3)
    batch = {k: jnp.asarray(v) for k, v in micro.batch.items()}
    half1, half2 = ({k: v[s] for k, v in batch.items()} for s in (slice(0, 4), slice(4, 8)))
    results = {}
    for accum in (1, 2):
        config = config_for(accum)
        state = training.create_train_state(model, config, jax.random.key(3), shape)
        step = jax.jit(functools.partial(training.train_step, loss_cfg=config.loss,
                                         mano_model=micro.mano))
        step = step.lower(state, half1 if accum == 2 else batch).compile(mt.FAST_COMPILE)
        if accum == 1:
            results[accum] = _host(step(state, batch))
        else:
            s1, _ = _host(step(state, half1))
            # The first micro-step only accumulates.
            for path, p in mt.flat_leaves(s1.params).items():
                assert np.array_equal(p, mt.flat_leaves(_host(state.params))[path]), path
            results[accum] = _host(step(s1, half2))
    (full, _), (acc, _) = results[1], results[2]
    assert int(acc.opt_state.gradient_step) == 1 and int(acc.step) == 2 and int(full.step) == 1
    # The inner AdamW state after its one update: first and second moments of the clipped mean
    # gradient, (1 - b1) g and (1 - b2) g^2, equal to the full batch's up to the float32
    # rounding of sums over 4 or 8 images x 16 x 16 pixels (RTOL of the largest entry, as in the
    # module docstring).
    adam_acc = acc.opt_state.inner_opt_state[1][0]  # chain(clip, adamw): adamw's scale_by_adam
    adam_full = full.opt_state[1][0]
    for name in ("mu", "nu"):
        got = mt.flat_leaves(getattr(adam_acc, name))
        want = mt.flat_leaves(getattr(adam_full, name))
        scale = max(float(np.max(np.abs(w))) for w in want.values())
        assert scale > 0
        for path in want:
            np.testing.assert_allclose(got[path], want[path], rtol=0, atol=RTOL * scale,
                                       err_msg=f"{name}{path}")
    # Adam's first update is lr * g / (|g| + eps) (+ decay), insensitive to the gradients'
    # rounding: the same parameters to float32 rounding, and they did move.
    initial = mt.flat_leaves(_host(state.params))  # both runs' (same model, same key)
    for path, p in mt.flat_leaves(full.params).items():
        assert not np.array_equal(p, initial[path]), path
        np.testing.assert_allclose(mt.flat_leaves(acc.params)[path], p, rtol=1e-6, atol=1e-9,
                                   err_msg=path)


# ----------------------------------------------------------------------------------------------
# Two processes (jax.distributed on localhost, gloo CPU collectives) vs one.

CHILD = os.path.join(mt.REPO, "tests", "_multihost_child.py")
CHILD_TIMEOUT_S = 300


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def small_pmap_run():
    """SmallNet's pmap_step in this process (4 devices): the two-process test's reference."""
    config = mt.small_config()
    model = mt.SmallNet(bn_axis_name=training.AXIS)
    state = _host(mt.initial_state(model, config, mt.sgd()))
    batch = mt.split_for_devices(mt.global_batch(config), DEVICES)
    step = training.pmap_step(config.loss, None)
    new_state, metrics = _host(step(training.replicate(state), batch))
    _assert_replicas_identical(new_state)
    assert np.all(metrics["finite"] == 1)
    return SimpleNamespace(state=_replica(new_state, 0), loss=metrics["loss"][0])


def test_two_processes_train_one_step_like_one_process(small_pmap_run, tmp_path):
    """2 processes x 2 CPU devices, each feeding its half of the global batch to pmap_step (the
    BatchNorm statistics, gradient mean and loss counts span both processes), reach the state
    one process with 4 devices reaches, with identical replicas everywhere."""
    port = _free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    outs = [str(tmp_path / f"process{i}.npz") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, CHILD, str(i), str(port), outs[i]], cwd=mt.REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    try:
        # A failed process leaves the other waiting in a collective: stop at the first failure.
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        logs = [p.communicate() for p in procs]
    for i, (p, (out, err)) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, (f"process {i} exited with {p.returncode} (-9: killed at the "
                                   f"{CHILD_TIMEOUT_S} s limit or after the other failed)\n"
                                   f"stdout:\n{out[-2000:]}\nstderr:\n{err[-5000:]}")
    results = [dict(np.load(o)) for o in outs]
    # Every replica of both processes bit-identical (replicas must never drift apart).
    first = {k[len("replica0"):]: v for k, v in results[0].items() if k.startswith("replica0")}
    for i, r in enumerate(results):
        for rep in range(2):
            for path, value in first.items():
                assert np.array_equal(r[f"replica{rep}{path}"], value, equal_nan=True), (
                    f"process {i} replica {rep} differs at {path}")
        np.testing.assert_array_equal(r["loss"], results[0]["loss"])
    # The one-process step, to float32 rounding (the all-reduces sum in another order).
    np.testing.assert_allclose(results[0]["loss"][0], small_pmap_run.loss, rtol=LOSS_RTOL)
    local = mt.flat_leaves(small_pmap_run.state)
    assert first.keys() == local.keys()
    for kind in ("params", "batch_stats", "opt_state"):
        keys = [k for k in local if k.startswith(f".{kind}")]
        scale = max(float(np.max(np.abs(local[k]))) for k in keys)
        assert scale > 0
        for k in keys:
            np.testing.assert_allclose(first[k], local[k], rtol=0, atol=RTOL * scale, err_msg=k)
    for k in (".step", ".nonfinite_run", ".nonfinite_total"):
        np.testing.assert_array_equal(first[k], local[k])
