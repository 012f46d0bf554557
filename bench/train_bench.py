"""Training-step throughput and model FLOPs utilisation (MFU) of the tiny and the full config.

    python -m bench.train_bench [--configs tiny,freihand] [--batch 32] [--half] [--peak-tflops X]

MFU = (XLA cost-analysis FLOPs of one compiled training step) x (steps per second) / peak FLOP/s.
The peak is the device's published dense figure for the precision (H100 SXM: 989 TFLOP/s bf16,
67 TFLOP/s fp32 without tensor cores), or --peak-tflops; on a CPU, where no single figure is
published, the peak is measured as the best of a few large float32 matmuls, and MFU is relative to
that. The step is train.py's (data parallel over every local device under pmap). The CPU
column is this process's CPU time (all threads) per wall second: 200% = two cores busy.

    python -m bench.train_bench --loop [--cpu-devices 1,2] [--loop-steps 150]

times the main job as it runs on a CPU: for each count of CPU devices (config.cpu_devices),
`train.py` with the default config on the synthetic set of data/ (generated on first use) for
--loop-steps steps, its images/s and CPU use from metrics.jsonl after the first third (compile
and warm-up), next to the step alone on a fixed batch (this script on the default config, in a
process with that many devices) and the input pipeline alone (batches drawn as fast as
tf.data makes them, no step).
"""
import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from hiu_jax import models, training  # noqa: E402
from bench.model_stats import cpu_model, fake_batch, flops_of  # noqa: E402

PEAK_TFLOPS = {  # dense, per device: (bf16, fp32)
    "H100": (989.0, 67.0), "H200": (989.0, 67.0), "A100": (312.0, 19.5),
    "TPU v4": (275.0, 275.0), "TPU v5": (459.0, 459.0),
}


def device_peak(kind: str, half: bool):
    for name, (bf16, fp32) in PEAK_TFLOPS.items():
        if name.lower() in kind.lower():
            return (bf16 if half else fp32) * 1e12, f"published {name}"
    return None, None


def measured_cpu_peak():
    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    best = min(_time(f, a) for _ in range(5))
    return 2 * n**3 / best, "measured 2048^2 float32 matmul"


