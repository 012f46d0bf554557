"""The default experiment: a small HIU-DMTL on the synthetic hands; runs on a laptop CPU.

Use as `--config configs/default.py` (the default of train.py) and override any field with
`--config.model.num_stacks=1` etc. Full scale: configs/freihand.py; tests: configs/tiny.py.
"""
import ml_collections


def model_config(size: str = "small") -> ml_collections.ConfigDict:
    """The `model` block. size: "full" (ResNet-50 body per stack, paper scale), "small", "tiny"."""
    m = ml_collections.ConfigDict()
    m.num_stacks = 2
    m.stem_channels = (64, 128)
    m.encoder_widths = (64, 128, 256, 512)  # bottleneck widths; outputs are 4x these
    m.encoder_blocks = (3, 4, 6, 3)  # ResNet-50
    m.decoder_width = 256
    m.feature_channels = (256, 512, 1024, 2048)  # 64 -> 32 -> 16 -> 8 -> 4 px, then pooled
    m.heatmap_size = 64
    m.mask_size = 256
    m.regressor_hidden = (1024, 1024)
    m.regressor_iterations = 3
    m.regressor_dropout = 0.0
    m.pose_parameterisation = "axis_angle"  # or "pca" (pca_components) or "rot6d"
    m.pca_components = 12
    m.init_cam_scale = 0.8
    m.mano_path = ""  # a MANO_RIGHT.pkl/.npz; empty = the procedural hand
    if size == "small":
        m.stem_channels = (32, 64)
        m.encoder_widths = (16, 32, 64, 128)
        m.encoder_blocks = (1, 1, 1, 1)
        m.decoder_width = 64
        m.feature_channels = (128, 256, 256, 512)
        m.regressor_hidden = (512, 512)
    elif size == "tiny":
        m.num_stacks = 2
        m.stem_channels = (8, 16)
        m.encoder_widths = (4, 8, 8, 16)
        m.encoder_blocks = (1, 1, 1, 1)
        m.decoder_width = 16
        m.feature_channels = (32, 32, 64, 64)
        m.regressor_hidden = (64, 64)
    elif size != "full":
        raise ValueError(f"size must be 'full', 'small' or 'tiny', got {size!r}")
    return m


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = model_config("small")
    config.crop_size = 256
    return config
