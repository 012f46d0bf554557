"""Triangle-mesh rendering in pure JAX: a hard z-buffer rasteriser with Phong shading, and a soft
(SoftRas-style) differentiable silhouette rasteriser.

Pixel convention (the project's one, FreiHAND's): pixel (column c, row r) has its CENTRE at
(u, v) = (c, r) and covers [c - 0.5, c + 0.5] x [r - 0.5, r + 0.5]; an H x W image spans
[-0.5, W - 0.5] x [-0.5, H - 0.5]. Every function here samples pixel centres at integer
coordinates (`geometry.crops.pixel_centre`), so intrinsics K and 2D labels in this convention
are used as they are: a camera-frame point X is drawn in the pixel nearest (K @ X)[:2] / X_z.

Other conventions (hiu_jax/geometry/__init__.py): metres; OpenCV camera frame (x right, y down, z forward); images
NHWC float32 in [0, 1].

Modules: `checks` (argument validation), `raster` (hard
rasteriser: face table, tile plan, `rasterize`, `interpolate`), `phong` (`vertex_normals`,
`render`), `silhouette` (`soft_silhouette` with its custom VJP). The projections that feed them
are hiu_jax.geometry.projection's.
"""
from hiu_jax.geometry.crops import pixel_centre
from hiu_jax.render.raster import DEFAULT_NEAR, Rasterized, interpolate, rasterize
from hiu_jax.render.phong import DEFAULT_COLOR, render, vertex_normals
from hiu_jax.render.silhouette import DEFAULT_SOFT_CUTOFF, soft_silhouette

__all__ = [
    "DEFAULT_COLOR", "DEFAULT_NEAR", "DEFAULT_SOFT_CUTOFF", "Rasterized", "interpolate",
    "pixel_centre", "rasterize", "render",
    "soft_silhouette", "vertex_normals",
]
