"""Tests for hiu_jax.render.checks: every public function rejects bad arguments by name."""
import numpy as np
import pytest

from hiu_jax import render
from tests.hiu_jax.render.scenes import H, K, W


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
