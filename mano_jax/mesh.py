"""Small NumPy mesh utilities: boundary loops, closing the wrist, volume and winding numbers.

Used to check the procedural hand (manifold, one wrist opening, joints inside) and by anyone who
needs a watertight hand (the official MANO mesh is open at the wrist).
"""
from __future__ import annotations

from collections import Counter

import numpy as np


def edge_face_counts(faces) -> Counter:
    """How many faces use each undirected edge. faces: (F, 3) ints -> Counter {(a, b): n}, a < b."""
    f = np.asarray(faces, np.int64)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    return Counter(map(tuple, np.sort(edges, axis=1).tolist()))


def boundary_loops(faces) -> list[list[int]]:
    """The boundary of a manifold triangle mesh as closed vertex loops, in face-winding order.

    A boundary edge belongs to exactly one face; following it in that face's direction walks the
    loop. Raises ValueError if a boundary vertex is not on exactly one boundary loop edge pair.
    """
    f = np.asarray(faces, np.int64)
    counts = edge_face_counts(f)
    nxt = {}
    for tri in f:
        for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0])):
            if counts[tuple(sorted((int(a), int(b))))] == 1:
                if int(a) in nxt:
                    raise ValueError(f"vertex {a} starts two boundary edges (non-manifold)")
                nxt[int(a)] = int(b)
    loops, seen = [], set()
    for start in nxt:
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(loop)
    return loops


def close_boundaries(vertices, faces):
    """Closes every boundary loop with a fan to a new centroid vertex: (V + L, 3), (F + n, 3)."""
    v = np.asarray(vertices, float)
    f = np.asarray(faces, np.int64)
    new_v, new_f = [v], [f]
    for k, loop in enumerate(boundary_loops(f)):
        centre = len(v) + k
        new_v.append(v[loop].mean(0, keepdims=True))
        # The boundary runs along its faces' winding, so the cap must run against it.
        new_f.append(np.array([[loop[(i + 1) % len(loop)], loop[i], centre] for i in range(len(loop))]))
    return np.concatenate(new_v), np.concatenate(new_f)


def signed_volume(vertices, faces) -> float:
    """Volume enclosed by a closed mesh (m^3 for metres), positive for outward winding."""
    tri = np.asarray(vertices, float)[np.asarray(faces, np.int64)]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def winding_number(vertices, faces, points) -> np.ndarray:
    """Generalised winding number of points w.r.t. a closed, outward-wound mesh.

    1 inside, 0 outside (Van Oosterom & Strackee solid angles summed over faces / 4 pi).
    vertices (V, 3), faces (F, 3), points (P, 3) -> (P,).
    """
    tri = np.asarray(vertices, float)[np.asarray(faces, np.int64)]
    a = tri[None, :, 0] - np.asarray(points, float)[:, None]
    b = tri[None, :, 1] - np.asarray(points, float)[:, None]
    c = tri[None, :, 2] - np.asarray(points, float)[:, None]
    la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
    det = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
    den = (la * lb * lc + np.einsum("pfi,pfi->pf", a, b) * lc + np.einsum("pfi,pfi->pf", b, c) * la
           + np.einsum("pfi,pfi->pf", c, a) * lb)
    return (2.0 * np.arctan2(det, den)).sum(1) / (4.0 * np.pi)