def _time(f, *args):
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    return time.perf_counter() - t


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,freihand")
    parser.add_argument("--batch", type=int, default=0, help="global batch (default: 4/device)")
    parser.add_argument("--half", action="store_true", help="bfloat16 computation")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=0.0)
    parser.add_argument("--loop", action="store_true", help="time train.py's loop (see above)")
    parser.add_argument("--cpu-devices", default="1,2", help="--loop: device counts to time")
    parser.add_argument("--loop-steps", type=int, default=150, help="--loop: train.py steps")
    args = parser.parse_args()
    if args.loop:
        return loop_figures([int(n) for n in args.cpu_devices.split(",")], args.loop_steps)
    dev = jax.devices()[0]
    ndev = jax.local_device_count()
    batch = args.batch or 4 * ndev
    peak, how = ((args.peak_tflops * 1e12, "--peak-tflops") if args.peak_tflops
                 else device_peak(dev.device_kind, args.half))
    if peak is None:
        peak, how = measured_cpu_peak()
    where = dev.device_kind + (f" ({cpu_model()}, {len(os.sched_getaffinity(0))} cores)"
                               if dev.platform == "cpu" else "")
    print(f"device: {ndev} x {where}; global batch {batch}; "
          f"{'bfloat16' if args.half else 'float32'}; peak {peak / 1e12:.2f} TFLOP/s ({how})")
    print(f"{'config':10s} {'compile s':>10s} {'steps/s':>8s} {'img/s':>8s} {'TFLOP/step':>11s} "
          f"{'MFU':>7s} {'CPU':>6s}")
    for name in args.configs.split(","):
        config = importlib.import_module(f"configs.{name}").get_config()
        model = models.build_model(config.model, bn_axis_name=training.AXIS, half_precision=args.half)
        state = training.create_train_state(model, config, jax.random.key(0),
                                            (1, config.crop_size, config.crop_size, 3))
        host = {k: np.asarray(v) for k, v in fake_batch(config, batch).items()}
        local = {k: v.reshape((ndev, batch // ndev) + v.shape[1:]) for k, v in host.items()}
        step = training.pmap_step(config.loss, model.mano_model)
        dstate = training.replicate(state)
        t = time.perf_counter()
        lowered = step.lower(dstate, local)
        compiled = lowered.compile()
        compile_s = time.perf_counter() - t
        flops = flops_of(compiled) * ndev  # cost analysis is per device
        dstate, _ = step(dstate, local)
        jax.block_until_ready(dstate)
        t, cpu = time.perf_counter(), cpu_seconds()
        for _ in range(args.steps):
            dstate, metrics = step(dstate, local)
        jax.block_until_ready(dstate)
        per_step = (time.perf_counter() - t) / args.steps
        busy = (cpu_seconds() - cpu) / (per_step * args.steps)
        mfu = flops / per_step / (peak * ndev)
        print(f"{name:10s} {compile_s:10.1f} {1 / per_step:8.2f} {batch / per_step:8.1f} "
              f"{flops / 1e12:11.4f} {100 * mfu:6.1f}% {100 * busy:5.0f}%")


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads), seconds."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def with_devices(count: int) -> dict:
    """The environment of a child process with `count` JAX devices on the CPU."""
    return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={count}",
                TF_CPP_MIN_LOG_LEVEL="2")


def train_loop(count: int, steps: int) -> tuple:
    """(images/s, CPU %) of train.py with the default config on `count` CPU devices: means of
    metrics.jsonl's log rows after the first third of `steps`."""
    with tempfile.TemporaryDirectory() as workdir:
        cmd = [sys.executable, "train.py", "--workdir", workdir,
               f"--config.cpu_devices={count}", f"--config.num_train_steps={steps}",
               "--config.eval_every_steps=100000", "--config.checkpoint_every_steps=100000",
               "--config.image_every_steps=100000", "--config.data.eval_max_batches=1"]
        run = subprocess.run(cmd, env=with_devices(count), capture_output=True, text=True)
        if run.returncode:
            raise SystemExit(f"train.py failed ({run.returncode}): {run.stderr[-2000:]}")
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f]
    rows = [r for r in rows if "cpu_percent" in r and steps / 3 < r["step"] < steps]
    return (statistics.mean(r["images_per_second"] for r in rows),
            statistics.mean(r["cpu_percent"] for r in rows))


def pipeline_alone(batches: int = 60) -> tuple:
    """(images/s, CPU %) of the default config's training stream alone (no step)."""
    from configs import default
    from datasets import pipeline, registry

    config = default.get_config()
    settings = pipeline.settings_from_config(config.pipeline)
    it = pipeline.make_dataset(registry.build_from_config(config), "train", config=settings,
                               weights=settings.sources.weights, seed=config.seed,
                               global_batch_size=config.batch_size, train=True,
                               local_device_count=1, process_count=1, process_index=0)
    for _ in range(10):
        next(it)
    t, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(batches):
        next(it)
    wall = time.perf_counter() - t
    return batches * config.batch_size / wall, 100 * (cpu_seconds() - cpu) / wall


def loop_figures(counts, steps: int) -> None:
    print(f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores; default config, batch 16")
    rate, busy = pipeline_alone()
    print(f"input pipeline alone: {rate:7.1f} images/s, CPU {busy:4.0f}%", flush=True)
    for count in counts:
        step = subprocess.run([sys.executable, "-m", "bench.train_bench", "--configs", "default",
                               "--batch", "16", "--steps", "20"], check=True, text=True,
                              capture_output=True, env=with_devices(count)).stdout
        fields = step.strip().splitlines()[-1].split()
        print(f"{count} CPU device(s): step alone {float(fields[3]):7.1f} images/s, CPU "
              f"{fields[-1]:>5s}", flush=True)
        rate, busy = train_loop(count, steps)
        print(f"{count} CPU device(s): train.py    {rate:7.1f} images/s, CPU {busy:4.0f}%",
              flush=True)


if __name__ == "__main__":
    main()
