"""Tests for hiu_jax.losses: the registry, every term's minimum, label flags, self-supervision on
a consistent mesh, gradients, and data-parallel normalisation.

Small shapes throughout: crop N = 64, heat maps M = 32, mask logits S = 32, two stacks, three
regressor iterations. No network is built; outputs are hand-made dicts.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial.transform import Rotation
import pytest

import mano_jax
from configs import default
from hiu_jax import keypoint_maps, loss_registry, losses, render
from hiu_jax.geometry import crops, projection, skeleton

N, M, S = 64, 32, 32  # crop, heat-map and mask-logit sizes
STACKS, ITERS = 2, 3
SUPERVISED = ("heatmaps", "mask", "pof", "keypoints_2d", "keypoints_3d", "vertices", "mano_pose",
              "global_rotation", "mano_betas")
SELF_SUPERVISED = ("silhouette", "keypoints_consistency", "pof_consistency")
PRIORS = ("shape_prior", "pose_prior")
FLAGS = ("has_intrinsics", "has_mask", "has_2d", "has_3d", "has_mesh", "has_mano")
BCE_30 = float(np.log1p(np.exp(-30.0)))  # BCE of a logit of +-30 on the right side, ~9.4e-14


@pytest.fixture(scope="module")
def mano():
    return mano_jax.procedural_model()


@functools.partial(jax.jit, static_argnames="flat_hand_mean")
def mano_forward(model, pose, betas, flat_hand_mean):
    return mano_jax.forward(model, pose, betas, flat_hand_mean=flat_hand_mean)


def loss_block():
    """The default config's loss block, without the ramp (every weight in full from step 0)."""
    cfg = default.get_config().loss
    cfg.ramp_start_step, cfg.ramp_end_step = 0, 0
    return cfg


def only(*names, **extra):
    """A loss block with only `names` active (weight 1), other fields as configs/default.py."""
    cfg = loss_block()
    for name in cfg.terms:
        cfg.terms[name] = 1.0 if name in names else 0.0
    for key, value in extra.items():
        cfg[key] = value
    return cfg


def make_batch(rng, batch_size, hands_mean):
    """Random labels of every kind, all flags 1; the mask is constant on 2x2 blocks, so its box
    average to S = N / 2 is exactly 0 or 1."""
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    b = batch_size
    mask = (rng.random((b, S, S, 1)) < 0.4).astype(np.float32)
    batch = {
        "image": rng.random((b, N, N, 3)).astype(np.float32),
        "mask": np.repeat(np.repeat(mask, 2, 1), 2, 2),
        "heatmaps": rng.random((b, M, M, 21)).astype(np.float32),
        "keypoints_2d": (rng.random((b, 21, 2)) * N).astype(np.float32),
        "keypoint_visibility": (rng.random((b, 21)) < 0.8).astype(np.float32),
        "keypoints_3d": 0.05 * f(b, 21, 3),
        "vertices": 0.05 * f(b, 778, 3),
        "pof": f(b, M, M, 60),
        "pof_weight": (rng.random((b, M, M, 20)) < 0.1).astype(np.float32),
        "mano_pose": 0.3 * f(b, 48),
        "mano_betas": f(b, 10),
        "mano_flat_hand_mean": (np.arange(b) % 2).astype(np.float32),
        "valid": np.ones((b,), np.float32),
    }
    batch["keypoint_visibility"][:, 0] = 1.0  # every sample has a visible joint
    for flag in FLAGS:
        batch[flag] = np.ones((b,), np.float32)
    return batch


def outputs_equal_to(batch, hands_mean):
    """Outputs that equal the batch's targets: mask logits +-30, the pose target converted to
    the network's deviation-from-hands_mean convention here, independently of losses.py."""
    mask = batch["mask"][:, ::2, ::2]
    pose = batch["mano_pose"].copy()
    pose[:, 3:] -= batch["mano_flat_hand_mean"][:, None] * np.asarray(hands_mean)
    return {
        "heatmaps": [batch["heatmaps"]] * STACKS,
        "mask_logits": [30.0 * (2.0 * mask - 1.0)] * STACKS,
        "pof": [batch["pof"]] * STACKS,
        "keypoints_2d_iters": [batch["keypoints_2d"]] * ITERS,
        "keypoints_3d_iters": [batch["keypoints_3d"]] * ITERS,
        "keypoints_2d": batch["keypoints_2d"],
        "keypoints_3d": batch["keypoints_3d"],
        "vertices": batch["vertices"],
        "vertices_2d": np.zeros((len(pose), 778, 2), np.float32),
        "mano_pose": pose,
        "mano_rotmats": full_rotmats(pose, hands_mean),
        "mano_betas": batch["mano_betas"],
    }


