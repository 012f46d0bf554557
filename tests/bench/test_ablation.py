"""bench/ablation.py: the command line, the paired comparison, the outputs, resuming; one end to
end run on configs/tiny.py with two variants (the figures come from real runs, not from here)."""
import csv
import json
import os

import numpy as np
import pytest

from bench import ablation
from hiu_jax import evaluation
from tests.model_fixtures import (NUM_EVAL, NUM_TRAIN, REPO, TRAIN_STEPS,  # noqa: F401
                                  run_python, tiny_run)


def test_command_line_splits_common_and_per_variant_overrides(tmp_path):
    run = ablation.parse_command_line([
        "--config", "configs/tiny.py", "--steps", "40", "--out", str(tmp_path),
        "--config.batch_size=4", "--variant", "base", "--variant", "pof10",
        "--config.loss.terms.pof", "10.0", "--config.model.decoder_width=8"])
    assert run["steps"] == 40 and run["eval_every"] == 10  # a quarter of the run by default
    assert run["common"] == ["--config.batch_size=4"]
    assert run["variants"] == [("base", []), ("pof10", ["--config.loss.terms.pof=10.0",
                                                        "--config.model.decoder_width=8"])]
    cmd = ablation.train_command(run, "pof10", run["variants"][1][1])
    assert cmd[-2:] == ["--config.loss.terms.pof=10.0", "--config.model.decoder_width=8"]
    assert "--config.num_train_steps=40" in cmd and "--config.eval_every_steps=10" in cmd


@pytest.mark.parametrize("argv, message", [
    (["--steps", "10", "--variant", "a"], "--out is required"),
    (["--out", "x", "--variant", "a"], "--steps is required"),
    (["--out", "x", "--steps", "ten", "--variant", "a"], "whole number"),
    (["--out", "x", "--steps", "0", "--variant", "a"], "positive"),
    (["--out", "x", "--steps", "10"], "at least one --variant"),
    (["--out", "x", "--steps", "10", "--variant", "a", "--variant", "a"], "twice"),
    (["--out", "x", "--steps", "10", "--variant", "a/b"], "one non-empty path part"),
    (["--out", "x", "--variant", "a", "--steps", "10"], "before the first --variant"),
    (["--out", "x", "--steps", "10", "--variant", "a", "--bogus"], "unknown argument"),
    (["--out", "x", "--steps", "10", "--config", "nope.py", "--variant", "a"], "not found"),
])
def test_bad_command_lines_are_refused_in_one_line(argv, message, capsys):
    assert ablation.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_a_rerun_that_changes_a_recorded_variant_is_refused(tmp_path):
    base = ["--config", "configs/tiny.py", "--steps", "8", "--out", str(tmp_path)]
    ablation.check_record(ablation.parse_command_line(base + ["--variant", "a"]))
    # adding a variant is fine; changing one is not
    ablation.check_record(ablation.parse_command_line(
        base + ["--variant", "a", "--variant", "b", "--config.seed=1"]))
    with pytest.raises(ablation.UsageError, match="records variant 'b'"):
        ablation.check_record(ablation.parse_command_line(
            base + ["--variant", "a", "--variant", "b", "--config.seed=2"]))
    with pytest.raises(ablation.UsageError, match="records steps"):
        ablation.check_record(ablation.parse_command_line(
            ["--config", "configs/tiny.py", "--steps", "9", "--out", str(tmp_path),
             "--variant", "a"]))


def _fake_variant(out, name, steps, linear, ids):
    """A variant's validation files as train.py writes them."""
    os.makedirs(os.path.join(out, name), exist_ok=True)
    for step in steps:
        result = evaluation.Scores({}, {}, {k: v + 0.01 * (steps[-1] - step)
                                            for k, v in linear.items()}, {}, ids, None, None, None)
        evaluation.save_linear(os.path.join(out, name, "validation", f"step_{step}.npz"), result)
    with open(os.path.join(out, name, "metrics.jsonl"), "w") as f:
        for step in steps:
            f.write(json.dumps({"step": step, "eval/pa_mpjpe_mm": float(np.mean(
                linear["pa_mpjpe_mm"])), "eval/pa_mpjpe_mm_se": 0.1}) + "\n")


