"""datasets/pipeline.py: the stream (sources, mixing, sharding, batching, resume) on a fake
FreiHAND tree and on canonical examples (tests/datasets/fakes.py)."""
import jax
import numpy as np
import pytest
import tensorflow as tf

from datasets import pipeline
from hiu_jax import evaluation
from hiu_jax.geometry import crops, skeleton
from tests.datasets import fakes
from tests.datasets.streams import (CROP, HM, N_TRAIN, config, first, flat, reproject, source,
                                    strong)


def test_fake_tree_is_consistent(freihand):
    """The builder's keypoints_2d are the projection of xyz with K (what the 3D test relies on)."""
    builder, written, _, _ = freihand
    for ex in fakes.read_split(builder, "train"):
        idx = int(ex["sample_id"])
        uv = fakes.project(written["training"]["K"][idx], written["training"]["xyz"][idx])
        np.testing.assert_allclose(ex["keypoints_2d"], uv, atol=1e-3)
        np.testing.assert_allclose(ex["keypoints_3d"], written["training"]["xyz"][idx],
                                   atol=1e-6)


def test_train_labels_project_consistently(freihand):
    """K' (root_3d + keypoints_3d) projects onto keypoints_2d under strong augmentation; heat-map
    peaks sit on the keypoints; POF carries the unit 3D bone directions on the 2D bones."""
    builder, *_ = freihand
    cfg = strong()
    it = pipeline.make_dataset(builder, "train", config=cfg, global_batch_size=8, train=True,
                               seed=3, local_device_count=1, process_count=1)
    for _ in range(2):
        b = flat(next(it))
        uv, xyz = reproject(b)
        assert b["has_3d"].all() and b["has_2d"].all()
        # float32 rounding of A and K' is ~1e-4 px; the issue's bound is 0.5 px.
        assert np.abs(uv - b["keypoints_2d"]).max() < 0.01
        vis = b["keypoint_visibility"] > 0
        inside = np.all((b["keypoints_2d"] >= -0.5) & (b["keypoints_2d"] <= CROP - 0.5), -1)
        np.testing.assert_array_equal(vis, inside)
        assert 0.3 < vis.mean() <= 1.0
        # Heat maps: argmax on the nearest heat-map pixel of (p + 0.5) * M / N - 0.5, hence
        # within 0.5 + 0.375 < 1 heat-map pixel of p * M / N; zero maps for invisible joints.
        hm_xy = crops.crop_to_heatmap(b["keypoints_2d"], CROP, HM)
        maps = b["heatmaps"]
        peak = maps.reshape(maps.shape[0], HM * HM, 21).argmax(1)
        arg = np.stack([peak % HM, peak // HM], -1)
        err = np.abs(arg - hm_xy)[vis]
        assert err.max() <= 0.5 + 1e-3
        assert np.abs(arg - b["keypoints_2d"] * HM / CROP)[vis].max() < 1.0
        np.testing.assert_allclose(maps.max(axis=(1, 2))[vis], 1.0, atol=0.12)
        assert np.all(maps.max(axis=(1, 2))[~vis] == 0)
        # POF: unit direction of child - parent wherever the weight is 1.
        d3 = xyz[:, skeleton.BONE_CHILDREN] - xyz[:, skeleton.BONE_PARENTS]
        unit = d3 / np.linalg.norm(d3, axis=-1, keepdims=True)
        pof = b["pof"].reshape(b["pof"].shape[:3] + (20, 3))
        w = b["pof_weight"]
        assert set(np.unique(w)) <= {0.0, 1.0} and w.sum() > 0
        expect = w[..., None] * unit[:, None, None]
        np.testing.assert_allclose(pof, expect, atol=1e-4)
        # The bone's midpoint pixel is painted when it lies in the heat map.
        mid = crops.crop_to_heatmap(
            0.5 * (uv[:, skeleton.BONE_CHILDREN] + uv[:, skeleton.BONE_PARENTS]), CROP, HM)
        px = np.round(mid).astype(int)
        ok = np.all((px >= 0) & (px < HM), -1)
        e, bone = np.nonzero(ok)
        assert np.all(w[e, px[e, bone, 1], px[e, bone, 0], bone] == 1)


def test_batch_shapes_four_devices(freihand):
    """With the 4 fake CPU devices of conftest: [4, per_device, ...] at the default sizes."""
    n_dev = jax.local_device_count()
    if n_dev < 2:
        pytest.skip(f"needs several devices (conftest asks for 4), got {n_dev}")
    builder, *_ = freihand
    cfg = config(crop_size=256, heatmap_size=64, shuffle_buffer=8)
    b = next(pipeline.make_dataset(builder, "train", config=cfg, global_batch_size=2 * n_dev,
                                   train=True))
    dims = {"crop": 256, "hm": 64}
    assert set(b) == set(pipeline.OUTPUT_SCHEMA)
    for name, (shape, dtype, _) in pipeline.OUTPUT_SCHEMA.items():
        assert b[name].shape == (n_dev, 2) + tuple(dims.get(d, d) for d in shape), name
        assert b[name].dtype == dtype.as_numpy_dtype, name
    assert b["image"].shape[2:] == (256, 256, 3) and b["pof"].shape[2:] == (64, 64, 60)
    assert 0.0 <= b["image"].min() and b["image"].max() <= 1.0
    bad = 2 * n_dev + 1
    with pytest.raises(ValueError, match=f"global_batch_size {bad} .* device count {n_dev}"):
        pipeline.make_dataset(builder, "train", config=cfg, global_batch_size=bad, train=True)


def test_batch_shapes_single_device(freihand):
    builder, *_ = freihand
    b = first(builder, config(), batch=8)
    assert b["image"].shape == (1, 8, CROP, CROP, 3)
    assert b["heatmaps"].shape == (1, 8, HM, HM, 21) and b["pof"].shape == (1, 8, HM, HM, 60)


def test_determinism(freihand):
    builder, *_ = freihand
    cfg = strong()
    a, b = first(builder, cfg, seed=7), first(builder, cfg, seed=7)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    c = first(builder, cfg, seed=8)
    assert not np.array_equal(a["image"], c["image"])
    assert not np.array_equal(a["K"], c["K"])


def test_mixture_weights_and_eval_padding(freihand):
    builder, *_ = freihand
    other = source(fakes.canonical_examples(n=4))
    b = first([builder, other], config(), batch=8, weights=[0.0, 1.0])
    assert np.all(b["source"] == 1)
    # Eval: every example once, in order, the last batch padded with valid = 0.
    it = pipeline.make_dataset([other], "train", config=config(), global_batch_size=6,
                               train=False, local_device_count=2, process_count=1)
    batches = list(it)
    assert len(batches) == 1 and batches[0]["image"].shape[:2] == (2, 3)
    np.testing.assert_array_equal(batches[0]["valid"].reshape(-1), [1, 1, 1, 1, 0, 0])
    # Two hosts of one process each read disjoint halves.
    counts = [
        sum(int(x["valid"].sum()) for x in pipeline.make_dataset(
            builder, "train", config=config(), global_batch_size=4, train=False,
            local_device_count=1, process_count=2, process_index=i))
        for i in range(2)
    ]
    assert counts == [N_TRAIN // 2, N_TRAIN // 2]
    with pytest.raises(ValueError, match="weights"):
        first([builder, other], config(), weights=[1.0])


def test_resume_with_start_batch(freihand):
    """start_batch=k gives batch k of the uninterrupted stream, with a two-source mixture."""
    builder, *_ = freihand
    other = source(fakes.canonical_examples(n=4))
    cfg = config(blur_prob=0.0)

    def stream(start):
        return pipeline.make_dataset([builder, other], "train", config=cfg, global_batch_size=4,
                                     train=True, seed=9, weights=[0.6, 0.4], start_batch=start,
                                     local_device_count=1, process_count=1)

    full = stream(0)
    batches = [next(full) for _ in range(4)]
    assert 0 < np.mean(np.concatenate([b["source"].ravel() for b in batches])) < 1
    resumed = next(stream(3))
    for k in resumed:
        np.testing.assert_array_equal(resumed[k], batches[3][k], err_msg=k)


def test_mixture_counts_match_the_choices_across_blocks():
    """The resume arithmetic (_mixture_counts) counts the same choices the stream makes, across
    a SELECTOR_BLOCK boundary; zero-weight sources are never chosen."""
    key = tf.constant([5, 1], tf.int64)
    cdf = tf.constant(np.cumsum([0.5, 0.0, 0.5]), tf.float32)
    n = pipeline.SELECTOR_BLOCK + 100
    choices = np.concatenate([pipeline._mixture_choices(key, tf.constant(b, tf.int64), cdf)
                              .numpy() for b in range(2)])[:n]
    counts = pipeline._mixture_counts(key, cdf, n)
    np.testing.assert_array_equal(counts, np.bincount(choices, minlength=3))
    assert counts[1] == 0 and abs(counts[0] / n - 0.5) < 0.05


def test_settings_need_every_key_and_reject_unknown_ones():
    settings = pipeline.settings_from_config(config(crop_size=64, seed=3))
    assert settings.knobs.crop_size == 64 and settings.seed == 3
    assert settings.knobs.heatmap_size == HM and settings.shuffle_buffer == 16
    assert settings.sources.names == ["freihand"]
    with pytest.raises(ValueError, match="unknown key 'rotation'; valid keys: .*rotation_deg"):
        pipeline.settings_from_config(config(rotation=10.0))
    partial = config()
    del partial["hue"], partial["seed"]
    with pytest.raises(ValueError, match="missing 'hue', 'seed'; a config file states every key"):
        pipeline.settings_from_config(partial)
    with pytest.raises(ValueError, match="shuffle_buffer = 0"):
        pipeline.settings_from_config(config(shuffle_buffer=0))
    with pytest.raises(ValueError, match="unknown dataset builder 'nope'"):
        pipeline.settings_from_config(config(mixture_weights={"nope": 1.0}))


def _dataset_frame(b):
    """M (root_3d + points) for joints and vertices, M = diag(-1, 1, 1) where mirrored."""
    m = np.where(b["mirrored"] > 0, -1.0, 1.0)[:, None, None] * np.array([1.0, 0.0, 0.0]) + \
        np.array([0.0, 1.0, 1.0])
    root = b["root_3d"][:, None].astype(np.float64)
    return m * (root + b["keypoints_3d"]), m * (root + b["vertices"])


def test_sample_ids_and_mirror_flags_recover_the_dataset_labels(freihand):
    """Evaluation batches carry each example's id and mirror flag: with them, root_3d +
    keypoints_3d / vertices give back the dataset's own labels (eval crops do not rotate)."""
    builder, *_ = freihand
    left = fakes.canonical_examples(n=3, hand_side=1, seed=4)
    left["hand_side"][0] = 0
    b = flat(first([builder, source(left)], config(), batch=N_TRAIN + 4, train=False))
    ids = evaluation.decode_sample_ids(b["sample_id"])
    truth = {ex["sample_id"].decode(): ex for ex in fakes.read_split(builder, "train")}
    truth.update({sid: {"keypoints_3d": left["keypoints_3d"][i], "vertices": left["vertices"][i],
                        "hand_side": left["hand_side"][i]}
                  for i, sid in enumerate(left["sample_id"])})
    valid = b["valid"] > 0
    assert sorted(i for i, v in zip(ids, valid) if v) == sorted(truth)
    assert all(i == "" for i, v in zip(ids, valid) if not v)  # padding
    joints, verts = _dataset_frame(b)
    for k, sid in enumerate(ids):
        if not valid[k]:
            continue
        want = truth[sid]
        assert b["mirrored"][k] == float(want["hand_side"] == 1)
        # float32 rounding of (x - root) + root: a few 1e-8 m.
        np.testing.assert_allclose(joints[k], want["keypoints_3d"], atol=1e-6, err_msg=sid)
        if b["has_mesh"][k]:
            np.testing.assert_allclose(verts[k], want["vertices"], atol=1e-6, err_msg=sid)
    assert b["mirrored"][valid].sum() == 2 and b["has_mesh"][valid].any()


def test_sample_id_longer_than_64_bytes_is_an_error_naming_it():
    arrays = fakes.canonical_examples(n=2)
    long_id = "x" * 60 + "\u00e9\u00e9\u00e9"  # 66 bytes in UTF-8
    arrays["sample_id"] = np.array(["ok", long_id])
    with pytest.raises(tf.errors.InvalidArgumentError, match=long_id):
        first(source(arrays), config(), batch=2, train=False)
