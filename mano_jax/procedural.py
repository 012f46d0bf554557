"""An open, procedural hand model in the official MANO format (778 vertices, 1538 faces, 16 joints).

The licensed MANO files cannot ship with the project, so this module builds a hand of our own from
a handful of anatomical measurements, deterministically, in about a second:

  topology  A box-modelled quad mesh, triangulated. The knuckle row is a 16 x 4 vertex grid whose
            four 3 x 3 quad blocks open into 12-vertex finger rings (one quad of webbing between
            fingers); the palm is a tube of 36-vertex rings; the thumb grows out of a 3 x 3 quad
            block cut into the palm's radial-palmar wall; rings of 29, 24 and 16 vertices taper to
            the wrist, whose 16-vertex loop is the mesh's only boundary (as in MANO). Euler's
            formula for a disk then gives F = 2 V - 16 - 2 = 1538.
  geometry  Rings are ellipses around each finger's bone axis, with radii tapering to a
            hemispherical tip. Right hand: fingers along +x, back of the hand +y, thumb on -z.
  skinning  Weights blend smoothly across each joint along the finger; palm vertices blend into
            the MCP joints near the knuckles and into the thumb's CMC joint around the thenar.
  regressor Each joint is a sparse non-negative, sum-to-one combination of the vertices around it
            (solved with NNLS), so J_regressor @ v_template reproduces the designed skeleton.
  shape     10 linear directions: size, finger length, palm width, thickness, finger girth, palm
            length, thumb size, pinky length, index/ring ratio and fingertip taper.
  pose      A sampler of plausible poses (grasps, points, pinches, spreads) gives hands_mean and a
            45 x 45 PCA; pose correctives are least-squares fitted so that linear blend skinning
            reproduces dual-quaternion skinning (no candy-wrapper collapse at bent joints).

Fingertip vertex ids are placed where every preset in `mano_jax.lbs.TIP_PRESETS` expects a tip,
so FreiHAND / manopth / smplx / HO-3D conventions all give sensible fingertips on this model.

    model = procedural_model()              # a MANOModel
    python -m mano_jax.procedural OUT.pkl   # writes it in the official file format
"""
from __future__ import annotations

import argparse
import functools
from collections import deque

import numpy as np
from scipy.optimize import nnls

from mano_jax.mesh import close_boundaries, signed_volume
from mano_jax.model import MANO_PARENTS, NUM_FACES, NUM_JOINTS, NUM_VERTICES, model_from_arrays

# ----------------------------------------------------------------------------------------------
# Measurements of the right hand (metres, rest pose: flat hand, fingers along +x, dorsal +y).

# Finger order here: index, middle, ring, pinky (radial -> ulnar, i.e. -z -> +z).
FINGER_MANO_JOINTS = ((1, 2, 3), (4, 5, 6), (10, 11, 12), (7, 8, 9))
THUMB_MANO_JOINTS = (13, 14, 15)
FINGER_MCP = np.array([[0.0880, 0.000, -0.0290], [0.0920, 0.000, -0.0095],
                       [0.0870, -0.001, 0.0100], [0.0780, -0.003, 0.0285]])
FINGER_SPLAY_DEG = np.array([-4.0, 0.0, 4.5, 10.0])  # rotation of the finger axis about +y
FINGER_LENGTHS = np.array([[0.041, 0.025, 0.022], [0.045, 0.028, 0.024],
                           [0.042, 0.027, 0.023], [0.033, 0.020, 0.020]])  # MCP-PIP, PIP-DIP, DIP-tip
FINGER_RADII = np.array([[0.0085, 0.0080, 0.0074, 0.0068], [0.0088, 0.0083, 0.0077, 0.0070],
                         [0.0083, 0.0078, 0.0071, 0.0066], [0.0074, 0.0068, 0.0062, 0.0058]])
DORSAL_RATIO = 0.84  # dorso-palmar / lateral radius of a finger's cross-section
KNUCKLE_DORSAL_RATIO = 1.25  # the knuckle row is taller: metacarpal heads and palm pad

THUMB_CMC = np.array([0.020, -0.010, -0.019])
THUMB_DIRS = np.array([[0.78, -0.22, -0.58], [0.90, -0.18, -0.40], [0.96, -0.14, -0.24]])
THUMB_LENGTHS = np.array([0.044, 0.032, 0.027])  # CMC-MCP, MCP-IP, IP-tip
THUMB_RADII = np.array([0.0150, 0.0102, 0.0094, 0.0080])  # base, MCP, IP, tip
THUMB_NAIL = np.array([0.0, 0.40, -0.92])  # roughly where the thumbnail faces in the rest pose

WRIST_JOINT = np.array([0.0, 0.0, -0.002])
WRIST_X = -0.016  # the opening
PALM_BASE_X, PALM_TOP_X = 0.006, 0.068
PALM_BASE_HALF = (0.030, 0.0150)  # half width (z), half thickness (y) at the palm's base
PALM_CENTER_Z = -0.001

