"""Full scale on FreiHAND: the paper's network size (ResNet-50 body per stack, 256 x 256 input).

    python train.py --config configs/freihand.py --workdir runs/freihand \\
        --config.pipeline.manual_dirs.freihand=/path/to/FreiHAND_pub_v2

Other builders mix in by weight, e.g. --config.pipeline.mixture_weights.rhd=0.3 with
--config.pipeline.manual_dirs.rhd=/path/to/RHD_published_v2.
"""
import ml_collections

from configs import default


def get_config():
    config = default.get_config()
    config.model = default.model_config("full")
    config.crop_size = 256
    config.pipeline.heatmap_size = config.model.get_ref("heatmap_size")
    config.pipeline.mixture_weights = ml_collections.ConfigDict({"freihand": 1.0})
    config.pipeline.builder_configs = ml_collections.ConfigDict({"freihand": "all"})
    config.pipeline.manual_dirs = ml_collections.ConfigDict({"freihand": "data/FreiHAND_pub_v2"})
    config.loss.terms.silhouette = 1.0  # the full self-supervision on accelerators
    steps = config.get_ref("num_train_steps")  # 200k below; what derives from it follows it
    config.loss.ramp_start_step = steps // 40  # 5000 of 200k
    config.loss.ramp_end_step = steps // 10  # 20000
    config.data.synthetic_num_train = 0  # no synthetic data unless mixed in explicitly
    config.data.eval_source = "freihand"
    config.batch_size = 128
    config.num_train_steps = 200_000
    config.learning_rate = 2e-4
    config.warmup_steps = steps // 100  # 2000
    config.half_precision = True
    config.log_every_steps = 100
    config.eval_every_steps = (steps + 39) // 40  # 5000; cadences round up: never 0
    config.checkpoint_every_steps = (steps + 99) // 100  # 2000
    config.image_every_steps = (steps + 39) // 40  # 5000
    return config
