"""The open procedural hand: official shapes, a manifold surface open only at the wrist, joints
inside the mesh in any plausible pose, skinning without tearing, and official-file loading."""
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import mano_jax
from mano_jax import mesh, procedural
from mano_jax.procedural.correctives import dual_quaternion_skin
from mano_jax.lbs import TIP_PRESETS, tip_vertex_ids
from mano_jax.model import REQUIRED_SHAPES


@pytest.fixture(scope="module")
def arrays():
    return procedural.build_procedural_arrays("right")


@pytest.fixture(scope="module")
def model():
    return mano_jax.procedural_model("right")


@pytest.fixture(scope="module")
def sampled(model):
    """Plausible poses with random shapes, posed once for the whole module (float32)."""
    rng = np.random.default_rng(7)
    n = 48
    pose = np.concatenate([np.zeros((n, 3)), procedural.sample_poses(rng, n)], 1)
    betas = np.clip(rng.standard_normal((n, 10)), -2, 2)
    posed = mano_jax.forward(model, pose, betas, flat_hand_mean=True)
    rest = mano_jax.forward(model, np.zeros_like(pose), betas, flat_hand_mean=True)
    return pose, betas, posed, rest


def test_official_keys_and_shapes(arrays):
    for key, shape in REQUIRED_SHAPES.items():
        assert key in arrays, key
        assert len(arrays[key].shape) == len(shape)
        for expected, found in zip(shape, arrays[key].shape):
            assert expected is None or expected == found, (key, arrays[key].shape)
    assert arrays["shapedirs"].shape == (778, 3, 10)
    assert arrays["f"].dtype == np.uint32


def test_deterministic():
    a, b = procedural.build_procedural_arrays(), procedural.build_procedural_arrays()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_manifold_with_one_wrist_opening(arrays):
    faces = arrays["f"].astype(np.int64)
    counts = mesh.edge_face_counts(faces)
    assert set(counts.values()) == {1, 2}, "every edge is shared by one (boundary) or two faces"
    # Consistent winding: each directed edge appears once.
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed)
    loops = mesh.boundary_loops(faces)
    assert [len(loop) for loop in loops] == [16]
    assert sum(c == 1 for c in counts.values()) == 16
    # Euler characteristic of a disk: V - E + F = 1; every vertex used; no degenerate face.
    assert 778 - len(counts) + len(faces) == 1
    assert len(np.unique(faces)) == 778
    assert np.all((faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2]))
    # The opening is at the wrist: its centre is the point nearest joint 0 among the loops.
    wrist = arrays["J_regressor"][0] @ arrays["v_template"]
    centre = arrays["v_template"][loops[0]].mean(0)
    assert np.linalg.norm(centre - wrist) < 0.03


def test_outward_normals_and_plausible_size(arrays):
    verts, faces = mesh.close_boundaries(arrays["v_template"], arrays["f"])
    volume = mesh.signed_volume(verts, faces)
    assert 1.5e-4 < volume < 5e-4, "an adult hand holds roughly 200-450 cm^3"
    extent = arrays["v_template"].max(0) - arrays["v_template"].min(0)
    assert 0.17 < extent[0] < 0.22, "wrist opening to middle fingertip, metres"


def test_weights_and_regressor_are_stochastic(arrays):
    np.testing.assert_allclose(arrays["weights"].sum(1), 1.0, atol=1e-12)
    assert arrays["weights"].min() >= 0
    np.testing.assert_allclose(arrays["J_regressor"].sum(1), 1.0, atol=1e-12)
    assert arrays["J_regressor"].min() >= 0
    assert np.all((arrays["J_regressor"] > 0).sum(1) <= 40), "sparse rows"


def test_rest_joints_inside_mesh(arrays):
    joints = arrays["J_regressor"] @ arrays["v_template"]
    verts, faces = mesh.close_boundaries(arrays["v_template"], arrays["f"])
    np.testing.assert_allclose(mesh.winding_number(verts, faces, joints), 1.0, atol=1e-9)


def test_joints_inside_and_no_tearing_in_plausible_poses(model, sampled):
    _, _, posed, rest = sampled
    faces = np.asarray(model.faces)
    verts = np.asarray(posed.vertices, np.float64)
    for i in range(len(verts)):
        v, f = mesh.close_boundaries(verts[i], faces)
        wn = mesh.winding_number(v, f, np.asarray(posed.skeleton[i], np.float64))
        assert np.all(wn > 0.5), f"pose {i}: joints {np.flatnonzero(wn <= 0.5)} left the mesh"
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    rest_v = np.asarray(rest.vertices, np.float64)

    def lengths(x):
        return np.linalg.norm(x[:, edges[:, 0]] - x[:, edges[:, 1]], axis=-1)

    ratio = lengths(verts) / lengths(rest_v)
    # Skin over a bent joint stretches to ~2x on its outer side (and folds on the inner one);
    # a tear shows up as one edge spanning two diverging bones, tens of times its rest length.
    assert ratio.max() < 3.0 and ratio.min() > 0.2, (ratio.min(), ratio.max())


