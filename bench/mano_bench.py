"""Speed of the mano_jax forward pass, and of forward+backward, against smplx.MANO when present.

Prints hands per second (median of several timed calls after warm-up, each ended with
block_until_ready / a finished backward) for the full forward pass (778 vertices, 21 joints,
16 FK joints) and for the gradient of sum(vertices^2) with respect to pose, betas and trans, at
batch 1, 32, 1024 and 8192 (forward also at 65536 on a GPU), float32, axis-angle pose
(48 values), flat_hand_mean=True. Prints figures only; nothing is asserted.

    python -m bench.mano_bench                     # the procedural model
    python -m bench.mano_bench --model MANO_RIGHT.pkl --repeats 9
    python -m bench.mano_bench --stages            # also where the time goes, stage by stage

The smplx comparison (smplx.MANO(use_pca=False, flat_hand_mean=True, batch_size=B), built from
the same model written to a temporary chumpy-free .pkl) runs when torch and smplx import. They
are not project dependencies; for a CPU-only comparison install them with
    pip install torch --index-url https://download.pytorch.org/whl/cpu   # or a local CPU wheel
    pip install --no-deps smplx                                          # needs numpy + torch only
Both sides compute the same thing: mano_jax with joint_kind="fk" (smplx's joints are the FK
joints; mano_jax also gathers the 5 fingertips), vertices identical to float32 rounding.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import mano_jax  # noqa: E402
from mano_jax import lbs  # noqa: E402
from mano_jax.lbs import forward  # noqa: E402

BATCHES = (1, 32, 1024, 8192)
GPU_FORWARD_BATCHES = (65536,)




from bench.machine import cpu_model, usable_cores  # noqa: E402



def median_seconds(fn, repeats: int, budget_s: float) -> tuple[float, float]:
    """(median, fastest) wall time of fn() (which must block until done) over `repeats` calls
    after 2 warm-up calls; fewer repeats (at least 3) when a call is slow, to stay near
    budget_s. On a machine shared with other jobs the fastest call is the steadier figure."""
    fn()
    start = time.perf_counter()
    fn()
    one = time.perf_counter() - start
    n = max(3, min(repeats, int(budget_s / max(one, 1e-9))))
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def random_inputs(batch: int, num_betas: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pose = (0.4 * rng.standard_normal((batch, 48))).astype(np.float32)
    betas = rng.standard_normal((batch, num_betas)).astype(np.float32)
    trans = (0.1 * rng.standard_normal((batch, 3))).astype(np.float32)
    return pose, betas, trans


# ---------------------------------------------------------------------------------------------
# mano_jax


def jax_functions():
    """Jitted forward and forward+backward; the model is an argument, not a baked-in constant."""

    def run(model, pose, betas, trans):
        out = forward(model, pose, betas, trans, flat_hand_mean=True, joint_kind="fk")
        return out.vertices, out.joints, out.skeleton

    def loss(pose, betas, trans, model):
        vertices = forward(model, pose, betas, trans, flat_hand_mean=True,
                           joint_kind="fk").vertices
        return jnp.sum(jnp.square(vertices))

    grad = jax.grad(loss, argnums=(0, 1, 2))
    return jax.jit(run), jax.jit(lambda model, p, b, t: grad(p, b, t, model))


def time_jax(fn, model, inputs, repeats, budget_s):
    """(compile seconds, (median, fastest) seconds per call) of a jitted fn at these shapes."""
    args = (model,) + tuple(jax.device_put(x) for x in inputs)
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - start
    seconds = median_seconds(lambda: jax.block_until_ready(compiled(*args)), repeats, budget_s)
    return compile_s, seconds


def jax_stages(model, inputs):
    """{stage: (function of (model, *arrays), arrays)}: the steps of `forward` (joint_kind="fk"),
    each on the previous steps' outputs, so that each can be timed alone."""
    pose, betas, trans = (jnp.asarray(x) for x in inputs)
    rot = lbs.pose_to_rotations(model, pose, flat_hand_mean=True, pose_space="axis_angle")
    mesh = lbs.blended_mesh(model, betas, rot)
    joints = lbs.rest_joints(model, betas)
    _, skeleton, transforms = lbs.forward_kinematics(model.parents, rot, joints)
    posed = lbs.skin(model.weights_t, transforms, mesh, trans)
    tips = lbs.tip_vertex_ids("freihand", model.side)

    def output(model, posed, skeleton, trans):
        joints = jnp.concatenate([skeleton + trans[:, None], lbs._take(posed, tips, -2)], -2)
        return lbs._take(joints, lbs.MANO_TO_OPENPOSE, -2)

    return {
        "rotations": (lambda m, p: lbs.pose_to_rotations(m, p, flat_hand_mean=True,
                                                         pose_space="axis_angle"), (pose,)),
        "blend (1 matmul)": (lbs.blended_mesh, (betas, rot)),
        "rest joints": (lbs.rest_joints, (betas,)),
        "kinematics": (lambda m, r, j: lbs.forward_kinematics(m.parents, r, j)[1:], (rot, joints)),
        "skinning, trans": (lambda m, t, x, o: lbs.skin(m.weights_t, t, x, o),
                            (transforms, mesh, trans)),
        "joints": (output, (posed, skeleton, trans)),
    }


