"""Parameters, FLOPs per image and forward / training-step timings of the HIU-DMTL configs.

    python -m bench.model_stats [--configs tiny,default,freihand] [--batch 8] [--half]

FLOPs come from XLA's cost analysis of the compiled forward pass at batch 1 (and of the training
step at --batch, divided by the batch). Timings are medians of several runs after compilation, on
the first device. The training step is the real one (train.py's loss and AdamW update).
"""
import argparse
import importlib
import os
import statistics
import time

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from hiu_jax import models, training  # noqa: E402
from hiu_jax.geometry.skeleton import NUM_BONES, NUM_KEYPOINTS, NUM_VERTICES  # noqa: E402




from bench.machine import cpu_model  # noqa: E402

def flops_of(compiled):
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def timed(fn, *args, repeats=5):
    out = fn(*args)
    jax.block_until_ready(out)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def fake_batch(config, batch):
    """A batch with the pipeline's keys and shapes (random labels; all flags on)."""
    n, hm = config.crop_size, config.model.heatmap_size
    rng = np.random.default_rng(0)
    f32, J = np.float32, NUM_KEYPOINTS
    b = {
        "image": rng.uniform(0, 1, (batch, n, n, 3)).astype(f32),
        "mask": (rng.uniform(0, 1, (batch, n, n, 1)) > 0.5).astype(f32),
        "heatmaps": rng.uniform(0, 1, (batch, hm, hm, J)).astype(f32),
        "keypoints_2d": rng.uniform(0, n, (batch, J, 2)).astype(f32),
        "keypoint_visibility": np.ones((batch, J), f32),
        "keypoints_3d": rng.normal(0, 0.05, (batch, J, 3)).astype(f32),
        "root_3d": np.tile([0, 0, 0.5], (batch, 1)).astype(f32),
        "vertices": rng.normal(0, 0.05, (batch, NUM_VERTICES, 3)).astype(f32),
        "K": np.tile(np.eye(3), (batch, 1, 1)).astype(f32),
        "pof": rng.normal(0, 1, (batch, hm, hm, 3 * NUM_BONES)).astype(f32),
        "pof_weight": np.ones((batch, hm, hm, NUM_BONES), f32),
        "mano_pose": rng.normal(0, 0.2, (batch, 48)).astype(f32),
        "mano_betas": rng.normal(0, 1, (batch, 10)).astype(f32),
        "mano_flat_hand_mean": np.zeros((batch,), f32),
        "valid": np.ones((batch,), f32),
    }
    for flag in ("has_intrinsics", "has_mask", "has_2d", "has_3d", "has_mesh", "has_mano",
                 "has_mano_trans", "has_scale", "has_bbox", "has_root_3d"):
        b[flag] = np.ones((batch,), f32)
    return {k: jnp.asarray(v) for k, v in b.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,default,freihand")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--half", action="store_true", help="bfloat16 computation")
    parser.add_argument("--no-train", action="store_true", help="skip the training-step timing")
    args = parser.parse_args()
    dev = jax.devices()[0]
    where = f"{dev.device_kind}" + (f" ({cpu_model()}, {len(os.sched_getaffinity(0))} cores)"
                                    if dev.platform == "cpu" else "")
    print(f"device: {where}; batch {args.batch}; {'bfloat16' if args.half else 'float32'}")
    print(f"{'config':10s} {'params':>10s} {'GFLOP/img':>10s} {'fwd ms/img':>11s} "
          f"{'train ms/img':>13s} {'compile s':>10s}")
    for name in args.configs.split(","):
        config = importlib.import_module(f"configs.{name}").get_config()
        model = models.build_model(config.model, half_precision=args.half)
        state = training.create_train_state(model, config, jax.random.key(0),
                                            (1, config.crop_size, config.crop_size, 3))
        params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        one = jnp.zeros((1, config.crop_size, config.crop_size, 3))
        fwd = jax.jit(lambda v, x: model.apply(v, x, train=False))
        gflop = flops_of(fwd.lower(variables, one).compile()) / 1e9
        images = jnp.zeros((args.batch, config.crop_size, config.crop_size, 3))
        fwd_ms = timed(fwd, variables, images) / args.batch * 1e3
        train_ms = compile_s = float("nan")
        if not args.no_train:
            step = jax.jit(lambda s, b: training.train_step(s, b, loss_cfg=config.loss,
                                                            mano_model=model.mano_model))
            batch = fake_batch(config, args.batch)
            t = time.perf_counter()
            compiled = step.lower(state, batch).compile()
            compile_s = time.perf_counter() - t
            train_ms = timed(compiled, state, batch, repeats=3) / args.batch * 1e3
        print(f"{name:10s} {params / 1e6:9.2f}M {gflop:10.2f} {fwd_ms:11.2f} {train_ms:13.2f} "
              f"{compile_s:10.1f}")


if __name__ == "__main__":
    main()