def test_the_table_holds_means_standard_errors_and_paired_differences(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    ids = [str(i) for i in range(n)]
    hard = rng.gamma(2.0, 5.0, n)  # per-sample difficulty shared by both variants
    nan = np.full(n, np.nan)
    a = {k: nan for k, *_ in ablation.compared_scores()}
    a = dict(a, pa_mpjpe_mm=hard + rng.normal(0, 0.2, n), rot_error_deg=hard * 2)
    b = dict(a, pa_mpjpe_mm=hard - 0.3 + rng.normal(0, 0.2, n), rot_error_deg=hard * 2 + 0.001)
    out = str(tmp_path)
    _fake_variant(out, "ref", [5, 10], a, ids)
    _fake_variant(out, "better", [5, 10], b, ids)
    run = ablation.parse_command_line(["--config", "configs/tiny.py", "--steps", "10", "--out",
                                       out, "--variant", "ref", "--variant", "better",
                                       "--config.loss.terms.pof=10.0"])
    rows = ablation.compare(run)
    mean, se, diff, diff_se = rows[1]["pa_mpjpe_mm"]
    assert mean == pytest.approx(np.mean(b["pa_mpjpe_mm"]))
    assert diff == pytest.approx(np.mean(b["pa_mpjpe_mm"] - a["pa_mpjpe_mm"]))
    assert diff_se == pytest.approx(np.std(b["pa_mpjpe_mm"] - a["pa_mpjpe_mm"], ddof=1)
                                    / np.sqrt(n))
    assert diff_se < se / 10  # pairing removes the samples' difficulty
    assert "mask_iou" not in rows[0]  # not scored: no column
    ablation.write_tables(run, rows)
    ablation.write_curves(run)
    md = open(os.path.join(out, "ablation.md")).read()
    assert f"**{diff:+.2f} +- {diff_se:.2f}**" in md  # resolved: bold
    assert "+0.00 +- 0.00" in md  # rotation: a constant shift of 0.001 deg, not bold at 2 digits
    with open(os.path.join(out, "ablation.csv")) as f:
        table = list(csv.DictReader(f))
    assert [r["variant"] for r in table] == ["ref", "better"]
    assert float(table[1]["pa_mpjpe_mm_diff"]) == pytest.approx(diff, rel=1e-5)
    assert table[1]["overrides"] == "loss.terms.pof=10.0"
    assert os.path.getsize(os.path.join(out, "ablation_curves.png")) > 1000


@pytest.mark.slow
def test_two_variants_on_tiny_end_to_end_and_resume(tiny_run, tmp_path):  # noqa: F811
    """One variant first (as if interrupted after it), then both: the first is kept, the second
    trains, and the outputs compare them on the same validation samples."""
    syn = tiny_run.synthetic_dir
    # tiny_run's network and step count: its compiled programs (the train step's schedule
    # depends on the step count) are cache hits here.
    steps = TRAIN_STEPS
    common = ["-m", "bench.ablation", "--config", "configs/tiny.py", "--steps", str(steps),
              "--eval-every", str(steps // 2), "--out", str(tmp_path),
              f"--config.data.synthetic_dir={syn}",
              f"--config.pipeline.data_dir={os.path.dirname(tiny_run.workdir)}/tfds",
              f"--config.data.synthetic_num_train={NUM_TRAIN}",
              f"--config.data.synthetic_num_eval={NUM_EVAL}",
              "--config.image_every_steps=100", "--config.model.num_stacks=1",
              "--config.model.regressor_iterations=1", "--config.loss.terms.silhouette=0",
              "--variant", "base"]
    r = run_python(common, tiny_run.env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert os.path.exists(os.path.join(tmp_path, "base", "validation", f"step_{steps // 2}.npz"))
    r = run_python(common + ["--variant", "norot", "--config.pipeline.rotation_deg=0.0"],
                   tiny_run.env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[base] finished already" in r.stdout
    md = open(os.path.join(tmp_path, "ablation.md")).read()
    assert "| base |" in md and "| norot |" in md and "| diff |" in md
    with open(os.path.join(tmp_path, "ablation.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == ["base", "norot"]
    assert float(rows[0]["pa_mpjpe_mm_diff"]) == 0.0
    assert float(rows[1]["pa_mpjpe_mm_se"]) > 0
    for name in ("base", "norot"):  # validated at the same steps
        assert sorted(os.listdir(os.path.join(tmp_path, name, "validation"))) == sorted([
            f"step_{steps // 2}.npz", f"step_{steps}.npz"])
    assert os.path.getsize(os.path.join(tmp_path, "ablation_curves.png")) > 1000
