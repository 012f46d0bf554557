"""configs/*.py are data: they import only ml_collections and each other, state every key of
the blocks the library resolves, and give the values recorded in tests/configs/expected/ (the
configs as they were before the pipeline and loss blocks became plain data; a deliberate change
of a config value updates its file there)."""
import ast
import importlib
import json
import os
import subprocess
import sys

import pytest

from datasets import pipeline
from hiu_jax import loss_registry, losses  # noqa: F401  (losses registers the terms)

CONFIGS = ("default", "tiny", "freihand")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(name):
    return importlib.import_module(f"configs.{name}").get_config()


@pytest.mark.parametrize("name", CONFIGS)
def test_config_values_are_the_recorded_ones(name):
    with open(os.path.join(ROOT, "tests", "configs", "expected", f"{name}.json")) as f:
        expected = json.load(f)
    got = json.loads(json.dumps(_config(name).to_dict()))  # tuples -> lists, as recorded
    assert got == expected


@pytest.mark.parametrize("name", CONFIGS)
def test_config_states_every_key_the_library_resolves(name):
    """Every knob is in the file, so `--config.pipeline.<knob>=...` reaches it, and resolving
    the blocks (defaults filled, values validated) changes nothing."""
    config = _config(name)
    assert sorted(config.pipeline.keys()) == sorted(pipeline.CONFIG_KEYS)
    settings = pipeline.settings_from_config(config.pipeline)
    assert settings.knobs.crop_size == config.crop_size
    assert settings.knobs.heatmap_size == config.model.heatmap_size
    assert sorted(config.loss.keys()) == sorted(loss_registry.loss_config().keys())
    assert loss_registry.resolve_loss_config(config.loss).to_dict() == config.loss.to_dict()


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
