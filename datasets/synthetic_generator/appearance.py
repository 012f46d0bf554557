"""Skin: tones, palm and back, nails, creases and texture, from any MANO-format model's surface.

Everything is computed from the model's template (vertices, faces, joint regressor, the FreiHAND
fingertip vertices), so a user's MANO file (right hand, 778 vertices) gets the same treatment as
the procedural hand. The per-vertex `SurfaceLayout` is interpolated per pixel by the renderer
(a solid texture in the rest pose: creases stay on their joints whatever the pose), and
`pixel_albedo` turns it into a colour:

- palm side: the vertex normal's component along the palm's outward normal; palms are lighter
  and pinker than backs (PALM_TINT);
- nails: an ellipse on the back of each distal phalanx, NAIL_CENTRE from the fingertip;
- finger creases: flexion lines on the palm side at the DIP/PIP joints and the finger bases,
  knuckle wrinkles on the back at the DIP/PIP/MCP joints (a signed axial distance to the nearest
  crease, interpolated per pixel, so the lines are thin whatever the mesh resolution);
- palm lines: the distal and proximal transverse creases and the thenar crease, curves in the
  palm's rest-pose coordinates (a: wrist -> middle base, b: pinky -> index side, normalised);
- skin texture: fine fractal noise sampled at the rest-pose surface coordinates.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

import mano_jax

from .placement import hand_frame
from .rasterizer import template_normals

# Skin tones from very light to very dark (sRGB in [0, 1]), roughly Fitzpatrick I-VI.
SKIN_TONES = np.array([[0.96, 0.82, 0.72], [0.93, 0.74, 0.62], [0.86, 0.65, 0.52],
                       [0.76, 0.55, 0.40], [0.62, 0.43, 0.30], [0.47, 0.32, 0.23],
                       [0.34, 0.23, 0.17], [0.25, 0.17, 0.13]])
PALM_TINT = np.array([1.12, 1.03, 1.00])  # palms are lighter and pinker than backs
PALM_LIFT = 0.18  # dark skin: palms move this far towards PALM_COLOUR
PALM_COLOUR = np.array([0.86, 0.64, 0.55])
NAIL_COLOUR = np.array([0.92, 0.76, 0.74])
NAIL_RADIUS = 0.011  # metres from a fingertip vertex: the dorsal skin there may be nail
NAIL_CENTRE = 5.5  # mm from the fingertip along the finger
NAIL_SIZE = (6.0, 5.0)  # mm, semi-axes along and across the finger
CREASE_REACH = 6.0  # mm: creases are drawn within this axial distance of their joint
# MANO joint chains base -> tip (template joint indices), and the fingertip's rank in
# mano_jax.TIP_PRESETS (thumb, index, middle, ring, pinky).
FINGERS = ((1, 2, 3), (4, 5, 6), (7, 8, 9), (10, 11, 12), (13, 14, 15))
FINGER_TIP_RANK = (1, 2, 4, 3, 0)
STATIC_CHANNELS = 8  # palm, crease_d, crease_back, crease_palm, a, b, nail, finger


class SurfaceLayout(NamedTuple):
    """Per-vertex surface data of a template (V vertices).

    palm: (V,) in [-1, 1], > 0 on the palm side. nail: (V,) bool, vertices inside a nail.
    static: (V, STATIC_CHANNELS) float32 channels that the renderer interpolates per pixel:
      0 palm; 1 signed axial distance (mm) to the nearest crease of the vertex's side, clipped to
      +-CREASE_REACH; 2 back-crease weight; 3 palm-crease weight; 4, 5 palm coordinates a, b
      (normalised, see the module doc); 6 nail ellipse radius (< 1 inside a nail); 7 0 (a free
      channel, kept for the forearm's sleeve flag).
    """

    palm: np.ndarray
    nail: np.ndarray
    static: np.ndarray


def _palm_direction(model, frame):
    """The palm's outward normal p (3,) in the model frame (see `skin_layout`)."""
    u, n = frame[:, 0], frame[:, 1]
    joints = np.asarray(model.J_regressor, np.float64) @ np.asarray(model.v_template, np.float64)
    thumb = joints[13] - joints[4]
    p = n if np.cross(u, n) @ thumb > 0 else -n
    return -p if model.side == "left" else p


def skin_layout(model, frame=None):
    """Where a hand's skin differs, from its template (works for any MANO-format model).

    Returns (palm (V,) in [-1, 1]: the vertex normal's component along the palm's outward
    normal, > 0 on the palm side; nail (V,) bool: dorsal vertices within NAIL_RADIUS of a
    fingertip vertex). The palm side is the one from which a right hand, fingers up, shows its
    thumb on the viewer's right: p = +-n with (u x p) . (thumb base - middle base) > 0."""
    layout = surface_layout(model, frame)
    return layout.palm, layout.nail


def surface_layout(model, frame=None) -> SurfaceLayout:
    """The `SurfaceLayout` of `model`'s template (see the module doc)."""
    frame = hand_frame(model) if frame is None else frame
    p = _palm_direction(model, frame)
    verts = np.asarray(model.v_template, np.float64)
    faces = np.asarray(model.faces, np.int64)
    palm = template_normals(verts, faces) @ p
    joints = np.asarray(model.J_regressor, np.float64) @ verts
    tips = verts[list(mano_jax.TIP_PRESETS["freihand"][model.side])]
    V = len(verts)
    # Nearest finger bone (segments base -> next joint -> tip) for every vertex.
    best = np.full(V, np.inf)
    axial = np.zeros(V)  # mm along the finger from its base joint
    lateral = np.zeros(V)
    crease_back = np.full(V, np.inf)
    crease_palm = np.full(V, np.inf)
    finger_of = np.zeros(V, np.int64)
    for f, (chain, rank) in enumerate(zip(FINGERS, FINGER_TIP_RANK)):
        pts = np.concatenate([joints[list(chain)], tips[rank][None]])
        lengths = np.linalg.norm(np.diff(pts, axis=0), axis=1) * 1000
        starts = np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
        thumb = f == 4
        backs = starts[:3] if not thumb else starts[1:3]  # MCP, PIP, DIP knuckles (thumb: MCP, IP)
        palms = (np.array([starts[0] + 0.35 * lengths[0], starts[1], starts[2]]) if not thumb
                 else starts[1:3])
        for k in range(3):
            a, b = pts[k], pts[k + 1]
            d = b - a
            t = np.clip((verts - a) @ d / (d @ d), 0.0, 1.0)
            dist = np.linalg.norm(verts - (a + t[:, None] * d), axis=1)
            if k == 0 and not thumb:  # the palm beyond the base belongs to no finger
                dist = np.where(t <= 0.0, np.inf, dist)
            closer = dist < best
            best = np.where(closer, dist, best)
            s = starts[k] + t * lengths[k]
            axial = np.where(closer, s, axial)
            side = np.cross(d / np.linalg.norm(d), p)
            lateral = np.where(closer, (verts - a) @ side * 1000, lateral)
            finger_of = np.where(closer, f, finger_of)
            nb = s[:, None] - backs[None]
            npm = s[:, None] - palms[None]
            crease_back = np.where(closer, nb[np.arange(V), np.abs(nb).argmin(1)], crease_back)
            crease_palm = np.where(closer, npm[np.arange(V), np.abs(npm).argmin(1)], crease_palm)
        tip_axial = starts[-1] + lengths[-1]
        on = finger_of == f
        nail_r = np.hypot((tip_axial - NAIL_CENTRE - axial) / NAIL_SIZE[0], lateral / NAIL_SIZE[1])
        if f == 0:
            nail_e = np.full(V, 9.0)
        nail_e = np.where(on & (palm < -0.2), np.minimum(nail_r, 9.0), nail_e)
    on_finger = np.isfinite(best) & (best < 0.02)
    d = np.where(palm > 0, crease_palm, crease_back)
    d = np.where(on_finger, np.clip(d, -CREASE_REACH, CREASE_REACH), CREASE_REACH)
    near = np.abs(d) < CREASE_REACH
    w_back = (near & on_finger) * np.clip(-palm * 3, 0, 1)
    w_palm = (near & on_finger) * np.clip(palm * 3, 0, 1)
    # Palm coordinates: a from the wrist (0) to the middle-finger base (1); b across, from the
    # pinky base (-0.5) to the index base (+0.5).
    u = frame[:, 0]
    across = np.cross(u, p)
    if (joints[1] - joints[7]) @ across < 0:
        across = -across
    length = (joints[4] - joints[0]) @ u
    width = (joints[1] - joints[7]) @ across
    a = (verts - joints[0]) @ u / length
    b = ((verts - joints[0]) @ across - 0.5 * ((joints[1] + joints[7]) - 2 * joints[0]) @ across
         ) / width
    nail = (nail_e < 1.0) & (palm < -0.3) & (
        np.min(np.linalg.norm(verts[:, None] - tips[None], axis=-1), 1) < NAIL_RADIUS)
    static = np.stack([palm, d, w_back, w_palm, a, b, nail_e, np.zeros(V)], 1).astype(np.float32)
    return SurfaceLayout(palm=palm, nail=nail, static=static)


def sample_skin(rng):
    """Per-sample skin parameters: (tone (3,), palm-line jitter (3,), crease depth)."""
    return sample_tone(rng), rng.uniform(-0.03, 0.03, 3), rng.uniform(0.25, 0.45)


def sample_tone(rng) -> np.ndarray:
    """A skin tone (3,): a random mix of two neighbouring SKIN_TONES with a small hue jitter;
    tones are drawn uniformly across the range, light to dark."""
    x = rng.uniform(0, len(SKIN_TONES) - 1)
    i = int(x)
    tone = SKIN_TONES[i] + (x - i) * (SKIN_TONES[min(i + 1, len(SKIN_TONES) - 1)] - SKIN_TONES[i])
    return np.clip(tone * rng.uniform(0.94, 1.06) * (1 + rng.normal(0, 0.03, 3)), 0, 1)


def vertex_albedo(rng, tone, layout: SurfaceLayout) -> np.ndarray:
    """(V, 3) per-vertex skin colour: tone, a lighter palm, redder knuckles and fingertips and a
    gentle low-frequency blotchiness."""
    palm = layout.palm
    V = len(palm)
    w = np.clip(palm, 0.0, 1.0)[:, None]
    palm_colour = tone * PALM_TINT + PALM_LIFT * (1 - tone.mean()) * (PALM_COLOUR - tone)
    colours = tone + w * (palm_colour - tone)
    colours = colours * (1 - 0.05 * np.clip(-palm, 0, 1))[:, None]  # backs a little darker
    knuckle = layout.static[:, 2:3]
    red = np.array([1.02, 0.93, 0.92])
    colours = colours * (1 + knuckle * (red - 1) * rng.uniform(0.5, 1.5))
    colours = colours * (1 + 0.04 * rng.standard_normal((V, 1)))
    colours = colours * (1 + 0.015 * rng.standard_normal((V, 3)))
    return np.clip(colours, 0, 1).astype(np.float32)


def pixel_albedo(albedo, static, texture, jitter, depth):
    """Per-pixel skin colour (3, N) from interpolated vertex albedo (3, N) and static channels
    (STATIC_CHANNELS, N) (see `SurfaceLayout`), channel-major planes; texture: (T, T) float32
    fine noise in [-1, 1];
    jitter: (3,) or (N, 3) palm-line offsets (normalised palm units, `sample_skin`); depth: scalar
    or (N,) crease darkness in [0, 1]. Returns (albedo (3, N), crease (N,) in [0, 1], nail (N,)
    in [0, 1])."""
    palm, d, w_back, w_palm, a, b, nail_e = static[:7]
    crease = np.zeros(len(palm), np.float32)
    # Finger creases: sharp palm-side lines; bundles of fine wrinkles on the knuckles.
    k = np.flatnonzero(w_back + w_palm > 0.01)
    dk = d[k]
    flex = w_palm[k] * np.exp(-(dk / 0.7) ** 2)
    wrinkles = w_back[k] * np.exp(-(dk / 3.0) ** 2) * (0.5 + 0.5 * np.cos(dk * (2 * np.pi / 1.6)))
    crease[k] = 0.8 * flex + 0.35 * wrinkles
    # Palm lines (normalised palm coordinates); a small per-sample offset moves them.
    j = np.asarray(jitter, np.float32).T
    k = np.flatnonzero((palm > 0.05) & (a > 0.05) & (a < 1.0))
    if len(k):
        if j.ndim > 1:
            j = j[:, k]
        ak, bk = a[k], b[k]
        heart = np.where((bk > -0.55) & (bk < 0.25), np.exp(-((ak - (
            0.74 + j[0] + 0.12 * np.clip((bk + 0.5) / 0.7, 0, 1) ** 1.5)) / 0.012) ** 2), 0.0)
        head = np.where((bk > -0.3 + j[1]) & (bk < 0.5),
                        np.exp(-((ak - (0.70 + j[1] - 0.22 * (0.5 - bk) / 0.8)) / 0.012) ** 2), 0.0)
        life_b = 0.12 + j[2] + 0.36 * np.sqrt(np.clip((ak - 0.05) / 0.65, 0, 1))
        life = np.where(ak < 0.72, np.exp(-((bk - life_b) / 0.012) ** 2), 0.0)
        lines = np.clip(palm[k] * 2.5, 0, 1) * np.maximum(np.maximum(heart, head), life)
        crease[k] = np.maximum(crease[k], 0.8 * lines)
    np.clip(crease, 0, 1, out=crease)
    # Skin texture: fine noise at the rest-pose palm coordinates.
    T = texture.shape[0]
    ti = (a * 211.0).astype(np.int64) % T
    tj = (b * 173.0 + d * 3.1).astype(np.int64) % T
    shade = (1 - depth * crease) * (1 + 0.05 * texture[ti, tj])
    colour = albedo * shade.astype(np.float32)
    nail = np.zeros(len(palm), np.float32)
    k = np.flatnonzero((nail_e < 1.0) & (palm < -0.1))
    nail[k] = np.clip((1.0 - nail_e[k]) * 6.0, 0, 1)
    ck = colour[:, k]
    colour[:, k] = ck + nail[k] * (0.55 * NAIL_COLOUR.astype(np.float32)[:, None] - 0.55 * ck)
    return colour, crease, nail