# Topology sizes (see the module docstring); they add up to 778 vertices.
GRID_COLS, GRID_ROWS = 16, 4
PALM_RING = 2 * (GRID_COLS - 1) + 2 * (GRID_ROWS - 1)  # 36
PALM_RINGS = 5
PALM_RING_FRACTIONS = (0.08, 0.2, 0.33, 0.48, 0.72)  # denser by the wrist: a compact thenar
TAPER_RINGS = (29, 24, 16)  # from the palm down to the wrist opening
THUMB_BLOCK_U = 31  # first ring index of the thumb's 3 x 3 block (radial-palmar corner)
THUMB_BLOCK_K = 0  # first palm ring of the block
RING = 12  # vertices per finger ring
RING_ANGLES = np.deg2rad([135, 105, 75, 45, 15, -15, -45, -75, -105, -135, -165, 165])

TIP_IDS = {  # new id of a fingertip's apex, and of its nearest ring vertices (other presets)
    "thumb": (744, (745,)), "index": (320, (317, 319, 333)), "middle": (443, (444, 445)),
    "ring": (555, (554, 556)), "pinky": (672, (671, 673)),
}


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class _Mesh:
    """Vertex/face accumulator with per-vertex labels used to derive weights and shapes."""

    def __init__(self):
        self.pos, self.part, self.s, self.faces = [], [], [], []

    def add(self, p, part, s):
        self.pos.append(np.asarray(p, float))
        self.part.append(part)
        self.s.append(float(s))
        return len(self.pos) - 1

    def quad(self, a, b, c, d):
        self.faces += [(a, b, c), (a, c, d)]

    def strip(self, ring_a, ring_b):
        n = len(ring_a)
        for m in range(n):
            self.quad(ring_a[m], ring_a[(m + 1) % n], ring_b[(m + 1) % n], ring_b[m])

    def fan(self, ring, apex):
        for m in range(len(ring)):
            self.faces.append((ring[m], ring[(m + 1) % len(ring)], apex))

    def zip(self, ring_a, t_a, ring_b, t_b):
        """Triangulates between two closed rings of any sizes, parametrised by t in [0, 1)."""
        i = j = 0
        na, nb = len(ring_a), len(ring_b)
        while i < na or j < nb:
            next_a = t_a[i + 1] if i + 1 < na else 1.0 + t_a[0]
            next_b = t_b[j + 1] if j + 1 < nb else 1.0 + t_b[0]
            if j >= nb or (i < na and next_a <= next_b):
                self.faces.append((ring_a[i % na], ring_a[(i + 1) % na], ring_b[j % nb]))
                i += 1
            else:
                self.faces.append((ring_a[i % na], ring_b[(j + 1) % nb], ring_b[j % nb]))
                j += 1


def _finger_frame(f):
    a = np.deg2rad(FINGER_SPLAY_DEG[f])
    d = np.array([np.cos(a), 0.0, np.sin(a)])
    n = np.array([0.0, 1.0, 0.0])
    return d, n, np.cross(d, n)  # axis, dorsal, lateral (towards the pinky)


def _ring_points(center, lateral, dorsal, r_lat, r_dor, angles):
    return center + np.outer(np.cos(angles), lateral) * r_lat + np.outer(np.sin(angles), dorsal) * r_dor


def _tip_profile(lengths, radii):
    """(s, radius) of the 8 rings after the base, and the apex s, along a finger of 3 segments.

    Two rings per proximal and middle segment (mid, joint), then a cylinder ring and a
    hemispherical dome (0, 45, 72 degrees) on the distal segment.
    """
    l1, l2, l3 = lengths
    r0, r1, r2, rt = radii
    dome0 = l1 + l2 + l3 - rt
    s = [0.5 * l1, l1, l1 + 0.5 * l2, l1 + l2, l1 + l2 + 0.45 * (l3 - rt), dome0,
         dome0 + rt * np.sin(np.pi / 4), dome0 + rt * np.sin(np.deg2rad(72))]
    r = [0.5 * (r0 + r1), r1, 0.5 * (r1 + r2), r2, 0.5 * (r2 + rt), rt,
         rt * np.cos(np.pi / 4), rt * np.cos(np.deg2rad(72))]
    return np.array(s), np.array(r), l1 + l2 + l3


def _joint_chain(origin, dirs, lengths):
    pts = [np.asarray(origin, float)]
    for d, l in zip(dirs, lengths):
        pts.append(pts[-1] + l * _unit(np.asarray(d, float)))
    return np.array(pts)  # (4, 3): base joint, next, next, tip


def _point_on_chain(chain, lengths, s):
    """Position at arc length s along a 3-segment polyline, and the segment direction."""
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    k = int(np.clip(np.searchsorted(cum, s, side="right") - 1, 0, 2))
    d = _unit(chain[k + 1] - chain[k])
    return chain[k] + (s - cum[k]) * d, d