def full_rotmats(deviation_pose, hands_mean):
    """(B, 48) deviations from hands_mean -> (B, 16, 3, 3) full local rotations (scipy)."""
    full = np.asarray(deviation_pose, np.float64).copy()
    full[:, 3:] += np.asarray(hands_mean, np.float64)
    return Rotation.from_rotvec(full.reshape(-1, 3)).as_matrix().reshape(
        len(full), 16, 3, 3).astype(np.float32)


def perturbed(outputs, rng):
    """Every float output moved by noise (a dict of the same structure)."""
    return jax.tree.map(
        lambda x: x + np.float32(0.1) * rng.standard_normal(np.shape(x)).astype(np.float32),
        outputs)


def term_values(name, outputs, batch, mano, **extra):
    cfg = losses.term_config(only(name, **extra), mano)
    return np.asarray(loss_registry.REGISTRY[name].fn(outputs, batch, cfg))


# ---------------------------------------------------------------------------------- registry


def test_unknown_term_in_config_lists_registered_names():
    cfg = loss_block()
    cfg.terms.no_such_term = 1.0
    with pytest.raises(ValueError, match="unknown loss term 'no_such_term'") as err:
        loss_registry.validate_loss_config(cfg)
    for name in SUPERVISED + SELF_SUPERVISED + PRIORS:
        assert repr(name) in str(err.value)


def test_config_validation_messages():
    cfg = only("keypoints_2d")
    cfg.terms.keypoints_2d = -1.0
    with pytest.raises(ValueError, match="terms.keypoints_2d = -1.0 must be a finite number >= 0"):
        loss_registry.validate_loss_config(cfg)
    with pytest.raises(ValueError, match="keypoint_loss = 'l2' must be one of"):
        loss_registry.validate_loss_config(only("keypoints_2d", keypoint_loss="l2"))
    with pytest.raises(ValueError, match="softargmax_temperature = 0.0 must be finite and > 0"):
        loss_registry.validate_loss_config(only("keypoints_2d", softargmax_temperature=0.0))
    assert loss_registry.validate_loss_config(only("keypoints_2d", "mask")) == {"keypoints_2d": 1.0,
                                                                      "mask": 1.0}


def test_register_rejects_taken_and_reserved_names():
    with pytest.raises(ValueError, match="'heatmaps' is already registered"):
        loss_registry.register("heatmaps")(lambda o, b, c: None)
    with pytest.raises(ValueError, match="reserved"):
        loss_registry.register("loss")
    assert loss_registry.REGISTRY["heatmaps"].fn is losses.heatmaps_loss


def test_each_term_is_named_after_its_function():
    """losses.py's terms: the term `name` is the function `<name>_loss`, so a config key, a logged
    loss and the code that computes it say the same thing."""
    ours = {name: term.fn.__name__ for name, term in loss_registry.REGISTRY.items()
            if term.fn.__module__ == losses.__name__}
    assert len(ours) >= 16
    assert {name: fn for name, fn in ours.items() if fn != f"{name}_loss"} == {}


def test_new_term_is_one_function_plus_one_config_line(monkeypatch):
    """The example of the README section "Add a loss term"."""
    monkeypatch.setattr(loss_registry, "REGISTRY", dict(loss_registry.REGISTRY))
    tips = jnp.array([4, 8, 12, 16, 20])

    @loss_registry.register("fingertip_depth", flag="has_3d")
    def fingertip_depth_loss(outputs, batch, cfg):
        pred, target = outputs["keypoints_3d"][:, tips, 2], batch["keypoints_3d"][:, tips, 2]
        return jnp.mean(jnp.abs(pred - target), axis=-1)

    cfg = only()
    cfg.terms.fingertip_depth = 50.0
    batch = {"keypoints_3d": np.zeros((3, 21, 3), np.float32), "valid": np.ones(3, np.float32),
             "has_3d": np.array([1, 0, 1], np.float32)}
    pred = np.zeros((3, 21, 3), np.float32)
    pred[:, 8, 2] = [0.01, 5.0, 0.03]  # index tip; sample 1 is unlabeled
    loss, metrics = losses.total_loss({"keypoints_3d": pred}, batch, cfg)
    np.testing.assert_allclose(metrics["fingertip_depth"], (0.01 + 0.03) / 5 / 2, rtol=1e-6)
    np.testing.assert_allclose(loss, 50.0 * (0.01 + 0.03) / 5 / 2, rtol=1e-6)
    assert float(metrics["count/fingertip_depth"]) == 2.0
    assert set(metrics) == {"fingertip_depth", "count/fingertip_depth", "loss"}


