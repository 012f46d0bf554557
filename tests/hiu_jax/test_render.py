"""Tests for hiu_jax.render: hard rasterizer, shading, soft silhouette, projections."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hiu_jax import render

K = np.array([[120.0, 0.0, 31.0], [0.0, 110.0, 33.0], [0.0, 0.0, 1.0]], np.float32)
H = W = 64


def unproject(uv, z, K=K):
    """(N, 2) pixel coordinates and (N,) depths -> (N, 3) camera-frame points."""
    uv, z = np.asarray(uv, np.float64), np.asarray(z, np.float64)
    x = (uv[:, 0] - K[0, 2]) / K[0, 0] * z
    y = (uv[:, 1] - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, z], -1).astype(np.float32)


def project(points, K=K):
    points = np.asarray(points, np.float64)
    uvw = points @ np.asarray(K, np.float64).T
    return uvw[..., :2] / uvw[..., 2:]


def pixel_centre_count_bound(perimeter):
    """|#pixel centres inside - area| for a region with boundary length `perimeter` (pixels).

    A point in the symmetric difference of the region and the union of the unit pixel squares
    whose centres lie inside is within r = sqrt(2)/2 (half a pixel diagonal) of the boundary, and
    the r-neighbourhood of a closed curve of length L has area <= 2 r L + pi r^2.
    """
    r = np.sqrt(2.0) / 2.0
    return 2.0 * r * perimeter + np.pi * r * r


def polygon_area_perimeter(uv):
    uv = np.asarray(uv, np.float64)
    nxt = np.roll(uv, -1, axis=0)
    area = 0.5 * abs(np.sum(uv[:, 0] * nxt[:, 1] - nxt[:, 0] * uv[:, 1]))
    return area, np.sum(np.linalg.norm(nxt - uv, axis=1))


def uv_sphere(rings=6, segments=10):
    """Unit UV sphere, faces counter-clockwise seen from outside."""
    theta = np.pi * np.arange(1, rings + 1) / (rings + 1)
    phi = 2 * np.pi * np.arange(segments) / segments
    ring = np.stack([np.sin(theta)[:, None] * np.cos(phi), np.sin(theta)[:, None] * np.sin(phi),
                     np.cos(theta)[:, None] * np.ones_like(phi)], -1).reshape(-1, 3)
    vertices = np.concatenate([[[0, 0, 1.0]], ring, [[0, 0, -1.0]]])
    idx = lambda r, s: 1 + r * segments + s % segments  # noqa: E731
    faces = []
    for s in range(segments):
        faces += [(0, idx(0, s), idx(0, s + 1)),
                  (len(vertices) - 1, idx(rings - 1, s + 1), idx(rings - 1, s))]
        for r in range(rings - 1):
            faces += [(idx(r, s), idx(r + 1, s), idx(r + 1, s + 1)),
                      (idx(r, s), idx(r + 1, s + 1), idx(r, s + 1))]
    return vertices.astype(np.float32), np.asarray(faces, np.int32)


def dense_soft_silhouette(uv, faces, height, width, sigma):
    """Brute-force float64 reference of the SoftRas silhouette (every face at every pixel)."""
    uv = np.asarray(uv, np.float64)
    centres = np.stack(np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5), -1)
    log_outside = np.zeros((uv.shape[0], height, width))
    for b in range(uv.shape[0]):
        for face in faces:
            tri = uv[b, face]
            dist2 = np.full((height, width), np.inf)
            pos = np.ones((height, width), bool)
            neg = np.ones((height, width), bool)
            for i in range(3):
                a, e = tri[i], tri[(i + 1) % 3] - tri[i]
                d = centres - a
                t = np.clip(d @ e / (e @ e), 0.0, 1.0)
                dist2 = np.minimum(dist2, np.sum((d - t[..., None] * e) ** 2, -1))
                cross = e[0] * d[..., 1] - e[1] * d[..., 0]
                pos &= cross >= 0
                neg &= cross <= 0
            log_outside[b] -= np.logaddexp(0.0, np.where(pos | neg, dist2, -dist2) / sigma)
    return -np.expm1(log_outside)


# --------------------------------------------------------------------------- hard rasterizer


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
    # x + 0.5 in [u0, u1] are exactly the columns ceil(u0 - 0.5) .. floor(u1 - 0.5).
    u0, u1, v0, v1 = 10.3, 41.8, 7.2, 50.6
    columns = np.floor(u1 - 0.5) - np.ceil(u0 - 0.5) + 1
    expected = columns * (np.floor(v1 - 0.5) - np.ceil(v0 - 0.5) + 1)
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
    np.testing.assert_allclose(project(surface), np.stack([cols, rows], -1) + 0.5, atol=1e-3)
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


# --------------------------------------------------------------------------- shading


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


# --------------------------------------------------------------------------- soft silhouette


def small_mesh():
    """(1, 6, 2) pixel coordinates and 4 faces on 32 x 32 pixels; vertex 5 is used by no face."""
    uv = np.array([[[6.3, 5.1], [26.2, 7.4], [13.1, 27.5], [29.4, 24.8], [19.7, 16.2],
                    [15.0, 15.0]]], np.float32)
    faces = np.array([[0, 1, 4], [1, 3, 4], [4, 3, 2], [0, 4, 2]])
    return uv, faces


def test_soft_silhouette_matches_a_dense_reference():
    uv, faces = small_mesh()
    two = np.concatenate([uv, uv[:, ::-1] * 0.8 + 3.0])  # a second image, other winding
    with jax.enable_x64(True):
        expected = dense_soft_silhouette(two, faces, 32, 32, 1.5)
        uv64 = jnp.asarray(two, jnp.float64)
        exact = render.soft_silhouette(uv64, faces, 32, 32, 1.5, cutoff=float("inf"))
        tiled = render.soft_silhouette(uv64, faces, 32, 32, 1.5, tile_size=3, tiles_per_step=7)
        np.testing.assert_allclose(exact, expected, atol=1e-12)
        # Left-out terms are each below exp(-cutoff) in log(1 - silhouette).
        np.testing.assert_allclose(tiled, expected, atol=len(faces) * np.exp(-30.0))
    default = render.soft_silhouette(uv, faces, 32, 32, 1.5)
    assert default.dtype == jnp.float32
    np.testing.assert_allclose(default, expected[:1], atol=1e-6)
    # face_mask = 0 removes a face.
    masked = render.soft_silhouette(uv, faces, 32, 32, 1.5, face_mask=np.array([1, 0, 1, 0]))
    np.testing.assert_allclose(masked, dense_soft_silhouette(uv, faces[[0, 2]], 32, 32, 1.5),
                               atol=1e-6)


def test_soft_silhouette_converges_to_the_hard_mask():
    points = unproject([[6.3, 5.1], [52.2, 9.4], [13.1, 57.5], [55.4, 48.8], [30.7, 31.2]],
                       np.array([0.8, 1.0, 1.2, 0.9, 1.0]))
    faces = np.array([[0, 1, 4], [1, 3, 4], [4, 3, 2], [0, 4, 2]])
    hard = np.asarray(render.rasterize(points[None], faces, K, H, W).face_index[0]) >= 0
    uv = render.project_perspective(points[None], K)
    sigmas = [4.0, 1.0, 0.25, 1.0 / 16, 1.0 / 64]
    errors = [float(jnp.mean(jnp.abs(render.soft_silhouette(uv, faces, H, W, s)[0] - hard)))
              for s in sigmas]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    # At sigma = 1/64 a pixel farther than delta = 1/2 px from every face edge is off by at most
    # F * sigmoid(-delta^2 / sigma); one closer is off by at most 1. Pixel centres within delta
    # of the edges (total length L) number at most the area of their (delta + sqrt(2)/2)-tube.
    edge_length = sum(polygon_area_perimeter(project(points[f]))[1] for f in faces)
    r = 0.5 + np.sqrt(2) / 2
    near_edge = 2 * r * edge_length + np.pi * r * r
    bound = near_edge / (H * W) + len(faces) / (1 + np.exp(0.25 * 64))
    assert errors[-1] < bound, (errors[-1], bound)


def test_soft_silhouette_gradients_match_central_differences():
    uv, faces = small_mesh()
    target = np.random.default_rng(0).uniform(size=(1, 32, 32))
    with jax.enable_x64(True):
        target64 = jnp.asarray(target, jnp.float64)

        def loss(v, sigma):
            sil = render.soft_silhouette(v, faces, 32, 32, sigma, tile_size=4, tiles_per_step=16)
            return jnp.sum((sil - target64) ** 2)

        v64, sigma = jnp.asarray(uv, jnp.float64), jnp.asarray(1.3, jnp.float64)
        grad_v, grad_sigma = jax.grad(loss, argnums=(0, 1))(v64, sigma)
        grad_v = np.asarray(grad_v)
        # Central differences: truncation h^2 |f'''| / 6 and rounding eps |f| / h, both below
        # 1e-8 here for h = 1e-5 px (|f| ~ 1e2, |f'''| ~ 1e2 at sigma ~ 1 px^2). All the
        # perturbed vertex sets go through one call as a batch; the loss is summed per image.
        h = 1e-5
        steps = h * np.eye(uv.size).reshape(uv.size, *uv.shape[1:])
        batch = jnp.concatenate([v64 + steps, v64 - steps, v64])

        def per_image_loss(sigma):
            sil = render.soft_silhouette(batch, faces, 32, 32, sigma, tile_size=4,
                                         tiles_per_step=512)
            return np.asarray(jnp.sum((sil - target64) ** 2, axis=(1, 2)))

        per_image = per_image_loss(sigma)
        numeric = (per_image[: uv.size] - per_image[uv.size : -1]).reshape(uv.shape) / (2 * h)
        np.testing.assert_allclose(grad_v, numeric, rtol=1e-6, atol=1e-6)
        numeric_sigma = (per_image_loss(sigma + h)[-1] - per_image_loss(sigma - h)[-1]) / (2 * h)
        np.testing.assert_allclose(grad_sigma, numeric_sigma, rtol=1e-6)
    assert np.all(np.linalg.norm(grad_v[0, :5], axis=-1) > 1e-3)  # every used vertex moves it
    assert np.all(grad_v[0, 5] == 0)  # the unused vertex does not
    target32 = jnp.asarray(target, jnp.float32)
    grad32 = jax.grad(lambda v: jnp.sum(
        (render.soft_silhouette(v, faces, 32, 32, sigma=1.3) - target32) ** 2))(jnp.asarray(uv))
    assert np.all(np.isfinite(np.asarray(grad32)))
    np.testing.assert_allclose(grad32, grad_v, rtol=1e-3, atol=1e-3 * np.abs(grad_v).max())


def test_projections():
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.2, 0.2, size=(2, 7, 3)).astype(np.float32) + [0, 0, 1.0]
    Ks = np.stack([K, K * [[2.0], [2.0], [1.0]]]).astype(np.float32)
    np.testing.assert_allclose(render.project_perspective(points, Ks)[1], project(points[1], Ks[1]),
                               rtol=1e-5)
    scale, trans = np.array([100.0, 200.0]), np.array([[10.0, 20.0], [-5.0, 3.0]])
    uv = render.project_weak_perspective(points, scale, trans)
    expected = scale[:, None, None] * points[..., :2] + trans[:, None]
    np.testing.assert_allclose(uv, expected, rtol=1e-6)


# --------------------------------------------------------------------------- validation


def test_input_validation():
    tri = np.array([[[0.0, 0.0, 1.0], [0.1, 0.0, 1.0], [0.0, 0.1, 1.0]]], np.float32)
    faces = np.array([[0, 1, 2]])
    with pytest.raises(ValueError, match="K must have shape"):
        render.rasterize(tri, faces, np.eye(4), H, W)
    with pytest.raises(ValueError, match="last row"):
        render.rasterize(tri, faces, K + np.array([[0, 0, 0], [0, 0, 0], [0.1, 0, 0]]), H, W)
    with pytest.raises(ValueError, match="focal"):
        render.rasterize(tri, faces, K * [[-1], [1], [1]], H, W)
    with pytest.raises(ValueError, match="faces index vertices"):
        render.rasterize(tri, np.array([[0, 1, 3]]), K, H, W)
    with pytest.raises(ValueError, match="faces must be integer"):
        render.rasterize(tri, faces.astype(float), K, H, W)
    with pytest.raises(ValueError, match="vertices_cam must have shape"):
        render.rasterize(tri[0], faces, K, H, W)
    with pytest.raises(ValueError, match="non-finite"):
        render.rasterize(tri * np.nan, faces, K, H, W)
    with pytest.raises(ValueError, match="height"):
        render.rasterize(tri, faces, K, 0, W)
    with pytest.raises(ValueError, match="vertex_colors"):
        render.render(tri, faces, K, H, W, np.ones((1, 4, 3)))
    with pytest.raises(ValueError, match="background"):
        render.render(tri, faces, K, H, W, background=np.ones((H, W)))
    with pytest.raises(ValueError, match="sigma must be positive"):
        render.soft_silhouette(tri[..., :2], faces, H, W, sigma=0.0)
    with pytest.raises(ValueError, match="faces index vertices"):
        render.soft_silhouette(tri[..., :2], np.array([[0, 1, -1]]), H, W)
    with pytest.raises(ValueError, match="face_mask"):
        render.soft_silhouette(tri[..., :2], faces, H, W, face_mask=np.ones(2))
    with pytest.raises(ValueError, match="scale"):
        render.project_weak_perspective(tri, np.ones(2), np.zeros((1, 2)))


def test_pixel_centre_intrinsics_put_labels_on_the_pixels_that_show_them():
    """A square whose left edge projects (datasets' convention, pixel c centred at u = c) to
    u = 10.25: rendered with pixel_centre_intrinsics(K), column 10 (centre 10 < 10.25) is
    uncovered and column 11 covered; with K itself the renderer would cover column 10 too."""
    f, c, z = 100.0, 16.0, 1.0
    K = np.array([[f, 0, c], [0, f, c], [0, 0, 1.0]])
    x0 = (10.25 - c) * z / f
    square = np.array([[x0, -0.2, z], [0.3, -0.2, z], [0.3, 0.2, z], [x0, 0.2, z]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    def covered_columns(intrinsics):
        r = render.rasterize(jnp.asarray(square[None]), faces,
                             jnp.asarray(intrinsics[None], jnp.float32), 32, 32)
        return np.flatnonzero(np.asarray(r.face_index[0, 16]) >= 0)
    assert covered_columns(render.pixel_centre_intrinsics(K))[0] == 11
    assert covered_columns(K)[0] == 10
    np.testing.assert_array_equal(render.pixel_centre_intrinsics(K)[:2, 2], [c + 0.5, c + 0.5])
