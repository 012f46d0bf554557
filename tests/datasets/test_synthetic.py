"""The synthetic generator writes the exact FreiHAND layout, reproducibly, with consistent labels."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import mano_jax
from datasets import synthetic_generator

SIZE = 96  # small images keep the test fast; the layout and labels do not depend on the size


def _read(root, split, name):
    with open(os.path.join(root, f"{split}_{name}.json")) as f:
        return np.asarray(json.load(f), np.float64)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic"))
    info = synthetic_generator.generate(root, 6, 2, seed=3, image_size=SIZE, batch_size=4,
                                        progress=False)
    return root, info


def test_freihand_layout(generated):
    root, info = generated
    assert info["num_train"] == 6 and info["num_eval"] == 2
    for split, n in (("training", 6), ("evaluation", 2)):
        for name, shape in (("K", (3, 3)), ("xyz", (21, 3)), ("verts", (778, 3)),
                            ("mano", (1, 61)), ("scale", ())):
            assert _read(root, split, name).shape == (n,) + shape, (split, name)
        for i in range(n):
            rgb = Image.open(os.path.join(root, split, "rgb", f"{i:08d}.jpg"))
            assert rgb.format == "JPEG" and rgb.mode == "RGB" and rgb.size == (SIZE, SIZE)
            mask = np.asarray(Image.open(os.path.join(root, split, "mask", f"{i:08d}.jpg")))
            assert mask.shape == (SIZE, SIZE)
    with open(os.path.join(root, synthetic_generator.INFO_NAME)) as f:
        assert json.load(f)["seed"] == 3


def test_labels_follow_freihand_conventions(generated):
    root, _ = generated
    model = mano_jax.procedural_model()
    K, xyz, verts = (_read(root, "training", n) for n in ("K", "xyz", "verts"))
    mano, scale = _read(root, "training", "mano")[:, 0], _read(root, "training", "scale")
    out = mano_jax.forward(model, mano[:, :48], mano[:, 48:58], flat_hand_mean=False)
    # FreiHAND's root recovery: xyz9 = [u - cx, v - cy, f] / scale; the mesh is translated so
    # that keypoint 9 lands there.
    f = 0.5 * (K[:, 0, 0] + K[:, 1, 1])
    root9 = np.stack([mano[:, 58] - K[:, 0, 2], mano[:, 59] - K[:, 1, 2], f], 1) / mano[:, 60:61]
    np.testing.assert_allclose(root9, xyz[:, 9], atol=1e-6)  # float32 JSON round trip ~1e-7 m
    shift = root9 - np.asarray(out.joints)[:, 9]
    # float32 forward pass: coordinates ~0.2 m, dozens of accumulated ops -> ~1e-6 m.
    np.testing.assert_allclose(np.asarray(out.vertices) + shift[:, None], verts, atol=5e-6)
    np.testing.assert_allclose(np.asarray(out.joints) + shift[:, None], xyz, atol=5e-6)
    np.testing.assert_allclose(scale, np.linalg.norm(xyz[:, 10] - xyz[:, 9], axis=1), rtol=1e-6)
    assert np.all(xyz[:, :, 2] > 0.2), "hands in front of the camera"


def test_mask_is_the_visible_hand(generated):
    root, _ = generated
    K, verts = _read(root, "training", "K"), _read(root, "training", "verts")
    for i in range(6):
        mask = np.asarray(Image.open(os.path.join(root, "training", "mask", f"{i:08d}.jpg"))) >= 128
        uv = verts[i] @ K[i].T
        uv = uv[:, :2] / uv[:, 2:]
        lo, hi = np.floor(uv.min(0)) - 2, np.ceil(uv.max(0)) + 2  # JPEG ringing: 2 px margin
        ys, xs = np.nonzero(mask)
        assert len(xs) > 20, f"sample {i}: the hand is visible"
        assert xs.min() >= lo[0] and xs.max() <= hi[0] and ys.min() >= lo[1] and ys.max() <= hi[1]


def test_reproducible_per_sample(generated, tmp_path):
    root, _ = generated
    synthetic_generator.generate(str(tmp_path), 6, 0, seed=3, image_size=SIZE, batch_size=3,
                                 progress=False)
    for name in ("K", "xyz", "verts", "mano", "scale"):
        np.testing.assert_array_equal(_read(root, "training", name), _read(tmp_path, "training", name))
    for i in range(6):
        a = np.asarray(Image.open(os.path.join(root, "training", "rgb", f"{i:08d}.jpg")), np.int16)
        b = np.asarray(Image.open(tmp_path / "training" / "rgb" / f"{i:08d}.jpg"), np.int16)
        np.testing.assert_array_equal(a, b)


def test_read_by_the_synthetic_hands_builder(generated, tmp_path):
    from tests.datasets import fakes
    from datasets.synthetic_hands import synthetic_hands_dataset_builder as sh

    root, _ = generated
    builder = fakes.build(sh.Builder, root, tmp_path)
    examples = fakes.read_split(builder, "train")
    assert len(examples) == 6
    xyz = _read(root, "training", "xyz")
    got = np.stack([e["keypoints_3d"] for e in sorted(examples, key=lambda e: int(e["sample_id"]))])
    np.testing.assert_allclose(got, xyz, atol=1e-7)


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num_train"):
        synthetic_generator.generate(str(tmp_path), 0)
    with pytest.raises(ValueError, match="right-hand"):
        synthetic_generator.generate(str(tmp_path), 1, model=mano_jax.procedural_model("left"))


def test_freihand_viewpoints_keep_the_long_axis_near_the_image_plane():
    """The "freihand" viewpoints send the hand's long axis to d with elevation |e| <= 70 deg and
    in-plane angles spread around "fingers up" (-y); "uniform" rotations do not favour up."""
    from scipy.spatial.transform import Rotation

    model = mano_jax.procedural_model()
    frame = synthetic_generator.hand_frame(model)
    np.testing.assert_allclose(frame.T @ frame, np.eye(3), atol=1e-12)
    rng = np.random.default_rng(0)
    axes = np.stack([Rotation.from_rotvec(synthetic_generator.sample_global_rotation(
        rng, frame)).apply(frame[:, 0]) for _ in range(2000)])
    elevation = np.degrees(np.arcsin(np.abs(axes[:, 2])))
    assert elevation.max() <= 70.0 + 1e-6
    assert np.mean(-axes[:, 1] > 0) > 0.85  # fingers up (-y): P(|a| < 90 deg) = 0.93
    uniform = np.stack([Rotation.from_rotvec(synthetic_generator.sample_global_rotation(
        rng, frame, "uniform")).apply(frame[:, 0]) for _ in range(2000)])
    assert abs(np.mean(-uniform[:, 1] > 0) - 0.5) < 0.05
    with pytest.raises(ValueError, match="viewpoints"):
        synthetic_generator.sample_global_rotation(rng, frame, "sideways")


def test_skin_layout_marks_palm_back_and_five_nails():
    """The palm / back split and the nails, from any MANO-format template: each side covers a
    good part of the hand, and each of the five fingertips has nail vertices on its back."""
    model = mano_jax.procedural_model()
    palm, nail = synthetic_generator.skin_layout(model)
    assert (palm > 0.3).mean() > 0.25 and (palm < -0.3).mean() > 0.25
    assert np.all(palm[nail] < -0.3)
    verts = np.asarray(model.v_template)
    for tip in mano_jax.TIP_PRESETS["freihand"]["right"]:
        near = np.linalg.norm(verts - verts[tip], axis=1) < synthetic_generator.NAIL_RADIUS
        assert np.any(nail & near), tip