def test_level_weights_must_match_the_outputs(mano):
    rng = np.random.default_rng(0)
    batch = make_batch(rng, 2, mano.hands_mean)
    outputs = outputs_equal_to(batch, mano.hands_mean)
    with pytest.raises(ValueError, match=r"stack_weights = \(1.0, 1.0, 1.0\) has 3 entries, but "
                                         r"the outputs have 2 stacks"):
        losses.total_loss(outputs, batch, only("heatmaps", stack_weights=(1.0, 1.0, 1.0)))
    # Per-level weights are applied: the last stack only, doubled.
    hm = [batch["heatmaps"], batch["heatmaps"] + 0.5]
    v = term_values("heatmaps", dict(outputs, heatmaps=hm), batch, mano, stack_weights=(0.0, 2.0))
    expected = 2.0 * 0.25 * np.ones(2)  # the mean over each sample's visible joints
    np.testing.assert_allclose(v, expected, rtol=1e-6)


# ---------------------------------------------------------------------------- geometry helpers


def test_pipeline_conventions():
    # hiu_jax.geometry.skeleton.BONES, written out: (parent, child) per finger, base to tip.
    bones = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
             (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18),
             (18, 19), (19, 20)]
    assert list(skeleton.BONES) == bones
    # Pixel areas aligned: the crop's [-0.5, N - 0.5] is the heat map's [-0.5, M - 0.5]; the
    # crop point 0.5 (between crop pixels 0 and 1) is heat-map pixel centre 0 for N = 2M.
    p = np.array([-0.5, N - 0.5, 0.5, 33.5])
    np.testing.assert_allclose(crops.crop_to_heatmap(p, N, M), [-0.5, M - 0.5, 0.0, 16.5])
    np.testing.assert_allclose(crops.heatmap_to_crop(crops.crop_to_heatmap(p, N, M), N, M), p)


def test_bone_regions_match_brute_force():
    rng = np.random.default_rng(1)
    joints = rng.random((2, 21, 2)).astype(np.float32) * 12.0 + 2.0
    joints[1, 2] = joints[1, 1]  # a zero-length bone covers the disc around its point
    width, size = 1.3, 16
    got = np.asarray(keypoint_maps.bone_regions(jnp.asarray(joints), size, width))
    # Independent: the distance from each pixel centre to densely sampled points of the segment
    # overestimates the true distance by at most half the sample spacing.
    t = np.linspace(0.0, 1.0, 1001)
    a, c = joints[:, skeleton.BONE_PARENTS], joints[:, skeleton.BONE_CHILDREN]
    pts = a[..., None, :] + t[:, None] * (c - a)[..., None, :]  # (2, 20, T, 2)
    yy, xx = np.mgrid[0:size, 0:size]
    pix = np.stack([xx, yy], -1).reshape(-1, 2)
    dist = np.stack([np.sqrt(((pix[:, None] - pts[i, :, None]) ** 2).sum(-1)).min(-1)
                     for i in range(2)]).astype(np.float32)  # (2, 20, size^2)
    slack = np.linalg.norm(c - a, axis=-1)[..., None] / 1000 + 1e-4
    sure_in, sure_out = dist <= width, dist - slack > width
    got = got.reshape(2, -1, 20).transpose(0, 2, 1)
    assert np.all(got[sure_in] == 1) and np.all(got[sure_out] == 0)
    assert sure_in.sum() > 100 and (sure_in | sure_out).mean() > 0.99


def test_soft_argmax_of_gaussian_logits():
    # softmax(H / T) with H = 1 - T |x - mu|^2 / 2 is a Gaussian of std 1 px: its grid centroid
    # differs from mu by the aliasing term ~ 2 pi exp(-2 pi^2) ~ 2e-8 px plus the mass beyond the
    # border (>= 5 px away: < 3e-7 relative), far below float32 rounding of the sums (~1e-5 px).
    rng = np.random.default_rng(2)
    mu = rng.uniform(5.0, M - 6.0, (3, 21, 2)).astype(np.float32)
    T = 0.04
    yy, xx = np.mgrid[0:M, 0:M].astype(np.float32)
    d2 = (xx[None, :, :, None] - mu[:, None, None, :, 0]) ** 2 + (
        yy[None, :, :, None] - mu[:, None, None, :, 1]) ** 2
    heat = 1.0 - T * d2 / 2.0
    got = np.asarray(keypoint_maps.soft_argmax(jnp.asarray(heat), T))
    np.testing.assert_allclose(got, mu, atol=1e-4)


# ------------------------------------------------------------------------- supervised minimum


