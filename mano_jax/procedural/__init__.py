"""An open, procedural hand model in the official MANO format (778 vertices, 1538 faces, 16 joints).

The licensed MANO files cannot ship with the project, so this module builds a hand of our own from
a handful of anatomical measurements, deterministically, in a few seconds:

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

Modules: topology (measurements, mesh, rings, faces), rig (skinning weights, skeleton, joint
regressor, shape directions), poses (sampler, joint axes, PCA), correctives (pose correctives fitted
to dual-quaternion skinning), build (the official-format arrays, mirroring, the model).
"""
from mano_jax.procedural.build import (
    TIP_IDS,
    build_procedural_arrays,
    mirror_arrays,
    procedural_model,
)
from mano_jax.procedural.poses import joint_axes, pose_pca, sample_poses
from mano_jax.procedural.topology import (
    FINGER_LENGTHS,
    FINGER_MANO_JOINTS,
    FINGER_MCP,
    FINGER_RADII,
    FINGER_SPLAY_DEG,
    THUMB_CMC,
    THUMB_DIRS,
    THUMB_LENGTHS,
    THUMB_MANO_JOINTS,
    THUMB_NAIL,
    THUMB_RADII,
    WRIST_JOINT,
)
