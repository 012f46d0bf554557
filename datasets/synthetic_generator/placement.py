"""Viewpoints, intrinsics and in-frame placement of the synthetic hands.

Pixel convention (FreiHAND's, the project's): pixel (row r, col c) has its centre at
(u, v) = (c, r), and a camera-frame point X projects to (K X)[:2] / X_z. "In the image" means
-0.5 <= u, v < size - 0.5.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from hiu_jax.geometry.projection import project_pinhole

VIEWPOINTS = ("freihand", "uniform")
# The "freihand" viewpoint distribution: the hand's long axis (wrist -> middle-finger base) lies
# near the image plane, at an in-plane angle ~ N(0, INPLANE_STD) from "fingers up" and an
# elevation out of the image plane ~ N(0, ELEVATION_STD) clipped at ELEVATION_MAX; the roll about
# that axis is uniform (palm, back and side views alike), as in FreiHAND's multi-camera captures.
INPLANE_STD = np.deg2rad(50.0)
ELEVATION_STD = np.deg2rad(25.0)
ELEVATION_MAX = np.deg2rad(70.0)
# FreiHAND-like intrinsics at 224 px: focal lengths ~ 500-700 px, principal point near the centre.
FOCAL_RANGE = (500.0, 700.0)  # pixels at 224 px (scaled with the image size)
PRINCIPAL_JITTER = 4.0  # pixels at 224 px, uniform +-
# The hand's projected bounding box (its longer side) as a fraction of the image side; the depth
# follows from it and the focal length (FreiHAND's crops: hands ~ 0.4-0.85 of the image).
EXTENT_RANGE = (0.45, 0.85)
MARGIN = 2.0  # pixels kept between the hand's projected vertices and the image border
MIN_VERTICES_IN = 0.99  # accepted placements hold >= 99 % of the mesh (all of it when possible)
MAX_TRIES = 8


def hand_frame(model) -> np.ndarray:
    """(3, 3) orthonormal columns [u, n, u x n] in the model frame: u = the hand's long axis
    (wrist -> middle-finger base, MANO joints 0 -> 4 of the template), n = the palm's normal
    (perpendicular to u, in the plane of the index and pinky bases). Its sign is irrelevant to
    `sample_global_rotation`, whose roll about u is uniform."""
    joints = np.asarray(model.J_regressor, np.float64) @ np.asarray(model.v_template, np.float64)
    u = joints[4] - joints[0]
    u /= np.linalg.norm(u)
    n = np.cross(joints[1] - joints[0], joints[7] - joints[0])
    n -= u * (n @ u)
    n /= np.linalg.norm(n)
    return np.stack([u, n, np.cross(u, n)], 1)


def sample_global_rotation(rng, frame, viewpoints="freihand") -> np.ndarray:
    """A global rotation (3,) axis-angle, camera frame (OpenCV: x right, y down, z forward).

    "uniform": uniform on SO(3). "freihand": the long axis of `frame` (see `hand_frame`) is sent
    to d = (sin a cos e, -cos a cos e, sin e), a ~ N(0, INPLANE_STD) (0 = fingers up in the
    image), e ~ N(0, ELEVATION_STD) clipped at +-ELEVATION_MAX, and the roll about d is uniform.
    """
    if viewpoints == "uniform":
        q = rng.standard_normal(4)
        q /= np.linalg.norm(q)
        angle = 2 * np.arccos(np.clip(abs(q[0]), 0, 1))
        return q[1:] * np.sign(q[0]) / max(np.linalg.norm(q[1:]), 1e-12) * angle
    if viewpoints != "freihand":
        raise ValueError(f"viewpoints must be one of {VIEWPOINTS}, got {viewpoints!r}")
    a = rng.normal(0.0, INPLANE_STD)
    e = np.clip(rng.normal(0.0, ELEVATION_STD), -ELEVATION_MAX, ELEVATION_MAX)
    roll = rng.uniform(0.0, 2 * np.pi)
    d = np.array([np.sin(a) * np.cos(e), -np.cos(a) * np.cos(e), np.sin(e)])
    m0 = np.cross(d, [0.0, 0.0, 1.0])
    m0 /= np.linalg.norm(m0)
    m = m0 * np.cos(roll) + np.cross(d, m0) * np.sin(roll)
    target = np.stack([d, m, np.cross(d, m)], 1)
    return Rotation.from_matrix(target @ frame.T).as_rotvec()


def inside(uv, size, margin=0.0) -> np.ndarray:
    """(..., N) bool: uv lies in the image of side `size`, `margin` pixels from its border."""
    return np.all((uv >= -0.5 + margin) & (uv < size - 0.5 - margin), axis=-1)


def sample_camera(rng, vertices, joints, size):
    """FreiHAND-like intrinsics and a translation that puts the WHOLE hand in the image.

    vertices: (V, 3), joints: (21, 3) the posed hand (metres, model origin, before translation).
    f ~ U(FOCAL_RANGE) * size / 224, principal point = image centre +- PRINCIPAL_JITTER; the
    depth of keypoint 9 makes the hand's projected box span EXTENT_RANGE of the image, and the box
    is placed uniformly where it stays MARGIN pixels inside. The placement is checked exactly
    (perspective projection) and redrawn up to MAX_TRIES times, smaller each time, until every
    keypoint and >= MIN_VERTICES_IN of the vertices are inside; all draws come from `rng`, so the
    result is deterministic per sample.
    Returns K (3, 3) and trans (3,) (camera-frame points = model points + trans).
    """
    scale = size / 224.0
    f = rng.uniform(*FOCAL_RANGE) * scale
    c = (size - 1) / 2.0 + rng.uniform(-PRINCIPAL_JITTER, PRINCIPAL_JITTER, 2) * scale
    K = np.array([[f, 0.0, c[0]], [0.0, f, c[1]], [0.0, 0.0, 1.0]])
    centred = vertices - joints[9]
    extent_xy = np.ptp(centred[:, :2], axis=0).max()  # metres, a first guess of the box
    best = None
    for attempt in range(MAX_TRIES):
        extent = rng.uniform(*EXTENT_RANGE) * (0.9 ** attempt)
        z = f * extent_xy / (extent * size)
        trial = np.array([0.0, 0.0, z])
        uv = project_pinhole(K, centred + trial, xp=np)
        lo, hi = uv.min(0), uv.max(0)
        room_lo = -0.5 + MARGIN - lo  # shifts (pixels) that keep the box inside
        room_hi = size - 0.5 - MARGIN - hi
        shift = np.where(room_lo <= room_hi, rng.uniform(0, 1, 2) * (room_hi - room_lo) + room_lo,
                         0.5 * (room_lo + room_hi))
        trans = trial + np.array([shift[0] * z / f, shift[1] * z / f, 0.0]) - joints[9]
        ok_v = inside(project_pinhole(K, vertices + trans, xp=np), size).mean()
        ok_j = inside(project_pinhole(K, joints + trans, xp=np), size).all()
        if ok_j and ok_v >= MIN_VERTICES_IN:
            return K, trans
        if best is None or (ok_j, ok_v) > best[0]:
            best = ((ok_j, ok_v), trans)
    return K, best[1]
