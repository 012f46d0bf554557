"""The tiny size for tests: a forward and backward pass on CPU in well under a second."""
from configs import default


def get_config():
    config = default.get_config()
    config.model = default.model_config("tiny")
    config.crop_size = 64
    config.model.heatmap_size = 16
    config.model.mask_size = 64
    return config
