"""Experiment configs (ml_collections), one file per setting: default.py (runs anywhere, on the
synthetic data), tiny.py (tests), freihand.py (full scale on FreiHAND)."""