def test_supervised_terms_are_zero_at_the_targets_and_positive_elsewhere(mano):
    rng = np.random.default_rng(3)
    batch = make_batch(rng, 3, mano.hands_mean)
    outputs = outputs_equal_to(batch, mano.hands_mean)
    moved = perturbed(outputs, rng)
    moved["mask_logits"] = [x[:, ::-1] for x in moved["mask_logits"]]  # +-30 logits, flipped
    for name in SUPERVISED:
        at_target = term_values(name, outputs, batch, mano)
        if name == "mask":  # softplus(-30) per pixel, two stacks (sigmoid(30) is 1.0 in float32)
            assert np.all(at_target >= 0) and np.all(at_target <= 2 * BCE_30 * (1 + 1e-5))
        elif name in ("mano_pose", "global_rotation"):  # float32 rotations: ~1e-7 per entry
            assert np.all(at_target <= 1e-12), name
        else:
            assert np.all(at_target == 0.0), name
        assert np.all(term_values(name, moved, batch, mano) > 1e-6), name
    # Dice: (sum p (1 - t) + sum t (1 - p)) / (...) <= S^2 sigmoid(-30) per stack.
    dice = term_values("mask", outputs, batch, mano, mask_dice=True)
    assert np.all(dice <= 2 * BCE_30 + 2 * S * S * BCE_30)
    assert np.all(term_values("mask", moved, batch, mano, mask_dice=True)
                  > term_values("mask", moved, batch, mano))
    # Both keypoint losses vanish at the target.
    assert np.all(term_values("keypoints_2d", outputs, batch, mano, keypoint_loss="l1") == 0.0)


def test_mano_pose_target_convention(mano):
    """flat_hand_mean = 1 labels hold full finger rotations, flat_hand_mean = 0 labels
    deviations from hands_mean (FreiHAND): both give the same full rotation matrices."""
    dev = jnp.asarray(np.random.default_rng(4).standard_normal((2, 48)), jnp.float32)
    full = dev.at[:, 3:].add(mano.hands_mean)
    got = losses.target_rotmats(jnp.stack([full[0], dev[1]]), jnp.array([1.0, 0.0]),
                                mano.hands_mean)
    np.testing.assert_allclose(got, full_rotmats(dev, mano.hands_mean), atol=2e-6)  # float32
    with pytest.raises(ValueError, match="needs the MANO model"):
        losses.mano_pose_loss({"mano_rotmats": full_rotmats(dev, mano.hands_mean)},
                              {"mano_pose": dev}, losses.term_config(loss_block()))


def test_mano_pose_loss_is_zero_at_the_label_and_unchanged_across_the_wrap(mano):
    """The rotation-matrix pose loss: 0 at the label, 8 sin^2(angle / 2) per joint for a
    rotation of `angle` away, and the same for two axis-angle labels of one rotation (theta and
    theta - 2 pi along the same axis)."""
    rng = np.random.default_rng(7)
    dev = rng.standard_normal((2, 48)).astype(np.float32) * 0.5
    pred = {"mano_rotmats": jnp.asarray(full_rotmats(dev, mano.hands_mean))}
    cfg = losses.term_config(loss_block(), mano)
    flat = jnp.zeros((2,))
    at_label = losses.mano_pose_loss(pred, {"mano_pose": jnp.asarray(dev),
                                            "mano_flat_hand_mean": flat}, cfg)
    np.testing.assert_allclose(at_label, 0.0, atol=1e-5)
    # The same global rotations written the other way round the circle.
    g = dev[:, :3].astype(np.float64)
    angle = np.linalg.norm(g, axis=-1, keepdims=True)
    wrapped = dev.copy()
    wrapped[:, :3] = g * (1.0 - 2.0 * np.pi / angle)
    again = losses.mano_pose_loss(pred, {"mano_pose": jnp.asarray(wrapped),
                                         "mano_flat_hand_mean": flat}, cfg)
    np.testing.assert_allclose(again, 0.0, atol=1e-5)
    # A global rotation 0.3 rad away on one joint of 16: 8 sin^2(0.15) / 16.
    turned = dev.copy()
    turned[:, :3] = (Rotation.from_rotvec(g) * Rotation.from_rotvec([[0.0, 0.3, 0.0]] * 2)).as_rotvec()
    value = losses.mano_pose_loss(pred, {"mano_pose": jnp.asarray(turned),
                                         "mano_flat_hand_mean": flat}, cfg)
    np.testing.assert_allclose(value, 8 * np.sin(0.15) ** 2 / 16, rtol=1e-4)
    with pytest.raises(ValueError, match="48-value"):
        losses.pose_prior_loss({"mano_pose": jnp.zeros((2, 0))}, {}, loss_block())


# ------------------------------------------------------------------------------------- flags


