"""Tests for hiu_jax.render.silhouette: soft_silhouette against a dense reference, its limit and its
custom VJP."""
import jax
import jax.numpy as jnp
import numpy as np

from hiu_jax import render
from hiu_jax.geometry import projection
from tests.hiu_jax.render.scenes import H, K, W, polygon_area_perimeter, project, unproject


def dense_soft_silhouette(uv, faces, height, width, sigma):
    """Brute-force float64 reference of the SoftRas silhouette (every face at every pixel)."""
    uv = np.asarray(uv, np.float64)
    centres = np.stack(np.meshgrid(np.arange(width), np.arange(height)), -1)  # (u, v) = (c, r)
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
    uv = projection.project_pinhole(K, points[None])
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
