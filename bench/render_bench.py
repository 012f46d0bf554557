"""Speed of hiu_jax.render: hard render (B=8, 224x224, ~778 vertices / ~1550 faces) and soft
silhouette (B=32 at 64x64 and 128x128, forward and forward+backward). Prints figures only.

    python -m bench.render_bench [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from hiu_jax import render  # noqa: E402
from hiu_jax.geometry import projection  # noqa: E402


from bench.machine import cpu_model  # noqa: E402

def uv_sphere(num_rings: int = 25, num_segments: int = 31):
    """Unit UV sphere: num_rings * num_segments + 2 vertices, 2 * num_rings * num_segments faces,
    counter-clockwise seen from outside. The defaults give 777 vertices and 1550 faces (MANO: 778,
    1538)."""
    theta = np.pi * np.arange(1, num_rings + 1) / (num_rings + 1)  # polar angle of each ring
    phi = 2 * np.pi * np.arange(num_segments) / num_segments
    ring = np.stack(
        [np.sin(theta)[:, None] * np.cos(phi), np.sin(theta)[:, None] * np.sin(phi),
         np.cos(theta)[:, None] * np.ones_like(phi)], -1).reshape(-1, 3)
    vertices = np.concatenate([[[0.0, 0.0, 1.0]], ring, [[0.0, 0.0, -1.0]]])
    north, south = 0, len(vertices) - 1
    idx = lambda r, s: 1 + r * num_segments + s % num_segments  # noqa: E731
    faces = []
    for s in range(num_segments):
        faces.append((north, idx(0, s), idx(0, s + 1)))
        faces.append((south, idx(num_rings - 1, s + 1), idx(num_rings - 1, s)))
        for r in range(num_rings - 1):
            a, b, c, d = idx(r, s), idx(r + 1, s), idx(r + 1, s + 1), idx(r, s + 1)
            faces += [(a, b, c), (a, c, d)]
    return vertices.astype(np.float32), np.asarray(faces, np.int32)


def hand_sized_batch(batch: int, rng: np.random.Generator):
    """Ellipsoids of 22 x 18 x 8 cm at 0.6 m, randomly turned (up to ~40% of a 224x224 crop at
    f = 500, about what a hand covers)."""
    vertices, faces = uv_sphere()
    out = []
    for _ in range(batch):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        w, x, y, z = q
        rot = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        shifted = (vertices * [0.11, 0.09, 0.04]) @ rot.T + [*rng.uniform(-0.02, 0.02, 2), 0.6]
        out.append(shifted)
    K = np.array([[500.0, 0.0, 111.5], [0.0, 500.0, 111.5], [0.0, 0.0, 1.0]], np.float32)
    return np.asarray(out, np.float32), faces, K


def timed(fn, repeats):
    """(first-call seconds, compile included; best steady-state seconds per call)."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return first, best




def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"cpu: {cpu_model()}, {os.cpu_count()} cores, jax {jax.__version__}")

    batch, size = 8, 224
    vertices, faces, K = hand_sized_batch(batch, rng)
    vertices, K = jnp.asarray(vertices), jnp.asarray(K)
    print(f"mesh: {vertices.shape[1]} vertices, {faces.shape[0]} faces")
    first, best = timed(lambda: render.render(vertices, faces, K, size, size), args.repeats)
    coverage = float(render.render(vertices, faces, K, size, size)["mask"].mean())
    print(f"hard render  B={batch} {size}x{size}: first call {first:.2f} s, "
          f"{best * 1e3:.1f} ms/batch, {batch / best:.1f} images/s (mask covers {coverage:.0%})")
    first, best = timed(lambda: render.rasterize(vertices, faces, K, size, size), args.repeats)
    print(f"rasterize    B={batch} {size}x{size}: first call {first:.2f} s, "
          f"{best * 1e3:.1f} ms/batch, {batch / best:.1f} images/s")

    batch = 32
    vertices, faces, _ = hand_sized_batch(batch, rng)
    for size in (64, 128):
        K = jnp.asarray([[500.0 * size / 224, 0.0, size / 2], [0.0, 500.0 * size / 224, size / 2],
                         [0.0, 0.0, 1.0]])
        uv = projection.project_pinhole(K, jnp.asarray(vertices))
        target = (render.soft_silhouette(uv, faces, size, size, 1.0) > 0.5).astype(jnp.float32)
        forward = jax.jit(lambda uv, s=size: render.soft_silhouette(uv, faces, s, s, 1.0))
        loss = lambda uv, s=size: jnp.mean(  # noqa: E731
            (render.soft_silhouette(uv, faces, s, s, 1.0) - target) ** 2)
        backward = jax.jit(jax.value_and_grad(loss))
        for name, fn in (("forward", forward), ("fwd+bwd", backward)):
            first, best = timed(lambda: fn(uv + 0.1), args.repeats)
            print(f"soft silhouette B={batch} {size}x{size} {name}: first call {first:.2f} s, "
                  f"{best * 1e3:.1f} ms/batch, {batch / best:.1f} images/s")


if __name__ == "__main__":
    main()