def test_flags_exclude_unlabeled_samples_exactly(mano):
    rng = np.random.default_rng(5)
    b = 6
    batch = make_batch(rng, b, mano.hands_mean)
    outputs = perturbed(outputs_equal_to(batch, mano.hands_mean), rng)
    labeled = {flag: (rng.random(b) < 0.5).astype(np.float32) for flag in FLAGS}
    labeled["has_2d"][:2] = [1.0, 0.0]
    for flag, value in labeled.items():
        batch[flag] = value
    batch["valid"][-1] = 0.0  # padding: excluded whatever its flags
    cfg = only(*SUPERVISED)
    loss, metrics = losses.total_loss(outputs, batch, cfg, mano_model=mano)

    # Each term's metric is its mean over the labeled valid samples only.
    terms = loss_registry.REGISTRY
    for name in SUPERVISED:
        f = batch["valid"].copy()
        for flag in terms[name].flags:
            f = f * batch[flag]
        values = term_values(name, outputs, batch, mano)
        expected = (values * f).sum() / max(f.sum(), 1.0)
        np.testing.assert_allclose(metrics[name], expected, rtol=1e-6, err_msg=name)
        assert float(metrics[f"count/{name}"]) == f.sum()
    np.testing.assert_allclose(loss, sum(float(metrics[n]) for n in SUPERVISED), rtol=1e-6)

    # Changing an unlabeled (or padding) sample's targets, and the targets of invisible joints
    # and of pixels outside the POF regions, changes nothing: bitwise.
    other = {k: np.array(v, copy=True) for k, v in batch.items()}
    noise = lambda x: x + 7.0 + rng.standard_normal(x.shape).astype(np.float32)  # noqa: E731
    gates = {"heatmaps": "has_2d", "keypoints_2d": "has_2d", "mask": "has_mask",
             "keypoints_3d": "has_3d", "vertices": "has_mesh", "mano_pose": "has_mano",
             "mano_betas": "has_mano", "pof": "has_3d", "pof_weight": "has_3d"}
    for key, flag in gates.items():
        off = (batch[flag] == 0) | (batch["valid"] == 0)
        if key.startswith("pof"):
            off = off | (batch["has_intrinsics"] == 0)
        other[key][off] = noise(other[key][off])
    other["mano_flat_hand_mean"][batch["has_mano"] == 0] = 1.0 - other["mano_flat_hand_mean"][
        batch["has_mano"] == 0]
    hidden = other["keypoint_visibility"] == 0
    other["keypoints_2d"][hidden] = noise(other["keypoints_2d"][hidden])
    other["heatmaps"][np.broadcast_to(hidden[:, None, None, :], other["heatmaps"].shape)] = 3.0
    no_pof = np.repeat(other["pof_weight"] == 0, 3, axis=-1)
    other["pof"][no_pof] = 5.0
    loss2, metrics2 = losses.total_loss(outputs, other, cfg, mano_model=mano)
    assert np.array_equal(loss, loss2)
    for key in metrics:
        assert np.array_equal(metrics[key], metrics2[key]), key
    # ... and a labeled sample's target does change it.
    other["keypoints_3d"][batch["has_3d"] * batch["valid"] > 0] += 0.01
    assert losses.total_loss(outputs, other, cfg, mano_model=mano)[1]["keypoints_3d"] != \
        metrics["keypoints_3d"]


def test_no_labeled_sample_gives_zero():
    batch = {"valid": np.ones(2, np.float32), "has_3d": np.zeros(2, np.float32),
             "keypoints_3d": np.zeros((2, 21, 3), np.float32)}
    out = {"keypoints_3d_iters": [np.ones((2, 21, 3), np.float32)]}
    loss, metrics = losses.total_loss(out, batch, only("keypoints_3d"))
    assert float(loss) == 0.0 and float(metrics["count/keypoints_3d"]) == 0.0


# ------------------------------------------------------------------------- self-supervision


