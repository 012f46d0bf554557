"""Per-term gradients of a batch on one device vs data-parallel (issue 17).

Which loss term, and which parameters, turn the float32 summation-order differences of pmap and
mesh (over fake CPU devices) into a visible gradient difference:

    python -m bench.dp_grad_terms --batches 0,1,2,3 [--activation gelu]

Reads the training stream of configs/tiny.py (the synthetic hands, generated on first use) as
train.py does, and differentiates every active loss term separately at the
initial parameters (the state train.py reaches after step 1 with --config.learning_rate=1e-9:
the warmup's first learning rate is 0, so the parameters have not moved). Prints, per batch,
||g_dp - g_1|| / ||g_1|| for each term (whole gradient and the worst parameter group) and for the
training loss (ramped weights at step 1, as train.py). Before that, the activation units whose
input changes sign between the two evaluations ("flips": ReLU's derivative jumps there), found
from the outputs of the ConvBN / Bottleneck blocks and the regressor's hidden layers (with GELU a
sign change is harmless: its derivative is continuous). Fake CPU devices: DP_DEVICES (default 4).

Measured (2 CPU cores, 4 fake devices, batches 0-3): ReLU, batch 0 has 2 of 1.04M units that
flip (the last ConvBN of stack1's heat-map and POF decoders), and the gradient of the training
loss differs by 7.6e-3 (pmap and mesh alike; pmap vs mesh 7e-7), every term reading those units
by 4e-4 to 8e-3, the mask and POF terms (which do not) by 5e-6; batches 1-3 have no flip and
differ by 1.0e-5 to 1.2e-5. GELU: 0 to 2 sign changes, every batch 7e-6 to 1e-5, every term
<= 7e-5 (heatmap_keypoints: its soft-argmax divides the heat maps by 0.04).
"""
from __future__ import annotations

import argparse
import functools
import os

DEVICES = int(os.environ.get("DP_DEVICES", "4"))
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={DEVICES}")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from hiu_jax import losses, models, training  # noqa: E402
from hiu_jax.loss_registry import validate_loss_config  # noqa: E402


def single_term_config(loss_cfg, name):
    """The loss block with every weight but `name`'s set to 0 and no ramp (full weight)."""
    cfg = loss_cfg.copy_and_resolve_references()
    for other in cfg.terms.keys():
        if other != name:
            cfg.terms[other] = 0.0
    cfg.ramp_terms = ()
    return cfg


def term_losses(params, batch_stats, batch, *, model, loss_cfg, names, axis_name, step):
    """(T + 1,) the loss of each term alone (weighted, full weight), then the training loss."""
    outputs, _ = model.apply({"params": params, "batch_stats": batch_stats}, batch["image"],
                             train=True, mutable=["batch_stats"],
                             rngs={"dropout": jax.random.key(0)})
    values = [losses.total_loss(outputs, batch, single_term_config(loss_cfg, n),
                                mano_model=model.mano_model, axis_name=axis_name)[0]
              for n in names]
    values.append(losses.total_loss(outputs, batch, loss_cfg, mano_model=model.mano_model,
                                    axis_name=axis_name, step=step)[0])
    return jnp.stack(values)


def group_of(path):
    """A parameter path's group: its first two module names (stack0/heatmaps_decoder, ...)."""
    names = [getattr(p, "key", str(p)) for p in path]
    return "/".join(names[:2])


def activated(module, method_name):
    """capture_intermediates filter: the blocks whose output is an activation's output."""
    del method_name
    if isinstance(module, models.ConvBN):
        return module.relu
    return isinstance(module, models.Bottleneck) or (
        isinstance(module, nn.Dense) and module.name.startswith("fc"))


def activation_inputs(model, params, batch_stats, images):
    """{module path: array} of every activation's output (ReLU: 0 where its input was <= 0),
    the regressor's hidden layers as their Dense outputs (the activation's inputs)."""
    _, state = model.apply({"params": params, "batch_stats": batch_stats}, images, train=True,
                           mutable=["batch_stats", "intermediates"],
                           capture_intermediates=activated)
    return state["intermediates"]


