"""The procedural hand's measurements and its box-modelled mesh: rings, faces, per-vertex labels.

Right hand, rest pose: flat, fingers along +x, back of the hand +y, thumb on -z; metres.

The knuckle row is a 16 x 4 vertex grid whose four 3 x 3 quad blocks open into 12-vertex finger
rings (one quad of webbing between fingers); the palm is a tube of 36-vertex rings; the thumb grows
out of a 3 x 3 quad block cut into the palm's radial-palmar wall; rings of 29, 24 and 16 vertices
taper to the wrist, whose 16-vertex loop is the mesh's only boundary (as in MANO). Rings are
ellipses around each finger's bone axis, with radii tapering to a hemispherical tip.

`build_topology()` returns the vertex/face accumulator (rest positions, faces, and per vertex its
part and arc length along its finger, which the rig uses) and a dict of rings, apexes and bone
chains; `orient_outward` makes the winding consistent.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from mano_jax.mesh import close_boundaries, signed_volume

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

def unit(v):
    """v (..., 3) scaled to unit length along the last axis."""
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def smoothstep(x):
    """3 x^2 - 2 x^3 of x clipped to [0, 1]: a C1 step from 0 to 1."""
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


def finger_frame(f):
    """Unit axis (along the finger), dorsal and lateral (towards the pinky) directions of finger f
    (0 = index .. 3 = pinky) in the rest pose."""
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
        pts.append(pts[-1] + l * unit(np.asarray(d, float)))
    return np.array(pts)  # (4, 3): base joint, next, next, tip


def point_on_chain(chain, lengths, s):
    """Position at arc length s along a 3-segment polyline, and the segment direction."""
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    k = int(np.clip(np.searchsorted(cum, s, side="right") - 1, 0, 2))
    d = unit(chain[k + 1] - chain[k])
    return chain[k] + (s - cum[k]) * d, d


def build_topology():
    """Builds vertices (rest positions), faces and per-vertex labels of the right hand."""
    mesh = _Mesh()
    info = {"finger_rings": [], "thumb_rings": [], "apex": {}, "palm_u": {}, "chains": {}}

    # Knuckle grid: 16 x 4 vertices, block interiors left out. Vertex (i, j) of finger f = i // 4.
    grid = {}
    for f in range(4):
        d, n, l = finger_frame(f)
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
        blend = smoothstep(a) ** 0.8
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
        d, n, l = finger_frame(f)
        chain = _joint_chain(FINGER_MCP[f], [d, d, d], FINGER_LENGTHS[f])
        info["chains"][f] = chain
        s_rings, r_rings, s_end = _tip_profile(FINGER_LENGTHS[f], FINGER_RADII[f])
        prev = info["finger_rings"][f][0]
        for s, r in zip(s_rings, r_rings):
            c, _ = point_on_chain(chain, FINGER_LENGTHS[f], s)
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
    d0 = unit(THUMB_DIRS[0])
    nail = unit(THUMB_NAIL - np.dot(THUMB_NAIL, d0) * d0)
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
        c, d = point_on_chain(chain, THUMB_LENGTHS, s)
        if s < THUMB_LENGTHS[0]:  # the metacarpal leaves the palm from the base ring's centre
            c = centre + (s / THUMB_LENGTHS[0]) * (chain[1] - centre)
        nl = unit(nail - np.dot(nail, d) * d)
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


def orient_outward(faces, vertices):
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

