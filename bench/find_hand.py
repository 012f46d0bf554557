"""How well infer.py finds the hand: the 2D error of a trained model on whole synthetic
evaluation images with the crop around the true hand box, around the box it finds itself
(hiu_jax/inference.py, FIND_RULE: two finding passes, the first on the whole image, each giving
the trimmed box of its heat-map keypoints: per axis the second smallest and second largest,
scaled by 1.15; then the final pass), and, for comparison, around boxes found by other rules
(the min/max box of the heat-map keypoints after one pass, the previous default, or two; the
trimmed box after one pass; the min/max box of the first pass's mesh joints), with the whole
image as the crop, with the found box moved to the true centre ("true centre") or the true box
moved to the found centre ("true side"), and around the min/max box of the keypoints predicted
in the true box's crop ("true, re-found"). Prints figures only.

    python -m bench.find_hand --workdir RUN --images DIR [--num 300] [--start 0]
        [--which last|best] [--config FILE]

DIR is a FreiHAND-layout evaluation set (datasets/synthetic_generator's output:
evaluation/rgb/*.jpg, evaluation_K.json, evaluation_xyz.json); the true 2D keypoints are the
pinhole projections of the 3D labels, the true box is their box (the pipeline's crop rule around it). Errors are in
IMAGE pixels (crops of different sizes are compared on one scale): per image the mean over the
21 joints of |predicted - true|, then the mean over images +- its standard error; each found
box is also compared with the true one, and the default with the previous rule, as paired
differences. --config: the config file to rebuild the model from when the run's recorded
config file has changed since (as train.py/eval.py's --config).
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


RULES = {  # found-box rows: how the box is found (inference.FindRule)
    "found box": inference.FIND_RULE,
    "found, min/max": inference.FindRule(1, 0, 1.0),
    "found, min/max x2": inference.FindRule(2, 0, 1.0),
    "found, trimmed x1": inference.FindRule(1, 1, 1.15),
    "found (mesh)": inference.FindRule(1, 0, 1.0, "keypoints_2d"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a trained run")
    parser.add_argument("--which", default="last", choices=("last", "best"))
    parser.add_argument("--config", default=None, help="config file (default: the run's record)")
    parser.add_argument("--images", required=True, help="FreiHAND-layout evaluation set")
    parser.add_argument("--num", type=int, default=300, help="images (NUM from START)")
    parser.add_argument("--start", type=int, default=0, help="the first image's index")
    args = parser.parse_args()
    if args.num < 2 or args.start < 0:
        parser.error(f"--num {args.num} --start {args.start}: needs NUM >= 2 and START >= 0")

    loaded = runs.load_model(args.workdir, args.which, runs.run_config(args.workdir, args.config))
    predict = inference.predictor(loaded.model, loaded.variables)
    truth = true_keypoints(args.images, args.start + args.num)[args.start:]
    if len(truth) < args.num:
        parser.error(f"--num {args.num} --start {args.start}: {args.images} has "
                     f"{args.start + len(truth)} evaluation images")
    modes = ("true box", *RULES, "full image", "true centre", "true side", "true, re-found")
    errors = {mode: {k: [] for k in KEYPOINTS} for mode in modes}
    side_ratio, centre_error = [], []
    start = time.perf_counter()
    for i in range(len(truth)):
        image = inference.read_image(os.path.join(args.images, "evaluation", "rgb",
                                                  f"{args.start + i:08d}.jpg"))
        true_box = np.concatenate([truth[i].min(0), truth[i].max(0)])

        def on_box(box, find=False, rule=inference.FIND_RULE):
            return inference.infer_image(predict, image, box, loaded.config, find=find,
                                         rule=rule)

        results = {mode: on_box(None, True, rule) for mode, rule in RULES.items()}
        true = on_box(true_box)
        found = results["found box"]
        results.update({"true box": true, "full image": on_box(None),
                        "true centre": on_box(recentred(found.box, true_box)),
                        "true side": on_box(recentred(true_box, found.box)),
                        "true, re-found": on_box(inference.found_box(true.pred, true.S))})
        for mode, r in results.items():
            for k in KEYPOINTS:
                kp = inference.crop_to_image(r.pred[k], r.S)
                errors[mode][k].append(np.linalg.norm(kp - truth[i], axis=-1).mean())
        side_ratio.append(found.side / true.side)
        centre_error.append(np.linalg.norm(found.center - true.center)
                            / np.max(true_box[2:] - true_box[:2]))
    seconds = time.perf_counter() - start
    print(f"model {loaded.workdir} ({loaded.which}, step {loaded.step}), crop "
          f"{int(loaded.config.crop_size)} px; images {args.start}..{args.start + len(truth) - 1}"
          f" of {args.images}; CPU {cpu_model()}, {seconds:.0f} s")
    print(f"default rule {inference.FIND_RULE}")
    print("2D error, image pixels, mean over images +- standard error; found rows: / true box, "
          "found - true box (paired)")
    print(f"{'crop':<18} " + "  ".join(f"{k:>42}" for k in KEYPOINTS))
    for mode, e in errors.items():
        cells = []
        for k in KEYPOINTS:
            x, t = np.asarray(e[k]), np.asarray(errors["true box"][k])
            extra = f" x{x.mean() / t.mean():.3f} {mean_se(x - t)}" if mode != "true box" else ""
            cells.append(f"{mean_se(x)}{extra}")
        print(f"{mode:<18} " + "  ".join(f"{c:>42}" for c in cells))
    for k in KEYPOINTS:
        new, old = (np.asarray(errors[m][k]) for m in ("found box", "found, min/max"))
        print(f"{k}: found box - found, min/max {mean_se(new - old)} px (paired)")
    print(f"found crop side / true crop side: median {np.median(side_ratio):.3f}, "
          f"5-95% {np.percentile(side_ratio, 5):.3f}..{np.percentile(side_ratio, 95):.3f}; "
          f"median |log ratio| {np.median(np.abs(np.log(side_ratio))):.3f}")
    print(f"found centre - true centre, in true box sizes: median {np.median(centre_error):.3f}")


if __name__ == "__main__":
    main()