@pytest.fixture(scope="module")
def consistent(mano):
    """A posed procedural hand and branch outputs made from it: heat maps whose soft-argmax is
    the projected mesh joints, mask logits from the mesh's own soft silhouette, and POF painted
    with the mesh's bone directions on the bones' regions. Two stacks, identical."""
    rng = np.random.default_rng(6)
    b = 2
    pose = np.concatenate([0.3 * rng.standard_normal((b, 3)), 0.2 * rng.standard_normal((b, 45))],
                          -1).astype(np.float32)
    betas = (0.5 * rng.standard_normal((b, 10))).astype(np.float32)
    hand = mano_forward(mano, pose, betas, flat_hand_mean=False)
    root = hand.joints[:, :1]
    joints, verts = hand.joints - root, hand.vertices - root
    # Camera: the joints' box spans 36 crop px, centred: heat-map coords within [6, 25].
    xy = np.asarray(joints[..., :2])
    span = (xy.max(1) - xy.min(1)).max(-1)
    s = 36.0 / (0.5 * N) * projection.PROJECTION_REF / span
    t = -s * 0.5 * (xy.max(1) + xy.min(1)) / projection.PROJECTION_REF - 1.0 / N
    cam = jnp.asarray(np.concatenate([s[:, None], t], -1), jnp.float32)
    keypoints_2d = projection.crop_camera_projection(joints, cam, N)
    vertices_2d = projection.crop_camera_projection(verts, cam, N)

    cfg = loss_block()
    T = cfg.softargmax_temperature
    mu = crops.crop_to_heatmap(np.asarray(keypoints_2d), N, M)
    assert mu.min() >= 5.5 and mu.max() <= M - 6.5
    yy, xx = np.mgrid[0:M, 0:M].astype(np.float32)
    d2 = (xx[None, :, :, None] - mu[:, None, None, :, 0]) ** 2 + (
        yy[None, :, :, None] - mu[:, None, None, :, 1]) ** 2
    heat = jnp.asarray(1.0 - T * d2 / 2.0)  # softmax(heat / T): a Gaussian of std 1 px at mu

    uv = crops.crop_to_heatmap(vertices_2d, N, S)
    sil = render.soft_silhouette(uv, mano.faces, S, S, cfg.silhouette_sigma)
    logits = (jnp.log(sil) - jnp.log1p(-sil))[..., None]  # +-inf where sil is exactly 1 or 0

    region = keypoint_maps.bone_regions(crops.crop_to_heatmap(keypoints_2d, N, M), M,
                                 cfg.pof_consistency_width)
    d = keypoint_maps.bone_directions(joints)
    pof = (region[..., None] * d[:, None, None]).reshape(b, M, M, 60)
    outputs = {
        "heatmaps": [heat] * STACKS, "mask_logits": [logits] * STACKS, "pof": [pof] * STACKS,
        "keypoints_2d": keypoints_2d, "keypoints_3d": joints, "vertices": verts,
        "vertices_2d": vertices_2d, "keypoints_2d_iters": [keypoints_2d] * ITERS,
        "keypoints_3d_iters": [joints] * ITERS, "mano_pose": jnp.asarray(pose),
        "mano_rotmats": jnp.asarray(full_rotmats(pose, mano.hands_mean)),
        "mano_betas": jnp.asarray(betas),
    }
    batch = {"image": np.zeros((b, N, N, 3), np.float32), "valid": np.ones(b, np.float32)}
    return outputs, batch, float(np.asarray(sil).mean()), float(region.sum(axis=(1, 2)).min())


def test_self_supervised_terms_vanish_on_consistent_outputs(consistent, mano):
    outputs, batch, sil_mean, region_min = consistent
    assert 0.05 < sil_mean < 0.9 and region_min > 0  # a visible mesh, non-empty bone regions
    # Silhouette, L2: sigmoid(logit(s)) = s up to a few float32 ulps: (s - t)^2 <= (4 eps)^2.
    eps = float(np.finfo(np.float32).eps)
    assert np.all(term_values("silhouette", outputs, batch, mano) <= (4 * eps) ** 2)
    # BCE (cross-entropy - entropy): 0 at s = t; t and s differ by ulps, and the computed
    # t log(t / s) + (1 - t) log((1 - t) / (1 - s)) keeps the rounding of the logs, a few eps.
    kl = term_values("silhouette", outputs, batch, mano, silhouette_loss="bce")
    assert np.all(np.abs(kl) <= 4 * eps)
    # Joints: the soft-argmax is within 1e-4 heat-map px (test_soft_argmax_of_gaussian_logits),
    # 2e-4 crop px; smooth-L1 of that, per coordinate, is 0.5 (2e-4 / N)^2 / beta.
    beta = loss_block().smooth_l1_beta
    bound = 2 * 0.5 * (2e-4 / N) ** 2 / beta
    assert np.all(term_values("keypoints_consistency", outputs, batch, mano) <= bound)
    l1 = term_values("keypoints_consistency", outputs, batch, mano, keypoint_loss="l1")
    assert np.all(l1 <= 2 * 2e-4 / N)
    # POF: the average of identical unit vectors, renormalised: ||d - p||^2 ~ eps^2.
    for region in ("mesh", "magnitude"):
        v = term_values("pof_consistency", outputs, batch, mano, pof_consistency_region=region)
        assert np.all(v <= (4 * eps) ** 2), region


def test_self_supervised_terms_grow_when_branches_disagree(consistent, mano):
    outputs, batch, _, _ = consistent
    # The mesh moves by 2 crop px in 2D: silhouette and joints disagree with the branches.
    moved = dict(outputs, vertices_2d=outputs["vertices_2d"] + 2.0,
                 keypoints_2d=outputs["keypoints_2d"] + 2.0)
    assert np.all(term_values("silhouette", moved, batch, mano) > 1e-3)
    assert np.all(term_values("keypoints_consistency", moved, batch, mano) > 1e-3)
    # The 3D bones turn 90 degrees about the optical axis: POF disagrees.
    rot = jnp.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    turned = dict(outputs, keypoints_3d=outputs["keypoints_3d"] @ rot.T)
    assert np.all(term_values("pof_consistency", turned, batch, mano) > 0.1)


