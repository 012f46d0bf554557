"""Tests for hiu_jax.render.phong: render (colours, mask, depth, Lambert) and vertex normals."""
import numpy as np

from hiu_jax import render
from tests.hiu_jax.render.scenes import H, K, W, unproject, uv_sphere


def test_render_colours_mask_depth_and_background():
    vertices, faces = uv_sphere()
    vertices = np.stack([vertices * 0.15 + [0.0, 0.0, 0.8], vertices * 0.1 + [0.05, 0.02, 1.0]])
    rng = np.random.default_rng(0)
    colors = rng.uniform(size=(2, vertices.shape[1], 3)).astype(np.float32)
    background = rng.uniform(size=(2, H, W, 3)).astype(np.float32)
    out = render.render(vertices, faces, K, H, W, colors, light_dir=(0.3, -0.5, -1.0),
                        specular=0.5, background=background)
    frags = render.rasterize(vertices, faces, K, H, W)
    rgb, mask = np.asarray(out["rgb"]), np.asarray(out["mask"])
    assert rgb.dtype == np.float32 and rgb.shape == (2, H, W, 3)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    np.testing.assert_array_equal(mask, np.asarray(frags.face_index) >= 0)
    assert set(np.unique(mask)) == {0.0, 1.0}
    np.testing.assert_array_equal(rgb[mask == 0], background[mask == 0])
    np.testing.assert_array_equal(out["depth"], frags.depth)
    assert np.all(np.asarray(out["depth"])[mask == 1] > 0.5)


def test_lambert_term_on_a_plane_is_the_cosine_and_ambient_gives_the_flat_colour():
    corners = unproject([[10.3, 7.2], [41.8, 7.2], [41.8, 50.6], [10.3, 50.6]], np.full(4, 0.7))
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    white = np.ones((1, 4, 3), np.float32)
    angle = np.deg2rad(60.0)  # light 60 degrees off the plane's normal (0, 0, -1)
    light = (np.sin(angle), 0.0, -np.cos(angle))
    out = render.render(corners[None], faces, K, H, W, white, light_dir=light, ambient=0.0,
                        diffuse=1.0, specular=0.0)
    mask = np.asarray(out["mask"][0]) == 1
    np.testing.assert_allclose(np.asarray(out["rgb"][0])[mask], np.cos(angle), atol=1e-5)
    color = np.array([0.2, 0.5, 0.9], np.float32)
    out = render.render(corners[None], faces, K, H, W, np.broadcast_to(color, (1, 4, 3)),
                        ambient=1.0, diffuse=0.0, specular=0.0)
    np.testing.assert_allclose(np.asarray(out["rgb"][0])[mask],
                               np.broadcast_to(color, (mask.sum(), 3)), atol=1e-6)


def test_vertex_normals_of_a_sphere_point_outwards():
    vertices, faces = uv_sphere(rings=10, segments=16)
    normals = np.asarray(render.vertex_normals(vertices[None], faces)[0])
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-6)
    assert np.min(np.sum(normals * vertices, -1)) > 0.97  # cos of the angle to the radius
