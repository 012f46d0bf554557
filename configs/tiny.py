"""The tiny size for tests: a forward and backward pass on CPU in well under a second."""
from configs import default


def get_config():
    config = default.get_config()
    config.model = default.model_config("tiny")
    config.crop_size = 64
    config.model.heatmap_size = 16
    config.model.mask_size = 64
    config.pipeline.heatmap_size = config.model.get_ref("heatmap_size")
    config.pipeline.xla = False  # tests: no XLA compile of the preprocessing per process
    config.batch_size = 8
    config.num_train_steps = 20
    steps = config.get_ref("num_train_steps")  # the cadences follow it (configs/default.py)
    config.warmup_steps = steps // 10
    config.log_every_steps = (steps + 9) // 10  # cadences round up: never 0
    config.eval_every_steps = (steps + 1) // 2
    config.checkpoint_every_steps = (steps + 3) // 4
    config.image_every_steps = (steps + 1) // 2
    config.num_images = 2
    config.data.synthetic_num_train = 32
    config.data.synthetic_num_eval = 8
    return config
