"""datasets/preprocess.py: one canonical example -> crop, labels, targets (through the stream,
on canonical examples built in tests/datasets/fakes.py)."""
import numpy as np
import pytest
import tensorflow as tf
from scipy.spatial.transform import Rotation

from datasets import preprocess
from tests.datasets import fakes
from tests.datasets.streams import (CROP, HM, config, first, flat, no_colour, reproject, source,
                                    strong)


def test_image_warp_matches_labels():
    """A bright Gaussian blob drawn at a joint's 2D has its centroid on the warped keypoints_2d
    (K with fx != fy, rotations up to 45 deg): the image warp and the label transform agree.
    Bilinear resampling keeps the blob's first moments, so the centroid error is well below
    0.25 crop px (one input pixel is ~3 crop px here)."""
    cfg = no_colour(strong(shuffle_buffer=1))  # no shuffling: outputs in input order
    arrays = fakes.canonical_examples(n=8, blob_joint="central")
    b = flat(first(source(arrays), cfg, batch=8, seed=5))
    weight = np.clip(b["image"].mean(-1) - (40 + 2) / 255.0, 0.0, None)  # background 40
    yy, xx = np.mgrid[0:CROP, 0:CROP]
    kp = b["keypoints_2d"][np.arange(8), arrays["blob_joint"]]
    clear = np.all((kp > 20) & (kp < CROP - 21), -1)  # the whole blob (~5 px sigma) is inside
    assert clear.sum() >= 6
    for i in np.nonzero(clear)[0]:
        w = weight[i] / weight[i].sum()
        centroid = np.array([(w * xx).sum(), (w * yy).sum()])
        np.testing.assert_allclose(centroid, kp[i], atol=0.25, err_msg=str(i))
    uv, _ = reproject(b)
    assert np.abs(uv - b["keypoints_2d"]).max() < 0.01


def test_mask_warped_with_the_image():
    """A disc mask keeps its area up to the crop's scale^2 (|det A| = (fx' / fx)^2) and covers
    the warped disc centre."""
    arrays = fakes.canonical_examples(n=8, disc_radius=8)
    # Small shifts keep the disc inside the crop; no shuffling: outputs in input order.
    cfg = no_colour(strong(translation_jitter=0.05, shuffle_buffer=1))
    b = flat(first(source(arrays), cfg, batch=8, seed=2))
    assert set(np.unique(b["mask"])) <= {0.0, 1.0}
    area_in = arrays["mask"].reshape(8, -1).sum(1)
    scale = b["K"][:, 0, 0] / arrays["K"][:, 0, 0]
    area_out = b["mask"].reshape(8, -1).sum(1)
    np.testing.assert_allclose(area_out, area_in * scale**2, rtol=0.05)
    # The disc's centre (the keypoint box centre) mapped by A, fitted from the 2D labels.
    for i in range(8):
        src = np.c_[arrays["keypoints_2d"][i], np.ones(21)]
        A, *_ = np.linalg.lstsq(src, b["keypoints_2d"][i], rcond=None)
        uv = arrays["keypoints_2d"][i]
        c = np.r_[0.5 * (uv.min(0) + uv.max(0)), 1.0] @ A
        assert b["mask"][i, int(round(c[1])), int(round(c[0])), 0] == 1


