"""The MANO model as an immutable pytree, and the constants of the MANO topology.

A `MANOModel` holds arrays only (the kinematic tree and the side are static metadata), so it can be
passed straight into `jax.jit`, `vmap`, `grad` and `pmap`. Every function that needs the model
takes it as an argument; nothing is hidden in module state.

Array names are the official MANO pickle's keys (v_template, shapedirs, posedirs, J_regressor,
weights, kintree_table, f, hands_components, hands_mean), with two conversions done once at load
time: `J_regressor` is dense, and `kintree_table` becomes `parents` (a tuple with -1 for the root).
A model also carries three arrays derived from those (`derived_arrays`), in the layout the forward
pass multiplies with; they are recomputed whenever a model is constructed, including by
`dataclasses.replace`, so they always match the official arrays.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

NUM_VERTICES = 778
NUM_FACES = 1538
NUM_JOINTS = 16  # kinematic-tree joints: wrist + 5 fingers x 3
NUM_POSE_FEATURES = 135  # 15 finger joints x 9 entries of (R - I)

# Parents in MANO order: 0 wrist; 1-3 index; 4-6 middle; 7-9 pinky; 10-12 ring; 13-15 thumb.
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
JOINT_NAMES = (
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "pinky1", "pinky2", "pinky3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
)

# The array keys of an official file, with their expected shapes. None = any size on that axis.
# `shapedirs` may carry any number of shape directions; the official files have 10.
REQUIRED_SHAPES = {
    "v_template": (NUM_VERTICES, 3),
    "shapedirs": (NUM_VERTICES, 3, None),
    "posedirs": (NUM_VERTICES, 3, NUM_POSE_FEATURES),
    "J_regressor": (NUM_JOINTS, NUM_VERTICES),
    "weights": (NUM_VERTICES, NUM_JOINTS),
    "kintree_table": (2, NUM_JOINTS),
    "f": (NUM_FACES, 3),
    "hands_components": (45, 45),
    "hands_mean": (45,),
}

SIDES = ("right", "left")

# Plausibility limits of a loaded hand (see `check_hand_geometry` and `model_from_arrays`).
HAND_SIZE_RANGE_M = (0.05, 0.5)  # longest side of v_template's box; real hands are 0.15-0.25 m
# A row of J_regressor (778 terms) or weights (16 terms) may have been rounded to float32 once:
# at most n * 2**-24 off 1, i.e. 4.6e-5 and 1e-6; the tolerances give 2x and 10x margins.
J_REGRESSOR_SUM_TOL = 1e-4
WEIGHTS_SUM_TOL = 1e-5
# |chirality| below this (thumb nearly in the palm plane) does not decide the side.
MIN_CHIRALITY = 0.1


def float_dtype():
    """The float dtype JAX computes in now: float64 when `jax_enable_x64` is on, else float32."""
    return jnp.zeros((), dtype=float).dtype


def derived_arrays(v_template, shapedirs, posedirs, J_regressor, weights) -> dict:
    """The arrays the forward pass multiplies with, derived once from the official ones.

    With V vertices, S shape directions and x, y, z the vertex coordinates:
      blend_basis: (1 + S + 135, 3 V) the rows [v_template; shapedirs; posedirs], each a (3, V)
        block flattened component-major (every x, then every y, then every z), so that
        [1, beta, vec(R_1..15 - I)] @ blend_basis is the shaped and pose-corrected mesh
        v_template + S beta + P vec(R - I) in one matrix product.
      joint_basis: (1 + S, 48) the rows [J_regressor v_template; J_regressor shapedirs], each a
        flattened (16, 3): [1, beta] @ joint_basis are the rest joints J_regressor (T + S beta)
        without computing the mesh first.
      weights_t: (16, V) the skinning weights transposed.
    Products are evaluated at the highest precision of the arrays' dtype.
    """
    num_vertices, num_betas = shapedirs.shape[0], shapedirs.shape[-1]
    hi = jax.lax.Precision.HIGHEST
    rows = jnp.concatenate([v_template.T[None], jnp.transpose(shapedirs, (2, 1, 0)),
                            jnp.transpose(posedirs, (2, 1, 0))], axis=0)  # (1 + S + 135, 3, V)
    joints = jnp.einsum("jv,rvc->rjc", J_regressor,
                        jnp.concatenate([v_template[None], jnp.moveaxis(shapedirs, -1, 0)]),
                        precision=hi)  # (1 + S, 16, 3)
    return {
        "blend_basis": rows.reshape(1 + num_betas + NUM_POSE_FEATURES, 3 * num_vertices),
        "joint_basis": joints.reshape(1 + num_betas, 3 * J_regressor.shape[0]),
        "weights_t": weights.T,
    }


_OFFICIAL = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "faces",
             "hands_components", "hands_mean")
_DERIVED = ("blend_basis", "joint_basis", "weights_t")
_STATIC = ("parents", "side")


@dataclasses.dataclass(frozen=True)
class MANOModel:
    """A MANO hand model. Units are metres; vertex and joint indices follow the official file.

    Attributes:
      v_template: (V, 3) rest-pose template vertices.
      shapedirs: (V, 3, S) shape blend-shape directions (S = 10 in the official files).
      posedirs: (V, 3, 135) pose-corrective directions, weighted by the flattened (R - I) of
        the 15 finger joints.
      J_regressor: (16, V) dense joint regressor (rows sum to 1).
      weights: (V, 16) linear-blend-skinning weights (rows sum to 1).
      faces: (F, 3) int32 triangle indices, counter-clockwise seen from outside.
      hands_components: (45, 45) pose PCA basis, one component per row (not orthonormal).
      hands_mean: (45,) mean finger pose, axis-angle.
      parents: static tuple of 16 parent indices, -1 for the root.
      side: static "right" or "left".
      blend_basis, joint_basis, weights_t: derived at construction, see `derived_arrays`.

    The pytree's leaves are the official arrays and the derived ones; unflattening (inside jit,
    vmap, tree.map) does not recompute the derived arrays, constructing does.
    """

    v_template: jax.Array
    shapedirs: jax.Array
    posedirs: jax.Array
    J_regressor: jax.Array
    weights: jax.Array
    faces: jax.Array
    hands_components: jax.Array
    hands_mean: jax.Array
    parents: tuple = dataclasses.field(default=MANO_PARENTS, metadata=dict(static=True))
    side: str = dataclasses.field(default="right", metadata=dict(static=True))
    blend_basis: jax.Array = dataclasses.field(init=False, repr=False)
    joint_basis: jax.Array = dataclasses.field(init=False, repr=False)
    weights_t: jax.Array = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        derived = derived_arrays(self.v_template, self.shapedirs, self.posedirs,
                                 self.J_regressor, self.weights)
        for name in _DERIVED:
            object.__setattr__(self, name, derived[name])

    @property
    def num_betas(self) -> int:
        return self.shapedirs.shape[-1]

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]


def _flatten_with_keys(model: MANOModel):
    leaves = tuple((jax.tree_util.GetAttrKey(name), getattr(model, name))
                   for name in _OFFICIAL + _DERIVED)
    return leaves, tuple(getattr(model, name) for name in _STATIC)


def _unflatten(static, leaves) -> MANOModel:
    """Rebuilds a model from its leaves as they are (no recomputation of the derived arrays)."""
    model = object.__new__(MANOModel)
    for name, value in zip(_OFFICIAL + _DERIVED, leaves):
        object.__setattr__(model, name, value)
    for name, value in zip(_STATIC, static):
        object.__setattr__(model, name, value)
    return model


jax.tree_util.register_pytree_with_keys(MANOModel, _flatten_with_keys, _unflatten)


def model_from_arrays(arrays: dict, side: str, *, source: str = "model") -> MANOModel:
    """Builds a `MANOModel` from a dict of official-format arrays, validating every key.

    Args:
      arrays: the official keys (`REQUIRED_SHAPES`) as array-likes; `J_regressor` may be a
        scipy.sparse matrix. Extra keys are ignored.
      side: "right" or "left".
      source: a name for error messages (usually the file path).

    Raises:
      KeyError: a required key is missing (the message names it and the source).
      ValueError: a key has the wrong shape, a non-finite value, rows of J_regressor or weights
        that do not sum to 1 (`J_REGRESSOR_SUM_TOL`, `WEIGHTS_SUM_TOL`) or negative entries, or
        the tree is not MANO's. The hand's size and side are checked by `check_hand_geometry`
        (`mano_jax.load_model` does both).
    """
    if side not in SIDES:
        raise ValueError(f"{source}: side must be 'right' or 'left', got {side!r}")
    dense = {}
    for key, expected in REQUIRED_SHAPES.items():
        if key not in arrays:
            raise KeyError(
                f"{source}: required key {key!r} is missing (expected shape "
                f"{_shape_str(expected)}); keys present: {sorted(arrays)}"
            )
        value = arrays[key]
        if hasattr(value, "toarray"):  # scipy.sparse
            value = value.toarray()
        value = np.asarray(value)
        if value.ndim != len(expected) or any(
            e is not None and e != f for e, f in zip(expected, value.shape)
        ):
            raise ValueError(
                f"{source}: key {key!r} has shape {value.shape}, expected {_shape_str(expected)}"
            )
        if not np.issubdtype(value.dtype, np.number):
            raise ValueError(f"{source}: key {key!r} has non-numeric dtype {value.dtype}")
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise ValueError(f"{source}: key {key!r} holds non-finite values")
        dense[key] = value
    if dense["shapedirs"].shape[-1] < 1:
        raise ValueError(f"{source}: key 'shapedirs' has no shape directions")

    _check_rows_sum_to_one(dense["J_regressor"], "J_regressor", J_REGRESSOR_SUM_TOL, source)
    _check_rows_sum_to_one(dense["weights"], "weights", WEIGHTS_SUM_TOL, source)

    parents = tuple(int(p) for p in dense["kintree_table"][0].astype(np.int64))
    parents = tuple(-1 if (p < 0 or p >= NUM_JOINTS) else p for p in parents)  # 2**32-1 = none
    if parents != MANO_PARENTS:
        raise ValueError(
            f"{source}: kintree_table parents {parents} differ from MANO's {MANO_PARENTS}"
        )
    faces = dense["f"].astype(np.int64)
    if faces.min() < 0 or faces.max() >= NUM_VERTICES:
        raise ValueError(
            f"{source}: key 'f' indexes vertices {faces.min()}..{faces.max()}, "
            f"expected 0..{NUM_VERTICES - 1}"
        )

    dtype = float_dtype()
    return MANOModel(
        v_template=jnp.asarray(dense["v_template"], dtype),
        shapedirs=jnp.asarray(dense["shapedirs"], dtype),
        posedirs=jnp.asarray(dense["posedirs"], dtype),
        J_regressor=jnp.asarray(dense["J_regressor"], dtype),
        weights=jnp.asarray(dense["weights"], dtype),
        faces=jnp.asarray(faces, jnp.int32),
        hands_components=jnp.asarray(dense["hands_components"], dtype),
        hands_mean=jnp.asarray(dense["hands_mean"], dtype),
        parents=parents,
        side=side,
    )


def model_to_arrays(model: MANOModel) -> dict:
    """The model as a dict of NumPy arrays under the official keys (float64, dense regressor)."""
    kintree = np.zeros((2, NUM_JOINTS), np.int64)
    kintree[0] = [p if p >= 0 else 2**32 - 1 for p in model.parents]
    kintree[1] = np.arange(NUM_JOINTS)
    return {
        "v_template": np.asarray(model.v_template, np.float64),
        "shapedirs": np.asarray(model.shapedirs, np.float64),
        "posedirs": np.asarray(model.posedirs, np.float64),
        "J_regressor": np.asarray(model.J_regressor, np.float64),
        "weights": np.asarray(model.weights, np.float64),
        "kintree_table": kintree,
        "f": np.asarray(model.faces, np.uint32),
        "hands_components": np.asarray(model.hands_components, np.float64),
        "hands_mean": np.asarray(model.hands_mean, np.float64),
    }


def fix_left_shapedirs(model: MANOModel) -> MANOModel:
    """Negates the x component of `shapedirs`, the known sign bug of MANO_LEFT.pkl.

    In the official left model the same betas change the shape differently from the right model
    (vchoutas/smplx#48); negating `shapedirs[:, 0, :]` makes a left hand the mirror image of the
    right hand with the same betas. Off by default everywhere, because datasets annotated with
    the unfixed left file (and every peer layer) expect the original sign.
    """
    return dataclasses.replace(model, shapedirs=model.shapedirs.at[:, 0, :].multiply(-1.0))


def chirality(v_template, J_regressor) -> float:
    """Which hand the rest geometry is: < 0 for a right hand, > 0 for a left hand.

    The normalised triple product (a x l) . t of the rest joints J = J_regressor @ v_template,
    with a = middle1 - wrist (along the fingers), l = index1 - pinky1 (across the palm, towards
    the thumb) and t = mean(thumb joints) - wrist: the thumb sits on the palm side, so the sign
    says whether (fingers, thumb side, palm) is a right- or left-handed frame. It is unchanged by
    rotations and units and flips under a mirror: -0.29 for the procedural right hand, +0.29 for
    the left; MANO_RIGHT.pkl's rest joints give about -0.34.

    Args:
      v_template: (778, 3) rest vertices; J_regressor: (16, 778), MANO joint order.
    Returns:
      A float in [-1, 1]; values near 0 (|c| < MIN_CHIRALITY) do not decide the side.
    """
    joints = np.asarray(J_regressor, np.float64) @ np.asarray(v_template, np.float64)
    along = joints[4] - joints[0]
    across = joints[1] - joints[7]
    thumb = joints[13:16].mean(axis=0) - joints[0]
    scale = np.linalg.norm(along) * np.linalg.norm(across) * np.linalg.norm(thumb)
    if not scale > 0:
        return 0.0
    return float(np.cross(along, across) @ thumb / scale)


def check_hand_geometry(model: MANOModel, source: str = "model") -> None:
    """Refuses a model whose rest hand is not a hand of `model.side` in metres.

    Checks the longest side of v_template's bounding box against `HAND_SIZE_RANGE_M` (catches
    millimetres or centimetres) and the side against `chirality` (catches a left model saved as
    MANO_RIGHT.pkl, whose geometry would be mirrored).

    Raises:
      ValueError: naming `source`, the key and the value found.
    """
    v_template = np.asarray(model.v_template, np.float64)
    size = float(np.max(v_template.max(axis=0) - v_template.min(axis=0)))
    low, high = HAND_SIZE_RANGE_M
    if not low <= size <= high:
        raise ValueError(
            f"{source}: key 'v_template' spans {size:.4g} along its longest axis; a hand in "
            f"metres spans 0.15-0.25 (accepted {low}-{high}). Is the file in millimetres or "
            "centimetres? MANO files are in metres."
        )
    c = chirality(v_template, model.J_regressor)
    geometric = "right" if c <= -MIN_CHIRALITY else "left" if c >= MIN_CHIRALITY else None
    if geometric is not None and geometric != model.side:
        raise ValueError(
            f"{source}: the model is loaded as a {model.side} hand, but its geometry (v_template "
            f"and J_regressor: chirality {c:+.2f}, < 0 right, > 0 left) is a {geometric} hand. "
            "Is it the other side's file under the wrong name or side argument?"
        )


def _check_rows_sum_to_one(value: np.ndarray, key: str, tol: float, source: str) -> None:
    """Each row of `value` is a convex combination: entries >= -tol, sum within tol of 1."""
    sums = value.astype(np.float64).sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > tol:
        raise ValueError(
            f"{source}: key {key!r}: rows must sum to 1 (within {tol:g}), row {worst} sums to "
            f"{sums[worst]:.6g} (row sums range {sums.min():.6g}..{sums.max():.6g})"
        )
    if value.min() < -tol:
        row = int(np.argmin(value.min(axis=1)))
        raise ValueError(
            f"{source}: key {key!r}: entries must be >= 0, row {row} holds {value[row].min():.6g}"
        )


def _shape_str(shape) -> str:
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
