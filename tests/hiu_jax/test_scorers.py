"""The scorer table (hiu_jax/scorers.py): a metric registered in one place reaches every output,
and the registered scorers give metrics.py's numbers exactly."""
import csv
import io
import json
import os

import numpy as np
import pytest

import mano_jax
from hiu_jax import evaluation, logs, metrics, report, scorers
from tests.hiu_jax.test_evaluation import predictions


@pytest.fixture(scope="module")
def mano():
    return mano_jax.procedural_model()


@pytest.fixture
def noisy(mano):
    """Predictions with errors everywhere, some samples without 3D, masks or a visible joint."""
    p = predictions(mano, n=8, seed=4)
    rng = np.random.default_rng(5)
    for key, sigma in (("keypoints_3d", 0.005), ("vertices", 0.005), ("keypoints_2d", 2.0)):
        p[key] = p[key] + rng.normal(0, sigma, p[key].shape).astype(np.float32)
    p["gt_has_3d"] = np.float32([1, 1, 0, 1, 1, 1, 1, 0])
    p["gt_keypoint_visibility"][1] = 0.0
    p["mask_prob"] = rng.uniform(size=p["mask_prob"].shape)
    return p


@pytest.fixture
def thumb_tip(monkeypatch):
    """A new metric, registered in one place (restored afterwards)."""
    monkeypatch.setattr(scorers, "SCORERS", dict(scorers.SCORERS))

    @scorers.register("thumb_tip", units={"thumb_tip_mm": "mm, wrist-relative thumb tip"},
                      show=(scorers.Show("thumb_tip_mm", "Thumb tip error", ".2f", "mm",
                                         short="thumb tip", panel="Thumb", better="lower"),))
    def score_thumb_tip(s):
        gt = s.gt_xyz - s.gt_xyz[:, :1]
        err = 1000.0 * np.linalg.norm(s.pred_xyz[:, 4] - gt[:, 4], axis=-1)
        return scorers.mean_over(s, s.has_3d, "thumb_tip_mm", err[s.has_3d], column_too=True)

    return score_thumb_tip


