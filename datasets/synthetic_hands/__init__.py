"""The synthetic hands that datasets.synthetic_generator writes in the FreiHAND layout: the TFDS
builder `synthetic_hands`."""
from datasets.synthetic_hands.synthetic_hands_dataset_builder import Builder