# ---------------------------------------------------------------------------------- gradients


def test_gradients_of_every_term_are_finite(consistent, mano):
    outputs, batch, _, _ = consistent
    outputs = dict(outputs, mask_logits=[jnp.clip(x, -20.0, 20.0) for x in
                                         outputs["mask_logits"]])
    rng = np.random.default_rng(7)
    outputs = perturbed(outputs, rng)
    batch = make_batch(rng, 2, mano.hands_mean)
    names = SUPERVISED + SELF_SUPERVISED + PRIORS
    cfg = only(*names, mask_dice=True)

    def loss_fn(out):
        return losses.total_loss(out, batch, cfg, mano_model=mano)[0]

    grads = jax.jit(jax.grad(loss_fn))(outputs)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(g)), jax.tree_util.keystr(path)
        assert np.any(np.asarray(g) != 0), jax.tree_util.keystr(path)  # every output is used
    # Stop-gradient: the self-supervised terms alone (silhouette as "bce" here) give the branch
    # outputs no gradient, and the mesh outputs a finite one.
    grads_ss = jax.jit(jax.grad(lambda out: losses.total_loss(
        out, batch, only(*SELF_SUPERVISED, silhouette_loss="bce"), mano_model=mano)[0]))(outputs)
    for key in ("heatmaps", "mask_logits", "pof"):
        assert all(np.all(np.asarray(g) == 0) for g in grads_ss[key]), key
    for key in ("vertices_2d", "keypoints_2d", "keypoints_3d"):
        g = np.asarray(grads_ss[key])
        assert np.all(np.isfinite(g)) and np.any(g != 0), key


# ------------------------------------------------------------------------------ data parallel


def test_data_parallel_loss_equals_single_device_loss(mano):
    n_dev = jax.device_count()
    assert n_dev == 4, "tests/conftest.py requests 4 fake CPU devices"
    per = 2
    rng = np.random.default_rng(8)
    batch = make_batch(rng, n_dev * per, mano.hands_mean)
    for flag in FLAGS:  # uneven label counts across devices
        batch[flag] = (rng.random(n_dev * per) < 0.6).astype(np.float32)
    batch["has_2d"][:per] = 0.0  # device 0 holds no 2D label at all
    batch["valid"][-1] = 0.0
    outputs = perturbed(outputs_equal_to(batch, mano.hands_mean), rng)
    outputs.pop("vertices_2d")
    names = tuple(n for n in SUPERVISED + PRIORS + SELF_SUPERVISED if n != "silhouette")
    cfg = only(*names)
    shift = jnp.float32(0.3)  # a shared "parameter" moving every 2D joint prediction

    def loss_of(shift, out, b, axis_name=None):
        out = dict(out, keypoints_2d_iters=[x + shift for x in out["keypoints_2d_iters"]],
                   keypoints_2d=out["keypoints_2d"] + shift)
        return losses.total_loss(out, b, cfg, mano_model=mano, axis_name=axis_name)

    (loss1, metrics1), grad1 = jax.value_and_grad(loss_of, has_aux=True)(shift, outputs, batch)

    shard = lambda x: x.reshape((n_dev, per) + x.shape[1:])  # noqa: E731

    @functools.partial(jax.pmap, axis_name="d", in_axes=(None, 0, 0))
    def step(shift, out, b):
        (share, metrics), grad = jax.value_and_grad(
            functools.partial(loss_of, axis_name="d"), has_aux=True)(shift, out, b)
        return jax.lax.pmean(share, "d"), jax.lax.pmean(grad, "d"), metrics

    loss4, grad4, metrics4 = step(shift, jax.tree.map(shard, outputs), jax.tree.map(shard, batch))
    np.testing.assert_allclose(loss4, np.broadcast_to(loss1, (n_dev,)), rtol=2e-6)
    np.testing.assert_allclose(grad4, np.broadcast_to(grad1, (n_dev,)), rtol=2e-5, atol=1e-9)
    for key, value in metrics1.items():  # global metrics, the same on every device
        np.testing.assert_allclose(metrics4[key], np.broadcast_to(value, (n_dev,)), rtol=2e-6,
                                   atol=1e-12, err_msg=key)
    assert float(metrics1["count/keypoints_2d"]) == float(
        (batch["has_2d"] * batch["valid"]).sum())


