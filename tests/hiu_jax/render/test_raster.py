"""Tests for hiu_jax.render.raster: coverage, depth order, barycentrics, near plane, jit."""
import jax
import numpy as np

from hiu_jax import render
from tests.hiu_jax.render.scenes import (H, K, W, pixel_centre_count_bound, polygon_area_perimeter,
                                        project, unproject, uv_sphere)


def test_triangle_mask_matches_area_within_discretisation_bound():
    # A triangle with vertices at different depths: its image is the triangle of the projected
    # vertices.
    points = np.array([[-0.14, -0.12, 0.8], [0.2, -0.1, 1.0], [0.02, 0.25, 1.3]], np.float32)
    uv = project(points)
    area, perimeter = polygon_area_perimeter(uv)
    assert area > 500  # the test is meaningful: the bound is a fraction of the area
    r = render.rasterize(points[None], np.array([[0, 1, 2]]), K, H, W)
    count = int(np.sum(np.asarray(r.face_index) == 0))
    assert np.all(np.asarray(r.face_index) <= 0)
    assert abs(count - area) <= pixel_centre_count_bound(perimeter)


def test_square_mask_counts_pixel_centres_exactly_for_two_and_many_triangles():
    # Axis-aligned square at constant depth, edges away from pixel centres: pixel centres
    # (pixel x is centred at u = x) in [u0, u1] are exactly the columns ceil(u0) .. floor(u1).
    u0, u1, v0, v1 = 10.3, 41.8, 7.2, 50.6
    columns = np.floor(u1) - np.ceil(u0) + 1
    expected = columns * (np.floor(v1) - np.ceil(v0) + 1)
    area, perimeter = polygon_area_perimeter([[u0, v0], [u1, v0], [u1, v1], [u0, v1]])
    assert abs(expected - area) <= pixel_centre_count_bound(perimeter)

    corners = unproject([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], np.full(4, 0.7))
    two = render.rasterize(corners[None], np.array([[0, 1, 2], [0, 2, 3]]), K, H, W)
    assert int(np.sum(np.asarray(two.face_index) >= 0)) == expected

    # The same square cut into an 7 x 5 grid of 70 triangles: shared edges leave no cracks.
    gu, gv = np.meshgrid(np.linspace(u0, u1, 8), np.linspace(v0, v1, 6))
    grid = unproject(np.stack([gu.ravel(), gv.ravel()], -1), np.full(gu.size, 0.7))
    faces = []
    for j in range(5):
        for i in range(7):
            a, b, c, d = j * 8 + i, j * 8 + i + 1, (j + 1) * 8 + i + 1, (j + 1) * 8 + i
            faces += [(a, b, c), (a, c, d)]
    many = render.rasterize(grid[None], np.array(faces), K, H, W)
    np.testing.assert_array_equal(np.asarray(many.face_index) >= 0, np.asarray(two.face_index) >= 0)


def test_nearer_face_wins_whatever_the_face_order():
    near_tri = unproject([[5.2, 6.1], [50.3, 9.7], [20.4, 55.9]], np.full(3, 1.0))
    far_tri = unproject([[12.6, 3.3], [60.1, 40.2], [8.8, 45.3]], np.full(3, 2.0))
    behind = np.full((3, 3), -1.0, np.float32)  # a face behind the camera is not drawn
    # Image 0 holds both triangles, image 1 only the near one, image 2 only the far one.
    vertices = np.stack([np.concatenate(pair) for pair in
                         ((near_tri, far_tri), (near_tri, behind), (behind, far_tri))])
    depths = []
    for order in ([[0, 1, 2], [3, 4, 5]], [[3, 4, 5], [0, 1, 2]]):
        r = render.rasterize(vertices, np.array(order), K, H, W)
        near_id = order.index([0, 1, 2])
        face, depth = np.asarray(r.face_index), np.asarray(r.depth)
        near_alone, far_alone = face[1] == near_id, face[2] == 1 - near_id
        assert np.sum(near_alone & far_alone) > 100  # they overlap
        assert np.all(face[0][near_alone] == near_id)
        np.testing.assert_allclose(depth[0][near_alone], 1.0, rtol=1e-6)
        only_far = far_alone & ~near_alone
        assert np.all(face[0][only_far] == 1 - near_id)
        np.testing.assert_allclose(depth[0][only_far], 2.0, rtol=1e-6)
        background = ~(near_alone | far_alone)
        assert np.all(face[0][background] == -1) and np.all(depth[0][background] == 0)
        depths.append(depth)
    np.testing.assert_array_equal(depths[0], depths[1])


def test_barycentrics_are_perspective_correct():
    points = np.array([[-0.15, -0.1, 0.6], [0.25, -0.05, 1.4], [0.0, 0.3, 2.2]], np.float32)
    r = render.rasterize(points[None], np.array([[0, 1, 2]]), K, H, W)
    covered = np.asarray(r.face_index[0]) == 0
    bary = np.asarray(r.barycentrics[0], np.float64)[covered]
    depth = np.asarray(r.depth[0], np.float64)[covered]
    assert covered.sum() > 300
    np.testing.assert_allclose(bary.sum(-1), 1.0, atol=1e-6)
    assert bary.min() > -1e-5
    # The barycentric combination of the 3D vertices is the surface point seen at the pixel:
    # its depth is the depth buffer's and it projects onto the pixel centre.
    surface = bary @ points.astype(np.float64)
    np.testing.assert_allclose(surface[:, 2], depth, rtol=1e-5)
    # Screen-space (affine) barycentrics would miss the pixel centres by pixels here: the
    # vertex depths differ by a factor 3.7. Tolerance: float32 rounding of ~1e2-pixel values.
    rows, cols = np.nonzero(covered)
    np.testing.assert_allclose(project(surface), np.stack([cols, rows], -1), atol=1e-3)
    assert np.all(np.asarray(r.barycentrics[0])[~covered] == 0)


def test_faces_at_or_behind_the_near_plane_are_not_drawn():
    tri = unproject([[5.2, 6.1], [50.3, 9.7], [20.4, 55.9]], np.array([1.0, 1.0, 1.0]))
    drawn = render.rasterize(tri[None], np.array([[0, 1, 2]]), K, H, W)
    assert np.sum(np.asarray(drawn.face_index) == 0) > 100
    for z in (-0.5, render.DEFAULT_NEAR):
        clipped = tri.copy()
        clipped[2] = [0.0, 0.1, z]
        r = render.rasterize(clipped[None], np.array([[0, 1, 2]]), K, H, W)
        assert np.all(np.asarray(r.face_index) == -1)


def test_rasterize_under_jit_with_small_tiles_matches_eager():
    vertices, faces = uv_sphere()
    vertices = np.stack([vertices * 0.2 + [0, 0, 1.0], vertices * 0.1 + [0.05, 0, 0.8]])
    eager = render.rasterize(vertices, faces, K, H, W)
    # Traced inputs; 3 x 3 tiles, 5 per step: faces span several tiles and steps.
    jitted = jax.jit(lambda v, k: render.rasterize(v, faces, k, H, W, tile_size=3,
                                                   tiles_per_step=5))(vertices, K)
    np.testing.assert_array_equal(jitted.face_index, eager.face_index)
    np.testing.assert_allclose(jitted.depth, eager.depth, rtol=1e-6)  # float32 rounding
    np.testing.assert_allclose(jitted.barycentrics, eager.barycentrics, atol=1e-6)
    assert np.mean(np.asarray(eager.face_index) >= 0) > 0.1
