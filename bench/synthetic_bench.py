"""Images per second of the synthetic generator (render + background + JPEG + labels).

    python bench/synthetic_bench.py [--num 256] [--batch 32] [--size 224]

Compilation is excluded: a first small run at the same batch size warms the jitted forward pass
and renderer. Prints the device, the CPU model and the cores this process may use.
"""
import argparse
import os
import tempfile
import time

import jax

from bench.machine import cpu_model
from datasets import synthetic

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=synthetic.IMAGE_SIZE)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"device: {jax.devices()[0].device_kind}; CPU: {cpu_model()}; cores: {cores}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synthetic.generate(tmp + "/warm", args.batch, 0, image_size=args.size,
                           batch_size=args.batch, progress=False)
        print(f"warm-up (compile + {args.batch} images): {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        synthetic.generate(tmp + "/run", args.num, 0, seed=1, image_size=args.size,
                           batch_size=args.batch, progress=False)
        seconds = time.perf_counter() - t0
    rate = args.num / seconds
    print(f"{args.num} images of {args.size}x{args.size} in {seconds:.1f} s: {rate:.1f} images/s "
          f"({rate / cores:.1f} per core); target 200 images/s on 2 cores")


if __name__ == "__main__":
    main()