def print_stages(model, batch, repeats, budget_s):
    """Fastest ms per call of each stage alone, forward and forward+backward (the vjp of every
    output with a ones cotangent, gradients for every array input), and their sum."""
    def with_backward(fn):
        def run(model, *xs):
            out, vjp = jax.vjp(lambda *a: fn(model, *a), *xs)
            return vjp(jax.tree.map(jnp.ones_like, out))
        return run

    total = [0.0, 0.0]
    for name, (fn, xs) in jax_stages(model, random_inputs(batch, model.num_betas)).items():
        times = []
        for f in (fn, with_backward(fn)):
            compiled = jax.jit(f).lower(model, *xs).compile()
            times.append(median_seconds(lambda: jax.block_until_ready(compiled(model, *xs)),
                                        repeats, budget_s)[1])
        total = [a + b for a, b in zip(total, times)]
        print(f"{batch:>6} {name:<18} {times[0] * 1e3:>10.3f} {times[1] * 1e3:>10.3f}")
    print(f"{batch:>6} {'sum of stages':<18} {total[0] * 1e3:>10.3f} {total[1] * 1e3:>10.3f}",
          flush=True)


# ---------------------------------------------------------------------------------------------
# smplx


def load_smplx():
    """(torch, smplx) modules, or (None, reason) when they do not import."""
    try:
        import torch
        import smplx
    except Exception as error:  # ImportError, or a broken install
        return None, f"{type(error).__name__}: {error}"
    return torch, smplx


def smplx_layer(smplx, model_path, batch, side, device):
    layer = smplx.MANO(model_path, is_rhand=(side == "right"), use_pca=False,
                       flat_hand_mean=True, batch_size=batch)
    return layer.to(device)


def time_torch(torch, layer, inputs, backward, repeats, budget_s, device):
    pose, betas, trans = (torch.from_numpy(x).to(device) for x in inputs)
    if backward:
        pose, betas, trans = (x.requires_grad_(True) for x in (pose, betas, trans))

    def call():
        if backward:
            for x in (pose, betas, trans):
                x.grad = None
            out = layer(betas=betas, global_orient=pose[:, :3], hand_pose=pose[:, 3:],
                        transl=trans)
            out.vertices.square().sum().backward()
        else:
            with torch.no_grad():
                out = layer(betas=betas, global_orient=pose[:, :3], hand_pose=pose[:, 3:],
                            transl=trans)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return median_seconds(call, repeats, budget_s)


def check_parity(torch, layer, jax_forward, model, inputs, device):
    """Max |vertex difference| between smplx and mano_jax for the same inputs, metres."""
    pose, betas, trans = inputs
    with torch.no_grad():
        out = layer(betas=torch.from_numpy(betas).to(device),
                    global_orient=torch.from_numpy(pose[:, :3]).to(device),
                    hand_pose=torch.from_numpy(pose[:, 3:]).to(device),
                    transl=torch.from_numpy(trans).to(device))
    ours = jax_forward(model, pose, betas, trans)[0]
    return float(np.abs(out.vertices.cpu().numpy() - np.asarray(ours)).max())


def ms(median: float, best: float) -> str:
    return f"{median * 1e3:.3f} ({best * 1e3:.3f})"