def _build_topology():
    """Builds vertices (rest positions), faces and per-vertex labels of the right hand."""
    mesh = _Mesh()
    info = {"finger_rings": [], "thumb_rings": [], "apex": {}, "palm_u": {}, "chains": {}}

    # Knuckle grid: 16 x 4 vertices, block interiors left out. Vertex (i, j) of finger f = i // 4.
    grid = {}
    for f in range(4):
        d, n, l = _finger_frame(f)
        cells = [(0, 0), (1, 0), (2, 0), (3, 0), (3, 1), (3, 2), (3, 3), (2, 3), (1, 3), (0, 3),
                 (0, 2), (0, 1)]
        pts = _ring_points(FINGER_MCP[f] - 0.002 * n, l, n, FINGER_RADII[f, 0],
                           FINGER_RADII[f, 0] * KNUCKLE_DORSAL_RATIO, RING_ANGLES)
        ring = []
        for (ci, cj), p in zip(cells, pts):
            grid[(4 * f + ci, cj)] = mesh.add(p, ("finger", f), 0.0)
            ring.append(grid[(4 * f + ci, cj)])
        info["finger_rings"].append([ring])
    for f in range(3):  # webbing between neighbouring fingers
        for j in range(GRID_ROWS - 1):
            mesh.quad(grid[(4 * f + 3, j)], grid[(4 * f + 4, j)], grid[(4 * f + 4, j + 1)],
                      grid[(4 * f + 3, j + 1)])

    # The palm ring order u: dorsal row left to right, ulnar side, palmar row back, radial side.
    cells_u = ([(i, 0) for i in range(GRID_COLS)] + [(GRID_COLS - 1, 1), (GRID_COLS - 1, 2)]
               + [(i, 3) for i in range(GRID_COLS - 1, -1, -1)] + [(0, 2), (0, 1)])
    assert len(cells_u) == PALM_RING
    knuckle_ids = [grid[c] for c in cells_u]
    knuckle_pos = np.array([mesh.pos[v] for v in knuckle_ids])

    # Palm rings from the base (k = 0) up to just below the knuckles; thumb block interior omitted.
    block_u = range(THUMB_BLOCK_U, THUMB_BLOCK_U + 4)
    block_k = range(THUMB_BLOCK_K, THUMB_BLOCK_K + 4)
    interior = {(u, k) for u in block_u[1:3] for k in block_k[1:3]}
    base = _palm_base_shape(cells_u)
    palm = {}
    for k in range(PALM_RINGS):
        a = PALM_RING_FRACTIONS[k]
        blend = _smoothstep(a) ** 0.8
        for u in range(PALM_RING):
            if (u, k) in interior:
                continue
            p = (1 - blend) * base[u] + blend * knuckle_pos[u]
            p[0] = PALM_BASE_X + a * (knuckle_pos[u, 0] - PALM_BASE_X)
            bump = np.sin(np.pi * min(1.0, 0.35 + a))  # fuller in the middle of the palm
            if cells_u[u][1] == 3:
                p[1] -= 0.006 * bump
            elif cells_u[u][1] == 0:
                p[1] += 0.003 * bump
            palm[(u, k)] = mesh.add(p, ("palm", cells_u[u]), -(1 - a) * (PALM_TOP_X - PALM_BASE_X))
            info["palm_u"][palm[(u, k)]] = (u, k)
    for u in range(PALM_RING):
        palm[(u, PALM_RINGS)] = knuckle_ids[u]
    for k in range(PALM_RINGS):
        for u in range(PALM_RING):
            if u in block_u[:3] and k in block_k[:3]:
                continue  # the thumb's hole
            u1 = (u + 1) % PALM_RING
            mesh.quad(palm[(u, k)], palm[(u1, k)], palm[(u1, k + 1)], palm[(u, k + 1)])

    # Taper to the wrist opening.
    prev = [palm[(u, 0)] for u in range(PALM_RING)]
    prev_t, start = _ring_param(np.array([mesh.pos[v] for v in prev]))
    for level, count in enumerate(TAPER_RINGS):
        frac = (level + 1) / len(TAPER_RINGS)
        x = PALM_BASE_X + frac * (WRIST_X - PALM_BASE_X)
        hw = PALM_BASE_HALF[0] * (1 - 0.18 * frac)
        ht = PALM_BASE_HALF[1] * (1 + 0.05 * frac)
        t = np.arange(count) / count
        ang = start - 2 * np.pi * t
        pts = np.stack([np.full(count, x), ht * np.sin(ang), PALM_CENTER_Z + hw * np.cos(ang)], -1)
        ring = [mesh.add(p, ("wrist", level), 0.0) for p in pts]
        mesh.zip(prev, prev_t, ring, t)
        prev, prev_t = ring, t
    info["wrist_ring"] = prev

    # Fingers.
    for f in range(4):
        d, n, l = _finger_frame(f)
        chain = _joint_chain(FINGER_MCP[f], [d, d, d], FINGER_LENGTHS[f])
        info["chains"][f] = chain
        s_rings, r_rings, s_end = _tip_profile(FINGER_LENGTHS[f], FINGER_RADII[f])
        prev = info["finger_rings"][f][0]
        for s, r in zip(s_rings, r_rings):
            c, _ = _point_on_chain(chain, FINGER_LENGTHS[f], s)
            ring = [mesh.add(p, ("finger", f), s)
                    for p in _ring_points(c, l, n, r, r * DORSAL_RATIO, RING_ANGLES)]
            mesh.strip(prev, ring)
            info["finger_rings"][f].append(ring)
            prev = ring
        apex = mesh.add(chain[-1] + 0.0 * d, ("finger", f), s_end)
        mesh.fan(prev, apex)
        info["apex"][f] = apex

    # Thumb: the block boundary is its base ring.
    cells = [(0, 0), (1, 0), (2, 0), (3, 0), (3, 1), (3, 2), (3, 3), (2, 3), (1, 3), (0, 3),
             (0, 2), (0, 1)]
    base_ring = [palm[(THUMB_BLOCK_U + a, THUMB_BLOCK_K + b)] for a, b in cells]
    chain = _joint_chain(THUMB_CMC, THUMB_DIRS, THUMB_LENGTHS)
    info["chains"]["thumb"] = chain
    d0 = _unit(THUMB_DIRS[0])
    nail = _unit(THUMB_NAIL - np.dot(THUMB_NAIL, d0) * d0)
    side = np.cross(d0, nail)
    base_pts = np.array([mesh.pos[v] for v in base_ring])
    centre = base_pts.mean(0)
    rel = base_pts - centre
    angles = np.arctan2(rel @ nail, rel @ side)
    # Round the base ring into an ellipse around the thumb axis, halfway from the palm surface.
    ellipse = _ring_points(centre, side, nail, THUMB_RADII[0], THUMB_RADII[0] * 0.8, angles)
    for v, p in zip(base_ring, ellipse):
        mesh.pos[v] = 0.5 * mesh.pos[v] + 0.5 * p
        mesh.part[v] = ("thumb_base", mesh.part[v][1])
    info["thumb_rings"].append(base_ring)
    s_rings, r_rings, s_end = _tip_profile(THUMB_LENGTHS, THUMB_RADII)
    prev = base_ring
    for s, r in zip(s_rings, r_rings):
        c, d = _point_on_chain(chain, THUMB_LENGTHS, s)
        if s < THUMB_LENGTHS[0]:  # the metacarpal leaves the palm from the base ring's centre
            c = centre + (s / THUMB_LENGTHS[0]) * (chain[1] - centre)
        nl = _unit(nail - np.dot(nail, d) * d)
        ring = [mesh.add(p, ("thumb", 0), s)
                for p in _ring_points(c, np.cross(d, nl), nl, r, r * DORSAL_RATIO, angles)]
        mesh.strip(prev, ring)
        info["thumb_rings"].append(ring)
        prev = ring
    info["apex"]["thumb"] = mesh.add(chain[-1], ("thumb", 0), s_end)
    mesh.fan(prev, info["apex"]["thumb"])
    return mesh, info