def test_weak_perspective_fit_recovers_the_camera_and_zeroes_the_camera_term():
    """Points projected with a known camera give that camera back (float32: ~1e-6 relative),
    so the camera term is 0 there and positive for another camera; flags gate it."""
    rng = np.random.default_rng(5)
    b, crop = 3, 64
    joints = jnp.asarray(rng.normal(0, 0.04, (b, 21, 3)), jnp.float32)
    joints = joints - joints[:, :1]
    cam = jnp.asarray([[0.8, 0.05, -0.1], [1.2, -0.2, 0.0], [0.5, 0.0, 0.3]], jnp.float32)
    uv = projection.crop_camera_projection(joints, cam, crop)
    vis = jnp.ones((b, 21)).at[1, :10].set(0.0)
    fit, valid = projection.weak_perspective_fit(joints, uv, vis, crop)
    np.testing.assert_allclose(np.asarray(fit), np.asarray(cam), rtol=1e-5, atol=1e-5)
    assert bool(jnp.all(valid))
    batch = {"keypoints_3d": joints, "keypoints_2d": uv, "keypoint_visibility": vis,
             "image": jnp.zeros((b, crop, crop, 3)), "valid": jnp.ones(b), "has_2d": jnp.ones(b),
             "has_3d": jnp.asarray([1.0, 1.0, 0.0])}
    cfg = losses.term_config(loss_block())
    term = loss_registry.REGISTRY["camera"]
    zero = term.fn({"cam": [cam]}, batch, cfg)
    np.testing.assert_allclose(np.asarray(zero), 0.0, atol=1e-9)
    off = term.fn({"cam": [cam + 0.1]}, batch, cfg)
    assert bool(jnp.all(off > 0))
    assert term.flags == ("has_2d", "has_3d")
    # A single visible joint cannot pin the scale: no target, value 0.
    _, valid1 = projection.weak_perspective_fit(joints, uv, jnp.zeros((b, 21)).at[:, 3].set(1.0), crop)
    assert not bool(jnp.any(valid1))


def test_heatmap_keypoints_are_zero_on_gaussians_at_the_labels(mano):
    """Peak-1 Gaussians (sigma 2 heat px) centred on the labels: the soft-argmax (T = 0.04, a
    softmax std of 0.4 heat px, so the pixel grid biases it) is within half a heat-map pixel of
    each label, so the smooth-L1 term is at most 2 (0.5 / M - beta / 2); keypoints moved by 8
    crop px cost more than that bound."""
    rng = np.random.default_rng(5)
    b, n, m = 2, 64, 16
    kp = rng.uniform(12, 52, (b, 21, 2)).astype(np.float32)
    mu = crops.crop_to_heatmap(kp, n, m)
    g = np.arange(m, dtype=np.float32)
    heat = np.exp(-((g[None, None, :, None] - mu[:, None, None, :, 0]) ** 2
                    + (g[None, :, None, None] - mu[:, None, None, :, 1]) ** 2) / 8.0)
    batch = {"keypoints_2d": kp, "keypoint_visibility": np.ones((b, 21), np.float32),
             "image": np.zeros((b, n, n, 3), np.float32)}
    cfg = losses.term_config(loss_block(), mano)
    bound = 2 * (0.5 / m - cfg.smooth_l1_beta / 2)
    at = np.asarray(losses.heatmap_keypoints_loss({"heatmaps": [jnp.asarray(heat)]}, batch, cfg))
    assert np.all(at <= bound)
    moved = dict(batch, keypoints_2d=kp + 8.0)
    assert np.all(np.asarray(losses.heatmap_keypoints_loss({"heatmaps": [jnp.asarray(heat)]}, moved,
                                                           cfg)) > bound)


def test_ramp_factor_and_its_validation():
    cfg = loss_block()
    assert loss_registry.ramp_factor(cfg, 10) == 1.0  # (0, 0): no ramp
    cfg.ramp_start_step, cfg.ramp_end_step = 100, 300
    np.testing.assert_allclose([loss_registry.ramp_factor(cfg, s) for s in (0, 100, 200, 300, 900)],
                               [0.0, 0.0, 0.5, 1.0, 1.0])
    assert loss_registry.ramp_factor(cfg, None) == 1.0
    cfg.ramp_start_step, cfg.ramp_end_step = 300, 100
    with pytest.raises(ValueError, match="ramp_start_step"):
        loss_registry.validate_loss_config(cfg)
    cfg.ramp_start_step, cfg.ramp_end_step = 0, 0
    cfg.ramp_terms = ("no_such_term",)
    with pytest.raises(ValueError, match="no_such_term"):
        loss_registry.validate_loss_config(cfg)


def test_loss_config_names_missing_and_unknown_keys():
    """No defaults: a block states every key; a missing or misspelt one is named."""
    cfg = loss_block()
    del cfg["smooth_l1_beta"]
    with pytest.raises(ValueError, match="missing 'smooth_l1_beta'; a config file states every"):
        loss_registry.validate_loss_config(cfg)
    cfg = loss_block()
    cfg.ramp_step = (0, 0)
    with pytest.raises(ValueError, match="unknown key 'ramp_step'"):
        loss_registry.validate_loss_config(cfg)
