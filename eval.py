"""HIU-JAX evaluation: FreiHAND scores, reports and plots.

Two modes. Model-free (score a FreiHAND submission file against the evaluation GT):

    python eval.py --pred pred.json --gt DIR [--out DIR]

- pred.json: the FreiHAND submission layout, a JSON list [xyz_list, verts_list] with N entries
  of 21x3 keypoints and N entries of Vx3 vertices (778 for MANO), metres, evaluation order
  (`hiu_jax.pointsets.write_pred_json` writes it).
- DIR holds evaluation_xyz.json and evaluation_verts.json (FreiHAND_pub_v2_eval).
- Writes into --out (default: the pred file's directory): scores.json (the official scores.txt
  keys, mean errors in cm as that file has them, plus mm headline keys), per_sample.csv,
  pck_3d.png, per_joint_error.png, pa_mpjpe_hist.png. Prints a table in mm.

Everything is validated before anything is scored: counts, shapes and finiteness; a user error
exits with status 2 and one line naming the sample at fault.

Model mode (run a trained model over a split, then score and report):

    python eval.py --workdir runs/default [--which last|best] [--dataset NAME] [--split SPLIT]
        [--out DIR] [--num-overlay 16] [--manual-dir M] [--config.KEY=VALUE ...]
    python eval.py --checkpoint runs/default/checkpoints/best [--config configs/default.py] ...

- The flags are train.py's and infer's (hiu_jax/runs.py). The config is the run's, rebuilt
  exactly from <workdir>/config_source.json (the config file and overrides train.py recorded)
  and checked against config.json, unless --config names a file; --config.KEY=VALUE overrides
  a value on top (e.g. --config.batch_size=64, --config.pipeline.data_dir=D).
- --dataset: a builder of datasets.registry.BUILDER_MODULES (default: the config's
  data.eval_source); --split: default the config's data.eval_split; --manual-dir: that
  dataset's raw files. The crops are the pipeline's evaluation crops (square around the
  ground-truth hand box, no augmentation; left hands mirrored, and their predictions mirrored
  back for pred.json and the 3D scores, by the batches' "mirrored" flag).
- Scores: hiu_jax.evaluation.score (the scorers registered in hiu_jax/scorers.py), the function
  train.py's validation uses; the report: hiu_jax/report.py. scores.json's "units" gives each
  key's unit and meaning; null: not scored (no labels in this split).
- The model runs on every local device (hiu_jax.evaluation.Evaluator, jax.pmap) after a warm-up
  pass over the first batch(es) that compiles it (and gives the overlay page its crops);
  samples/s is measured over the full pass, end to end (input pipeline construction and reading
  included, compilation excluded).
- Writes into --out (default <workdir>/eval_<dataset>_<split>): scores.json, per_sample.csv,
  pred.json, pck_3d.png, pck_2d.png, per_joint_error.png, mask_iou_hist.png, overlays.png.

pred.json convention (model mode): the network predicts ROOT-RELATIVE geometry (wrist = joint 0
at the origin) and no absolute root (one could be estimated from the test-time K and the
weak-perspective camera; not done here), so pred.json holds the root-relative keypoints and
vertices, metres, camera axes, sorted by sample id (= FreiHAND's evaluation index); no ground
truth goes into it. The aligned (PA) scores, the aligned F-scores and the AUCs after alignment
are invariant to a translation of the prediction, so they are exact; the official UNALIGNED
numbers (xyz_mean3d, xyz_auc3d, mesh_mean3d, mesh_auc3d, f_score_5/15, mpjpe_mm, mpvpe_mm)
compare a root-relative prediction with absolute ground truth and are meaningless: scores.json
keeps them (the official script computes them from the same file) and the table marks them so. The
meaningful unaligned numbers are the root-relative ones (rr_mpjpe_mm, rr_mpvpe_mm, 3D PCK AUC
20-50 mm): prediction and ground truth both relative to their own wrist, no scale or rotation.
`eval.py --pred <out>/pred.json --gt <FreiHAND_pub_v2_eval>` reproduces every official key.
"""
from __future__ import annotations

import os
import sys

from hiu_jax import metrics, pointsets, report, runs
from hiu_jax.geometry import skeleton
from hiu_jax.runs import UserError


def parse_args(argv):
    parser = runs.ArgumentParser(
        prog="eval.py",
        description="HIU-JAX evaluation: score FreiHAND predictions (pred.json) and write a "
                    "report with plots, or run a trained model over a split and do the same.")
    parser.add_argument("--pred", help="pred.json: [xyz_list, verts_list] in metres")
    parser.add_argument("--gt", help="directory with evaluation_xyz.json, evaluation_verts.json")
    parser.add_argument("--out", help="output directory (default: the pred file's directory; "
                                      "model mode: <workdir>/eval_<dataset>_<split>)")
    parser.add_argument("--set-name", default="evaluation",
                        help="GT file prefix: <set-name>_xyz.json, <set-name>_verts.json")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    model = parser.add_argument_group("model mode: run a trained model over a split")
    runs.add_run_arguments(model, config_help="config file (default: the run's, exactly as "
                                              "recorded in <workdir>/config_source.json)")
    model.add_argument("--dataset", help="dataset builder (default: the config's eval_source)")
    model.add_argument("--split", help="split (default: the config's eval_split)")
    model.add_argument("--manual-dir", help="the dataset's raw files (default: the config's)")
    model.add_argument("--num-overlay", type=int, default=16,
                       help="samples on the overlay page overlays.png (0: none)")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- pred mode