def _ring_param(points):
    """Ring parameter in [0, 1) of points around the palm axis, increasing along ring order,
    and the angle (in the y-z plane, from +z towards +y) of the first point."""
    rel_y = points[:, 1] - points[:, 1].mean()
    rel_z = points[:, 2] - points[:, 2].mean()
    ang = np.arctan2(rel_y, rel_z)
    t = ((ang[0] - ang) / (2 * np.pi)) % 1.0
    if not np.all(np.diff(t) > 0):
        raise AssertionError("palm ring is not monotonic around its axis")
    return t, ang[0]


def _palm_base_shape(cells_u):
    """A rounded-rectangle cross-section at the palm's base, one point per ring slot u."""
    hw, ht = PALM_BASE_HALF
    pts = []
    for i, j in cells_u:
        z = -1 + 2 * i / (GRID_COLS - 1)
        y = {0: 1.0, 1: 1 / 3, 2: -1 / 3, 3: -1.0}[j]
        if j in (1, 2):
            z = 1.0 if i else -1.0
        direction = np.array([y, z]) / np.hypot(y, z)
        scale = (np.abs(direction[0]) ** 3 + np.abs(direction[1]) ** 3) ** (-1 / 3)
        y, z = direction * scale
        pts.append([PALM_BASE_X, ht * y, PALM_CENTER_Z + hw * z])
    return np.array(pts)


def _orient_outward(faces, vertices):
    """Makes the winding consistent across shared edges, with normals pointing outward."""
    faces = [list(f) for f in faces]
    edge_faces = {}
    for fi, f in enumerate(faces):
        for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0])):
            edge_faces.setdefault(frozenset((a, b)), []).append(fi)
    seen = [False] * len(faces)
    seen[0] = True
    queue = deque([0])
    while queue:
        fi = queue.popleft()
        f = faces[fi]
        for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0])):
            for gi in edge_faces[frozenset((a, b))]:
                if seen[gi]:
                    continue
                g = faces[gi]
                directed = {(g[0], g[1]), (g[1], g[2]), (g[2], g[0])}
                if (a, b) in directed:  # same direction as in f: flip g
                    faces[gi] = [g[0], g[2], g[1]]
                seen[gi] = True
                queue.append(gi)
    faces = np.array(faces)
    if signed_volume(*close_boundaries(vertices, faces)) < 0:
        faces = faces[:, [0, 2, 1]]
    return faces


# ----------------------------------------------------------------------------------------------
# Skinning weights and the joint regressor.

def _blend_weights(s, bounds, joints, width):
    """Weights along a chain: joints[0] below bounds[0], joints[k] between bounds[k-1], bounds[k].

    Each step is a smoothstep of half-width `width[k]` centred on bounds[k]."""
    steps = [_smoothstep((s - b + w) / (2 * w)) for b, w in zip(bounds, width)]
    out = {joints[0]: 1 - steps[0]}
    for k in range(1, len(joints)):
        nxt = steps[k] if k < len(steps) else 0.0
        out[joints[k]] = out.get(joints[k], 0.0) + steps[k - 1] - nxt
    return out


