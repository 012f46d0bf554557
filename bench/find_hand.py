"""How well infer.py finds the hand: the 2D error of a trained model on whole synthetic
evaluation images with the crop around the true hand box, around the box it finds itself
(hiu_jax/inference.py, two passes: the box of the first pass's heat-map keypoints), and, for
comparison, around the box of the first pass's mesh joints, after a third pass, with the whole
image as the crop, with the found box moved to the true centre ("true centre") or the true box
moved to the found centre ("true side"), and around the box of the keypoints predicted in the
true box's crop ("true, re-found"). Prints figures only.

    python -m bench.find_hand --workdir RUN --images DIR [--num 256] [--which last|best]

DIR is a FreiHAND-layout evaluation set (datasets/synthetic_generator's output:
evaluation/rgb/*.jpg, evaluation_K.json, evaluation_xyz.json); the true 2D keypoints are the
pinhole projections of the 3D labels, the true box is their box (the pipeline's crop rule around it). Errors are in
IMAGE pixels (crops of different sizes are compared on one scale): per image the mean over the
21 joints of |predicted - true|, then the mean over images +- its standard error; the found box
is also compared with the true one as a paired difference.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from bench.machine import cpu_model
from hiu_jax import inference, runs
from hiu_jax.geometry import projection

KEYPOINTS = ("keypoints_2d", "keypoints_heatmap")  # the mesh's joints (written), the heat maps'


def true_keypoints(images_dir: str, num: int) -> np.ndarray:
    """(num, 21, 2) image pixels: the evaluation labels projected by their intrinsics."""
    with open(os.path.join(images_dir, "evaluation_K.json")) as f:
        K = np.asarray(json.load(f)[:num], np.float64)
    with open(os.path.join(images_dir, "evaluation_xyz.json")) as f:
        xyz = np.asarray(json.load(f)[:num], np.float64)
    return np.asarray(projection.project_pinhole(K, xyz, xp=np), np.float64)


def recentred(box, like) -> np.ndarray:
    """`box` (4,) moved so that its centre is the centre of `like` (4,)."""
    shift = (like[:2] + like[2:] - box[:2] - box[2:]) / 2
    return box + np.concatenate([shift, shift])


def mean_se(x) -> str:
    x = np.asarray(x, np.float64)
    return f"{x.mean():6.2f} +- {x.std(ddof=1) / np.sqrt(len(x)):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a trained run")
    parser.add_argument("--which", default="last", choices=("last", "best"))
    parser.add_argument("--images", required=True, help="FreiHAND-layout evaluation set")
    parser.add_argument("--num", type=int, default=256, help="images (the first NUM)")
    args = parser.parse_args()

    loaded = runs.load_model(args.workdir, args.which, runs.run_config(args.workdir, None, []))
    predict = inference.predictor(loaded.model, loaded.variables)
    truth = true_keypoints(args.images, args.num)
    modes = ("true box", "found box", "found (mesh)", "found, 3 passes", "full image",
             "true centre", "true side", "true, re-found")
    errors = {mode: {k: [] for k in KEYPOINTS} for mode in modes}
    side_ratio, centre_error = [], []
    start = time.perf_counter()
    for i in range(args.num):
        image = inference.read_image(os.path.join(args.images, "evaluation", "rgb",
                                                  f"{i:08d}.jpg"))
        true_box = np.concatenate([truth[i].min(0), truth[i].max(0)])

        def on_box(box, find=False):
            return inference.infer_image(predict, image, box, loaded.config, find=find)

        full = on_box(None)
        found = on_box(inference.found_box(full.pred, full.S))  # = on_box(None, find=True)
        true = on_box(true_box)
        found_box = inference.found_box(full.pred, full.S)
        results = {"true box": true, "found box": found,
                   "found (mesh)": on_box(inference.found_box(full.pred, full.S, "keypoints_2d")),
                   "found, 3 passes": on_box(inference.found_box(found.pred, found.S)),
                   "full image": full,
                   "true centre": on_box(recentred(found_box, true_box)),
                   "true side": on_box(recentred(true_box, found_box)),
                   "true, re-found": on_box(inference.found_box(true.pred, true.S))}
        for mode, r in results.items():
            for k in KEYPOINTS:
                kp = inference.crop_to_image(r.pred[k], r.S)
                errors[mode][k].append(np.linalg.norm(kp - truth[i], axis=-1).mean())
        side_ratio.append(found.side / true.side)
        centre_error.append(np.linalg.norm(found.center - true.center)
                            / np.max(true_box[2:] - true_box[:2]))
    seconds = time.perf_counter() - start
    print(f"model {loaded.workdir} ({loaded.which}, step {loaded.step}), crop "
          f"{int(loaded.config.crop_size)} px; {args.num} images of {args.images}; "
          f"CPU {cpu_model()}, {seconds:.0f} s")
    print("2D error, image pixels, mean over images +- standard error")
    print(f"{'crop':<16} " + "  ".join(f"{k:>17}" for k in KEYPOINTS))
    for mode, e in errors.items():
        print(f"{mode:<16} " + "  ".join(f"{mean_se(e[k]):>17}" for k in KEYPOINTS))
    for k in KEYPOINTS:
        found, true = np.asarray(errors["found box"][k]), np.asarray(errors["true box"][k])
        print(f"{k}: found / true = {found.mean() / true.mean():.3f}; found - true "
              f"{mean_se(found - true)} px (paired)")
    print(f"found crop side / true crop side: median {np.median(side_ratio):.3f}, "
          f"5-95% {np.percentile(side_ratio, 5):.3f}..{np.percentile(side_ratio, 95):.3f}; "
          f"median |log ratio| {np.median(np.abs(np.log(side_ratio))):.3f}")
    print(f"found centre - true centre, in true box sizes: median {np.median(centre_error):.3f}")


if __name__ == "__main__":
    main()
