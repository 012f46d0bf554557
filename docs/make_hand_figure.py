"""Draws the procedural hand in a few poses from a few views: docs/procedural_hand.png.

    python -m docs.make_hand_figure [--model MANO_RIGHT.pkl] [--out docs/procedural_hand.png]

A flat-shaded projection plot (matplotlib), skeleton on top. With --model it draws a user's MANO
file instead, which is how to compare the two side by side.
"""
from __future__ import annotations

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

import mano_jax  # noqa: E402
from mano_jax import procedural  # noqa: E402

# Bones of the 21 OpenPose/FreiHAND joints: each finger from the wrist, base to tip.
BONES = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
         (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19),
         (19, 20)]
FINGER_COLOURS = ["#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd"]


def named_poses(model):
    """A few recognisable poses as (name, 48 axis-angle values with flat_hand_mean=True)."""
    axes = procedural.joint_axes()
    mean = np.concatenate([np.zeros(3), np.asarray(model.hands_mean)])

    def curl(mcp, pip, dip, thumb=(0, 0, 0), spread=0.0, fingers=(0, 1, 2, 3)):
        pose = np.zeros((16, 3))
        for f in fingers:
            for k, (j, a) in enumerate(zip(procedural.FINGER_MANO_JOINTS[f], (mcp, pip, dip))):
                pose[j] = np.deg2rad(a) * axes[j - 1, 0]
            j = procedural.FINGER_MANO_JOINTS[f][0]
            pose[j] += np.deg2rad(spread * (-1.5, -0.3, 0.6, 1.6)[f]) * axes[j - 1, 1]
        for j, a in zip(procedural.THUMB_MANO_JOINTS, thumb):
            pose[j] += np.deg2rad(a) * axes[j - 1, 0]
        if thumb[0]:
            j = procedural.THUMB_MANO_JOINTS[0]
            pose[j] += np.deg2rad(-20) * axes[j - 1, 1] + np.deg2rad(25) * axes[j - 1, 2]
        return pose.reshape(48)

    fist = curl(85, 100, 60, thumb=(40, 45, 55))
    point = curl(85, 100, 60, thumb=(40, 45, 55), fingers=(1, 2, 3))
    pinch = curl(10, 10, 5, spread=10) + curl(45, 45, 20, thumb=(40, 30, 20), fingers=(0,)) * 0
    pinch = curl(50, 40, 20, thumb=(45, 30, 25), fingers=(0,)) + curl(10, 15, 5, fingers=(1, 2, 3))
    spread = curl(-5, 0, 0, spread=12)
    return [("rest (flat)", np.zeros(48)), ("mean pose", mean), ("spread", spread),
            ("fist", fist), ("point", point), ("pinch", pinch)]


VIEWS = {  # (right, up) axes of the image plane, in the model frame; viewer looks along right x up
    "back": (np.array([1.0, 0, 0]), np.array([0, 0, -1.0])),
    "palm": (np.array([1.0, 0, 0]), np.array([0, 0, 1.0])),
    "side": (np.array([1.0, 0, 0]), np.array([0, 1.0, 0])),
}


def draw(ax, vertices, faces, joints, right, up):
    toward_viewer = np.cross(right, up)
    tri = vertices[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    facing = normals @ toward_viewer
    depth = tri.mean(1) @ toward_viewer
    order = np.argsort(depth)
    shade = 0.25 + 0.75 * np.clip(facing, 0, 1)
    colours = np.array([0.93, 0.72, 0.60])[None] * shade[:, None]
    polys = np.stack([tri @ right, tri @ up], -1)
    ax.add_collection(PolyCollection(polys[order], facecolors=colours[order], edgecolors="none"))
    jp = np.stack([joints @ right, joints @ up], -1)
    front = 3  # draw order: the skeleton over the surface
    for b, (i, j) in enumerate(BONES):
        ax.plot(jp[[i, j], 0], jp[[i, j], 1], color=FINGER_COLOURS[b // 4], lw=1.2, zorder=front)
    ax.scatter(jp[:, 0], jp[:, 1], s=4, c="k", zorder=front)
    ax.set_aspect("equal")
    ax.axis("off")
    pts = polys.reshape(-1, 2)
    lo, hi = pts.min(0), pts.max(0)
    c, r = (lo + hi) / 2, (hi - lo).max() / 2 * 1.05
    ax.set_xlim(c[0] - r, c[0] + r)
    ax.set_ylim(c[1] - r, c[1] + r)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a MANO file to draw instead of the procedural hand")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).with_name("procedural_hand.png")))
    args = parser.parse_args(argv)
    model = mano_jax.load_model(args.model) if args.model else mano_jax.procedural_model()
    poses = named_poses(model)
    out = mano_jax.forward(model, np.stack([p for _, p in poses]), np.zeros((len(poses), 10)),
                           flat_hand_mean=True)
    verts, joints = np.asarray(out.vertices), np.asarray(out.joints)
    faces = np.asarray(model.faces)
    fig, axes = plt.subplots(len(VIEWS), len(poses), figsize=(2.6 * len(poses), 2.6 * len(VIEWS)))
    for c, (name, _) in enumerate(poses):
        for r, (view, (right, up)) in enumerate(VIEWS.items()):
            draw(axes[r, c], verts[c], faces, joints[c], right, up)
            if r == 0:
                axes[r, c].set_title(name, fontsize=10)
            if c == 0:
                axes[r, c].text(-0.02, 0.5, view, transform=axes[r, c].transAxes, rotation=90,
                                va="center", ha="right", fontsize=10)
    fig.suptitle("HIU-JAX procedural hand (778 vertices, 1538 faces; MANO format)", fontsize=11)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