def _skinning_weights(mesh, info):
    n = len(mesh.pos)
    w = np.zeros((n, NUM_JOINTS))
    pos = np.array(mesh.pos)
    thumb_centre = np.array([pos[v] for v in info["thumb_rings"][0]]).mean(0)
    for v in range(n):
        kind, tag = mesh.part[v]
        s = mesh.s[v]
        if kind == "finger":
            f = tag
            l1, l2, _ = FINGER_LENGTHS[f]
            j = FINGER_MANO_JOINTS[f]
            for jj, val in _blend_weights(s, [0.0, l1, l1 + l2], (0,) + j,
                                          [0.011, 0.4 * l2, 0.35 * l2]).items():
                w[v, jj] += val
        elif kind == "thumb":
            l1, l2, _ = THUMB_LENGTHS
            for jj, val in _blend_weights(s, [0.0, l1, l1 + l2], (0,) + THUMB_MANO_JOINTS,
                                          [0.012, 0.010, 0.4 * l2 * 0.8]).items():
                w[v, jj] += val
        elif kind == "thumb_base":
            w[v, 0], w[v, THUMB_MANO_JOINTS[0]] = 0.5, 0.5
        elif kind == "palm":
            i, _ = tag
            f = min(i // 4, 3)
            mcp = _smoothstep((s + 0.011) / 0.022)  # the finger-side half of the MCP blend
            d = np.linalg.norm(pos[v] - thumb_centre)
            cmc = 0.5 * (1 - _smoothstep((d - THUMB_RADII[0]) / (1.2 * THUMB_RADII[0])))
            w[v, FINGER_MANO_JOINTS[f][0]] = mcp * (1 - cmc)
            w[v, THUMB_MANO_JOINTS[0]] = cmc
            w[v, 0] = 1 - w[v].sum()
        else:  # wrist taper
            w[v, 0] = 1.0
    return w / w.sum(1, keepdims=True)


def _joint_targets(info):
    """The designed rest skeleton (16, 3) in MANO joint order."""
    joints = np.zeros((NUM_JOINTS, 3))
    joints[0] = WRIST_JOINT
    for f in range(4):
        joints[list(FINGER_MANO_JOINTS[f])] = info["chains"][f][:3]
    joints[list(THUMB_MANO_JOINTS)] = info["chains"]["thumb"][:3]
    return joints


def _joint_regressor(vertices, targets, neighbours=40):
    """Sparse non-negative rows summing to 1 with J_regressor @ vertices == targets (NNLS)."""
    reg = np.zeros((len(targets), len(vertices)))
    for j, t in enumerate(targets):
        idx = np.argsort(np.linalg.norm(vertices - t, axis=1))[:neighbours]
        lam = 10.0
        a = np.vstack([vertices[idx].T, lam * np.ones(len(idx))])
        b = np.concatenate([t, [lam]])
        x, residual = nnls(a, b)
        if residual > 1e-6:
            raise AssertionError(f"joint {j} is not inside the hull of its vertices ({residual})")
        reg[j, idx] = x / x.sum()
    return reg


# ----------------------------------------------------------------------------------------------
# Shape directions.

def _shape_directions(mesh, info, joints):
    """(V, 3, 10) displacements per unit beta. Each is about one standard deviation of adults."""
    pos = np.array(mesh.pos)
    n = len(pos)
    dirs = np.zeros((n, 3, 10))
    kinds = [p[0] for p in mesh.part]
    s = np.array(mesh.s)
    finger_of = np.array([p[1] if p[0] == "finger" else -1 for p in mesh.part])
    is_thumb = np.array([k == "thumb" for k in kinds])
    on_finger = finger_of >= 0

    axis_pt = np.zeros_like(pos)  # nearest point on the own bone axis (fingers), for radial moves
    axis_dir = np.zeros_like(pos)
    for v in range(n):
        if on_finger[v]:
            f = finger_of[v]
            axis_pt[v], axis_dir[v] = _point_on_chain(info["chains"][f], FINGER_LENGTHS[f],
                                                      min(s[v], FINGER_LENGTHS[f].sum()))
        elif is_thumb[v]:
            axis_pt[v], axis_dir[v] = _point_on_chain(info["chains"]["thumb"], THUMB_LENGTHS,
                                                      min(s[v], THUMB_LENGTHS.sum()))
    radial = np.where((on_finger | is_thumb)[:, None], pos - axis_pt, 0.0)

    dirs[:, :, 0] = 0.06 * (pos - joints[0])                                  # overall size
    dirs[:, :, 1] = 0.07 * np.maximum(s, 0)[:, None] * axis_dir               # finger length
    dirs[:, 2, 2] = 0.07 * (pos[:, 2] - PALM_CENTER_Z) * (~is_thumb)          # palm width
    dirs[:, 2, 2] += is_thumb * 0.07 * (THUMB_CMC[2] - PALM_CENTER_Z)
    palm_y = np.where(on_finger | is_thumb, radial[:, 1], pos[:, 1])
    dirs[:, 1, 3] = 0.10 * palm_y                                              # thickness
    dirs[:, :, 4] = 0.10 * radial                                              # finger girth
    palm_len = np.clip((pos[:, 0] - WRIST_X) / (PALM_TOP_X - WRIST_X), 0, 1)
    dirs[:, 0, 5] = 0.006 * np.where(on_finger, 1.0, palm_len * (~is_thumb))   # palm length
    thumb_s = np.where(is_thumb, np.maximum(s, 0), 0.0)
    dirs[:, :, 6] = 0.08 * thumb_s[:, None] * axis_dir + 0.06 * is_thumb[:, None] * radial
    pinky = finger_of == 3
    dirs[:, :, 7] = 0.08 * (pinky * np.maximum(s, 0))[:, None] * axis_dir     # pinky length
    ratio = np.where(finger_of == 0, 1.0, np.where(finger_of == 2, -1.0, 0.0))
    dirs[:, :, 8] = 0.05 * (ratio * np.maximum(s, 0))[:, None] * axis_dir     # index : ring
    total = np.array([FINGER_LENGTHS[f].sum() if f >= 0 else 1.0 for f in finger_of])
    distal = np.clip((s / total - 0.75) / 0.25, 0, 1) * on_finger
    dirs[:, :, 9] = -0.12 * distal[:, None] * radial                          # tip taper
    return dirs


# ----------------------------------------------------------------------------------------------
# Plausible poses, the pose PCA and the pose correctives.

def joint_axes(joints):
    """Per finger joint (15, in MANO order 1..15): flexion, abduction and twist axes (rest frame).

    Flexion curls the finger towards its palmar side; rotations are in the rest frame, which is
    how MANO's local axis-angle values act."""
    axes = np.zeros((NUM_JOINTS, 3, 3))
    for f in range(4):
        d, n, _ = _finger_frame(f)
        for j in FINGER_MANO_JOINTS[f]:
            axes[j] = [np.cross(n, d), n, d]  # flex about n x d moves d towards -n
    for k, j in enumerate(THUMB_MANO_JOINTS):
        d = _unit(THUMB_DIRS[k])
        nail = _unit(THUMB_NAIL - np.dot(THUMB_NAIL, d) * d)
        axes[j] = [np.cross(nail, d), nail, d]
    return axes[1:]


def sample_poses(rng, n, joints=None):
    """Plausible finger poses as (n, 45) axis-angle values in MANO order (full rotations).

    A per-hand grasp latent (open, relaxed, fist, point, pinch, spread) sets each finger's curl
    with noise; MCP, PIP and DIP flex together (DIP ~ 2/3 PIP), spread falls with curl, and the
    thumb opposes as the hand closes. Angles stay inside anatomical limits.
    """
    if joints is None:
        joints = _default_skeleton()
    axes = joint_axes(joints)
    out = np.zeros((n, 15, 3))
    kind = rng.integers(0, 6, size=n)
    base_curl = np.select([kind == 0, kind == 1, kind == 2], [0.05, 0.35, 0.9], 0.5)
    curl = np.clip(base_curl[:, None] + 0.18 * rng.standard_normal((n, 4)), -0.08, 1.0)
    curl[kind == 3, 0] = np.clip(0.05 * rng.standard_normal((kind == 3).sum()), -0.05, 0.2)  # point
    curl[kind == 3, 1:] = np.clip(0.85 + 0.1 * rng.standard_normal(((kind == 3).sum(), 3)), 0.5, 1)
    curl[kind == 5] = np.clip(0.1 * rng.standard_normal(((kind == 5).sum(), 4)), -0.08, 0.3)
    spread = np.clip(np.where(kind == 5, 1.0, 0.4 * (1 - curl.mean(1))), 0, 1)
    for f in range(4):
        c = curl[:, f]
        mcp, pip, dip = FINGER_MANO_JOINTS[f]
        flex = np.stack([np.deg2rad(85) * c + np.deg2rad(6) * rng.standard_normal(n),
                         np.deg2rad(100) * np.clip(c, 0, 1) + np.deg2rad(5) * rng.standard_normal(n),
                         np.deg2rad(65) * np.clip(c, 0, 1) + np.deg2rad(5) * rng.standard_normal(n)], 1)
        flex = np.clip(flex, np.deg2rad([-20, -5, -10]), np.deg2rad([95, 110, 80]))
        abd = (np.deg2rad([-12, -3, 5, 14][f]) * spread + np.deg2rad(4) * rng.standard_normal(n))
        for k, j in enumerate((mcp, pip, dip)):
            out[:, j - 1] = flex[:, k, None] * axes[j - 1, 0]
        out[:, mcp - 1] += abd[:, None] * axes[mcp - 1, 1]
        out[:, mcp - 1] += np.deg2rad(3) * rng.standard_normal((n, 1)) * axes[mcp - 1, 2]
    close = np.clip(curl.mean(1) + 0.2 * (kind == 4), 0, 1)  # the pinch brings the thumb across
    t_cmc_flex = np.deg2rad(45) * close + np.deg2rad(8) * rng.standard_normal(n)
    t_cmc_abd = np.deg2rad(-25) * close + np.deg2rad(10) * rng.standard_normal(n)
    t_mcp = np.clip(np.deg2rad(35) * close + np.deg2rad(8) * rng.standard_normal(n),
                    np.deg2rad(-10), np.deg2rad(60))
    t_ip = np.clip(np.deg2rad(50) * close + np.deg2rad(12) * rng.standard_normal(n),
                   np.deg2rad(-15), np.deg2rad(85))
    cmc, tmcp, tip = THUMB_MANO_JOINTS
    out[:, cmc - 1] = t_cmc_flex[:, None] * axes[cmc - 1, 0] + t_cmc_abd[:, None] * axes[cmc - 1, 1]
    out[:, cmc - 1] += np.deg2rad(20) * close[:, None] * axes[cmc - 1, 2]  # opposition twist
    out[:, tmcp - 1] = t_mcp[:, None] * axes[tmcp - 1, 0]
    out[:, tip - 1] = t_ip[:, None] * axes[tip - 1, 0]
    return out.reshape(n, 45)


def _rodrigues_np(aa):
    theta = np.linalg.norm(aa, axis=-1, keepdims=True)
    axis = aa / np.maximum(theta, 1e-12)
    k = np.zeros(aa.shape[:-1] + (3, 3))
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -axis[..., 2], axis[..., 1], -axis[..., 0]
    k = k - np.swapaxes(k, -1, -2)
    th = theta[..., None]
    return np.eye(3) + np.sin(th) * k + (1 - np.cos(th)) * (k @ k)


def _skinning_transforms_np(local_r, joints):
    """(N, 16, 3, 3) local rotations, (16, 3) rest joints -> (N, 16, 3, 4) skinning transforms."""
    n = local_r.shape[0]
    world_r = np.zeros_like(local_r)
    world_t = np.zeros((n, NUM_JOINTS, 3))
    for j, p in enumerate(MANO_PARENTS):
        if p < 0:
            world_r[:, j], world_t[:, j] = local_r[:, j], joints[j]
        else:
            world_r[:, j] = world_r[:, p] @ local_r[:, j]
            world_t[:, j] = world_t[:, p] + world_r[:, p] @ (joints[j] - joints[p])
    t = world_t - np.einsum("njab,jb->nja", world_r, joints)
    return np.concatenate([world_r, t[..., None]], -1)


def _quat_from_matrix_np(r):
    """(..., 3, 3) -> (..., 4) (w, x, y, z); the rotations here are far from 180 degrees."""
    w = np.sqrt(np.maximum(1 + r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2], 1e-12)) / 2
    x = (r[..., 2, 1] - r[..., 1, 2]) / (4 * w)
    y = (r[..., 0, 2] - r[..., 2, 0]) / (4 * w)
    z = (r[..., 1, 0] - r[..., 0, 1]) / (4 * w)
    return np.stack([w, x, y, z], -1)


