"""configs/*.py are data: they import only ml_collections and each other, state every key of
the blocks the library reads (which has no defaults of its own), and the step counts that derive
from the run's length follow it."""
import ast
import importlib
import os
import subprocess
import sys

import pytest

from datasets import pipeline
from hiu_jax import loss_registry, losses, models, training  # noqa: F401  (losses registers terms)

CONFIGS = ("default", "tiny", "freihand")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(name):
    return importlib.import_module(f"configs.{name}").get_config()


@pytest.mark.parametrize("name", CONFIGS)
def test_config_states_every_key_the_library_resolves(name):
    """Every knob is in the file, so `--config.pipeline.<knob>=...` reaches it, and the
    library's validation of each block accepts it."""
    config = _config(name)
    assert sorted(config.pipeline.keys()) == sorted(pipeline.CONFIG_KEYS)
    settings = pipeline.settings_from_config(config.pipeline)
    assert settings.knobs.crop_size == config.crop_size
    assert settings.knobs.heatmap_size == config.model.heatmap_size
    assert sorted(config.loss.keys()) == sorted(loss_registry.LOSS_KEYS)
    loss_registry.validate_loss_config(config.loss)
    assert sorted(config.model.keys()) == sorted(models.MODEL_KEYS)
    models.validate_model_config(config.model)


DERIVED = ("warmup_steps", "eval_every_steps", "checkpoint_every_steps", "image_every_steps")


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("steps", [1, 11, 200, 777])
def test_step_counts_follow_num_train_steps(name, steps):
    """`--config.num_train_steps=N` alone gives a valid schedule: warmup, the loss ramp and the
    cadences scale with N (a fixed fraction of the run, rounded down, or up for the
    cadences, which are never 0)."""
    config = _config(name)
    total = config.num_train_steps = 10**6  # each count's fraction of the run, to 1e-6
    full = {k: config[k] for k in DERIVED}
    ramp = (config.loss.ramp_start_step, config.loss.ramp_end_step)
    config.num_train_steps = steps
    training.learning_rate_schedule(config)  # warmup_steps in [0, steps)
    for key in DERIVED:
        assert abs(config[key] - full[key] * steps / total) <= 1, key
    for key in DERIVED[1:] + ("log_every_steps",):
        assert config[key] >= 1, key
    start, end = config.loss.ramp_start_step, config.loss.ramp_end_step
    assert 0 <= start <= end <= steps
    assert abs(start - ramp[0] * steps / total) <= 1 and abs(end - ramp[1] * steps / total) <= 1
    loss_registry.validate_loss_config(config.loss)
    config.lr_schedule = "step"
    training.learning_rate_schedule(config)


def test_configs_import_only_ml_collections_and_each_other():
    for name in CONFIGS:
        with open(os.path.join(ROOT, "configs", f"{name}.py")) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] in ("ml_collections", "configs"), (name, module)
    # Reading a config loads neither TensorFlow nor JAX.
    code = ("import sys; from configs import default, freihand, tiny; "
            "[m.get_config() for m in (default, freihand, tiny)]; "
            "print(sorted(m for m in ('tensorflow', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