def test_fingertip_presets_sit_at_the_tips(model):
    rest = mano_jax.forward(model, np.zeros(48), np.zeros(10), flat_hand_mean=True)
    joints = np.asarray(rest.joints)  # OpenPose order: tips at 4, 8, 12, 16, 20
    wrist = joints[0]
    for preset in TIP_PRESETS:
        tips = np.asarray(model.v_template)[list(tip_vertex_ids(preset, "right"))]
        for finger, tip in enumerate(tips):
            chain = joints[1 + 4 * finger: 4 + 4 * finger]  # the finger's three joints
            assert np.linalg.norm(tip - wrist) > np.linalg.norm(chain - wrist, axis=1).max()
            assert np.linalg.norm(tip - chain[-1]) < 0.03, (preset, finger)


def test_shape_directions_are_plausible(model):
    def measure(betas):
        out = mano_jax.forward(model, np.zeros(48), np.asarray(betas, float), flat_hand_mean=True)
        j = np.asarray(out.joints)
        v = np.asarray(out.vertices)
        middle = np.linalg.norm(j[12] - j[9])  # MCP to tip of the middle finger
        width = np.linalg.norm(j[5] - j[17])  # index MCP to pinky MCP
        return middle, width, v

    base_len, base_width, base_v = measure(np.zeros(10))
    for k in range(10):
        betas = np.zeros(10)
        betas[k] = 2.0
        length, width, v = measure(betas)
        moved = np.linalg.norm(v - base_v, axis=1)
        assert 0.001 < moved.max() < 0.03, f"beta {k} moves the surface by {moved.max()} m at 2 sd"
    assert measure(np.eye(10)[1] * 2)[0] > base_len * 1.05, "beta 1 lengthens the fingers"
    assert measure(np.eye(10)[2] * 2)[1] > base_width * 1.05, "beta 2 widens the palm"
    assert measure(np.eye(10)[0] * 2)[0] > base_len * 1.05, "beta 0 scales the hand"


def test_pose_space_and_correctives(arrays):
    comps = arrays["hands_components"]
    np.testing.assert_allclose(comps @ comps.T, np.eye(45), atol=1e-9)
    var = arrays["hands_coeffs"].var(0)
    assert np.all(np.diff(var) <= 1e-12), "components sorted by decreasing variance"
    assert 0.1 < np.linalg.norm(arrays["hands_mean"]) < 3.0, "a relaxed, partly curled mean hand"
    assert np.abs(arrays["posedirs"]).max() > 1e-4, "pose correctives are not empty"
    # Correctives act only through the joints that skin a vertex.
    influence = arrays["weights"][:, 1:] > 1e-3
    for j in range(15):
        block = arrays["posedirs"][:, :, 9 * j: 9 * j + 9]
        assert np.abs(block[~influence[:, j]]).max() == 0.0


def test_dual_quaternion_skinning(x64):
    """One joint: the rigid transform itself. Half identity, half a 90-degree turn about z through
    the origin: a 45-degree turn with no shrinking (LBS would give the chord midpoint, length
    cos 45 = 0.71). Float64 rounding of a few dozen operations, 1e-12."""
    c, s = np.cos(np.pi / 2), np.sin(np.pi / 2)
    turn = np.array([[c, -s, 0.0, 0.0], [s, c, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    shifted = turn.copy()
    shifted[:, 3] = [0.01, -0.02, 0.03]
    transforms = np.stack([np.eye(3, 4), shifted, turn])[None]  # (1, 3, 3, 4)
    points = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, -0.1], [2.0, 0.0, 0.5]])
    weights = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    got = np.asarray(dual_quaternion_skin(jnp.asarray(weights), jnp.asarray(transforms),
                                          jnp.asarray(points)))[0]
    rigid = points[:2] @ shifted[:, :3].T + shifted[:, 3]
    np.testing.assert_allclose(got[:2], rigid, rtol=0, atol=1e-12)
    half = np.array([2.0 * np.cos(np.pi / 4), 2.0 * np.sin(np.pi / 4), 0.5])
    np.testing.assert_allclose(got[2], half, rtol=0, atol=1e-12)


def test_left_hand_mirrors_right(model):
    left = mano_jax.procedural_model("left")
    assert left.side == "left"
    rng = np.random.default_rng(3)
    pose = np.concatenate([0.3 * rng.standard_normal(3), procedural.sample_poses(rng, 1)[0]])
    betas = rng.standard_normal(10)
    mirror = np.tile([-1.0, -1.0, 1.0], 16)  # axis-angle of M R M, M = diag(1, 1, -1)
    right = mano_jax.forward(model, pose, betas, flat_hand_mean=False)
    left_out = mano_jax.forward(left, pose * mirror, betas, flat_hand_mean=False)
    # float32: coordinates ~0.2 m, a few dozen accumulated products -> ~1e-6 m.
    np.testing.assert_allclose(np.asarray(left_out.vertices),
                               np.asarray(right.vertices) * [1, 1, -1], atol=2e-6)


def test_loads_like_an_official_file(tmp_path, arrays):
    path = tmp_path / "MANO_RIGHT.pkl"
    result = subprocess.run([sys.executable, "-m", "mano_jax.procedural", str(path)],
                            capture_output=True, text=True, check=True)
    assert "778 vertices" in result.stdout
    loaded = mano_jax.load_model(path)
    assert loaded.side == "right"
    np.testing.assert_allclose(np.asarray(loaded.v_template), arrays["v_template"], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(loaded.faces), arrays["f"].astype(np.int32))