def test_a_metric_registered_in_one_place_reaches_every_output(thumb_tip, noisy, mano,
                                                               tmp_path):
    from bench import ablation

    result = evaluation.score(noisy, mano)
    has3d = noisy["gt_has_3d"] > 0
    gt = noisy["gt_keypoints_3d"][has3d]
    want = 1000.0 * np.linalg.norm(noisy["keypoints_3d"][has3d, 4] - (gt[:, 4] - gt[:, 0]), axis=-1)
    v = result.values
    assert v["thumb_tip_mm"] == pytest.approx(want.mean(), rel=1e-5)  # labels float32
    assert v["thumb_tip_mm_se"] == pytest.approx(metrics.standard_error(want), rel=1e-4)
    np.testing.assert_allclose(result.per_sample["thumb_tip_mm"][has3d], want, rtol=1e-5)
    assert np.isnan(result.per_sample["thumb_tip_mm"][~has3d]).all()

    # The console line.
    line = evaluation.summary(evaluation.validation_values(result))
    assert f"thumb tip {v['thumb_tip_mm']:.2f}+-{v['thumb_tip_mm_se']:.2f} mm" in line

    # metrics.jsonl and TensorBoard: the scalars train.py writes.
    writer = logs.MetricWriter(str(tmp_path / "run"))
    writer.scalars(10, {f"eval/{k}": x for k, x in evaluation.validation_values(result).items()})
    writer.close()
    row = logs.read_metrics(str(tmp_path / "run"))[0]
    assert row["eval/thumb_tip_mm"] == pytest.approx(v["thumb_tip_mm"])
    assert "eval/thumb_tip_mm_se" in row
    assert "eval/thumb_tip_mm" in _tensorboard_tags(str(tmp_path / "run" / "tensorboard"))
    assert any(t == "Thumb" for t, *_ in logs.curve_panels())
    assert logs.plot_validation_curves([row], str(tmp_path / "curves.png"))

    # scores.json (with its unit), per_sample.csv and the table of eval.py's model mode.
    values = dict(v, dataset="d", split="s", samples_per_second=1.0, warmup_seconds=0.0,
                  batch_size=8, devices={"count": 1, "kind": "cpu"},
                  checkpoint={"which": "last", "step": 1}, units=evaluation.units(v))
    out = tmp_path / "report"
    out.mkdir()
    report.write_model_report(str(out), values, result,
                              evaluation.sample_order(result.sample_ids))
    scores = json.loads((out / "scores.json").read_text())
    assert scores["thumb_tip_mm"] == pytest.approx(v["thumb_tip_mm"])
    assert scores["units"]["thumb_tip_mm"].startswith("mm")
    assert "thumb_tip_mm" in scores["units"]["thumb_tip_mm_se"]
    with open(out / "per_sample.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["thumb_tip_mm"]) == pytest.approx(want[0], rel=1e-5)
    table = io.StringIO()
    report.print_model_table(values, file=table)
    assert f"{v['thumb_tip_mm']:.2f} +- {v['thumb_tip_mm_se']:.2f} mm" in table.getvalue()
    assert "Thumb tip error" in table.getvalue()

    # The ablation table compares it.
    assert ("thumb_tip_mm", "thumb tip mm", ".2f", "lower") in ablation.compared_scores()


def _tensorboard_tags(directory):
    import tensorflow as tf

    tags = set()
    for name in os.listdir(directory):
        for record in tf.data.TFRecordDataset(os.path.join(directory, name)):
            tags.update(value.tag for value in tf.compat.v1.Event.FromString(
                record.numpy()).summary.value)
    return tags


def test_a_scorer_must_return_the_keys_it_registered(monkeypatch, noisy):
    monkeypatch.setattr(scorers, "SCORERS", dict(scorers.SCORERS))
    scorers.register("wrong", units={"a": "mm"})(lambda s: scorers.Scored({"b": 1.0}))
    with pytest.raises(ValueError, match="'wrong' returned"):
        evaluation.score(noisy)
    with pytest.raises(ValueError, match="registered twice"):
        scorers.register("wrong", units={})(lambda s: None)


def test_the_scorers_give_the_metrics_formulas_exactly(noisy, mano):
    """The FreiHAND keys are metrics.freihand_scores of the samples with 3D + mesh; the 2D error
    is metrics.pck_2d's; root-relative errors are metrics.error_measures' (no value re-derived)."""
    r = evaluation.score(noisy, mano)
    sel = (noisy["gt_has_3d"] > 0) & (noisy["gt_has_mesh"] > 0)
    root = noisy["gt_root_3d"][:, None]
    xyz_gt = (noisy["gt_keypoints_3d"] + root).astype(np.float64)[sel]
    verts_gt = (noisy["gt_vertices"] + root).astype(np.float64)[sel]
    fs = metrics.freihand_scores(r.pred_xyz[sel], r.pred_verts[sel], xyz_gt, verts_gt)
    for key in metrics.FREIHAND_SCORE_KEYS + scorers.FREIHAND_HEADLINE:
        assert r.values[key] == fs[key], key
    np.testing.assert_array_equal(r.per_sample["pa_mpjpe_mm"][sel],
                                  1000.0 * fs["per_sample"]["kp_al_mean_m"])
    has3d = noisy["gt_has_3d"] > 0
    g = (noisy["gt_keypoints_3d"] + root).astype(np.float64)[has3d]
    rr = metrics.error_measures(metrics.point_errors(g - g[:, :1], r.pred_xyz[has3d]),
                                metrics.FREIHAND_PCK_THRESHOLDS)
    assert r.values["rr_mpjpe_mm"] == 1000.0 * rr["mean"]
    has2d = (noisy["gt_has_2d"] > 0) & (noisy["gt_keypoint_visibility"].sum(1) > 0)
    vis = noisy["gt_keypoint_visibility"][has2d] > 0
    px = metrics.pck_2d(noisy["keypoints_2d"][has2d], noisy["gt_keypoints_2d"][has2d], vis)
    assert r.values["kp2d_mean_px"] == px["mean_error_px"]
    assert r.values["pck2d_auc_0_30px"] == px["auc"]
