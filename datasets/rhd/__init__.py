"""Rendered Hand Pose Dataset v1.1 (TFDS builder `rhd`)."""
from datasets.rhd.rhd_dataset_builder import Builder
