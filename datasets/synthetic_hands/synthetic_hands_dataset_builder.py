"""TFDS builder for the synthetic hands that `python -m datasets.synthetic_generator` writes.

The generator writes exactly FreiHAND's layout with one image version (see the freihand builder
for the layout, the splits and every label), so this builder is the FreiHAND builder with its own
name and instructions, the single config 'gs', and two class switches:
- EVAL_MASKS = True: the generator also writes evaluation/mask/%08d.jpg (FreiHAND has no public
  evaluation masks), so the 'test' split has masks;
- EVAL_OPTIONAL = True: a set generated with no evaluation samples (no evaluation_*.json files)
  gives a dataset with only the 'train' split.
The MANO values follow FreiHAND's convention: 61 numbers, pose with the hand mean added
(mano_flat_hand_mean=False).

Besides 'gs', every name `datasets.synthetic_generator.dataset_name` gives
(n<N>_e<M>_s<seed>_v<version>) is a config with the same single version: train.py builds each generated set as its own config,
so two sets of different sizes get different tfds directories in one data_dir.
"""
import re

import tensorflow_datasets as tfds

from datasets.freihand import freihand_dataset_builder as freihand


class Builder(freihand.Builder):
    """Synthetic hands in the canonical hand schema (datasets/schema.py)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: FreiHAND layout, one image version."}
    BUILDER_CONFIGS = [
        freihand.FreihandConfig(name="gs", versions=("gs",), description="the rendered images")
    ]
    DEFAULT_CONFIG_NAME = "gs"
    GENERATED_NAME = re.compile(r"n\d+_e\d+_s\d+_v\d+")  # datasets.synthetic_generator.dataset_name
    HOMEPAGE = ""
    DESCRIPTION = __doc__
    EVAL_MASKS = True  # the generator also writes evaluation/mask/%08d.jpg
    EVAL_OPTIONAL = True  # `generate(..., num_eval=0)` writes no evaluation files
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Nothing to download: generate the data with
  python -m datasets.synthetic_generator --out DIR --num N
and pass DIR as manual_dir. DIR then holds FreiHAND's layout with one image version:
  training/rgb/%08d.jpg, training/mask/%08d.jpg,
  training_K.json, training_mano.json, training_xyz.json, training_verts.json,
  training_scale.json, evaluation/rgb/%08d.jpg, evaluation/mask/%08d.jpg,
  evaluation_K.json, evaluation_scale.json
  (+ evaluation_xyz.json, evaluation_verts.json, evaluation_mano.json);
  the evaluation files are absent when generated with --num-eval 0 (then no 'test' split).
Python: Builder(data_dir=D).download_and_prepare(
  download_config=tfds.download.DownloadConfig(manual_dir=DIR))
"""

    @classmethod
    def get_builder_config(cls, name, version=None):
        """A class config ('gs'), or one named like a generated set (see the module docstring)."""
        config = super().get_builder_config(name, version)
        if config is None and isinstance(name, str) and cls.GENERATED_NAME.fullmatch(name):
            config = freihand.FreihandConfig(name=name, versions=("gs",),
                                             description=f"the generated set {name}")
        return config
