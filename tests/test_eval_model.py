"""eval.py model mode end to end: a tiny run trained in the session (tests/model_fixtures.py), then
`eval.py --workdir`, its report, and its agreement with `eval.py --pred ... --gt ...`."""
import csv
import importlib.util
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from hiu_jax import metrics, pointsets
from tests.model_fixtures import NUM_EVAL, REPO, TRAIN_STEPS, run_python, tiny_run  # noqa: F401

NUM_OVERLAY = 4
PNGS = ("pck_3d.png", "pck_2d.png", "per_joint_error.png", "mask_iou_hist.png", "overlays.png")


def _eval_module():
    spec = importlib.util.spec_from_file_location("hiu_eval_cli", os.path.join(REPO, "eval.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def evaluated(tiny_run):
    r = run_python(["eval.py", "--workdir", tiny_run.workdir, "--num-overlay", str(NUM_OVERLAY),
                    "--no-progress"], tiny_run.env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r, os.path.join(tiny_run.workdir, "eval_synthetic_hands_test")


@pytest.mark.slow
def test_model_mode_writes_scores_csv_pred_json_and_plots(evaluated):
    r, out = evaluated
    assert "PA-MPJPE" in r.stdout and "samples/s" in r.stdout and "meaningless" in r.stdout

    scores = json.loads(open(os.path.join(out, "scores.json")).read())
    finite = metrics.FREIHAND_SCORE_KEYS + (
        "pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15", "rr_mpjpe_mm", "rr_mpvpe_mm",
        "rr_pck_auc_20_50mm", "mask_iou", "kp2d_mean_px", "pck2d_auc_0_30px", "kp2d_mean_box",
        "pck2d_box_auc_0_05", "samples_per_second")
    for k in finite:
        assert isinstance(scores[k], float) and math.isfinite(scores[k]), k
    for k in ("xyz_al_auc3d", "mesh_al_auc3d", "f5", "f15", "rr_pck_auc_20_50mm", "mask_iou",
              "pck2d_auc_0_30px"):
        assert 0.0 <= scores[k] <= 1.0, k
    assert scores["samples_per_second"] > 0
    assert scores["num_samples"] == scores["num_samples_3d"] == scores["num_samples_mask"] \
        == NUM_EVAL
    assert scores["checkpoint"]["which"] == "last" and scores["checkpoint"]["step"] == TRAIN_STEPS
    assert "configs/tiny.py" in scores["checkpoint"]["config"]
    assert scores["devices"]["count"] >= 1
    assert scores["pa_mpjpe_mm"] == pytest.approx(10 * scores["xyz_al_mean3d"], rel=1e-12)

    with open(os.path.join(out, "per_sample.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == NUM_EVAL
    assert [r["sample_id"] for r in rows] == [f"{i:08d}" for i in range(NUM_EVAL)]
    assert np.mean([float(r["pa_mpjpe_mm"]) for r in rows]) == pytest.approx(
        scores["pa_mpjpe_mm"], rel=1e-5)
    assert np.mean([float(r["mask_iou"]) for r in rows]) == pytest.approx(
        scores["mask_iou"], rel=1e-5)

    xyz, verts = pointsets.read_pred_json(os.path.join(out, "pred.json"))
    xyz, verts = np.stack(xyz), np.stack(verts)
    assert xyz.shape == (NUM_EVAL, 21, 3) and verts.shape == (NUM_EVAL, 778, 3)
    assert np.all(np.isfinite(xyz)) and np.all(np.isfinite(verts))
    np.testing.assert_array_equal(xyz[:, 0], 0.0)  # the convention: root-relative (wrist)

    for name in PNGS:
        data = open(os.path.join(out, name), "rb").read()
        assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n", name
    with Image.open(os.path.join(out, "overlays.png")) as page:
        # 4 samples, 2 columns x 2 rows of (3 x 128) x (128 + 16) px (64 px crops drawn at 128).
        assert page.size == (2 * 3 * 128, 2 * (128 + 16))


@pytest.mark.slow
def test_pred_mode_on_the_written_pred_json_gives_the_same_scores(evaluated, tiny_run, tmp_path):
    _, out = evaluated
    model = json.loads(open(os.path.join(out, "scores.json")).read())
    r = run_python(["eval.py", "--pred", os.path.join(out, "pred.json"), "--gt",
                    tiny_run.synthetic_dir, "--out", str(tmp_path), "--no-progress"],
                   tiny_run.env)
    assert r.returncode == 0, r.stderr[-3000:]
    pred = json.loads((tmp_path / "scores.json").read_text())
    for k in metrics.FREIHAND_SCORE_KEYS:  # all of them: same file, same GT (float32 in tfds)
        assert pred[k] == pytest.approx(model[k], rel=1e-6, abs=1e-9), k
    assert pred["pa_mpjpe_mm"] == pytest.approx(model["pa_mpjpe_mm"], abs=1e-4)
    assert pred["pa_mpvpe_mm"] == pytest.approx(model["pa_mpvpe_mm"], abs=1e-4)

    # The root-relative scores, recomputed here from pred.json and the GT files.
    xyz = np.stack(pointsets.read_pred_json(os.path.join(out, "pred.json"))[0])
    gt = np.asarray(json.load(open(os.path.join(tiny_run.synthetic_dir, "evaluation_xyz.json"))))
    err = np.linalg.norm(xyz - (gt - gt[:, :1]), axis=-1)
    assert 1000 * err.mean() == pytest.approx(model["rr_mpjpe_mm"], abs=1e-3)
    rr = metrics.root_relative_pck(xyz, gt)
    assert rr["auc"] == pytest.approx(model["rr_pck_auc_20_50mm"], abs=1e-6)


@pytest.mark.parametrize("argv, message", [
    (["--workdir", "/nonexistent/run"], "checkpoint directory not found: /nonexistent/run"),
    (["--workdir", "W", "--pred", "p.json", "--gt", "g"], "not both"),
    (["--workdir", "W", "--checkpoint", "W"], "give --workdir or --checkpoint, not both"),
    (["--checkpoint", "W/checkpoints/last", "--which", "best"], "contradicts"),
    (["--workdir", "EMPTY"], "no finished checkpoint in"),
    (["--workdir", "W", "--num-overlay", "-1"], "--num-overlay must be >= 0"),
])
def test_bad_model_mode_input_exits_2_in_one_line(argv, message, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints" / "last" / "7").mkdir(parents=True)
    (tmp_path / "empty" / "checkpoints" / "last").mkdir(parents=True)
    argv = [a.replace("W", str(run)).replace("EMPTY", str(tmp_path / "empty")) for a in argv]
    assert _eval_module().main(argv) == 2
    err = capsys.readouterr().err
    assert message.replace("W", str(run)) in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_unknown_dataset_exits_2(tiny_run, capsys):
    # In-process, like the bad inputs above (a subprocess only added JAX and TF's start-up).
    assert _eval_module().main(["--workdir", tiny_run.workdir, "--dataset", "nohands"]) == 2
    err = capsys.readouterr().err
    assert "--dataset 'nohands' is not a dataset builder; known:" in err
    assert "synthetic_hands" in err
