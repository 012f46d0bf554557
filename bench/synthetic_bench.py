"""Images per second of the synthetic generator (render + background + JPEG + labels), and where
the time goes.

    python -m bench.synthetic_bench [--num 256] [--batch 32] [--size 224] [--no-stages]

Compilation and the once-per-process work (background bank, pose sampler) are excluded: a first
small run at the same batch size warms them. Prints the device, the CPU model and the cores this
process may use; the rate as wall-clock images/s and as images per CPU-second (the second does
not depend on what else the machine runs); then, unless --no-stages, CPU milliseconds per image
of each stage, run one stage after another (no overlap) on fresh samples.
"""
import argparse
import io
import os
import tempfile
import time

import jax
import numpy as np
from PIL import Image

import mano_jax
from bench.machine import cpu_model
from datasets import synthetic_generator
from datasets.synthetic_generator import generator


def stages(num, batch, size):
    """CPU ms per image of each stage of `generator._render_batch`, JPEG encoding and JSON."""
    scene = generator.Scene(mano_jax.procedural_model(), size)
    generator.STAGE_TIMING = True
    generator.STAGE_SECONDS.clear()
    jpeg = json_s = 0.0
    for first in range(0, num, batch):
        rngs = [np.random.default_rng([99, 0, i]) for i in range(first, first + batch)]
        rgb, mask, labels = generator._render_batch(scene, rngs, "freihand")
        t0 = time.process_time()
        for i in range(len(rgb)):
            Image.fromarray(rgb[i]).save(io.BytesIO(), format="JPEG", quality=92)
            Image.fromarray(mask[i].astype(np.uint8) * 255).save(io.BytesIO(), format="JPEG",
                                                                 quality=92)
        t1 = time.process_time()
        for name in generator.LABELS:
            generator.json_bytes(np.round(labels[name], 8))
        jpeg, json_s = jpeg + t1 - t0, json_s + time.process_time() - t1
    generator.STAGE_TIMING = False
    rows = dict(generator.STAGE_SECONDS)
    rows["JPEG encode (rgb + mask)"] = jpeg
    rows["JSON labels"] = json_s
    return {k: 1000 * v / num for k, v in rows.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=synthetic_generator.IMAGE_SIZE)
    parser.add_argument("--no-stages", action="store_true", help="skip the per-stage table")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"device: {jax.devices()[0].device_kind}; CPU: {cpu_model()}; cores: {cores}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synthetic_generator.generate(tmp + "/warm", args.batch, 0, image_size=args.size,
                           batch_size=args.batch, progress=False)
        print(f"warm-up (compile, background bank + {args.batch} images): "
              f"{time.perf_counter() - t0:.1f} s")
        t0, c0 = time.perf_counter(), time.process_time()
        synthetic_generator.generate(tmp + "/run", args.num, 0, seed=1, image_size=args.size,
                           batch_size=args.batch, progress=False)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    rate = args.num / seconds
    print(f"{args.num} images of {args.size}x{args.size} in {seconds:.1f} s: {rate:.1f} images/s "
          f"wall ({rate / cores:.1f} per core); {args.num / cpu:.1f} images per CPU-second "
          f"(x{cores} cores = {cores * args.num / cpu:.0f} images/s on idle cores); "
          f"target 200 images/s on 2 cores; load average {os.getloadavg()[0]:.1f}")
    if not args.no_stages:
        table = stages(args.num, args.batch, args.size)
        total = sum(table.values())
        print(f"\n{'stage (sequential)':28s} CPU ms/image")
        for name, ms in table.items():
            print(f"{name:28s} {ms:6.2f}  {100 * ms / total:4.1f} %")
        print(f"{'total':28s} {total:6.2f}")


if __name__ == "__main__":
    main()
