"""FreiHAND v2 (TFDS builder `freihand`)."""
from datasets.freihand.freihand_dataset_builder import Builder