def sign_flips(a, b):
    """{path: count} of the units whose activation input is > 0 in one evaluation and not in
    the other (a, b: activation_inputs of the same images, leading axis B)."""
    fa, fb = (dict((jax.tree_util.keystr(p), np.asarray(x)) for p, x in
                   jax.tree_util.tree_flatten_with_path(t)[0]) for t in (a, b))
    counts = {k: int(np.sum((fa[k] > 0) != (fb[k] > 0))) for k in fa}
    return {k.replace("['__call__'][0]", ""): c for k, c in counts.items() if c}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="0,1,2,3", help="stream indices (step - 1)")
    parser.add_argument("--synthetic-dir", help="config.data.synthetic_dir (default: tiny's)")
    parser.add_argument("--tfds-dir", help="config.pipeline.data_dir (default: tiny's)")
    parser.add_argument("--groups", type=int, default=3, help="worst groups shown per term")
    parser.add_argument("--activation", default="relu", choices=tuple(models.ACTIVATIONS))
    args = parser.parse_args()
    from configs import tiny
    from datasets import pipeline, registry

    config = tiny.get_config()
    config.batch_size = 8
    config.model.activation = args.activation
    if args.synthetic_dir:
        config.data.synthetic_dir = args.synthetic_dir
    if args.tfds_dir:
        config.pipeline.data_dir = args.tfds_dir
    settings = pipeline.settings_from_config(config.pipeline)
    stream = pipeline.make_dataset(registry.build_from_config(config), "train",
                                   weights=settings.sources.weights, config=settings,
                                   global_batch_size=config.batch_size, train=True,
                                   seed=config.seed, local_device_count=1)
    wanted = sorted(int(b) for b in args.batches.split(","))
    batches = {}
    for i in range(max(wanted) + 1):
        b = next(stream)
        if i in wanted:
            batches[i] = {k: np.asarray(v).reshape((-1,) + np.shape(v)[2:]) for k, v in b.items()}

    model = models.build_model(config.model)
    state = training.create_train_state(model, config, jax.random.key(config.seed),
                                        (1, config.crop_size, config.crop_size, 3))
    names = list(validate_loss_config(config.loss))
    step = jnp.ones((), jnp.int32)  # train.py's second step (index 1): ramp weights as there
    d = jax.device_count()
    fn = lambda m, ax: jax.jacrev(lambda p, s, b: term_losses(  # noqa: E731
        p, s, b, model=m, loss_cfg=config.loss, names=names, axis_name=ax, step=step))

    one = jax.jit(fn(model, None))
    pmodel = model.clone(bn_axis_name=training.AXIS)
    pmapped = jax.pmap(lambda p, s, b: jax.lax.pmean(fn(pmodel, training.AXIS)(p, s, b),
                                                     training.AXIS),
                       axis_name=training.AXIS)
    mesh = training.make_mesh()
    meshed = jax.jit(fn(model, None), in_shardings=(NamedSharding(mesh, P()),) * 2
                     + (NamedSharding(mesh, P("data")),), out_shardings=NamedSharding(mesh, P()))
    rep = training.replicate((state.params, state.batch_stats))
    probe_one = jax.jit(functools.partial(activation_inputs, model))
    probe_pmap = jax.pmap(functools.partial(activation_inputs, pmodel), axis_name=training.AXIS)

    def flat(tree):
        leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
        return [(group_of(p), np.asarray(x, np.float64)) for p, x in leaves]

    print(f"{d} devices; terms: {', '.join(names)}")
    for i in wanted:
        gb = batches[i]
        flags = {k: int(gb[k].sum()) for k in ("has_2d", "has_3d", "has_mesh", "has_mano",
                                               "has_mask", "valid")}
        g1 = flat(one(state.params, state.batch_stats, gb))
        split = {k: v.reshape((d, -1) + v.shape[1:]) for k, v in gb.items()}
        gp = flat(jax.tree.map(lambda x: x[0], pmapped(*rep, split)))
        gm = flat(meshed(state.params, state.batch_stats, gb))
        print(f"\nbatch {i} (train.py step {i + 1}); flags {flags}, visible joints "
              f"{int(gb['keypoint_visibility'].sum())}/{gb['keypoint_visibility'].size}")
        a1 = probe_one(state.params, state.batch_stats, gb["image"])
        a4 = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]),
                          probe_pmap(*rep, split["image"]))
        flips = sign_flips(a1, a4)
        units = sum(x.size for x in jax.tree.leaves(a1))
        print(f"  activation inputs that change sign, 1 device vs pmap: {sum(flips.values())} "
              f"of {units}" + "".join(f"\n    {k}: {c}" for k, c in flips.items()))
        print(f"  {'term':20s} {'|g_1|':>10s} {'rel pmap':>9s} {'rel mesh':>9s} {'rel p-m':>9s}"
              "   worst groups (pmap, relative to the group's |g_1|)")
        for t, name in enumerate(names + ["TRAIN LOSS (step 1)"]):
            a = [(g, x[t]) for g, x in g1]
            n1 = np.sqrt(sum(np.sum(x * x) for _, x in a))
            diff = lambda other: np.sqrt(sum(np.sum((x[t] - y) ** 2) for (_, x), (_, y)  # noqa
                                             in zip(other, a)))
            groups = {}
            for (g, y), (_, x) in zip(a, gp):
                e, n = groups.get(g, (0.0, 0.0))
                groups[g] = (e + np.sum((x[t] - y) ** 2), n + np.sum(y * y))
            worst = sorted(groups.items(), key=lambda kv: -np.sqrt(kv[1][0] / max(kv[1][1], 1e-30)))
            shown = ", ".join(f"{g} {np.sqrt(e / max(n, 1e-30)):.1e}"
                              for g, (e, n) in worst[:args.groups])
            rel_pm = np.sqrt(sum(np.sum((x[t] - y[t]) ** 2) for (_, x), (_, y) in zip(gp, gm)))
            print(f"  {name:20s} {n1:10.4g} {diff(gp) / max(n1, 1e-30):9.1e} "
                  f"{diff(gm) / max(n1, 1e-30):9.1e} {rel_pm / max(n1, 1e-30):9.1e}   {shown}")


if __name__ == "__main__":
    main()
