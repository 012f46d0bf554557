"""HO-3D v3 (TFDS builder `ho3d`)."""
from datasets.ho3d.ho3d_dataset_builder import Builder
