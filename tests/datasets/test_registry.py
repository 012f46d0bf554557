"""datasets/registry.py: builders by name, from the pipeline config block."""
import numpy as np
import pytest

from datasets import pipeline, registry
from tests.datasets.streams import CROP, config


def test_build_makes_the_named_builders(freihand):
    """The config names the builders, data_dir and manual_dirs; an unknown name is an error."""
    _, _, root, data_dir = freihand
    cfg = config(data_dir=str(data_dir), manual_dirs={"freihand": str(root)})
    settings = pipeline.settings_from_config(cfg)
    b = next(pipeline.make_dataset(registry.build(settings.sources), "test", config=settings,
                                   global_batch_size=2, train=False, local_device_count=1,
                                   process_count=1))
    assert b["image"].shape == (1, 2, CROP, CROP, 3) and np.all(b["has_mask"] == 0)
    with pytest.raises(ValueError, match="unknown dataset builder 'nope'"):
        registry.make_builder("nope")
