"""infer.py and hiu_jax/inference.py: on the session's tiny run (tests/model_fixtures.py), one
synthetic evaluation image taken whole, a non-square image with a hand box and one whose hand is
found; finding the hand with an exact stand-in for the network; the bad inputs."""
import json
import os
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import infer
from hiu_jax import inference, visualize
from hiu_jax.geometry import crops, projection, warps
from tests.model_fixtures import REPO, IMAGE_SIZE, TRAIN_STEPS, run_python, tiny_run  # noqa: F401

# The non-square image: the evaluation image pasted at (OFFSET) into a 150 x 110 canvas, and a box
# around it.
CANVAS = (150, 110)
OFFSET = (40, 6)
BOX = (OFFSET[0], OFFSET[1], OFFSET[0] + IMAGE_SIZE, OFFSET[1] + IMAGE_SIZE)


@pytest.fixture(scope="module")
def inferred(tiny_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    square = os.path.join(tiny_run.synthetic_dir, "evaluation", "rgb", "00000003.jpg")
    found = os.path.join(tiny_run.synthetic_dir, "evaluation", "rgb", "00000005.jpg")
    wide = str(root / "wide.png")
    canvas = Image.new("RGB", CANVAS, (20, 40, 80))
    with Image.open(square) as img:
        canvas.paste(img, OFFSET)
    canvas.save(wide)
    out = root / "out"
    r = run_python(["infer.py", "--checkpoint",
                    os.path.join(tiny_run.workdir, "checkpoints", "last"), square, wide, found,
                    "--box", "full", "--box", ",".join(str(b) for b in BOX), "--box", "find",
                    "--out", str(out), "--no-progress"], tiny_run.env)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("stem, size", [("00000003", (IMAGE_SIZE, IMAGE_SIZE)), ("wide", CANVAS),
                                        ("00000005", (IMAGE_SIZE, IMAGE_SIZE))])
def test_outputs_per_image(inferred, stem, size):
    rec = json.loads((inferred / f"{stem}.json").read_text())
    assert rec["image_size"] == {"width": size[0], "height": size[1]}
    kp = np.asarray(rec["keypoints_2d"])
    kp_crop = np.asarray(rec["keypoints_2d_crop"])
    S = np.asarray(rec["crop"]["image_to_crop"])
    assert kp.shape == kp_crop.shape == (21, 2)
    # keypoints_2d are in original pixels: the crop matrix maps them onto the crop keypoints.
    np.testing.assert_allclose(kp @ S[:2, :2].T + S[:2, 2], kp_crop, atol=1e-6)
    n = rec["crop"]["crop_size"]
    if stem == "wide":
        assert rec["box"] == list(map(float, BOX)) and rec["box_source"] == "given"
        np.testing.assert_allclose(rec["crop"]["center"], [OFFSET[0] + 48, OFFSET[1] + 48])
        assert rec["crop"]["side"] == pytest.approx(1.5 * IMAGE_SIZE)  # pipeline crop_padding
    elif stem == "00000005":  # the crop around the box the first pass found, by the crop rule
        box = np.asarray(rec["box"])
        assert rec["box_source"] == "found" and box.shape == (4,)
        np.testing.assert_allclose(rec["crop"]["center"], (box[:2] + box[2:]) / 2)
        assert rec["crop"]["side"] == pytest.approx(max(1.5 * max(box[2:] - box[:2]), 8.0))
    else:
        assert rec["box"] is None and rec["box_source"] == "full image"
        assert rec["crop"]["side"] == IMAGE_SIZE  # the whole image is the crop
        np.testing.assert_allclose(S[:2, :2], np.eye(2) * n / IMAGE_SIZE)

    joints = np.asarray(rec["keypoints_3d"])
    verts = np.asarray(rec["vertices"])
    assert joints.shape == (21, 3) and verts.shape == (778, 3)
    np.testing.assert_allclose(joints[0], 0.0, atol=1e-7)  # root-relative
    assert len(rec["mano"]["pose"]) == 48 and len(rec["mano"]["betas"]) == 10
    assert rec["mano"]["flat_hand_mean"] is False
    assert all(np.isfinite(rec["camera"][k]) for k in ("s", "tx", "ty"))
    # The camera reproduces the 2D keypoints from the 3D joints (models' projection).
    cam = rec["camera"]
    uv = 0.5 * n * (1 + np.array([cam["tx"], cam["ty"]]) + cam["s"] * joints[:, :2] / 0.1)
    np.testing.assert_allclose(uv, kp_crop, atol=1e-3)

    obj = (inferred / f"{stem}.obj").read_text().splitlines()
    v = np.array([[float(x) for x in line.split()[1:]] for line in obj if line.startswith("v ")])
    f = np.array([[int(x) for x in line.split()[1:]] for line in obj if line.startswith("f ")])
    assert v.shape == (778, 3) and f.shape == (1538, 3)
    assert f.min() == 1 and f.max() == 778
    np.testing.assert_allclose(v, verts, atol=1e-6)

    with Image.open(inferred / f"{stem}_overlay.png") as png:
        assert png.format == "PNG"
        assert png.size[1] == 256 and png.size[0] > 3 * 256


@pytest.mark.slow
def test_mesh_is_mano_of_the_written_parameters(inferred):
    """pose (flat_hand_mean False) and betas give the written vertices through MANO."""
    import jax

    import mano_jax

    rec = json.loads((inferred / "wide.json").read_text())
    model = mano_jax.procedural_model("right")  # configs/tiny.py: model.mano_path = ""
    forward = jax.jit(lambda pose, betas: mano_jax.forward(model, pose, betas,
                                                           flat_hand_mean=False))
    out = forward(np.asarray(rec["mano"]["pose"], np.float32)[None],
                  np.asarray(rec["mano"]["betas"], np.float32)[None])
    verts = np.asarray(out.vertices[0]) - np.asarray(out.joints[0, :1])
    np.testing.assert_allclose(verts, np.asarray(rec["vertices"]), atol=1e-5)


class _Oracle:
    """A stand-in for the network that knows where the hand is: on its k-th call it returns the
    true keypoints (21, 2) image pixels mapped by matrices[k] (the image-to-crop matrices that
    finding the hand should cut: the whole image, then the crops around the boxes found), as
    both 2D outputs, so the boxes found from them are exact."""

    def __init__(self, truth, matrices):
        self.truth, self.matrices, self.calls = np.asarray(truth, np.float64), matrices, 0

    def __call__(self, images):
        assert images.shape[0] == 1 and self.calls < len(self.matrices)
        kp = crops.apply_affine(self.matrices[self.calls], self.truth)[None]
        self.calls += 1
        return {"keypoints_2d": kp, "keypoints_heatmap": kp, "cam": np.array([[1.0, 0.0, 0.0]])}


def _order_statistic_box(truth, trim, scale):
    """The trimmed box written out: per axis the (trim+1)-th smallest and largest value, the box
    scaled about its centre."""
    u, v = sorted(truth[:, 0]), sorted(truth[:, 1])
    lo, hi = np.array([u[trim], v[trim]]), np.array([u[-1 - trim], v[-1 - trim]])
    grow = (scale - 1.0) / 2 * (hi - lo)
    return np.concatenate([lo - grow, hi + grow])


def _found_is_exact(truth, image_hw, config, rule=inference.FIND_RULE):
    """infer_image without a box, by the oracle: rule.passes finding passes, each cutting the
    crop of the trimmed box of exact keypoints (the pipeline's rule around it), then the final
    pass on that crop, whose 2D error is 0. With FindRule(1, 0, 1.0) the found box is the true
    box (the keypoints' box): the crop is the true box's."""
    box = _order_statistic_box(np.asarray(truth, np.float64), rule.trim, rule.scale)
    if rule.trim == 0 and rule.scale == 1.0:
        np.testing.assert_array_equal(box, np.concatenate([np.min(truth, 0), np.max(truth, 0)]))
    S_full = inference.crop_for(image_hw, None, config)[0]
    S_box = inference.crop_for(image_hw, box, config)[0]
    oracle = _Oracle(truth, [S_full] + [S_box] * rule.passes)
    image = np.zeros(tuple(image_hw) + (3,), np.float32)
    found = inference.infer_image(oracle, image, None, config, find=True, rule=rule)
    assert oracle.calls == rule.passes + 1 and found.box_source == "found"
    np.testing.assert_allclose(found.box, box, atol=1e-9)
    np.testing.assert_allclose(found.S, S_box, atol=1e-9)
    error = np.linalg.norm(inference.crop_to_image(found.pred["keypoints_2d"], found.S) - truth,
                           axis=-1)
    np.testing.assert_allclose(error, 0.0, atol=1e-9)


@pytest.mark.parametrize("rule", [inference.FIND_RULE, inference.FindRule(1, 0, 1.0),
                                  inference.FindRule(3, 2, 1.3)])
@pytest.mark.parametrize("image_hw, offset", [((224, 224), (150, 40)), ((160, 300), (10, 100)),
                                              ((300, 120), (60, 250))])  # hand centre (u, v)
def test_finding_the_hand_cuts_the_crop_of_the_rules_box_given_exact_keypoints(image_hw, offset,
                                                                              rule):
    from configs import tiny

    rng = np.random.default_rng(sum(image_hw))
    truth = np.asarray(offset, np.float64) + rng.uniform(-25, 25, (21, 2))  # (u, v) pixels
    _found_is_exact(truth, image_hw, tiny.get_config(), rule)


@pytest.mark.slow
def test_finding_the_hand_on_synthetic_evaluation_images(tiny_run):
    """The same on the generator's evaluation images (their labels: hands anywhere in the
    image), at the tiny run's crop settings."""
    from configs import tiny

    with open(os.path.join(tiny_run.synthetic_dir, "evaluation_K.json")) as f:
        K = np.asarray(json.load(f), np.float64)
    with open(os.path.join(tiny_run.synthetic_dir, "evaluation_xyz.json")) as f:
        xyz = np.asarray(json.load(f), np.float64)
    truth = projection.project_pinhole(K, xyz, xp=np)
    assert len(truth) == 8
    for kp in truth:
        for rule in (inference.FIND_RULE, inference.FindRule(1, 0, 1.0)):
            _found_is_exact(kp, (IMAGE_SIZE, IMAGE_SIZE), tiny.get_config(), rule)


def test_trimmed_box_is_order_statistics_scaled_about_the_centre():
    points = np.array([[0.0, 5.0], [10.0, -3.0], [2.0, 1.0], [4.0, 9.0], [7.0, 2.0]])
    np.testing.assert_array_equal(inference.trimmed_box(points), [0.0, -3.0, 10.0, 9.0])
    # trim 1: x 2..7, y 1..5 -> centre (4.5, 3), half sizes (2.5, 2) x 1.2
    np.testing.assert_allclose(inference.trimmed_box(points, 1, 1.2), [1.5, 0.6, 7.5, 5.4])
    for trim, scale in ((-1, 1.0), (3, 1.0), (1, 0.0)):
        with pytest.raises(ValueError, match=rf"trim {trim} of 5 points, scale {scale}"):
            inference.trimmed_box(points, trim, scale)


def test_finding_the_hand_needs_a_finding_pass():
    from configs import tiny

    with pytest.raises(ValueError, match=r"FindRule.passes 0"):
        inference.infer_image(_Oracle(np.zeros((21, 2)), []), np.zeros((8, 8, 3), np.float32),
                              None, tiny.get_config(), find=True,
                              rule=inference.FindRule(0, 1, 1.15))


def test_infer_image_with_a_box_or_the_whole_image_is_one_pass():
    from configs import tiny

    config = tiny.get_config()
    truth = np.random.default_rng(0).uniform(20, 60, (21, 2))
    for box, find, source in (((10.0, 12.0, 50.0, 40.0), False, "given"),
                              (None, False, "full image"), ((10.0, 12.0, 50.0, 40.0), True, "given")):
        S = inference.crop_for((80, 90), box, config)[0]
        oracle = _Oracle(truth, [S])
        result = inference.infer_image(oracle, np.zeros((80, 90, 3), np.float32), box, config,
                                       find=find)
        assert oracle.calls == 1 and result.box_source == source
        np.testing.assert_allclose(result.S, S)


def test_infer_image_rejects_a_bad_box_naming_it():
    from configs import tiny

    for box, message in (((5.0, 5.0, 1.0, 9.0), "needs x1 > x0"), ((1.0, 2.0, 3.0), "shape (3,)"),
                         ((0.0, 0.0, np.nan, 4.0), "finite")):
        with pytest.raises(inference.UserError, match=r"box: .*" + re.escape(message)):
            inference.infer_image(None, np.zeros((8, 8, 3), np.float32), box, tiny.get_config(),
                                  find=False)


def test_crop_rule_is_the_pipelines():
    """geometry's rule: centred on the box, side padding * max(w, h), at least min_side."""
    center, size = crops.box_center_size(np.array([10.0, 20.0]), np.array([50.0, 30.0]))
    np.testing.assert_allclose(center, [30.0, 25.0])
    assert size == 40.0
    assert crops.hand_crop_side(size, 1.5, 8.0) == 60.0
    assert crops.hand_crop_side(2.0, 1.5, 8.0) == 8.0


def _image(path, size=(40, 30)):
    Image.new("RGB", size, (90, 60, 30)).save(path)
    return str(path)


def _bomb_png(path, size=30000):
    """A 100-byte PNG whose header claims size x size RGB pixels."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    return str(path)


def test_box_with_negative_numbers_parses():
    args = infer.parse_args(["a.png", "--checkpoint", "run", "--out", "o", "--box",
                             "-100,-100,-50,-50", "--box", "-1.5,2,3,4"])
    assert args.box == ["-100,-100,-50,-50", "-1.5,2,3,4"]
    assert args.images == ["a.png"]


def test_overlay_work_is_bounded_by_the_crop_not_the_image():
    """A 1 x 4000 image (the crop is the 4000 px square) gives a (256, 1024) overlay, and the
    work stays small: scaling the image to 256 rows took 14.5 GB."""
    import tracemalloc

    image = np.random.default_rng(0).random((1, 4000, 3)).astype(np.float32)
    n = 32
    S, _, _ = inference.crop_for(image.shape[:2], None, _Config(n))
    crop = warps.crop_image(image, S, n)
    pred = {"keypoints_2d": np.full((21, 2), n / 2.0), "mask_prob": np.zeros((n, n)),
            "vertices": np.zeros((3, 3)), "cam": np.array([1.0, 0.0, 0.0])}
    faces = np.array([[0, 1, 2]])
    visualize.overlay_image(crop, np.eye(3), crop, pred, faces)  # warm-up: imports, compiling
    tracemalloc.start()
    try:
        out = visualize.overlay_image(image, S, crop, pred, faces)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (256, 4 * 256, 3)
    assert peak < 16 * 2**20, peak


class _Config:
    def __init__(self, crop_size):
        self.crop_size = crop_size


@pytest.mark.parametrize("make_args, message", [
    (lambda d: [str(d / "missing.jpg")], "image not found: {d}/missing.jpg"),
    (lambda d: [str(d / "text.png")], "cannot read image {d}/text.png"),
    (lambda d: [_image(d / "a.png"), "--box", "10,10,5,20"], "--box '10,10,5,20': needs x1 > x0"),
    (lambda d: [_image(d / "a.png"), "--box", "1,2,3"], "expected four numbers"),
    (lambda d: [_image(d / "a.png"), "--box", "1,2,x,4"], "expected four numbers"),
    (lambda d: [_image(d / "a.png"), "--box", "100,100,120,120"], "lies outside the image"),
    (lambda d: [_image(d / "a.png"), _image(d / "b.png"), "--box", "1,1,5,5", "--box", "full",
                "--box", "full"], "3 --box values for 2 images"),
    (lambda d: [_image(d / "a.png"), "--checkpoint", str(d)], "is neither a training work "
                                                               "directory"),
    # A box with negative numbers reaches the box checks (argparse took it for an option).
    (lambda d: [_image(d / "a.png"), "--box", "-100,-100,-50,-50"], "--box -100,-100,-50,-50 "
                                                                    "lies outside the image"),
    (lambda d: [_bomb_png(d / "bomb.png")], "image {d}/bomb.png is too large to read safely"),
])
def test_bad_input_exits_2_naming_it(make_args, message, tmp_path, capsys):
    (tmp_path / "text.png").write_text("not an image")
    args = make_args(tmp_path)
    if "--checkpoint" not in args:
        ckpt = tmp_path / "run" / "checkpoints" / "last" / "3"
        ckpt.mkdir(parents=True)
        args += ["--checkpoint", str(tmp_path / "run")]
    assert infer.main(args + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message.format(d=tmp_path) in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_checkpoint_that_does_not_match_the_config_exits_2(tiny_run, tmp_path, capsys):
    """The session's run has one stack; configs/tiny.py has two."""
    argv = ["--checkpoint", os.path.join(tiny_run.workdir, "checkpoints", "best"), "--config",
            os.path.join(REPO, "configs", "tiny.py"), _image(tmp_path / "a.png"), "--out",
            str(tmp_path / "out")]
    assert infer.main(argv) == 2
    err = capsys.readouterr().err
    assert "checkpoints/best does not match the config" in err and "configs/tiny.py" in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_truncated_checkpoint_is_reported_corrupt_naming_it(tiny_run, tmp_path, capsys):
    """best/ holds one step; truncating its array files leaves nothing to fall back to."""
    import shutil

    work = tmp_path / "run"
    shutil.copytree(tiny_run.workdir, work)
    step_dir = work / "checkpoints" / "best" / str(TRAIN_STEPS)
    for path in (step_dir / "state").rglob("*"):
        if path.is_file():
            with open(path, "r+b") as f:
                f.truncate(path.stat().st_size // 2)
    argv = ["--checkpoint", str(work / "checkpoints" / "best"), _image(tmp_path / "a.png"),
            "--out", str(tmp_path / "out")]
    assert infer.main(argv) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and str(step_dir) in err and "does not match" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert step_dir.is_dir()
