"""Helpers of the input-pipeline tests (preprocess, pipeline, registry): small pipeline
configs and a one-batch runner. Crops are 128 px (heat maps 32) unless a test says otherwise."""
import numpy as np
import tensorflow as tf

from configs import tiny
from datasets import pipeline

N_TRAIN, IMAGE_SIZE = 8, 64
CROP, HM = 128, 32


def config(**overrides) -> dict:
    """A whole pipeline block (the library has no defaults): configs/tiny.py's (the TF-graph
    backend), with a 128 px crop, a small shuffle buffer and FreiHAND as the one named source
    (the tests pass their builders themselves), then `overrides`."""
    block = tiny.get_config().pipeline.to_dict()
    block.update(crop_size=CROP, heatmap_size=HM, shuffle_buffer=16, data_dir="",
                 mixture_weights={"freihand": 1.0}, manual_dirs={}, builder_configs={})
    return dict(block, **overrides)


def strong(**overrides) -> dict:
    """Strong geometric augmentation: rotation +-45 deg, scale +-30 %, shift +-20 %."""
    kwargs = dict(rotation_deg=45.0, scale_jitter=0.3, translation_jitter=0.2)
    kwargs.update(overrides)
    return config(**kwargs)


def no_colour(cfg: dict) -> dict:
    return dict(cfg, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, blur_prob=0.0,
                noise_std=0.0)


def flat(batch):
    """[devices, per_device, ...] -> [devices * per_device, ...]."""
    return {k: v.reshape((-1,) + v.shape[2:]) for k, v in batch.items()}


def first(sources, cfg, batch=8, train=True, seed=0, **kwargs):
    kwargs.setdefault("local_device_count", 1)
    kwargs.setdefault("process_count", 1)
    it = pipeline.make_dataset(sources, "train", config=cfg, global_batch_size=batch,
                               train=train, seed=seed, **kwargs)
    return next(it)


def reproject(b):
    """uv (B, 21, 2) of K (root_3d + keypoints_3d), and the camera-frame joints (B, 21, 3)."""
    xyz = b["root_3d"][:, None, :] + b["keypoints_3d"]
    p = np.einsum("bij,bnj->bni", b["K"].astype(np.float64), xyz.astype(np.float64))
    return p[..., :2] / p[..., 2:], xyz


def source(arrays):
    return tf.data.Dataset.from_tensor_slices(arrays)