def _quat_mul_np(a, b):
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def _dual_quaternion_skin_np(weights, transforms, points):
    """Dual-quaternion skinning (Kavan et al. 2007). (V,J), (N,J,3,4), (V,3) -> (N,V,3)."""
    qr = _quat_from_matrix_np(transforms[..., :3])  # (N, J, 4)
    t = np.concatenate([np.zeros(transforms.shape[:-2] + (1,)), transforms[..., 3]], -1)
    qd = 0.5 * _quat_mul_np(t, qr)
    dominant = np.argmax(weights, 1)  # align hemispheres with the dominant joint
    ref = qr[:, dominant]  # (N, V, 4)
    sign = np.sign(np.einsum("nva,nja->nvj", ref, qr))
    sign[sign == 0] = 1
    br = np.einsum("vj,nvj,nja->nva", weights, sign, qr)
    bd = np.einsum("vj,nvj,nja->nva", weights, sign, qd)
    norm = np.linalg.norm(br, axis=-1, keepdims=True)
    br, bd = br / norm, bd / norm
    conj = br * np.array([1, -1, -1, -1])
    trans = 2 * _quat_mul_np(bd, conj)[..., 1:]
    w, xyz = br[..., :1], br[..., 1:]
    p = points[None]
    rotated = p + 2 * np.cross(xyz, np.cross(xyz, p) + w * p)
    return rotated + trans


