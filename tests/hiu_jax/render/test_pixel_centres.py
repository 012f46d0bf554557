"""The pixel-centre convention that every rasteriser follows, with the projections of
hiu_jax.geometry.projection feeding them."""
import numpy as np

from hiu_jax import render
from hiu_jax.geometry import projection


# Exact in float32: a focal length that is a power of two, depth 1 and integer pixel targets
# make K X / X_z land on integers exactly, so edges through pixel centres stay on them.
EXACT_K = np.array([[64.0, 0.0, 15.0], [0.0, 64.0, 9.0], [0.0, 0.0, 1.0]], np.float32)
ROWS, COLS = 24, 32  # not square: a transposed image would not fit


def exact_points(uv, z=1.0):
    """(N, 2) pixel coordinates -> (N, 3) camera-frame points that EXACT_K projects onto them."""
    uv = np.asarray(uv, np.float64)
    xy = (uv - EXACT_K[:2, 2]) / EXACT_K[0, 0] * z
    return np.concatenate([xy, np.full((len(uv), 1), z)], -1).astype(np.float32)


def test_pixel_centre_is_the_index():
    np.testing.assert_array_equal(render.pixel_centre(np.arange(4), np.float32), [0, 1, 2, 3])


def test_triangle_through_pixel_centres_covers_exactly_those_pixels():
    """Vertices at the centres of pixels (col, row) (10, 5), (20, 5), (10, 15): the covered
    pixels are the columns c >= 10, rows r >= 5 with (c - 10) + (r - 5) <= 10, edges (and the
    centres on them) included; the soft silhouette is >= 1/2 on exactly those pixels."""
    uv = np.array([[10.0, 5.0], [20.0, 5.0], [10.0, 15.0]])
    rows, cols = np.mgrid[0:ROWS, 0:COLS]
    expected = (cols >= 10) & (rows >= 5) & ((cols - 10) + (rows - 5) <= 10)
    assert expected.sum() == 66  # 11 + 10 + ... + 1
    points = exact_points(uv)[None]
    np.testing.assert_array_equal(projection.project_pinhole(EXACT_K, points)[0], uv)
    hard = render.rasterize(points, np.array([[0, 1, 2]]), EXACT_K, ROWS, COLS)
    np.testing.assert_array_equal(np.asarray(hard.face_index[0]) == 0, expected)
    shaded = render.render(points, np.array([[0, 1, 2]]), EXACT_K, ROWS, COLS)
    np.testing.assert_array_equal(np.asarray(shaded["mask"][0]) == 1, expected)
    # sigma = 1e-3 px^2: a centre on an edge gets exactly 1/2, one inside more, one at least
    # 1/sqrt(2) px outside sigmoid(-500) ~ 0.
    soft = render.soft_silhouette(uv[None].astype(np.float32), np.array([[0, 1, 2]]), ROWS, COLS,
                                  1e-3)
    np.testing.assert_array_equal(np.asarray(soft[0]) >= 0.5, expected)


def test_vertex_projected_to_integer_uv_lands_in_pixel_row_v_col_u():
    """A point that projects to (u, v) = (7, 12) is drawn in pixel [row 12, col 7], by both
    projections and both rasterisers: a triangle around it smaller than a pixel covers that
    pixel only."""
    u, v = 7, 12
    around = np.array([[u - 0.3, v - 0.2], [u + 0.25, v - 0.3], [u, v + 0.3]])
    points = exact_points(np.concatenate([[[u, v]], around]), z=2.0)[None]
    np.testing.assert_array_equal(projection.project_pinhole(EXACT_K, points)[0, 0], [u, v])
    expected = np.zeros((ROWS, COLS), bool)
    expected[v, u] = True
    hard = render.rasterize(points, np.array([[1, 2, 3]]), EXACT_K, ROWS, COLS)
    np.testing.assert_array_equal(np.asarray(hard.face_index[0]) == 0, expected)
    np.testing.assert_allclose(hard.depth[0, v, u], 2.0, rtol=1e-6)
    # Weak perspective with scale f / z = 32 px/m and trans = the principal point is the same
    # projection at this depth; the soft silhouette of the triangle peaks in the same pixel.
    uv_weak = projection.project_weak_perspective(points, np.array([32.0]), EXACT_K[None, :2, 2])
    np.testing.assert_array_equal(uv_weak[0, 0], [u, v])
    soft = render.soft_silhouette(uv_weak, np.array([[1, 2, 3]]), ROWS, COLS, 1e-3)
    np.testing.assert_array_equal(np.asarray(soft[0]) >= 0.5, expected)
