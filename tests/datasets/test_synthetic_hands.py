"""synthetic_hands builder: the FreiHAND reader on a one-version FreiHAND-layout tree."""
import numpy as np

from datasets.freihand import freihand_dataset_builder as fh
from datasets.synthetic_hands import synthetic_hands_dataset_builder as sh
from tests.datasets import fakes


def test_builder_identity():
    assert sh.Builder.name == "synthetic_hands" and fh.Builder.name == "freihand"
    assert [c.name for c in sh.Builder.BUILDER_CONFIGS] == ["gs"]
    assert "python -m datasets.synthetic_generator --out DIR --num N" in \
        sh.Builder.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_builds_one_version_tree_with_eval_masks(tmp_path):
    root = tmp_path / "synthetic"
    root.mkdir()
    written = fakes.write_fake_freihand(root, n_train=2, n_eval=2, versions=1, eval_masks=True)
    builder = fakes.build(sh.Builder, root, tmp_path / "data")
    train, test = fakes.read_split(builder, "train"), fakes.read_split(builder, "test")
    assert (len(train), len(test)) == (2, 2)
    for ex in train:
        idx = int(ex["sample_id"])
        assert ex["source"] == b"synthetic_hands" and ex["image_version"] == b"gs"
        np.testing.assert_allclose(ex["keypoints_3d"], written["training"]["xyz"][idx], rtol=1e-6)
        assert ex["has_mask"] and ex["has_mesh"] and ex["has_mano"]
        assert not ex["mano_flat_hand_mean"]
    for ex in test:
        assert ex["has_3d"] and ex["has_mask"]
        truth = written["eval_masks"][int(ex["sample_id"])]
        assert fakes.jpeg_mask_agrees(ex["mask"][..., 0], truth)


def test_without_evaluation_files_only_train(tmp_path):
    root = tmp_path / "synthetic"
    root.mkdir()
    fakes.write_fake_freihand(root, n_train=2, n_eval=0, versions=1)
    builder = fakes.build(sh.Builder, root, tmp_path / "data")
    assert set(builder.info.splits.keys()) == {"train"}
    assert builder.info.splits["train"].num_examples == 2
