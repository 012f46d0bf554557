"""Point-set validation and pred.json I/O (hiu_jax/pointsets.py): errors name the fault."""
import numpy as np
import pytest

from hiu_jax import pointsets as P
from tests.hiu_jax.test_metrics import random_hands


def test_stack_samples_names_index_and_shape():
    good = [np.zeros((21, 3))] * 3
    with pytest.raises(ValueError, match=r"kp: sample 1 has shape \(20, 3\), expected \(21, 3\)"):
        P.stack_samples("kp", [good[0], np.zeros((20, 3)), good[2]], 21)
    with pytest.raises(ValueError, match=r"mesh: sample 2 has shape \(5, 3\), expected \(6, 3\)"):
        P.stack_samples("mesh", [np.zeros((6, 3)), np.zeros((6, 3)), np.zeros((5, 3))])
    with pytest.raises(ValueError, match=r"kp: sample 0 is not a rectangular"):
        P.stack_samples("kp", [[[0, 0, 0], [0, 0]]], 2)
    inf = np.zeros((21, 3))
    inf[4, 0] = np.inf
    with pytest.raises(ValueError, match=r"kp: sample 2 has a non-finite value \(inf\) at point 4"):
        P.stack_samples("kp", good[:2] + [inf], 21)


def test_pred_json_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(12)
    xyz = list(random_hands(rng, 3).astype(np.float32))
    verts = list(random_hands(rng, 3, points=778))
    path = tmp_path / "pred.json"
    P.write_pred_json(str(path), xyz, verts)
    xyz2, verts2 = P.read_pred_json(str(path))
    assert len(xyz2) == len(verts2) == 3
    for a, b in zip(xyz + verts, xyz2 + verts2):
        np.testing.assert_array_equal(np.asarray(a, np.float64), b)
    bad = [v.copy() for v in verts]
    bad[1][3, 2] = np.nan
    with pytest.raises(ValueError, match="verts_list: sample 1 has a non-finite"):
        P.write_pred_json(str(tmp_path / "bad.json"), xyz, bad)
    assert not (tmp_path / "bad.json").exists()
    (tmp_path / "ragged.json").write_text("[[[[0, 0, 0]], [[0, 0, 0], [0, 0]]], []]")
    with pytest.raises(ValueError, match="keypoints sample 1 is not a rectangular"):
        P.read_pred_json(str(tmp_path / "ragged.json"))


def test_stack_samples_refuses_out_of_range_str_and_bool():
    rng = np.random.default_rng(22)
    hands = random_hands(rng, 3).tolist()
    scaled = [h for h in hands]
    scaled[2] = (np.asarray(hands[2]) * 1e300).tolist()
    with pytest.raises(ValueError, match=r"kp: sample 2, point 0 has coordinate .*e\+29\d, "
                                         r"beyond the physical range \+-100 m"):
        P.stack_samples("kp", scaled, 21)
    assert P.stack_samples("kp", scaled, 21, max_abs=None).shape == (3, 21, 3)
    text = [h for h in hands]
    text[1] = [[str(c) for c in p] for p in hands[1]]
    with pytest.raises(ValueError, match=r"kp: sample 1 holds str values \(e.g. '"):
        P.stack_samples("kp", text, 21)
    flags = [h for h in hands]
    flags[0] = [[True, 0.5, 0.5]] + hands[0][1:]
    with pytest.raises(ValueError, match=r"kp: sample 0 holds bool values \(e.g. True\)"):
        P.stack_samples("kp", flags, 21)
    far = np.asarray(hands)
    far[1, 4, 2] = 1000.0
    with pytest.raises(ValueError, match=r"xyz_pred: sample 1, point 4 has coordinate 1000,"):
        P.check_points("xyz_pred", far, max_abs=P.MAX_ABS_COORDINATE_M)
    assert P.check_points("xyz_pred", far).shape == (3, 21, 3)  # no limit by default


@pytest.mark.parametrize("content, message", [
    (b"[" * 100_000 + b"]" * 100_000, "JSON nested too deeply"),
    (b'[[[0.1, 0.2, \xff]]]', "not a UTF-8 text file"),
    (b"[1, 2", "not valid JSON"),
])
def test_read_json_names_the_file(tmp_path, content, message):
    path = tmp_path / "pred.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        P.read_pred_json(str(path))
    assert str(info.value).startswith(f"{path}: ")


# --------------------------------------------------------------------------- RHD/STB, 2D, masks
