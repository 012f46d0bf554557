"""HIU-Data, the HIU-DMTL authors' real-image hand dataset (TFDS builder `hiu_data`)."""
from datasets.hiu_data.hiu_data_dataset_builder import Builder