def _load_json(path, what):
    if not os.path.isfile(path):
        raise UserError(f"{what} not found: {path}")
    try:
        return pointsets.read_json(path)
    except ValueError as e:
        raise UserError(f"{what} {e}") from None


def load_ground_truth(gt_dir, set_name="evaluation"):
    """(xyz (N, 21, 3), verts (N, 778, 3)) float64 metres from a FreiHAND eval GT directory."""
    xyz_path = os.path.join(gt_dir, f"{set_name}_xyz.json")
    verts_path = os.path.join(gt_dir, f"{set_name}_verts.json")
    xyz_list = _load_json(xyz_path, "GT keypoint file")
    verts_list = _load_json(verts_path, "GT vertex file")
    try:
        xyz = pointsets.stack_samples(xyz_path, xyz_list, metrics.NUM_KEYPOINTS)
        verts = pointsets.stack_samples(verts_path, verts_list, skeleton.NUM_VERTICES)
    except (TypeError, ValueError) as e:
        raise UserError(str(e)) from None
    if len(xyz) != len(verts):
        raise UserError(f"GT files disagree: {len(xyz)} keypoint sets in {xyz_path}, "
                        f"{len(verts)} meshes in {verts_path}")
    return xyz, verts


def load_prediction(pred_path, num_samples):
    """(xyz (N, 21, 3), verts (N, V, 3)) float64 metres from pred.json, validated against N."""
    if not os.path.isfile(pred_path):
        raise UserError(f"prediction file not found: {pred_path}")
    try:
        xyz_list, verts_list = pointsets.read_pred_json(pred_path)
    except ValueError as e:
        raise UserError(str(e)) from None
    for name, items in (("keypoint sets", xyz_list), ("meshes", verts_list)):
        if len(items) != num_samples:
            raise UserError(f"{pred_path} has {len(items)} {name} but the ground truth has "
                            f"{num_samples} samples")
    try:
        xyz = pointsets.stack_samples(f"{pred_path} keypoints", xyz_list, metrics.NUM_KEYPOINTS)
        verts = pointsets.stack_samples(f"{pred_path} vertices", verts_list)
    except ValueError as e:
        raise UserError(str(e)) from None
    return xyz, verts


def _make_out_dir(out_dir):
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output directory {out_dir}: {e}") from None
    return out_dir


def run_pred_mode(pred_path, gt_dir, out_dir, set_name="evaluation", progress=True) -> int:
    """Scores a pred.json against the GT in gt_dir and writes the report into out_dir."""
    if not os.path.isfile(pred_path):
        raise UserError(f"prediction file not found: {pred_path}")
    xyz_gt, verts_gt = load_ground_truth(gt_dir, set_name)
    xyz_pred, verts_pred = load_prediction(pred_path, len(xyz_gt))
    out_dir = _make_out_dir(out_dir or os.path.dirname(os.path.abspath(pred_path)))

    from tqdm import tqdm

    with tqdm(total=len(xyz_gt), desc="F-scores", unit="sample", disable=not progress,
              file=sys.stderr) as bar:
        scores = metrics.freihand_scores(xyz_pred, verts_pred, xyz_gt, verts_gt,
                                         progress=bar.update)
    names = report.write_pred_report(out_dir, scores)
    print(f"wrote {', '.join(names)} to {out_dir}")
    return 0


# --------------------------------------------------------------------------- model mode

PRED_JSON_CONVENTION = (
    "root-relative: keypoints and vertices minus the predicted wrist (joint 0), metres, camera "
    "axes, sorted by sample id (FreiHAND: the evaluation index). Aligned scores are exact; the "
    "official unaligned scores (xyz_mean3d, mesh_mean3d, f_score_5/15, mpjpe_mm, mpvpe_mm) "
    "compare it with absolute ground truth and are meaningless; use rr_* instead.")
def _device_summary():
    import jax

    devices = jax.local_devices()
    return {"count": len(devices), "platform": devices[0].platform,
            "kind": devices[0].device_kind, "processes": jax.process_count()}


def _builder(config, dataset, split):
    """The prepared tfds builder of dataset/split; UserError when unknown, unreadable, empty."""
    from datasets import registry

    if dataset not in registry.BUILDER_MODULES:
        raise UserError(f"--dataset {dataset!r} is not a dataset builder; known: "
                        f"{', '.join(sorted(registry.BUILDER_MODULES))}")
    try:
        # As train.py gets its data: the synthetic set the config names (generated if missing).
        builder, = registry.build_from_config(config, [dataset])
    except Exception as e:  # tfds reports a missing manual download in many ways
        first = (str(e).strip().splitlines() or [""])[0]
        manual_dir = config.pipeline.manual_dirs.get(dataset)
        raise UserError(f"dataset {dataset} (data_dir {config.pipeline.data_dir!r}, manual_dir "
                        f"{manual_dir!r}) cannot be read or prepared: {type(e).__name__}: "
                        f"{first}") from None
    if split not in builder.info.splits:
        raise UserError(f"dataset {dataset} has no split {split!r}; it has "
                        f"{', '.join(sorted(builder.info.splits))}")
    if builder.info.splits[split].num_examples == 0:
        raise UserError(f"{dataset}/{split} is empty")
    return builder


