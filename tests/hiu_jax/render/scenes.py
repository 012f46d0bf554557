"""Shared test scenes for hiu_jax.render: a camera, (un)projection in float64, a UV sphere and
polygon measures. Pixel (col c, row r) is centred at (u, v) = (c, r) (the package convention)."""
import numpy as np

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
