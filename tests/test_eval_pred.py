"""eval.py --pred end to end, in a subprocess, on a tiny generated FreiHAND-layout GT directory."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hiu_jax import metrics, pointsets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 12


def run_eval(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "eval.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def hands(tmp_path_factory):
    """GT dir with 12 random hands around 0.5 m depth, and a noisy prediction's arrays."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("freihand")
    gt_dir = root / "gt"
    gt_dir.mkdir()
    xyz = rng.normal(size=(N, 21, 3)) * 0.04 + [0.0, 0.0, 0.5]
    verts = rng.normal(size=(N, 778, 3)) * 0.04 + [0.0, 0.0, 0.5]
    (gt_dir / "evaluation_xyz.json").write_text(json.dumps(xyz.tolist()))
    (gt_dir / "evaluation_verts.json").write_text(json.dumps(verts.tolist()))
    xyz_pred = xyz + rng.normal(size=xyz.shape) * 0.005
    verts_pred = verts + rng.normal(size=verts.shape) * 0.005
    return root, gt_dir, (xyz, verts), (xyz_pred, verts_pred)


def test_scores_csv_and_plots_are_written(hands):
    root, gt_dir, gt, pred = hands
    pred_dir = root / "run"
    pred_dir.mkdir()
    pointsets.write_pred_json(str(pred_dir / "pred.json"), list(pred[0]), list(pred[1]))
    r = run_eval("--pred", str(pred_dir / "pred.json"), "--gt", str(gt_dir))
    assert r.returncode == 0, r.stderr
    assert "PA-MPJPE" in r.stdout and "mm" in r.stdout

    scores = json.loads((pred_dir / "scores.json").read_text())  # default --out: pred's dir
    for k in metrics.FREIHAND_SCORE_KEYS + ("pa_mpjpe_mm", "pa_mpvpe_mm", "f5", "f15"):
        assert isinstance(scores[k], float), k
    want = metrics.freihand_scores(pred[0], pred[1], *gt)
    for k in metrics.FREIHAND_SCORE_KEYS:
        assert scores[k] == pytest.approx(want[k], rel=1e-12), k
    assert scores["pa_mpjpe_mm"] == pytest.approx(10 * scores["xyz_al_mean3d"], rel=1e-12)
    assert 0 < scores["pa_mpjpe_mm"] < scores["mpjpe_mm"]

    with open(pred_dir / "per_sample.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == N
    assert list(rows[0]) == ["index", "kp_al_mean_mm", "mesh_al_mean_mm", "f5_al", "f15_al"]
    assert np.mean([float(r["kp_al_mean_mm"]) for r in rows]) == pytest.approx(
        scores["pa_mpjpe_mm"], abs=1e-5)
    for name in ("pck_3d.png", "per_joint_error.png", "pa_mpjpe_hist.png"):
        data = (pred_dir / name).read_bytes()
        assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n", name


def test_count_mismatch_exits_2_naming_both_counts(hands, tmp_path):
    _, gt_dir, _, pred = hands
    pointsets.write_pred_json(str(tmp_path / "pred.json"), list(pred[0][:11]), list(pred[1][:11]))
    r = run_eval("--pred", str(tmp_path / "pred.json"), "--gt", str(gt_dir), "--out",
                 str(tmp_path / "out"))
    assert r.returncode == 2
    assert "has 11 keypoint sets but the ground truth has 12 samples" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "scores.json").exists()


def test_nan_exits_2_naming_the_sample(hands, tmp_path):
    _, gt_dir, _, pred = hands
    xyz = [x.tolist() for x in pred[0]]
    xyz[7][3][1] = float("nan")
    (tmp_path / "pred.json").write_text(json.dumps([xyz, [v.tolist() for v in pred[1]]]))
    r = run_eval("--pred", str(tmp_path / "pred.json"), "--gt", str(gt_dir))
    assert r.returncode == 2
    assert "keypoints: sample 7 has a non-finite value (nan) at point 3" in r.stderr
    assert not (tmp_path / "scores.json").exists()


def _pred_json(pred, xyz_at=None, value=None):
    xyz = [x.tolist() for x in pred[0]]
    if xyz_at is not None:
        xyz[xyz_at] = value
    return json.dumps([xyz, [v.tolist() for v in pred[1]]]).encode()


@pytest.mark.parametrize("case, message", [
    ("scaled_1e300", "keypoints: sample 5, point 0 has coordinate"),
    ("strings", "keypoints sample 3 holds str values"),
    ("booleans", "keypoints sample 3 holds bool values"),
    ("deep", "pred.json: JSON nested too deeply to read"),
    ("latin1", "pred.json: not a UTF-8 text file"),
])
def test_implausible_prediction_exits_2_naming_file_and_sample(hands, tmp_path, case, message):
    _, gt_dir, gt, pred = hands
    content = {
        "scaled_1e300": lambda: _pred_json(pred, 5, (gt[0][5] * 1e300).tolist()),
        "strings": lambda: _pred_json(pred, 3, [[str(c) for c in p] for p in pred[0][3]]),
        "booleans": lambda: _pred_json(pred, 3, [[True, False, True]] * 21),
        "deep": lambda: b"[" * 100_000 + b"]" * 100_000,
        "latin1": lambda: _pred_json(pred).replace(b"]]", "\xe9]]".encode("latin-1"), 1),
    }[case]()
    path = tmp_path / "pred.json"
    path.write_bytes(content)
    r = run_eval("--pred", str(path), "--gt", str(gt_dir))
    assert r.returncode == 2, r.stderr[-2000:]
    assert message in r.stderr and str(path) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert not (tmp_path / "scores.json").exists()


def test_implausible_ground_truth_exits_2_naming_the_file(hands, tmp_path):
    _, gt_dir, gt, pred = hands
    bad_gt = tmp_path / "gt"
    bad_gt.mkdir()
    (bad_gt / "evaluation_verts.json").write_bytes((gt_dir / "evaluation_verts.json").read_bytes())
    xyz = (gt[0] * 1000).tolist()  # millimetres
    (bad_gt / "evaluation_xyz.json").write_text(json.dumps(xyz))
    pointsets.write_pred_json(str(tmp_path / "pred.json"), list(pred[0]), list(pred[1]))
    r = run_eval("--pred", str(tmp_path / "pred.json"), "--gt", str(bad_gt))
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"{bad_gt / 'evaluation_xyz.json'}: sample 0, point 0 has coordinate" in r.stderr