# ---------------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a MANO .pkl/.npz (default: the procedural hand)")
    parser.add_argument("--side", choices=("right", "left"), default=None,
                        help="side of --model when its name does not say")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per figure (median)")
    parser.add_argument("--budget", type=float, default=5.0,
                        help="seconds per figure, fewer repeats (>= 3) for slow calls")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)),
                        help="comma-separated batch sizes")
    parser.add_argument("--no-smplx", action="store_true", help="skip the smplx comparison")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads for smplx (default: the usable cores, which "
                             "is the size of XLA's CPU thread pool, so both use equal threads)")
    parser.add_argument("--stages", action="store_true",
                        help="also print the fastest ms of each mano_jax stage alone")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]

    if args.model:
        model = mano_jax.load_model(args.model, side=args.side)
        model_name = args.model
    else:
        model = mano_jax.procedural_model(args.side or "right")
        model_name = f"procedural {model.side} hand"
    device = jax.devices()[0]
    on_gpu = device.platform == "gpu"
    text = f"device: {device.device_kind} ({device.platform})"
    if device.platform == "cpu":
        text += (f", cpu: {cpu_model()}, {usable_cores()} cores (XLA's CPU thread pool has one "
                 "thread per usable core)")
    print(f"{text}; jax {jax.__version__}, float32 ({jnp.zeros(()).dtype}), model: {model_name}")

    fwd, fwd_bwd = jax_functions()
    torch = smplx = reason = None
    if args.no_smplx:
        reason = "--no-smplx"
    else:
        torch, smplx = load_smplx()
        if torch is None:
            reason, smplx = smplx, None
    tmp = None
    if torch is not None:
        torch_device = torch.device("cuda" if on_gpu and torch.cuda.is_available() else "cpu")
        threads = args.torch_threads or (usable_cores() if torch_device.type == "cpu" else None)
        if threads:
            torch.set_num_threads(threads)
        tmp = tempfile.TemporaryDirectory()
        model_path = os.path.join(tmp.name, f"MANO_{model.side.upper()}.pkl")
        mano_jax.save_pkl(model, model_path)
        print(f"smplx {getattr(smplx, '__version__', '')}".rstrip() + f" with torch "
              f"{torch.__version__} on {torch_device} ({torch.get_num_threads()} threads)")
        layer = smplx_layer(smplx, model_path, 4, model.side, torch_device)
        parity = check_parity(torch, layer, fwd, model, random_inputs(4, model.num_betas),
                              torch_device)
        print(f"parity: max |vertex difference| smplx vs mano_jax = {parity:.2e} m")
    else:
        print(f"smplx comparison skipped: {reason}. To run it: pip install torch (CPU build) "
              "and pip install --no-deps smplx")

    print("hands/s from the median call; ms: median (fastest) per call")
    print(f"{'batch':>6} {'pass':<8} {'jax hands/s':>12} {'jax ms':>19} {'compile s':>9}"
          + (f" {'smplx hands/s':>14} {'smplx ms':>19} {'jax/smplx':>9}" if torch else ""))
    plan = [(b, name, fn) for b in batches for name, fn in (("forward", fwd),
                                                            ("fwd+bwd", fwd_bwd))]
    if on_gpu:
        plan += [(b, "forward", fwd) for b in GPU_FORWARD_BATCHES]
    for batch, name, fn in plan:
        inputs = random_inputs(batch, model.num_betas, seed=batch)
        compile_s, (seconds, best) = time_jax(fn, model, inputs, args.repeats, args.budget)
        line = (f"{batch:>6} {name:<8} {batch / seconds:>12.0f} {ms(seconds, best):>19} "
                f"{compile_s:>9.2f}")
        if torch is not None:
            layer = smplx_layer(smplx, model_path, batch, model.side, torch_device)
            t_seconds, t_best = time_torch(torch, layer, inputs, name == "fwd+bwd",
                                           args.repeats, args.budget, torch_device)
            line += (f" {batch / t_seconds:>14.0f} {ms(t_seconds, t_best):>19} "
                     f"{t_seconds / seconds:>8.2f}x")
        print(line, flush=True)
    if tmp is not None:
        tmp.cleanup()
    if args.stages:
        print("mano_jax stages, fastest ms per call: forward, forward+backward")
        for batch in batches:
            print_stages(model, batch, args.repeats, args.budget / 4)


if __name__ == "__main__":
    main()
