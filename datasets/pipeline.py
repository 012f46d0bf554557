"""The tf.data input stream: canonical hand examples (datasets/schema.py) -> network batches.

    sources (tfds builders or tf.data datasets of canonical examples), one per dataset
      -> per host: its own slice (tfds.split_for_jax_process / Dataset.shard)
      -> per source: [repeat] -> enumerate -> [shuffle] -> preprocess (parallel, deterministic)
      -> mix by weights (stateless choices, choose_from_datasets; eval: concatenate)
      -> batch (per-host batch) -> reshape [local_device_count, per_device_batch, ...] -> prefetch
      -> tfds.as_numpy

The per-example work is datasets/preprocess.py (crop, labels; augment.py, targets.py); the
builders come from datasets/registry.py. `settings_from_config` is the one place that reads
the `pipeline` config block: it validates it, and rejects unknown and missing keys (the config
files state every value; there are no defaults here).

Determinism: every random choice of an example is a stateless op seeded by
fold_in(seed, process index, source index, example index), where the example index counts the
examples of a source in read order over all epochs (so each epoch augments differently, and a
seed reproduces everything); file shuffling, shuffle buffers and mixing are seeded, and the
tf.data options say deterministic=True. A stream resumes exactly at any batch (start_batch);
iterator state itself is not checkpointed.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from datasets import preprocess as preprocess_lib
from datasets import registry, schema
from hiu_jax.config_blocks import check_keys
from hiu_jax.geometry import skeleton
from hiu_jax.geometry.skeleton import NUM_KEYPOINTS, NUM_VERTICES

try:  # TF must never reserve accelerator memory that JAX needs.
    tf.config.set_visible_devices([], "GPU")
except (RuntimeError, ValueError):  # already initialised, or no such device type
    pass

NUM_BONES = skeleton.NUM_BONES

# The output of the pipeline (one example). Shapes use "crop" = crop_size and "hm" =
# heatmap_size; batches add [local_device_count, per_device_batch] in front. The crop camera
# frame is the dataset's camera frame rotated by R = R_z(theta) M (datasets/preprocess.py);
# evaluation crops never rotate (theta = 0), so there the dataset-frame labels are
# M (root_3d + keypoints_3d) and M (root_3d + vertices), M = diag(-1, 1, 1) where mirrored = 1.
OUTPUT_SCHEMA = {
    "image": (("crop", "crop", 3), tf.float32, "RGB in [0, 1]; 0 where the crop leaves the image"),
    "mask": (("crop", "crop", 1), tf.float32, "1 = hand, 0 = background (all 0 if not has_mask)"),
    "heatmaps": (("hm", "hm", NUM_KEYPOINTS), tf.float32,
                 "exp(-d^2 / 2 sigma^2), peak 1 at the keypoint (heat-map coords, see "
                 "hiu_jax.geometry.crops.crop_to_heatmap); all 0 for joints with "
                 "keypoint_visibility 0"),
    "keypoints_2d": ((NUM_KEYPOINTS, 2), tf.float32, "u, v crop pixels; 0 if not has_2d"),
    "keypoint_visibility": ((NUM_KEYPOINTS,), tf.float32,
                            "1 = labeled, visible and inside the crop [-0.5, crop - 0.5]^2"),
    "keypoints_3d": ((NUM_KEYPOINTS, 3), tf.float32, "metres, crop camera frame, minus root_3d"),
    "root_3d": ((3,), tf.float32, "wrist (joint 0), metres, crop camera frame"),
    "vertices": ((NUM_VERTICES, 3), tf.float32, "metres, crop camera frame, minus root_3d"),
    "K": ((3, 3), tf.float32, "intrinsics of the crop: proj(K (root_3d + keypoints_3d)) = 2D"),
    "pof": (("hm", "hm", 3 * NUM_BONES), tf.float32,
            "unit 3D direction of bone b in channels 3b..3b+2 within pof_width of the 2D bone"),
    "pof_weight": (("hm", "hm", NUM_BONES), tf.float32, "1 where bone b's POF is defined"),
    "mano_pose": ((schema.MANO_POSE_DIM,), tf.float32,
                  "axis-angle; [0:3] rotated with the crop camera; 0 if not has_mano"),
    "mano_betas": ((schema.MANO_BETAS_DIM,), tf.float32, "0 if not has_mano"),
    "mano_flat_hand_mean": ((), tf.float32, "1 / 0, see schema.py"),
    "scale": ((), tf.float32, "FreiHAND bone 9-10 length, metres (has_scale)"),
    "hand_side": ((), tf.float32, "side of the hand IN THE CROP: 0 right, 1 left"),
    "mirrored": ((), tf.float32, "1 where the pipeline mirrored the example (left hands, and "
                                 "train flips): x -> -x in the camera frame; else 0"),
    "sample_id": ((preprocess_lib.SAMPLE_ID_BYTES,), tf.uint8,
                  "the builder's sample_id, UTF-8, zero-padded (hiu_jax.evaluation.decode_sample_ids)"),
    "source": ((), tf.int32, "index of the example's source in make_dataset's list"),
    "valid": ((), tf.float32, "1 = real example, 0 = padding of the last eval batch"),
    **{flag: ((), tf.float32, "1 / 0, see preprocess") for flag in schema.FLAG_NAMES},
}


# ----------------------------------------------------------------------------------------------
# Configuration


@dataclasses.dataclass(frozen=True)
class Settings:
    """The resolved `pipeline` config block: the per-example knobs, the sources, and the
    stream's own two settings (shuffle_buffer: train examples per source in the shuffle
    buffer; seed: the default seed of make_dataset)."""

    knobs: preprocess_lib.Knobs
    sources: registry.Sources
    shuffle_buffer: int
    seed: int

    def __post_init__(self):
        if isinstance(self.shuffle_buffer, bool) or not isinstance(
                self.shuffle_buffer, (int, np.integer)) or self.shuffle_buffer < 1:
            raise ValueError(f"pipeline config: shuffle_buffer = {self.shuffle_buffer!r} must be "
                             "an int >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"pipeline config: seed = {self.seed!r} must be an int")


STREAM_NAMES = ("shuffle_buffer", "seed")
CONFIG_KEYS = preprocess_lib.KNOB_NAMES + registry.SOURCE_NAMES + STREAM_NAMES


def settings_from_config(block) -> Settings:
    """The `pipeline` config block (a ConfigDict or a mapping that states every key of
    CONFIG_KEYS) -> Settings, validated. Raises ValueError naming an unknown key (and listing
    the valid ones), the missing keys, or the first bad value."""
    if isinstance(block, Settings):
        return block
    check_keys(block, CONFIG_KEYS, "pipeline")

    def pick(names):
        return {k: block[k] for k in names}

    return Settings(knobs=preprocess_lib.Knobs(**pick(preprocess_lib.KNOB_NAMES)),
                    sources=registry.Sources(**pick(registry.SOURCE_NAMES)),
                    **pick(STREAM_NAMES))


# ----------------------------------------------------------------------------------------------
# The stream


Source = Union[tfds.core.DatasetBuilder, tf.data.Dataset]


def _read_source(source, index: int, split: str, *, train: bool, seed: int,
                 process_index: int, process_count: int) -> tf.data.Dataset:
    """This host's slice of one source, as a dataset of INPUT_KEYS dicts (images encoded when
    the source is a builder; tf.data sources are sharded with Dataset.shard)."""
    if isinstance(source, tfds.core.DatasetBuilder):
        host_split = tfds.split_for_jax_process(
            split, process_index=process_index, process_count=process_count)
        ds = source.as_dataset(
            split=host_split, shuffle_files=train,
            decoders={"image": tfds.decode.SkipDecoding(), "mask": tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(shuffle_seed=seed, try_autocache=False))
        name = source.name
    elif isinstance(source, tf.data.Dataset):
        ds = source.shard(process_count, process_index) if process_count > 1 else source
        name = f"tf.data source {index}"
    else:
        raise TypeError(f"source {index} is a {type(source).__name__}; expected a "
                        "tfds.core.DatasetBuilder or a tf.data.Dataset of canonical examples")
    spec = ds.element_spec
    if not isinstance(spec, Mapping):
        raise TypeError(f"{name}: examples must be dicts of the canonical schema, got {spec}")
    missing = [k for k in preprocess_lib.INPUT_KEYS if k not in spec]
    if missing:
        raise ValueError(f"{name}: examples lack the canonical keys {missing}")
    shapes = {k: shape for k, (shape, _) in schema.TENSOR_LABELS.items()}
    for key, shape in shapes.items():
        if key in preprocess_lib.INPUT_KEYS and not spec[key].shape.is_compatible_with(shape):
            raise ValueError(f"{name}: {key} has shape {spec[key].shape}, expected {shape}")
    return ds.map(lambda ex: {k: ex[k] for k in preprocess_lib.INPUT_KEYS})


def _device_layout(global_batch_size, local_device_count, process_count, process_index):
    """(local_device_count, per_device_batch, process_index, process_count) from jax unless
    overridden. Raises ValueError naming the numbers if the batch does not divide."""
    import jax  # the datasets package depends on jax anyway (through hiu_jax.geometry)

    if process_count is None:
        process_count = jax.process_count()
    if process_index is None:
        process_index = jax.process_index() if process_count == jax.process_count() else 0
    if local_device_count is None:
        local_device_count = jax.local_device_count()
        device_count = jax.device_count()
    else:
        device_count = local_device_count * process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    if not isinstance(global_batch_size, (int, np.integer)) or global_batch_size <= 0:
        raise ValueError(f"global_batch_size must be an int > 0, got {global_batch_size!r}")
    if global_batch_size % device_count:
        raise ValueError(
            f"global_batch_size {global_batch_size} is not divisible by the device count "
            f"{device_count} ({process_count} process(es) x {local_device_count} local devices)")
    return local_device_count, global_batch_size // device_count, process_index, process_count


def _check_weights(weights, n):
    if weights is None:
        return [1.0 / n] * n
    w = [float(x) for x in weights]
    if len(w) != n:
        raise ValueError(f"{len(w)} mixture weights {w} for {n} sources")
    if any(not math.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
        raise ValueError(f"mixture weights {w} must be finite, >= 0 and sum to > 0")
    return [x / sum(w) for x in w]


SELECTOR_BLOCK = 4096  # mixture choices are drawn in blocks of this many examples


def _mixture_choices(key, block, cdf):
    """The source indices (SELECTOR_BLOCK,) int64 of mixture block `block`: stateless uniforms
    from fold_in(key, block) placed in the cumulative weights cdf (n,)."""
    u = tf.random.stateless_uniform(
        (SELECTOR_BLOCK,), tf.random.experimental.stateless_fold_in(key, block))
    n = cdf.shape[0]
    return tf.minimum(tf.searchsorted(cdf, u, side="right", out_type=tf.int64), n - 1)


def _mixture_counts(key, cdf, num_examples: int) -> np.ndarray:
    """How many of the first num_examples mixture choices pick each source: (n,) int."""
    counts = np.zeros(cdf.shape[0], np.int64)
    for block in range(-(-num_examples // SELECTOR_BLOCK)):
        take = min(SELECTOR_BLOCK, num_examples - block * SELECTOR_BLOCK)
        choice = _mixture_choices(key, tf.constant(block, tf.int64), cdf)[:take].numpy()
        counts += np.bincount(choice, minlength=cdf.shape[0])
    return counts


def make_tf_dataset(
    sources: Union[Source, Sequence[Source]],
    split: str,
    *,
    config,
    global_batch_size: int,
    train: bool,
    seed: Optional[int] = None,
    weights: Optional[Sequence[float]] = None,
    start_batch: int = 0,
    local_device_count: Optional[int] = None,
    process_count: Optional[int] = None,
    process_index: Optional[int] = None,
) -> tf.data.Dataset:
    """The batched tf.data.Dataset that make_dataset iterates over as numpy; the arguments are
    documented there."""
    settings = settings_from_config(config)
    seed = int(settings.seed if seed is None else seed)
    if isinstance(sources, (tfds.core.DatasetBuilder, tf.data.Dataset)):
        sources = [sources]
    sources = list(sources)
    if not sources:
        raise ValueError("make_dataset needs at least one source")
    weights = _check_weights(weights, len(sources))
    if not isinstance(start_batch, (int, np.integer)) or start_batch < 0:
        raise ValueError(f"start_batch must be an int >= 0, got {start_batch!r}")
    local, per_device, process_index, process_count = _device_layout(
        global_batch_size, local_device_count, process_count, process_index)
    host_batch = local * per_device
    base_key = tf.constant([seed, 0], tf.int64)  # per-example augmentation
    mix_key = tf.random.experimental.stateless_fold_in(  # mixture choices
        tf.constant([seed, 1], tf.int64), process_index)
    cdf = tf.constant(np.cumsum(weights), tf.float32)

    # Resuming (train): the examples the first start_batch batches drew from each source are
    # skipped as raw records after the shuffle, before any decoding, so the stream continues
    # exactly as if those batches had been consumed.
    skip = [0] * len(sources)
    if train and start_batch:
        n_skip = int(start_batch) * host_batch
        skip = (list(_mixture_counts(mix_key, cdf, n_skip)) if len(sources) > 1 else [n_skip])

    per_source = []
    for index, source in enumerate(sources):
        ds = _read_source(source, index, split, train=train, seed=seed,
                          process_index=process_index, process_count=process_count)
        if train:
            ds = ds.repeat()
        ds = ds.enumerate()
        if train:
            ds = ds.shuffle(settings.shuffle_buffer, seed=seed + 7919 * index,
                            reshuffle_each_iteration=True)
            ds = ds.skip(int(skip[index]))

        def prep(i, ex, index=index):
            key = tf.random.experimental.stateless_fold_in(base_key, process_index)
            key = tf.random.experimental.stateless_fold_in(key, index)
            key = tf.random.experimental.stateless_fold_in(key, i)
            out = preprocess_lib.preprocess(ex, key, settings.knobs, train)
            out["source"] = tf.constant(index, tf.int32)
            out["valid"] = tf.constant(1.0)
            return out

        per_source.append(ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))

    if len(per_source) == 1:
        ds = per_source[0]
    elif train:
        # A weighted random choice of source per example (as tf.data's sample_from_datasets
        # makes), with a selector that is a stateless function of the example's position, so
        # that a resumed stream can skip it exactly.
        first = int(start_batch) * host_batch
        selector = (tf.data.Dataset.range(first // SELECTOR_BLOCK, 2**62)
                    .map(lambda block: _mixture_choices(mix_key, block, cdf))
                    .unbatch().skip(first % SELECTOR_BLOCK))
        ds = tf.data.Dataset.choose_from_datasets(per_source, selector,
                                                  stop_on_empty_dataset=False)
    else:  # evaluation reads every example once, source after source
        ds = per_source[0]
        for other in per_source[1:]:
            ds = ds.concatenate(other)

    ds = ds.batch(host_batch, drop_remainder=train, num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True)
    if not train and start_batch:
        ds = ds.skip(int(start_batch))  # evaluation: preprocesses the skipped batches

    def to_devices(batch):
        n = tf.shape(batch["valid"])[0]

        def reshape(x):
            if not train:  # pad the last, short eval batch; 'valid' marks the padding with 0
                x = tf.pad(x, [[0, host_batch - n]] + [[0, 0]] * (x.shape.rank - 1))
            return tf.reshape(x, [local, per_device] + x.shape[1:].as_list())

        return {k: reshape(v) for k, v in batch.items()}

    ds = ds.map(to_devices, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)


def make_dataset(sources: Union[Source, Sequence[Source]], split: str, **kwargs):
    """An iterator of numpy batches {name: [local_device_count, per_device_batch, ...]}.

    Args:
      sources: one or several tfds builders (prepared, tfrecord) or tf.data datasets whose
        elements are canonical examples (INPUT_KEYS; images encoded or decoded uint8).
      split: tfds split name (builders); every host reads its own slice
        (tfds.split_for_jax_process). tf.data sources are sharded with Dataset.shard instead.
      config: the pipeline config block (every key of CONFIG_KEYS; settings_from_config) or
        Settings.
      global_batch_size: examples per step over all devices of all hosts; must be divisible by
        the device count. per_device_batch = global_batch_size / device_count.
      train: True = shuffled, augmented, repeated forever, sources mixed by weights with
        stateless weighted choices, remainder dropped. False = one pass in order, no augmentation
        (left hands are still mirrored), sources concatenated, the last batch padded with
        'valid' = 0.
      seed: the run's seed (None = config.seed); fixes file order, shuffling, mixing and
        every augmentation.
      weights: mixture weights of the sources (None = equal); normalised. Each example's source
        is a stateless draw from the weights, reproducible per position for resuming.
      start_batch: resume: the iterator starts with batch number start_batch of the stream
        (0 = the beginning); the same batches as if start_batch batches had been consumed.
        Train: the skipped examples are skipped as raw records (no decoding). Eval: the
        skipped batches are computed and dropped.
      local_device_count, process_count, process_index: overrides of jax's values (tests,
        or a pretend device layout); by default jax.local_device_count(), jax.device_count(),
        jax.process_count(), jax.process_index().
    Returns:
      An iterator, iter(tfds.as_numpy(make_tf_dataset(...))), of dicts of OUTPUT_SCHEMA numpy
      arrays with the leading dims [local_device_count, per_device_batch], ready for jax.pmap
      (or reshape to [host_batch, ...] for jit with a sharded mesh).
    """
    return iter(tfds.as_numpy(make_tf_dataset(sources, split, **kwargs)))
