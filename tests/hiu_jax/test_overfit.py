"""The network learns: every parameter gets a gradient from the total loss, and the tiny model
overfits 8 synthetic hands (root-relative 3D joint error below 5 mm)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from configs import tiny
from hiu_jax import models, training


@pytest.fixture(scope="module")
def eight_hands(tmp_path_factory):
    """8 synthetic hands through the real pipeline (no augmentation): one fixed batch."""
    from datasets import pipeline, synthetic_generator
    from datasets.synthetic_hands import synthetic_hands_dataset_builder as sh
    from tests.datasets import fakes

    root = tmp_path_factory.mktemp("eight")
    synthetic_generator.generate(str(root / "raw"), 8, 0, seed=11, image_size=96, batch_size=8,
                       progress=False)
    builder = fakes.build(sh.Builder, root / "raw", root / "tfds")
    config = tiny.get_config()
    batch = next(pipeline.make_dataset(builder, "train", config=config.pipeline, global_batch_size=8,
                                       train=False, local_device_count=1, process_count=1,
                                       process_index=0))
    return {k: jnp.asarray(v[0]) for k, v in batch.items()}


def _setup(config):
    model = models.build_model(config.model)
    state = training.create_train_state(model, config, jax.random.key(0),
                                        (1, config.crop_size, config.crop_size, 3))
    return model, state


def test_every_parameter_gets_a_gradient(eight_hands):
    config = tiny.get_config()
    model, state = _setup(config)

    def loss(params):
        out, _ = model.apply({"params": params, "batch_stats": state.batch_stats},
                             eight_hands["image"], train=True, mutable=["batch_stats"])
        from hiu_jax import losses
        return losses.total_loss(out, eight_hands, config.loss, mano_model=model.mano_model)[0]

    grads = jax.jit(jax.grad(loss))(state.params)
    flat = traverse_util.flatten_dict(grads)
    dead = [("/".join(k), float(jnp.abs(v).max())) for k, v in flat.items()
            if not bool(jnp.any(v != 0)) or not bool(jnp.all(jnp.isfinite(v)))]
    assert not dead, f"parameters without a finite non-zero gradient: {dead}"


@pytest.mark.slow
def test_tiny_model_overfits_eight_hands(eight_hands):
    config = tiny.get_config()
    config.learning_rate = 2e-3
    config.num_train_steps = 120  # measured: 1.6 mm at 100 steps, 0.3 mm at 200 (schedule = steps)
    config.warmup_steps = 20
    config.weight_decay = 0.0
    model, state = _setup(config)
    step = jax.jit(lambda s, b: training.train_step(s, b, loss_cfg=config.loss,
                                                    mano_model=model.mano_model))

    def error_mm(s):
        out = model.apply({"params": s.params, "batch_stats": s.batch_stats}, eight_hands["image"],
                          train=False)
        d = jnp.linalg.norm(out["keypoints_3d"] - eight_hands["keypoints_3d"], axis=-1)
        return float(d.mean()) * 1000

    start = error_mm(state)
    for _ in range(config.num_train_steps):
        state, metrics = step(state, eight_hands)
    end = error_mm(state)
    assert int(state.nonfinite_total) == 0
    assert end < 5.0, f"root-relative 3D joint error {start:.1f} mm -> {end:.1f} mm"
