"""The HIU-DMTL network: output shapes for the tiny and the full config, conv/BN structure,
mixed precision and BatchNorm's cross-device axis."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from configs import freihand, tiny
from hiu_jax import models
from hiu_jax.geometry import projection


@pytest.fixture(scope="module")
def tiny_setup():
    cfg = tiny.get_config()
    net = models.build_model(cfg.model)
    x = jax.random.uniform(jax.random.key(1), (2, cfg.crop_size, cfg.crop_size, 3))
    variables = jax.jit(lambda k: net.init(k, x, train=False))(jax.random.key(0))
    return cfg, net, x, variables


def expected_shapes(cfg, batch):
    m = cfg.model
    hm, crop = m.heatmap_size, cfg.crop_size
    layout = models.theta_layout(m.pose_parameterisation, m.pca_components, m.global_rotation)
    theta = max(stop for _, stop in layout.values())
    per_stack = {"heatmaps": (batch, hm, hm, 21), "mask_logits": (batch, m.mask_size, m.mask_size, 1),
                 "pof": (batch, hm, hm, 60)}
    per_iter = {"theta": (batch, theta), "cam": (batch, 3), "keypoints_3d_iters": (batch, 21, 3),
                "keypoints_2d_iters": (batch, 21, 2)}
    finals = {"vertices": (batch, 778, 3), "keypoints_3d": (batch, 21, 3), "keypoints_2d": (batch, 21, 2),
              "vertices_2d": (batch, 778, 2), "mano_pose": (batch, 48), "mano_betas": (batch, 10),
              "mano_rotmats": (batch, 16, 3, 3), "keypoints_hm": (batch, 21, 2)}
    assert crop > 0
    return per_stack, per_iter, finals


def check_outputs(out, cfg, batch):
    per_stack, per_iter, finals = expected_shapes(cfg, batch)
    for name, shape in per_stack.items():
        assert len(out[name]) == cfg.model.num_stacks
        assert all(o.shape == shape for o in out[name]), (name, [o.shape for o in out[name]])
    for name, shape in per_iter.items():
        assert len(out[name]) == cfg.model.regressor_iterations
        assert all(o.shape == shape for o in out[name]), name
    for name, shape in finals.items():
        assert out[name].shape == shape, (name, out[name].shape)


def test_tiny_output_shapes_and_values(tiny_setup):
    cfg, net, x, variables = tiny_setup
    out = jax.jit(lambda v: net.apply(v, x, train=False))(variables)
    check_outputs(out, cfg, 2)
    for leaf in jax.tree.leaves(out):
        assert bool(jnp.all(jnp.isfinite(leaf)))
    # Root-relative: the wrist is the origin of the 3D output.
    np.testing.assert_allclose(out["keypoints_3d"][:, 0], 0.0, atol=1e-7)
    # At initialisation the regressor starts from the mean hand, centred in the crop.
    centre = jnp.mean(out["keypoints_2d"], axis=1)
    assert bool(jnp.all(jnp.abs(centre - cfg.crop_size / 2) < cfg.crop_size / 2))


def test_full_config_shapes_without_running_it():
    cfg = freihand.get_config()
    assert tuple(cfg.model.encoder_blocks) == (3, 4, 6, 3) and cfg.crop_size == 256
    net = models.build_model(cfg.model)
    x = jax.ShapeDtypeStruct((2, 256, 256, 3), jnp.float32)
    variables = jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros(x.shape), train=False))
    out = jax.eval_shape(lambda v: net.apply(v, jnp.zeros(x.shape), train=False), variables)
    check_outputs(out, cfg, 2)
    params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))
    assert 50e6 < params < 200e6, f"two ResNet-50 bodies + decoders + encoder: {params / 1e6:.1f} M"


def test_convs_before_batchnorm_have_no_bias(tiny_setup):
    _, _, _, variables = tiny_setup
    flat = traverse_util.flatten_dict(variables["params"])
    conv_bn = {k[:-2] for k in flat if len(k) >= 2 and k[-2] == "Conv_0" and k[-1] == "kernel"
               and k[:-2] + ("BatchNorm_0", "scale") in flat}
    assert conv_bn, "ConvBN blocks exist"
    for prefix in conv_bn:
        assert prefix + ("Conv_0", "bias") not in flat, prefix


@pytest.mark.parametrize("parameterisation", ["pca", "rot6d"])
def test_pose_parameterisations(parameterisation):
    cfg = tiny.get_config()
    cfg.model.pose_parameterisation = parameterisation
    cfg.model.regressor_iterations = 1
    net = models.build_model(cfg.model)
    x = jnp.zeros((1, cfg.crop_size, cfg.crop_size, 3))
    out = jax.eval_shape(lambda: net.init_with_output(jax.random.key(0), x, train=False)[0])
    size = 3 + (6 + 12 + 10 if parameterisation == "pca" else 6 + 90 + 10)  # 6D global rotation
    assert out["theta"][0].shape == (1, size)
    assert out["vertices"].shape == (1, 778, 3)


@pytest.mark.parametrize("pose_parameterisation, global_rotation",
                         [("axis_angle", "rot6d"), ("axis_angle", "axis_angle"), ("pca", "rot6d"),
                          ("rot6d", "rot6d")])
def test_pose_is_48_axis_angle_values_that_give_the_mesh(pose_parameterisation, global_rotation):
    """Whatever the parameterisation, MANO(pose, betas, flat_hand_mean False) is the mesh."""
    import mano_jax

    mano = mano_jax.procedural_model("right")
    layout = models.theta_layout(pose_parameterisation, 12, global_rotation)
    size = max(stop for _, stop in layout.values())
    theta0 = models.initial_theta(layout, pose_parameterisation)
    theta = theta0 + jnp.asarray(np.random.default_rng(3).normal(0, 0.3, (2, size)), jnp.float32)
    hand = models.mano_from_theta(mano, theta, layout, pose_parameterisation)
    assert hand["pose"].shape == (2, 48)
    out = mano_jax.forward(mano, hand["pose"], hand["betas"], flat_hand_mean=False)
    np.testing.assert_allclose(out.vertices - out.joints[:, :1], hand["vertices"], atol=2e-5)


def test_half_precision_keeps_float32_parameters(tiny_setup):
    cfg, _, x, _ = tiny_setup
    net = models.build_model(cfg.model, half_precision=True)
    variables, out = jax.eval_shape(lambda: net.init_with_output(jax.random.key(0), x, train=False)[::-1])
    for leaf in jax.tree.leaves(variables):
        assert leaf.dtype == jnp.float32
    assert out["heatmaps"][0].dtype == jnp.float32 and out["vertices"].dtype == jnp.float32
    hlo = jax.jit(lambda v: net.apply(v, x, train=False)).lower(variables).as_text()
    assert "bf16" in hlo, "convolutions run in bfloat16"


def test_batchnorm_axis_name_under_pmap(tiny_setup):
    cfg, _, x, variables = tiny_setup
    n = jax.device_count()
    assert n == 4, "tests/conftest.py asks for 4 CPU devices"
    net = models.build_model(cfg.model, bn_axis_name="batch")
    images = jax.random.uniform(jax.random.key(2), (n, 1) + x.shape[1:])

    def stats(v, img):
        _, upd = net.apply(v, img, train=True, mutable=["batch_stats"])
        return upd["batch_stats"]

    replicated = jax.tree.map(lambda a: jnp.broadcast_to(a, (n,) + a.shape), variables)
    got = jax.pmap(stats, axis_name="batch")(replicated, images)
    single = models.build_model(cfg.model)  # axis_name None: statistics of the whole batch

    # Jitted, like the pmap: only the statistics are returned, so XLA drops the heads, MANO and
    # the losses' inputs (op-by-op, the whole forward pass ran for ~30 s on 2 cores).
    @jax.jit
    def single_stats(v, img):
        return single.apply(v, img, train=True, mutable=["batch_stats"])[1]["batch_stats"]

    want = single_stats(variables, images.reshape((n,) + x.shape[1:]))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a[0], b, rtol=1e-4, atol=1e-5)  # float32 mean/var of 4 images
        np.testing.assert_array_equal(a[0], a[-1])


def test_rejects_bad_input(tiny_setup):
    _, net, _, variables = tiny_setup
    with pytest.raises(ValueError, match="images must be"):
        net.apply(variables, jnp.zeros((2, 64, 64)), train=False)
    with pytest.raises(ValueError, match="pose_parameterisation"):
        models.theta_layout("quaternion")
    with pytest.raises(ValueError, match="activation must be one of"):
        models.activation("tanh")


def test_camera_scale_stays_positive_and_the_anchor_is_the_hand_centre():
    """s = init exp(clip(theta_s)) > 0 for any theta; theta = 0 projects the joints' centroid to
    the crop centre, and the returned wrist-anchored camera reproduces that projection."""
    layout = models.theta_layout("axis_angle", 12, "rot6d")
    size = max(stop for _, stop in layout.values())
    rng = np.random.default_rng(0)
    joints = jnp.asarray(rng.normal(0, 0.04, (3, 21, 3)), jnp.float32)
    theta = jnp.zeros((3, size)).at[:, 0].set(jnp.array([-1e6, 0.0, 1e6]))
    cam = models.camera_from_theta(theta, layout, 1.2, joints)
    s = np.asarray(cam[:, 0])
    assert np.all(s > 0) and np.all(np.isfinite(s))
    np.testing.assert_allclose(s[1], 1.2)
    uv = projection.crop_camera_projection(joints, cam, 96)
    np.testing.assert_allclose(np.asarray(uv).mean(axis=1), 48.0, atol=1e-3)