def _pose_correctives(v_template, weights, joints, poses):
    """posedirs (V, 3, 135) such that LBS(v + P f(R)) ~ DQS(v), fitted over sample poses.

    Each vertex uses only the (R - I) features of the non-root joints that skin it, with a
    small ridge term, so no corrective couples unrelated fingers."""
    n = poses.shape[0]
    local = np.concatenate([np.tile(np.eye(3), (n, 1, 1, 1)),
                            _rodrigues_np(poses.reshape(n, 15, 3))], 1)
    transforms = _skinning_transforms_np(local, joints)
    target = _dual_quaternion_skin_np(weights, transforms, v_template)
    blended = np.einsum("vj,njab->nvab", weights, transforms)
    # Rest-space residual: undo the LBS transform of each vertex.
    rest_target = np.linalg.solve(blended[..., :3], (target - blended[..., 3])[..., None])[..., 0]
    residual = rest_target - v_template  # (N, V, 3)
    features = (local[:, 1:] - np.eye(3)).reshape(n, 15, 9)
    posedirs = np.zeros((len(v_template), 3, 135))
    influence = weights[:, 1:] > 1e-3
    groups = {}
    for v in range(len(v_template)):
        groups.setdefault(tuple(np.flatnonzero(influence[v])), []).append(v)
    for joint_set, verts in groups.items():
        if not joint_set:
            continue
        cols = np.concatenate([np.arange(9 * j, 9 * j + 9) for j in joint_set])
        x = features[:, list(joint_set)].reshape(n, -1)
        y = residual[:, verts].reshape(n, -1)
        coef = np.linalg.solve(x.T @ x + 1e-4 * n * np.eye(x.shape[1]), x.T @ y)
        posedirs[np.ix_(verts, [0, 1, 2], cols)] = coef.reshape(len(cols), len(verts), 3).transpose(1, 2, 0)
    return posedirs


@functools.lru_cache(maxsize=1)
def _default_skeleton():
    _, info = _build_topology()
    return _joint_targets(info)


# ----------------------------------------------------------------------------------------------
# Assembly.

