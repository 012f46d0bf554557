"""The canonical schema: defaults, flags, validation messages."""
import io

import numpy as np
import pytest
from PIL import Image

from datasets import schema
from datasets.schema import BadRecordError

HW = (6, 8)
WHERE = "some/file.json [index 7]"


def _png_bytes(hw=HW):
    buf = io.BytesIO()
    Image.fromarray(np.zeros(hw + (3,), np.uint8), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _example(**labels):
    return schema.make_example(
        image=_png_bytes(), image_hw=HW, sample_id="7", source="test", where=WHERE, **labels
    )


def _K():
    return np.array([[100.0, 0, 4], [0, 90, 3], [0, 0, 1]])


def _hand_xyz(depth=0.5):
    """(21, 3) metres: joints 1 cm apart along x around (0, 0, depth); a 20 cm span."""
    xyz = np.zeros((21, 3))
    xyz[:, 0] = np.linspace(-0.1, 0.1, 21)
    xyz[:, 2] = depth
    return xyz


def test_features_keys_match_make_example_and_encode():
    ex = _example()
    feats = schema.features("png")
    assert set(feats.keys()) == set(ex.keys())
    feats.encode_example(ex)  # every default value is encodable in the declared spec
    feats.encode_example(_example(K=_K(), keypoints_2d=np.ones((21, 2)), mask=np.ones(HW)))


def test_empty_example_is_zero_filled_with_flags_false():
    ex = _example()
    for flag in schema.FLAG_NAMES:
        assert ex[flag] is False, flag
    for name, (shape, _) in schema.TENSOR_LABELS.items():
        assert ex[name].shape == shape and ex[name].dtype == np.float32
        assert not ex[name].any(), name
    assert ex["scale"] == 0 and ex["mano_flat_hand_mean"] is False and ex["hand_side"] == "right"
    mask = np.asarray(Image.open(io.BytesIO(ex["mask"])))
    assert mask.shape == HW and not mask.any()


def test_flags_follow_given_labels():
    ex = _example(
        K=_K(), keypoints_2d=np.full((21, 2), 2.0), keypoints_3d=_hand_xyz(),
        mano_pose=np.zeros(48), mano_betas=np.zeros(10), mano_flat_hand_mean=True, scale=0.03,
        mask=np.eye(*HW, dtype=bool),
    )
    on = {f for f in schema.FLAG_NAMES if ex[f]}
    assert on == {"has_intrinsics", "has_2d", "has_3d", "has_mano", "has_scale", "has_mask"}
    np.testing.assert_array_equal(ex["keypoint_visibility"], np.ones(21))  # default with 2D
    assert ex["mano_flat_hand_mean"] is True and ex["scale"] == np.float32(0.03)
    mask = np.asarray(Image.open(io.BytesIO(ex["mask"])))
    np.testing.assert_array_equal(mask, np.eye(*HW, dtype=np.uint8) * schema.MASK_ON)


@pytest.mark.parametrize(
    "K, message",
    [
        (np.zeros((3, 3)), "non-positive focal"),
        ([[100, 0, 4], [0, -1, 3], [0, 0, 1]], "non-positive focal"),
        ([[100, 0, 4], [0, 90, 3], [0, 0, 2]], "last row"),
        ([[100, 100, 4], [90, 90, 3], [0, 0, 1]], "singular"),  # rows 1, 2 parallel
        ([[np.nan, 0, 4], [0, 90, 3], [0, 0, 1]], "non-finite"),
        (np.eye(2), "shape"),
    ],
)
def test_check_K_rejects_with_where(K, message):
    with pytest.raises(BadRecordError, match=message) as info:
        schema.check_K(K, WHERE)
    assert str(info.value).startswith(WHERE) and info.value.where == WHERE


def test_check_finite_names_first_bad_value():
    arr = np.zeros((4, 3))
    arr[2, 1] = np.inf
    with pytest.raises(BadRecordError, match=r"xyz has 1 non-finite values \(first at \(2, 1\)"):
        schema.check_finite("xyz", arr, WHERE)


@pytest.mark.parametrize(
    "labels, message",
    [
        (dict(keypoints_3d=np.full((21, 3), -0.5)), "behind the camera"),
        (dict(vertices=np.ones((777, 3))), r"vertices has shape \(777, 3\)"),
        (dict(keypoints_2d=np.ones((21, 2)), keypoint_visibility=np.full(21, 0.5)), "0 or 1"),
        (dict(mano_pose=np.zeros(48), mano_betas=np.zeros(10)), "together"),
        (dict(mask=np.ones((3, 3))), "mask has shape"),
        (dict(scale=-1.0), "scale"),
        (dict(bbox=[5, 5, 1, 9]), "no area"),
        (dict(hand_side="both"), "hand_side"),
        # Implausible labels: millimetres read as metres, a collapsed hand, points off-image.
        (dict(keypoints_3d=_hand_xyz() * 1000), "more than 10 m from the camera"),
        (dict(keypoints_3d=_hand_xyz(depth=5.0) * [[10, 10, 1]]), "spans 2 m"),
        (dict(keypoints_3d=_hand_xyz() * [[0.1, 1, 1]]), "spans 0.02 m"),
        (dict(vertices=np.full((778, 3), 12.0)), "vertices.* more than 10 m"),
        (dict(root_3d=[0.0, 0.0, 600.0]), "root_3d.* more than 10 m"),
        (dict(keypoints_2d=np.full((21, 2), 17.0)), r"keypoints_2d\[0\] = \(17, 17\) px lies far "
                                                    "outside the 8x6 image"),
        (dict(keypoints_2d=np.full((21, 2), -8.5)), "far outside"),
    ],
)
def test_make_example_rejects_bad_labels(labels, message):
    with pytest.raises(BadRecordError, match=message) as info:
        _example(**labels)
    assert info.value.where == WHERE


def test_plausibility_bounds_are_inclusive_of_real_hands():
    """A 10 cm hand at 9.9 m, visible 2D keypoints one image size off the border, and invisible
    keypoints anywhere all pass."""
    _example(keypoints_3d=_hand_xyz(depth=9.9) * [[0.5, 1, 1]])
    _example(keypoints_2d=np.tile([[-7.9, 11.9]], (21, 1)))
    uv = np.full((21, 2), 1e4)
    uv[0] = 1.0
    vis = np.zeros(21)
    vis[0] = 1
    _example(keypoints_2d=uv, keypoint_visibility=vis)


def test_project_matches_pinhole_formula():
    K = _K()
    xyz = np.array([[0.1, -0.2, 2.0], [0.0, 0.0, 1.0]])
    expected = np.array([[100 * 0.05 + 4, 90 * -0.1 + 3], [4, 3]])
    np.testing.assert_allclose(schema.project(K, xyz), expected, rtol=1e-6)
