"""A run's config reloads exactly from its record (hiu_jax/runs.py), or fails naming the file."""
import json

import ml_collections
import pytest

from hiu_jax import runs

CONFIG = '''
import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.sizes = (1, 2)
    c.data = ml_collections.ConfigDict({"root": "data/x"})
    c.dirs = ml_collections.ConfigDict({"synthetic": c.data.get_ref("root")})
    c.note = "a"
    return c
'''


def _train_like(tmp_path, overrides):
    """What train.py does: config file + overrides, then config.json and the record."""
    path = tmp_path / "cfg.py"
    path.write_text(CONFIG)
    config = runs.apply_overrides(runs.load_config_file(str(path)), overrides)
    (tmp_path / "config.json").write_text(config.to_json_best_effort(indent=2))
    runs.write_config_record(str(tmp_path), str(path), overrides)
    return path, config


def test_recorded_config_is_exact_with_overrides(tmp_path):
    path, config = _train_like(tmp_path, ["--config.seed=3", "--config.sizes=(4, 5, 6)"])
    record = json.loads((tmp_path / runs.RECORD_NAME).read_text())
    assert record == {"config_file": str(path), "config_path": str(path),
                      "overrides": ["--config.seed=3", "--config.sizes=(4, 5, 6)"]}
    got, source = runs.recorded_config(str(tmp_path))
    assert got.to_dict() == config.to_dict() and got.sizes == (4, 5, 6)
    assert source == f"{path} --config.seed=3 --config.sizes=(4, 5, 6)"
    more, source = runs.run_config(str(tmp_path), overrides=["--config.note=b"])
    assert more.note == "b" and source.endswith("--config.note=b")


def test_records_of_older_runs_replay_their_start_up_blocks(tmp_path):
    """Before registry.build_from_config, train.py rewrote a block at start-up and recorded it
    whole in `replaced_at_start`; such runs still reload exactly."""
    path, config = _train_like(tmp_path, [])
    config.dirs = ml_collections.ConfigDict(dict(config.dirs.to_dict(), synthetic="data/x/n8"))
    (tmp_path / "config.json").write_text(config.to_json_best_effort(indent=2))
    record = json.loads((tmp_path / runs.RECORD_NAME).read_text())
    record["replaced_at_start"] = {"dirs": {"synthetic": "data/x/n8"}}
    (tmp_path / runs.RECORD_NAME).write_text(json.dumps(record))
    got, _ = runs.recorded_config(str(tmp_path))
    assert got.dirs.synthetic == "data/x/n8" and got.data.root == "data/x"


def test_a_changed_config_file_is_refused_naming_it_and_the_value(tmp_path):
    path, _ = _train_like(tmp_path, [])
    path.write_text(CONFIG.replace('c.note = "a"', 'c.note = "changed"'))
    with pytest.raises(runs.UserError, match=r"cfg.py changed since the run .* 1 values differ"
                                             r".*note: run 'a', now 'changed'"):
        runs.recorded_config(str(tmp_path))


def test_no_record_and_bad_overrides_are_one_line_errors(tmp_path):
    with pytest.raises(runs.UserError, match="run config record not found: .*give --config"):
        runs.recorded_config(str(tmp_path))
    config = ml_collections.ConfigDict({"a": 1})
    with pytest.raises(runs.UserError, match="the config has no key 'b'"):
        runs.apply_overrides(config, ["--config.b=2"])
    rest, overrides = runs.split_overrides(["x", "--config.a", "3", "--config.c=4", "--out", "o"])
    assert rest == ["x", "--out", "o"] and overrides == ["--config.a=3", "--config.c=4"]