def _tip_permutation(info, n):
    """A vertex permutation that puts each fingertip at the ids the tip presets expect."""
    apex = {"thumb": info["apex"]["thumb"], "index": info["apex"][0], "middle": info["apex"][1],
            "ring": info["apex"][2], "pinky": info["apex"][3]}
    last_ring = {"thumb": info["thumb_rings"][-1], "index": info["finger_rings"][0][-1],
                 "middle": info["finger_rings"][1][-1], "ring": info["finger_rings"][2][-1],
                 "pinky": info["finger_rings"][3][-1]}
    fixed = {}  # old id -> new id
    for name, (apex_id, others) in TIP_IDS.items():
        fixed[apex[name]] = apex_id
        ring = last_ring[name]
        for k, new in enumerate(others):  # palmar-side ring vertices, nearest the pad
            fixed[ring[7 - k]] = new
    rest_old = [v for v in range(n) if v not in fixed]
    rest_new = [v for v in range(n) if v not in set(fixed.values())]
    new_of_old = np.empty(n, int)
    for o, nw in fixed.items():
        new_of_old[o] = nw
    new_of_old[rest_old] = rest_new
    return new_of_old


def build_procedural_arrays(side: str = "right", seed: int = 0) -> dict:
    """The procedural hand as a dict of official-format NumPy arrays (float64).

    Args:
      side: "right" or "left" (the left hand is the right one mirrored in z, with the
        rotations, correctives and PCA mirrored to match).
      seed: seed of the pose sampler behind hands_mean, the PCA and the correctives.
    """
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    mesh, info = _build_topology()
    n = len(mesh.pos)
    if n != NUM_VERTICES:
        raise AssertionError(f"procedural hand has {n} vertices, expected {NUM_VERTICES}")
    v = np.array(mesh.pos)
    faces = _orient_outward(mesh.faces, v)
    if len(faces) != NUM_FACES:
        raise AssertionError(f"procedural hand has {len(faces)} faces, expected {NUM_FACES}")
    weights = _skinning_weights(mesh, info)
    targets = _joint_targets(info)
    regressor = _joint_regressor(v, targets)
    shapedirs = _shape_directions(mesh, info, targets)

    rng = np.random.default_rng(seed)
    poses = sample_poses(rng, 4000, targets)
    hands_mean = poses.mean(0)
    _, _, vt = np.linalg.svd(poses - hands_mean, full_matrices=False)
    components = vt  # one component per row, by decreasing variance
    posedirs = _pose_correctives(v, weights, targets, poses[:600])

    perm = _tip_permutation(info, n)
    inv = np.argsort(perm)
    arrays = {
        "v_template": v[inv],
        "shapedirs": shapedirs[inv],
        "posedirs": posedirs[inv],
        "J_regressor": regressor[:, inv],
        "weights": weights[inv],
        "f": perm[faces].astype(np.uint32),
        "hands_components": components,
        "hands_mean": hands_mean,
        "hands_coeffs": (poses - hands_mean) @ components.T,
        "kintree_table": np.array([[2**32 - 1] + list(MANO_PARENTS[1:]), list(range(NUM_JOINTS))],
                                  dtype=np.int64),
    }
    if side == "left":
        arrays = mirror_arrays(arrays)
    return arrays


def mirror_arrays(arrays: dict) -> dict:
    """Mirrors official-format arrays in z (right <-> left hand).

    Points: z -> -z. Rotations R -> M R M with M = diag(1, 1, -1), i.e. axis-angle (x, y, z) ->
    (-x, -y, z); the pose-corrective features (R - I) change sign where exactly one index is z.
    Faces flip their winding so normals still point outward.
    """
    m = np.array([1.0, 1.0, -1.0])
    out = dict(arrays)
    out["v_template"] = arrays["v_template"] * m
    out["shapedirs"] = arrays["shapedirs"] * m[None, :, None]
    feature_sign = np.outer(m, m).reshape(9)  # (R - I)_{ab} -> m_a m_b (R - I)_{ab}
    out["posedirs"] = arrays["posedirs"] * m[None, :, None] * np.tile(feature_sign, 15)[None, None]
    aa_sign = np.tile(-m, 15)  # per joint (-x, -y, z)
    out["hands_mean"] = arrays["hands_mean"] * aa_sign
    out["hands_components"] = arrays["hands_components"] * aa_sign[None]
    out["f"] = arrays["f"][:, [0, 2, 1]]
    return out


@functools.lru_cache(maxsize=2)
def _cached_arrays(side):
    return build_procedural_arrays(side)


def procedural_model(side: str = "right"):
    """The open procedural hand as a `MANOModel` (cached; built in about a second)."""
    arrays = _cached_arrays(side)
    return model_from_arrays(arrays, side, source=f"procedural {side} hand")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m mano_jax.procedural",
        description="Write the open procedural hand in the official MANO file format.")
    parser.add_argument("out", help="output path, .pkl (official pickle layout) or .npz")
    parser.add_argument("--side", choices=("right", "left"), default="right")
    args = parser.parse_args(argv)
    from mano_jax import io as mano_io

    model = procedural_model(args.side)
    if args.out.endswith(".pkl"):
        mano_io.save_pkl(model, args.out)
    elif args.out.endswith(".npz"):
        mano_io.save_npz(model, args.out)
    else:
        parser.error(f"output must end in .pkl or .npz, got {args.out!r}")
    print(f"wrote the procedural {args.side} hand ({NUM_VERTICES} vertices, {NUM_FACES} faces) "
          f"to {args.out}")


if __name__ == "__main__":
    main()
