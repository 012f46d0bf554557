"""The rule every config block follows: the config files state every key, the library has no
defaults. `check_keys` is its one check, used by each block's validation (loss_registry,
models, datasets/pipeline)."""
from __future__ import annotations

from typing import Iterable


def check_keys(block, keys: Iterable[str], name: str) -> None:
    """Raises ValueError when `block` (a ConfigDict or mapping) has a key not in `keys` (naming
    it and listing the valid ones) or lacks some of them (naming them all). name: the block's
    name in messages, e.g. "loss"."""
    keys = tuple(keys)
    given = list(block.keys())
    unknown = [k for k in given if k not in keys]
    if unknown:
        raise ValueError(f"{name} config: unknown key {unknown[0]!r}; valid keys: "
                         f"{', '.join(keys)}")
    missing = [k for k in keys if k not in given]
    if missing:
        raise ValueError(f"{name} config: missing {', '.join(repr(k) for k in missing)}; a config "
                         "file states every key of the block (see configs/default.py)")
