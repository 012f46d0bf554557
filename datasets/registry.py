"""The dataset builders by name, and building them on every host of a run.

`Sources` is the one definition of the `pipeline` config block's source settings (which
builders a run mixes, with which weights, from which directories); datasets/pipeline.py
resolves the whole block.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import os
from typing import Mapping, Optional, Sequence

import tensorflow_datasets as tfds

# Names of the dataset builders that `make_builder` knows (module datasets.<name>).
BUILDER_MODULES = {
    "freihand": "datasets.freihand",
    "synthetic_hands": "datasets.synthetic_hands",
    "rhd": "datasets.rhd",
    "ho3d": "datasets.ho3d",
    "hiu_data": "datasets.hiu_data",
}
# Builders whose vertex and MANO-parameter labels were made with the licensed MANO model: a
# network training those terms on them needs that model (config.model.mano_path); see
# hiu_jax.loss_registry.check_label_hand_model.
MANO_LABELLED = ("freihand", "ho3d")


def _plain(value) -> dict:
    """A ConfigDict or mapping -> a plain dict (nested ConfigDicts resolved)."""
    return dict(value.to_dict() if hasattr(value, "to_dict") else value)


@dataclasses.dataclass(frozen=True)
class Sources:
    """The training sources of a run (every field stated); constructing one validates it.

    mixture_weights: builder name (BUILDER_MODULES) -> mixture weight (finite, >= 0; normalised
      by the pipeline). data_dir: the tfds data_dir ('' = the tfds default). manual_dirs:
      builder name -> manual_dir, its raw files ('' or absent = <data_dir>/downloads/manual).
      builder_configs: builder name -> tfds config, e.g. 'all' for FreiHAND.
    """

    mixture_weights: Mapping
    data_dir: str
    manual_dirs: Mapping
    builder_configs: Mapping

    def __post_init__(self):
        for name in ("mixture_weights", "manual_dirs", "builder_configs"):
            object.__setattr__(self, name, _plain(getattr(self, name)))
        if not self.mixture_weights:
            raise ValueError("pipeline config: mixture_weights is empty; name at least one "
                             "builder")
        for name, weight in self.mixture_weights.items():
            if name not in BUILDER_MODULES:
                raise ValueError(f"pipeline config: mixture_weights names the unknown dataset "
                                 f"builder {name!r}; known: {sorted(BUILDER_MODULES)}")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
                    math.isfinite(weight) and weight >= 0):
                raise ValueError(f"pipeline config: mixture_weights.{name} = {weight!r} must be "
                                 "a finite number >= 0")
        if not isinstance(self.data_dir, str):
            raise ValueError(f"pipeline config: data_dir = {self.data_dir!r} must be a string")

    @property
    def names(self) -> list:
        """The mixed builders' names, in the config's order."""
        return list(self.mixture_weights)

    @property
    def weights(self) -> list:
        """Their mixture weights (not normalised), in the same order."""
        return [float(w) for w in self.mixture_weights.values()]


SOURCE_NAMES = tuple(f.name for f in dataclasses.fields(Sources))


def make_builder(name: str, *, data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
                 builder_config: Optional[str] = None, prepare: bool = True):
    """The tfds builder `name` (a key of BUILDER_MODULES), built from manual_dir if needed.

    data_dir: tfds data_dir (None / '' = tfds default); manual_dir: the raw files (None / '' =
    <data_dir>/downloads/manual); builder_config: e.g. 'all' for FreiHAND. prepare: run
    download_and_prepare when the data is not there yet.
    """
    if name not in BUILDER_MODULES:
        raise ValueError(f"unknown dataset builder {name!r}; known: {sorted(BUILDER_MODULES)}")
    cls = importlib.import_module(BUILDER_MODULES[name]).Builder
    kwargs = {"file_format": "tfrecord"}
    if data_dir:
        kwargs["data_dir"] = data_dir
    if builder_config:
        kwargs["config"] = builder_config
    builder = cls(**kwargs)
    if prepare:
        download_config = tfds.download.DownloadConfig(manual_dir=manual_dir or None)
        builder.download_and_prepare(download_config=download_config)
    return builder


def build(sources: Sources, names: Optional[Sequence[str]] = None) -> list:
    """Prepared tfds builders for `names` (default: sources.names), with sources' data_dir,
    manual_dirs and builder_configs, on every host of a run: process 0 builds first (it may
    write the tfrecords); the others wait for it, then open them."""
    import jax  # the datasets package depends on jax anyway (through hiu_jax.geometry)
    from jax.experimental import multihost_utils

    names = sources.names if names is None else list(names)

    def make():
        return [make_builder(n, data_dir=sources.data_dir, manual_dir=sources.manual_dirs.get(n),
                             builder_config=sources.builder_configs.get(n)) for n in names]

    if jax.process_index() == 0:
        builders = make()
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("datasets built")
        if jax.process_index() != 0:
            builders = make()
    return builders


def synthetic_set(config) -> tuple:
    """(directory, tfds config) of the synthetic hands a run's config asks for (config.data:
    synthetic_dir, synthetic_num_train, synthetic_num_eval; config.seed), generated there on
    first use (process 0; the other hosts wait). ("", None) when the run neither mixes in nor
    evaluates on synthetic_hands. The config is not changed.

    The set goes into synthetic_generator.dataset_dir(synthetic_dir, num_train, num_eval, seed)
    and is built as the synthetic_hands tfds config of the same name, so configs that ask for different
    sets never collide. A synthetic_dir that itself holds a set of the requested sizes (one
    generated by hand with `python -m datasets.synthetic_generator --out DIR`) is used as it is,
    with the builder's default tfds config (None).
    """
    import jax
    from jax.experimental import multihost_utils

    from datasets import synthetic_generator

    if "synthetic_hands" not in config.pipeline.mixture_weights and \
            config.data.eval_source != "synthetic_hands":
        return "", None
    root = config.data.synthetic_dir
    num_train, num_eval = config.data.synthetic_num_train, config.data.synthetic_num_eval
    given = synthetic_generator.read_info(root)
    if given is not None and (given.get("num_train"), given.get("num_eval")) == (num_train,
                                                                                 num_eval):
        return root, None
    directory = synthetic_generator.dataset_dir(root, num_train, num_eval, config.seed)
    if jax.process_index() == 0 and synthetic_generator.read_info(directory) is None:
        print(f"Generating {num_train} + {num_eval} synthetic hands into {directory} (first "
              "run only)", flush=True)
        synthetic_generator.generate(directory, num_train, num_eval, seed=config.seed)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("synthetic data ready")
    return directory, os.path.basename(directory)


def sources_from_config(config) -> Sources:
    """The run's Sources: config.pipeline's source settings, with the synthetic hands at the
    directory and tfds config of `synthetic_set` (generated on first use). The config is not
    changed."""
    fields = {k: config.pipeline[k] for k in SOURCE_NAMES}
    directory, tfds_config = synthetic_set(config)
    if directory:
        fields["manual_dirs"] = dict(_plain(fields["manual_dirs"]), synthetic_hands=directory)
        if tfds_config:
            fields["builder_configs"] = dict(_plain(fields["builder_configs"]),
                                             synthetic_hands=tfds_config)
    return Sources(**fields)


def build_from_config(config, names: Optional[Sequence[str]] = None) -> list:
    """Prepared tfds builders of a run's config: `build(sources_from_config(config), names)`.
    The one way train.py and eval.py get their data (the synthetic set generated on first use,
    process 0 first on several hosts)."""
    return build(sources_from_config(config), names)
