"""bench/scaling.py: the schedule scales with the run; the table and plot of finished points."""
import os

import pytest

from bench import scaling
from hiu_jax import runs


def test_scaled_overrides_scale_the_run_and_what_follows_it():
    config = runs.load_config_file("configs/default.py")
    got = scaling.scaled_overrides(config, 0.5)
    steps = round(config.num_train_steps * 0.5)
    assert got[0] == f"--config.num_train_steps={steps}"
    assert f"--config.eval_every_steps={steps // 4}" in got
    # the overrides parse; warmup and the loss ramp follow the run (configs/default.py)
    scaled = runs.apply_overrides(runs.load_config_file("configs/default.py"), got)
    assert scaled.num_train_steps == steps
    assert scaled.warmup_steps == config.warmup_steps // 2
    assert scaled.loss.ramp_end_step == config.loss.ramp_end_step // 2


def test_outputs_list_finished_points_and_mark_the_rest(tmp_path):
    row = {"step": 100, "eval/pa_mpjpe_mm": 12.5, "eval/pa_mpjpe_mm_se": 0.2,
           "eval/rr_mpjpe_mm": 30.0, "eval/rot_error_deg": 20.0, "eval/kp2d_heatmap_px": 4.0}
    plot = str(tmp_path / "docs" / "scaling.png")
    scaling.write_outputs(str(tmp_path), plot, [(0.5, row), (1.0, None)], 200, 16)
    md = open(os.path.join(tmp_path, "scaling.md")).read()
    assert "| 0.5 | 100 | 1600 | 12.5 +- 0.2 |" in md
    assert "| 1 | 200 | - | not finished |" in md
    assert os.path.getsize(plot) > 1000


def test_bad_factors_are_refused(capsys):
    with pytest.raises(SystemExit) as e:
        scaling.main(["--out", "x", "--factors", "half"])
    assert e.value.code == 2
