"""Speed of hiu_jax.metrics.freihand_scores on a FreiHAND-sized evaluation (3,960 samples, 21
keypoints + 778-vertex meshes), on one CPU core. Prints figures only.

    python -m bench.metrics_bench [--samples 3960] [--repeats 2] [--noise-mm 8] [--no-pin]

BLAS/OpenMP threads are set to 1 before NumPy is imported and the process is pinned to one core
of its affinity set (unless --no-pin). Wall and CPU (process) time are both printed: on a shared
machine, CPU time is the better measure of the work itself.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from hiu_jax import metrics  # noqa: E402
from hiu_jax.geometry.skeleton import NUM_KEYPOINTS, NUM_VERTICES  # noqa: E402




from bench.machine import cpu_model  # noqa: E402

def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=3960)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--noise-mm", type=float, default=8.0,
                        help="Gaussian noise per coordinate of the prediction")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one core")
    args = parser.parse_args()

    affinity = sorted(os.sched_getaffinity(0))
    if not args.no_pin:
        os.sched_setaffinity(0, {affinity[0]})
    print(f"CPU: {cpu_model()}; affinity {affinity} -> {sorted(os.sched_getaffinity(0))}; "
          f"os.cpu_count() {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}")
    print(f"numpy {np.__version__}, BLAS threads 1 (env), python {platform.python_version()}")

    rng = np.random.default_rng(0)
    n = args.samples
    xyz_gt = rng.normal(size=(n, NUM_KEYPOINTS, 3)) * 0.04 + [0.0, 0.0, 0.5]
    verts_gt = rng.normal(size=(n, NUM_VERTICES, 3)) * 0.04 + [0.0, 0.0, 0.5]
    sigma = args.noise_mm / 1000.0
    cases = {
        f"noisy ({args.noise_mm:g} mm/coord)": (
            xyz_gt + rng.normal(size=xyz_gt.shape) * sigma,
            verts_gt + rng.normal(size=verts_gt.shape) * sigma),
        "zero predictor": (np.zeros_like(xyz_gt), np.zeros_like(verts_gt)),
    }
    for name, (xyz_pred, verts_pred) in cases.items():
        best = None
        for _ in range(args.repeats):
            s, wall, cpu = timed(lambda: metrics.freihand_scores(xyz_pred, verts_pred, xyz_gt,
                                                                 verts_gt))
            best = (wall, cpu) if best is None or cpu < best[1] else best
        wall, cpu = best
        print(f"{name:>26}: {n} samples in {wall:.2f} s wall / {cpu:.2f} s CPU "
              f"-> {n / wall:.0f} samples/s wall, {n / cpu:.0f} samples/s CPU "
              f"(PA-MPJPE {s['pa_mpjpe_mm']:.2f} mm, F@5 {s['f5']:.3f}, F@15 {s['f15']:.3f})")

    # Where the time goes (noisy case): everything but the F-scores, then the F-score pass.
    xyz_pred, verts_pred = next(iter(cases.values()))
    _, w_al, c_al = timed(lambda: (metrics.align_w_scale(xyz_gt, xyz_pred),
                                   metrics.error_measures(metrics.point_errors(
                                       verts_gt, metrics.align_w_scale(verts_gt, verts_pred)),
                                       metrics.FREIHAND_PCK_THRESHOLDS)))
    aligned = metrics.align_w_scale(verts_gt, verts_pred)
    _, w_f, c_f = timed(lambda: metrics.batch_fscores(verts_gt, (verts_pred, aligned),
                                                      metrics.FSCORE_THRESHOLDS))
    print(f"{'of which':>26}: alignment + PCK of mesh and keypoints {c_al:.2f} s CPU; "
          f"F-scores (raw + aligned, KD-trees) {c_f:.2f} s CPU")


if __name__ == "__main__":
    main()