def test_left_hand_is_mirrored_to_right():
    """A left hand comes out as the exact mirror image of the same pixels read as a right hand:
    image[:, ::-1], u -> N - 1 - u, x -> -x; hand_side 0, has_mano 0, labels consistent."""
    cfg = no_colour(config())
    right = flat(first(source(fakes.canonical_examples(n=4, hand_side=0, disc_radius=8, blob_joint=3)),
                       cfg, batch=4, train=False))
    left = flat(first(source(fakes.canonical_examples(n=4, hand_side=1, disc_radius=8, blob_joint=3)),
                      cfg, batch=4, train=False))
    np.testing.assert_allclose(left["image"], right["image"][:, :, ::-1], atol=2e-5)
    np.testing.assert_array_equal(left["mask"], right["mask"][:, :, ::-1])
    np.testing.assert_allclose(left["keypoints_2d"][..., 0], CROP - 1 - right["keypoints_2d"][
        ..., 0], atol=1e-3)
    np.testing.assert_allclose(left["keypoints_2d"][..., 1], right["keypoints_2d"][..., 1],
                               atol=1e-3)
    np.testing.assert_allclose(left["keypoints_3d"], right["keypoints_3d"] * [-1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(left["vertices"], right["vertices"] * [-1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(left["heatmaps"], right["heatmaps"][:, :, ::-1], atol=1e-5)
    assert np.all(left["hand_side"] == 0) and np.all(right["hand_side"] == 0)
    assert np.all(left["has_mano"] == 0) and np.all(left["mano_pose"] == 0)
    assert np.all(right["has_mano"] == 1)
    assert np.all(left["mirrored"] == 1) and np.all(right["mirrored"] == 0)
    # Train mode with strong augmentation: the mirrored geometry still projects onto the 2D.
    aug = first(source(fakes.canonical_examples(n=8, hand_side=1)), strong(), batch=8, seed=1)
    uv, _ = reproject(flat(aug))
    assert np.abs(uv - flat(aug)["keypoints_2d"]).max() < 0.01


def test_box_from_mask_without_2d_and_no_pof_without_3d():
    """has_2d False: the crop centres the mask; has_3d False: POF, 3D labels and weights 0."""
    arrays = fakes.canonical_examples(n=4, has_2d=False, has_3d=False, disc_radius=12)
    b = flat(first(source(arrays), config(crop_padding=2.0), batch=4, train=False))
    assert np.all(b["pof"] == 0) and np.all(b["pof_weight"] == 0)
    assert np.all(b["keypoints_3d"] == 0) and np.all(b["keypoint_visibility"] == 0)
    assert np.all(b["has_3d"] == 0) and np.all(b["has_root_3d"] == 0)
    for m in b["mask"][..., 0]:
        rows, cols = np.nonzero(m)
        # The mask's pixel box (pixel areas) maps onto the middle half of the crop (padding 2):
        # [N/4 - 0.5, 3N/4 - 0.5] along its longer side, centred on (N - 1) / 2 along both.
        for idx in (rows, cols):
            assert abs(0.5 * (idx.min() + idx.max()) - (CROP - 1) / 2) <= 1.0
        extent = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
        assert abs(extent - CROP / 2) <= 1


def test_compose_z_rotation_matches_matrices():
    rng = np.random.default_rng(0)
    cases = list(rng.normal(0, 1.5, (20, 3))) + [np.zeros(3), np.array([0.0, 0.0, np.pi])]
    for aa in cases:
        theta = rng.uniform(-np.pi, np.pi)
        got = preprocess.compose_z_rotation(tf.constant(aa, tf.float32), tf.constant(theta)).numpy()
        want = Rotation.from_rotvec([0, 0, theta]) * Rotation.from_rotvec(aa)
        np.testing.assert_allclose(Rotation.from_rotvec(got).as_matrix(), want.as_matrix(),
                                   atol=1e-5)


def test_knobs_validation_names_the_bad_value():
    block = config()

    def knobs(**changes):
        return preprocess.Knobs(**{k: changes.get(k, block[k]) for k in preprocess.KNOB_NAMES})

    with pytest.raises(ValueError, match="rotation_deg = 270.0"):
        knobs(rotation_deg=270.0)
    with pytest.raises(ValueError, match="heatmap_sigma"):
        knobs(heatmap_sigma=0.0)
    with pytest.raises(ValueError, match="crop_size = 64.0 must be an int > 0"):
        knobs(crop_size=64.0)
    got = knobs(crop_size=64, hue=0)
    assert got.hue == 0.0 and isinstance(got.hue, float) and got.heatmap_size == HM


def test_xla_backend_matches_tf_backend():
    """config.xla (gather warp + one XLA program, image zero-padded to a bucket) gives the TF
    graph's outputs (ImageProjectiveTransformV3) up to float rounding."""
    arrays = fakes.canonical_examples(n=4, hand_side=1, disc_radius=8, blob_joint="central")
    arrays["hand_side"][:2] = 0
    out = {}
    for xla in (False, True):
        cfg = strong(xla=xla, blur_prob=0.0, flip_prob=0.5, shuffle_buffer=1)
        out[xla] = flat(first(source(arrays), cfg, batch=4, seed=4))
    a, b = out[False], out[True]
    for k in a:
        if k in ("mask", "pof", "pof_weight"):
            continue
        np.testing.assert_allclose(a[k], b[k], atol=2e-4, rtol=1e-5, err_msg=k)
    # Thresholded values may flip where the value sits on the threshold within rounding.
    for k in ("mask", "pof_weight"):
        assert np.mean(a[k] != b[k]) < 1e-3, k


def test_warp_of_the_sampled_region_equals_the_warp_of_the_whole_image():
    """warp_image_and_mask converts only the pixels the warp reads; crops inside, across and
    outside the image, rotated, give the whole-image warp up to float32 rounding of the sample
    positions (relative 1e-7 of ~300 px, times a unit intensity gradient: < 1e-4)."""
    from hiu_jax.geometry import crops

    rng = np.random.default_rng(0)
    for _ in range(40):
        h, w = rng.integers(40, 200, 2)
        image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        mask = rng.integers(0, 2, (h, w, 1)).astype(np.uint8)
        n = int(rng.choice([16, 32]))
        theta = rng.uniform(-3, 3)
        R = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0],
                      [0, 0, 1]])
        S = crops.crop_matrix(rng.uniform(-30, [w + 30, h + 30]), rng.uniform(8, 2 * max(h, w)),
                              n) @ R
        A_inv = tf.constant(np.linalg.inv(S), tf.float32)
        whole = tf.concat([tf.cast(image, tf.float32) / 255.0, tf.cast(mask, tf.float32)], -1)
        expected = preprocess.warp_projective(whole, A_inv, n).numpy()
        got = preprocess.warp_image_and_mask(tf.constant(image), tf.constant(mask), A_inv, n)
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-4)
