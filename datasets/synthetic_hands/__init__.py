"""Synthetic hands from datasets.synthetic, FreiHAND layout (builder `synthetic_hands`)."""
from datasets.synthetic_hands.synthetic_hands_dataset_builder import Builder