def run_model_mode(args) -> int:
    """Runs a checkpoint over a split, then writes the report (see the module docstring)."""
    if args.num_overlay < 0:
        raise UserError(f"--num-overlay must be >= 0, got {args.num_overlay}")
    progress = not args.no_progress
    workdir, which = runs.checkpoint_from_args(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    config, config_source = runs.run_config(workdir, args.config, args.overrides)

    import time
    from types import SimpleNamespace

    import jax
    from tqdm import tqdm

    from datasets import pipeline
    from hiu_jax import evaluation, scorers

    dataset = args.dataset or config.data.eval_source
    split = args.split or config.data.eval_split
    batch_size = int(config.batch_size)
    if batch_size % jax.device_count():
        raise UserError(f"the batch size {batch_size} is not divisible by the "
                        f"{jax.device_count()} devices; give --config.batch_size")
    if args.manual_dir:
        config.pipeline.manual_dirs[dataset] = args.manual_dir
    builder = _builder(config, dataset, split)
    out_dir = _make_out_dir(args.out or os.path.join(workdir, f"eval_{dataset}_{split}"))
    loaded = runs.load_model(workdir, which, (config, config_source))
    print(f"{loaded.workdir}: checkpoint {which}, step {loaded.step}; config {config_source}; "
          f"{dataset}/{split} ({builder.info.splits[split].num_examples} samples) on "
          f"{jax.device_count()} {jax.devices()[0].platform} device(s)", flush=True)

    def batches():
        return pipeline.make_dataset(builder, split, config=config.pipeline,
                                     global_batch_size=batch_size, train=False)

    mano_model = loaded.model.mano_model
    evaluator = evaluation.Evaluator(loaded.model, mano_model)
    state = SimpleNamespace(**loaded.variables)
    # Warm-up (compiles the model): the first batches, which also give the overlay page's crops.
    start = time.perf_counter()
    q = evaluator.predictions(state, batches(), progress=False,
                              max_batches=max(1, -(-args.num_overlay // batch_size)),
                              keep_images=args.num_overlay > 0)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    p = evaluator.predictions(state, batches(), progress=progress, keep_images=False)
    seconds = time.perf_counter() - start
    n = len(p["gt_valid"])
    with tqdm(total=int(((p["gt_has_3d"] > 0) & (p["gt_has_mesh"] > 0)).sum()), desc="F-scores",
              unit="sample", disable=not progress, file=sys.stderr) as bar:
        result = evaluation.score(p, mano_model, progress=bar.update)
    order = evaluation.sample_order(result.sample_ids)
    pointsets.write_pred_json(os.path.join(out_dir, "pred.json"), list(result.pred_xyz[order]),
                              list(result.pred_verts[order]))
    values = dict(
        result.values, dataset=dataset, split=split, samples_per_second=n / seconds,
        eval_seconds=seconds, warmup_seconds=warmup, batch_size=batch_size,
        devices=_device_summary(),
        checkpoint={"workdir": os.path.abspath(loaded.workdir), "which": which,
                    "step": loaded.step, "config": config_source},
        pred_json={"file": "pred.json", "convention": PRED_JSON_CONVENTION},
        official_unaligned_keys_meaningless=list(scorers.meaningless_keys()),
        crops="the pipeline's evaluation crops: a square of crop_padding x the ground-truth hand "
              "box, no augmentation; left hands mirrored (predictions mirrored back)",
        units=evaluation.units(result.values))
    names = report.write_model_report(out_dir, values, result, order)
    if args.num_overlay:
        head = evaluation.score(q, None)  # the warm-up samples' own ids and errors
        report.write_overlay_page(os.path.join(out_dir, "overlays.png"), q, head,
                                  mano_model.faces, args.num_overlay)
        names.append("overlays.png")
    print(f"evaluation: {n} samples in {seconds:.2f} s = {n / seconds:.1f} samples/s "
          f"(warm-up {warmup:.1f} s)")
    print(f"wrote {', '.join(names)} to {out_dir}")
    return 0


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.workdir or args.checkpoint:
            if args.pred or args.gt:
                raise UserError("give either --pred/--gt (score a file) or --workdir/--checkpoint "
                                "(run a model), not both")
            return run_model_mode(args)
        if not (args.pred and args.gt):
            raise UserError("give --pred pred.json and --gt DIR, or --workdir DIR (see --help)")
        return run_pred_mode(args.pred, args.gt, args.out, args.set_name,
                             progress=not args.no_progress)
    except UserError as e:
        print(f"eval.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
