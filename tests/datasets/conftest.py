"""Fixtures of the input-pipeline tests."""
import pytest

from datasets.freihand import freihand_dataset_builder as fh
from tests.datasets import fakes
from tests.datasets.streams import IMAGE_SIZE, N_TRAIN


@pytest.fixture(scope="module")
def freihand(tmp_path_factory):
    """A built fake FreiHAND: (builder, written annotations, raw root, data_dir)."""
    root = tmp_path_factory.mktemp("freihand_raw")
    written = fakes.write_fake_freihand(root, n_train=N_TRAIN, n_eval=2, image_size=IMAGE_SIZE)
    data_dir = tmp_path_factory.mktemp("freihand_data")
    builder = fakes.build(fh.Builder, root, data_dir)
    return builder, written, root, data_dir
