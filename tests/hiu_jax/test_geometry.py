"""hiu_jax.geometry: one formula per concept, the same under numpy, jax.numpy and TF."""

import jax.numpy as jnp
import numpy as np
import pytest

from hiu_jax.geometry import crops, projection, skeleton, warps



def test_skeleton_topology():
    assert len(skeleton.JOINT_NAMES) == skeleton.NUM_KEYPOINTS == 21
    assert skeleton.JOINT_NAMES[:5] == ("wrist", "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip")
    assert skeleton.JOINT_NAMES[-1] == "pinky_tip"
    # Written out: (parent, child) per finger, base to tip.
    assert list(skeleton.BONES) == [
        (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
        (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18),
        (18, 19), (19, 20)]
    np.testing.assert_array_equal(skeleton.BONE_CHILDREN, np.arange(1, 21))


def test_crop_matrix_maps_the_box_onto_the_crop():
    n, center, side = 32, np.array([30.0, 20.0]), 40.0
    S = crops.crop_matrix(center, side, n)
    # The centre goes to the crop's middle pixel centre, the box's edges to the crop's edges.
    np.testing.assert_allclose(crops.apply_affine(S, center), [(n - 1) / 2] * 2)
    edges = center + np.array([[-side / 2, -side / 2], [side / 2, side / 2]])
    mapped = crops.apply_affine(S, edges)
    np.testing.assert_allclose(mapped[1] - mapped[0], [n, n], rtol=1e-12)
    np.testing.assert_allclose(crops.invert_affine(S) @ S, np.eye(3), atol=1e-12)


def test_crop_heatmap_pixel_areas_coincide():
    n, m = 64, 32
    p = np.array([-0.5, n - 0.5, 0.5, 33.5])
    np.testing.assert_allclose(crops.crop_to_heatmap(p, n, m), [-0.5, m - 0.5, 0.0, 16.5])
    np.testing.assert_allclose(crops.heatmap_to_crop(crops.crop_to_heatmap(p, n, m), n, m), p)


def test_crop_camera_projection():
    # uv = N/2 (1 + t + s X_xy / 0.1): X = (0.1, -0.05) m, s = 2, t = (0.25, 0) on a 96 crop.
    points = jnp.asarray([[[0.1, -0.05, 0.3]]])
    cam = jnp.asarray([[2.0, 0.25, 0.0]])
    uv = projection.crop_camera_projection(points, cam, 96)
    np.testing.assert_allclose(uv, [[[48 * (1 + 0.25 + 2.0), 48 * (1 - 1.0)]]], rtol=1e-6)


def _reference_warp(image, A_inv, n):
    """Bilinear sampling written pixel by pixel."""
    h, w, c = image.shape
    out = np.zeros((n, n, c))
    for y in range(n):
        for x in range(n):
            sx, sy = A_inv[:2, :2] @ [x, y] + A_inv[:2, 2]
            x0, y0 = int(np.floor(sx)), int(np.floor(sy))
            for yi, wy in ((y0, 1 - (sy - y0)), (y0 + 1, sy - y0)):
                for xi, wx in ((x0, 1 - (sx - x0)), (x0 + 1, sx - x0)):
                    if 0 <= xi < w and 0 <= yi < h:
                        out[y, x] += wy * wx * image[yi, xi]
    return out


def test_warp_bilinear_numpy_jax_and_tf_agree_with_the_definition():
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(20, 24, 3))
    A_inv = crops.invert_affine(crops.crop_matrix(np.array([10.0, 8.0]), 30.0, 12))
    expected = _reference_warp(image, A_inv, 12)
    np.testing.assert_allclose(warps.warp_bilinear(image, A_inv, 12), expected, atol=1e-12)
    got = warps.warp_bilinear(jnp.asarray(image, jnp.float32), jnp.asarray(A_inv, jnp.float32),
                              12, xp=jnp)
    np.testing.assert_allclose(got, expected, atol=1e-5)  # float32 weights and sums
    tf = pytest.importorskip("tensorflow")
    import tensorflow.experimental.numpy as tnp

    image32, A32 = tf.constant(image, tf.float32), tf.constant(A_inv, tf.float32)
    got_tf = warps.warp_bilinear(image32, A32, 12, xp=tnp).numpy()
    np.testing.assert_allclose(got_tf, expected, atol=1e-5)
    op = tf.raw_ops.ImageProjectiveTransformV3(
        images=image32[None], transforms=tf.reshape(A32, (9,))[None, :8],
        output_shape=tf.constant([12, 12]), fill_value=tf.constant(0.0),
        interpolation="BILINEAR", fill_mode="CONSTANT")[0].numpy()
    np.testing.assert_allclose(got_tf, op, atol=1e-5)
    S_tf = crops.crop_matrix(tf.constant([10.0, 8.0]), tf.constant(30.0), 12, xp=tnp)
    np.testing.assert_allclose(crops.invert_affine(S_tf, xp=tnp).numpy(), A_inv, atol=1e-5)
