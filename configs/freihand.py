"""Full scale on FreiHAND: the paper's network size (ResNet-50 body per stack, 256 x 256 input)."""
from configs import default


def get_config():
    config = default.get_config()
    config.model = default.model_config("full")
    return config
