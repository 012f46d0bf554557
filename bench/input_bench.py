"""Throughput of the tf.data input pipeline (datasets/pipeline.py, preprocess.py): images/s
through decode + crop + augmentation + targets + batching, total and per CPU core, on the
main job's data (synthetic 224x224 hands from datasets.synthetic_generator, built with the
synthetic_hands builder) and with a config file's pipeline settings (default: the main job's,
configs/default.py). Prints figures only.

    python -m bench.input_bench [--images 512] [--batch 32] [--batches 40] [--stages]
        [--config configs/default.py]

Both backends are timed: config.xla=False (TF graph, ImageProjectiveTransformV3) and True
(one XLA program per image size). Besides wall-clock images/s per usable core, it prints
images per CPU-second of this process, which stays meaningful when other processes compete
for the cores.

--stages also times cumulative variants of the per-example work (read only, + decode,
+ warp, eval preprocess, train preprocess), to show which step dominates.
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402

import tensorflow as tf  # noqa: E402
import tensorflow.experimental.numpy as tnp  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from bench.machine import cpu_model  # noqa: E402
from datasets import pipeline, preprocess, registry, synthetic_generator  # noqa: E402
from hiu_jax import runs  # noqa: E402
from hiu_jax.geometry import warps  # noqa: E402

def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads), seconds."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_batches(it, warmup: int, batches: int, batch_size: int):
    """(images per wall second, images per CPU second of this process) over `batches` batches
    of an iterator, after `warmup` batches. The second figure is the throughput per fully
    used core, independent of other processes competing for the cores."""
    for _ in range(warmup):
        next(it)
    t0, c0 = time.perf_counter(), cpu_seconds()
    for _ in range(batches):
        next(it)
    n = batches * batch_size
    return n / (time.perf_counter() - t0), n / (cpu_seconds() - c0)


def stage_datasets(builder, knobs, batch: int):
    """Cumulative variants of the per-example work as batched tf.data datasets (repeat,
    parallel map, batch, prefetch; no shuffle), name -> dataset."""
    ds = builder.as_dataset(split="train", decoders={
        "image": tfds.decode.SkipDecoding(), "mask": tfds.decode.SkipDecoding()})
    ds = ds.map(lambda ex: {k: ex[k] for k in preprocess.INPUT_KEYS}).cache().repeat()

    def decode(ex):
        return {"image": tf.io.decode_image(ex["image"], 3, expand_animations=False),
                "mask": tf.io.decode_image(ex["mask"], 1, expand_animations=False)}

    n = knobs.crop_size
    a_inv = tf.constant([[0.9, 0.1, 3.0], [-0.1, 0.9, 2.0], [0.0, 0.0, 1.0]])
    gather_warp = tf.function(lambda image, a, size: warps.warp_bilinear(image, a, size, xp=tnp),
                              jit_compile=True)

    def warp(ex):  # the backend's warp of image + mask (4 channels) by a fixed affine
        d = decode(ex)
        stack = tf.concat([tf.image.convert_image_dtype(d["image"], tf.float32),
                           tf.cast(d["mask"], tf.float32)], -1)
        if knobs.xla:
            return gather_warp(stack, a_inv, n)
        return preprocess.warp_projective(stack, a_inv, n)

    def key(i):  # a different stateless seed per example, as in make_dataset
        return tf.stack([tf.constant(0, tf.int64), i])

    variants = {
        "read (cached records)": lambda i, ex: ex["K"],
        "+ decode JPEG image + PNG mask": lambda i, ex: decode(ex),
        "+ warp to crop (bilinear)": lambda i, ex: warp(ex),
        "preprocess, eval (warp + targets)":
            lambda i, ex: preprocess.preprocess(ex, key(i), knobs, False),
        "preprocess, train (+ augmentation)":
            lambda i, ex: preprocess.preprocess(ex, key(i), knobs, True),
    }
    return {
        name: ds.enumerate().map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch).prefetch(tf.data.AUTOTUNE)
        for name, fn in variants.items()
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--config", default="configs/default.py",
                        help="the config file whose pipeline block is timed")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--stages", action="store_true", help="time stage variants as well")
    parser.add_argument("--stages-xla", action="store_true", help="stages with config.xla")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0))
    print(f"CPU: {cpu_model()}; cores usable by this process: {cores}; "
          f"tf {tf.__version__}, tfds {tfds.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        raw, data = os.path.join(tmp, "raw"), os.path.join(tmp, "data")
        t0 = time.perf_counter()
        synthetic_generator.generate(raw, args.images, 1, seed=0, progress=False)
        builder = registry.make_builder("synthetic_hands", data_dir=data, manual_dir=raw)
        print(f"generated and built {args.images} synthetic {synthetic_generator.IMAGE_SIZE}x"
              f"{synthetic_generator.IMAGE_SIZE} hands in {time.perf_counter() - t0:.1f} s")

        block = runs.load_config_file(args.config).pipeline
        knobs = pipeline.settings_from_config(block).knobs
        print(f"config {args.config}: ", end="")
        print(f"crop {knobs.crop_size}, heat maps {knobs.heatmap_size}, batch {args.batch}, "
              f"{args.warmup} warm-up + {args.batches} timed batches")
        for xla in (False, True):
            it = pipeline.make_dataset(builder, "train",
                                       config={**block.to_dict(), "xla": xla},
                                       global_batch_size=args.batch, train=True, seed=0,
                                       local_device_count=1, process_count=1)
            rate, per_cpu_s = time_batches(it, args.warmup, args.batches, args.batch)
            print(f"make_dataset(train=True), config.xla={xla}: {rate:.0f} images/s wall "
                  f"clock on {cores} cores = {rate / cores:.0f} images/s per core; "
                  f"{per_cpu_s:.0f} images per CPU-second of this process (target 300 per "
                  f"core); load average {os.getloadavg()[0]:.1f}")
            del it

        if args.stages:
            knobs = dataclasses.replace(knobs, xla=args.stages_xla)
            print(f"stages (per-example work in a parallel map + batch), config.xla={knobs.xla}:")
            for name, ds in stage_datasets(builder, knobs, args.batch).items():
                r, c = time_batches(iter(tfds.as_numpy(ds)), args.warmup, args.batches,
                                    args.batch)
                print(f"  {name:38s} {r:7.0f} images/s wall, {c:6.0f} images per CPU-s, "
                      f"{1e3 / c:6.2f} CPU-ms per image")


if __name__ == "__main__":
    main()
