"""registry.synthetic_set / build_from_config: one directory (and tfds config) per generated
set, so configs asking for different sets share a synthetic_dir and a tfds data_dir without
colliding; the config itself is never changed.

The generator is replaced by the fake FreiHAND-layout writer of tests/datasets/fakes.py (the
generator has its own tests); what is tested here is where each set goes and what reads it.
"""
import json
import os

import pytest

from datasets import registry, synthetic_generator
from tests.datasets import fakes


def _fake_generate(out_dir, num_train, num_eval=0, *, seed=0, **_):
    os.makedirs(out_dir, exist_ok=True)
    fakes.write_fake_freihand(out_dir, n_train=num_train, n_eval=num_eval, versions=1,
                              eval_masks=True, seed=seed)
    info = dict(generator="fake", version=synthetic_generator.GENERATOR_VERSION, seed=seed,
                num_train=num_train, num_eval=num_eval)
    with open(os.path.join(out_dir, synthetic_generator.INFO_NAME), "w") as f:
        json.dump(info, f)
    _fake_generate.calls.append(out_dir)
    return info


@pytest.fixture
def fake_generator(monkeypatch):
    _fake_generate.calls = []
    monkeypatch.setattr(synthetic_generator, "generate", _fake_generate)
    return _fake_generate.calls


def _config(tmp_path, num_train, num_eval):
    """configs/tiny.py on tmp_path's directories, locked as train.py's flag locks it."""
    from configs import tiny

    config = tiny.get_config()
    config.data.synthetic_dir = str(tmp_path / "synthetic")
    config.pipeline.data_dir = str(tmp_path / "tfds")
    config.data.synthetic_num_train = num_train
    config.data.synthetic_num_eval = num_eval
    config.lock()
    return config


def _split_sizes(config):
    """Builds (first time) and reads the synthetic_hands source of the config."""
    builder, = registry.build_from_config(config, ["synthetic_hands"])
    return {s: len(fakes.read_split(builder, s)) for s in ("train", "test")}


def test_sets_of_different_sizes_coexist(tmp_path, fake_generator):
    small, large = _config(tmp_path, 2, 1), _config(tmp_path, 4, 2)
    before = small.to_dict()
    dir_small, name_small = registry.synthetic_set(small)
    dir_large, name_large = registry.synthetic_set(large)
    root = str(tmp_path / "synthetic")
    assert dir_small == synthetic_generator.dataset_dir(root, 2, 1, small.seed)
    assert dir_large == synthetic_generator.dataset_dir(root, 4, 2, large.seed)
    assert (name_small, name_large) == (os.path.basename(dir_small), os.path.basename(dir_large))
    assert fake_generator == [dir_small, dir_large]
    sources = registry.sources_from_config(small)
    assert sources.manual_dirs["synthetic_hands"] == dir_small
    assert sources.builder_configs["synthetic_hands"] == name_small
    assert small.to_dict() == before  # the config is left as it was
    assert small.pipeline.manual_dirs.synthetic_hands == root
    assert _split_sizes(small) == {"train": 2, "test": 1}
    assert _split_sizes(large) == {"train": 4, "test": 2}
    # Back to the first config in the same checkout: nothing generated again, its own data read.
    again = _config(tmp_path, 2, 1)
    assert registry.synthetic_set(again)[0] == dir_small
    assert len(fake_generator) == 2
    assert _split_sizes(again) == {"train": 2, "test": 1}


def test_a_set_generated_by_hand_into_synthetic_dir_is_used_as_it_is(tmp_path, fake_generator):
    root = str(tmp_path / "synthetic")
    _fake_generate(root, 2, 1)
    config = _config(tmp_path, 2, 1)
    assert registry.synthetic_set(config) == (root, None)
    assert len(fake_generator) == 1  # the hand-made one only
    assert "synthetic_hands" not in registry.sources_from_config(config).builder_configs  # 'gs'
    assert _split_sizes(config) == {"train": 2, "test": 1}
    other = _config(tmp_path, 3, 1)  # other sizes: their own directory beside it
    assert registry.synthetic_set(other)[0] == synthetic_generator.dataset_dir(root, 3, 1,
                                                                               other.seed)


def test_runs_without_synthetic_hands_generate_nothing(tmp_path, fake_generator):
    from configs import freihand

    config = freihand.get_config()
    config.data.synthetic_dir = str(tmp_path / "synthetic")
    assert registry.synthetic_set(config) == ("", None)
    assert fake_generator == [] and not os.path.exists(tmp_path / "synthetic")


def test_dataset_name_is_a_synthetic_hands_config():
    from datasets.synthetic_hands import synthetic_hands_dataset_builder as sh

    name = synthetic_generator.dataset_name(2048, 128, 0)
    assert name == f"n2048_e128_s0_v{synthetic_generator.GENERATOR_VERSION}"
    assert sh.Builder.get_builder_config(name).versions == ("gs",)
    assert sh.Builder.get_builder_config("n2048") is None
    with pytest.raises(ValueError, match="num_eval must be an integer >= 0"):
        synthetic_generator.dataset_name(4, -1, 0)
