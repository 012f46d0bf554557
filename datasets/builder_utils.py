"""What every hand-dataset builder shares: file checks, image reading, bad-record handling.

`HandBuilder` is the abstract base of the builders. It adds one builder kwarg,
`skip_bad_records` (default False):
- False: the first bad record (corrupt image, non-finite values, singular K, implausible
  labels such as millimetres for metres: see schema.make_example, ...) stops the build
  with a BadRecordError naming the file and index.
- True: bad records are skipped AND counted. The build logs a warning with the count and the
  list, and stores both in the dataset's metadata, i.e. `metadata.json` beside the data files and
  `builder.info.metadata['build_report']` when the dataset is read back:
    {'skip_bad_records': bool,
     'skipped': {split: [{'where': '<file> [index i]', 'reason': '...'}, ...]},
     'num_skipped': {split: int},
     'counts': {split: {name: int}}}   # dataset-specific tallies, e.g. hands left out by rule
A missing file is never skipped: the split generators check every expected path up-front and
raise FileNotFoundError naming the paths and the builder's MANUAL_DOWNLOAD_INSTRUCTIONS.
"""
from __future__ import annotations

import collections
import io
import json
import logging
import os
from typing import Callable, Iterable, Iterator, Optional, Tuple

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from datasets import schema
from datasets.schema import BadRecordError

log = logging.getLogger(__name__)

MAX_LISTED_MISSING = 10  # missing paths printed in full in a FileNotFoundError


def require_files(paths: Iterable[os.PathLike], instructions: str = "") -> None:
    """Raises FileNotFoundError naming every missing path (the first MAX_LISTED_MISSING)."""
    missing = [os.fspath(p) for p in paths if not os.path.exists(p)]
    if missing:
        shown = "\n  ".join(missing[:MAX_LISTED_MISSING])
        more = len(missing) - MAX_LISTED_MISSING
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise FileNotFoundError(
            f"{len(missing)} expected file(s) missing:\n  {shown}{tail}\n{instructions}"
        )


def load_json(path: os.PathLike):
    """Parses a JSON file; a missing or unparsable file raises an error naming the path."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"expected file missing: {os.fspath(path)}")
    try:
        with open(path, "r") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{os.fspath(path)}: invalid JSON ({e})") from None


def is_numeric(value) -> bool:
    """True when `value` (a parsed JSON or pickle entry) converts to a float64 array."""
    try:
        np.asarray(value, dtype=np.float64)
        return True
    except (TypeError, ValueError):
        return False


def read_image(path: os.PathLike, where: str) -> Tuple[bytes, Tuple[int, int]]:
    """Reads an RGB JPEG/PNG file and decodes it fully to prove it is intact.

    Returns:
      (the file's bytes, (H, W)). The bytes are stored as they are (no re-encoding).
    Raises:
      BadRecordError naming `where` for an undecodable or truncated file, another format, or a
      mode other than RGB (grey or RGBA images would be converted silently at decode time).
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            fmt, mode, (w, h) = im.format, im.mode, im.size
    except Exception as e:  # PIL raises several types for bad bytes
        raise BadRecordError(where, f"cannot decode image ({type(e).__name__}: {e})") from None
    if fmt not in ("JPEG", "MPO", "PNG"):  # MPO: a camera JPEG with extra frames appended
        raise BadRecordError(where, f"image format {fmt} is not JPEG or PNG")
    if mode != "RGB":
        raise BadRecordError(where, f"image mode is {mode}, expected RGB")
    return data, (h, w)


def read_label_image(path: os.PathLike, where: str, allow_rgb: bool = False) -> np.ndarray:
    """Reads a single-channel image (mask or label map) -> (H, W) uint8 raw values.

    Modes 'L' and 'P' (palette indices) are returned as stored; mode '1' as 0/1. With
    allow_rgb, an RGB file (e.g. a JPEG mask saved with three channels) is converted to grey by
    PIL's luminance transform. Anything else raises BadRecordError naming `where`.
    """
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode == "1":
                arr = np.asarray(im, dtype=np.uint8)
            elif mode in ("L", "P"):
                arr = np.asarray(im)
            elif mode == "RGB" and allow_rgb:
                arr = np.asarray(im.convert("L"))
            else:
                raise BadRecordError(where, f"label image mode {mode} is not single-channel")
    except BadRecordError:
        raise
    except Exception as e:
        raise BadRecordError(where, f"cannot decode image ({type(e).__name__}: {e})") from None
    return np.asarray(arr, dtype=np.uint8)


class HandBuilder(tfds.core.GeneratorBasedBuilder):
    """Abstract base of the hand builders: canonical features and the bad-record policy.

    Subclasses set HOMEPAGE, IMAGE_FORMAT and DESCRIPTION, implement `_split_generators` and
    `_generate_examples`, and convert records through `self._convert_all(split, records, fn)`
    (or call `self._bad_record(split, err)` from an `except BadRecordError` block).
    """

    HOMEPAGE: str = ""
    IMAGE_FORMAT: Optional[str] = "jpeg"
    DESCRIPTION: str = ""

    def __init__(self, *, skip_bad_records: bool = False, **kwargs):
        """kwargs: tfds builder kwargs (data_dir, config, version, file_format)."""
        if not isinstance(skip_bad_records, bool):
            raise TypeError(f"skip_bad_records must be a bool, got {skip_bad_records!r}")
        self._skip_bad_records = skip_bad_records
        self._reset_report()
        super().__init__(**kwargs)
        self._original_state["skip_bad_records"] = skip_bad_records  # survives pickling

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=self.DESCRIPTION,
            features=schema.features(self.IMAGE_FORMAT),
            homepage=self.HOMEPAGE,
            metadata=tfds.core.MetadataDict(),
        )

    # -- bad-record policy -----------------------------------------------------------------

    def _reset_report(self) -> None:
        self._skipped = collections.defaultdict(list)
        self._counts = collections.defaultdict(collections.Counter)

    def _bad_record(self, split: str, err: BadRecordError) -> None:
        """Re-raises err, or (skip_bad_records=True) records it as skipped."""
        if not self._skip_bad_records:
            raise err
        self._skipped[split].append({"where": err.where, "reason": err.reason})

    def _count(self, split: str, name: str, n: int = 1) -> None:
        """Adds to a dataset-specific tally stored in the build report."""
        self._counts[split][name] += n

    def _convert_all(self, split: str, records: Iterable, convert: Callable) -> Iterator:
        """Yields the (key, example) pairs of convert(record) for every record.

        convert returns a list of pairs (0, 1 or more: one record may hold several hands). A
        BadRecordError from it follows the bad-record policy (raise, or skip and record).
        """
        self._skipped.setdefault(split, [])  # the report lists every split, even with none
        self._counts.setdefault(split, collections.Counter())
        for record in records:
            try:
                items = convert(record)
            except BadRecordError as err:
                self._bad_record(split, err)
                continue
            yield from items

    def _download_and_prepare(self, dl_manager, download_config):
        self._reset_report()
        super()._download_and_prepare(dl_manager=dl_manager, download_config=download_config)
        report = self.build_report()
        n = sum(report["num_skipped"].values())
        if n:
            listing = "\n  ".join(
                f"[{split}] {r['where']}: {r['reason']}"
                for split, recs in report["skipped"].items()
                for r in recs
            )
            log.warning(
                "%s: skipped %d bad record(s) (skip_bad_records=True) %s:\n  %s",
                self.name, n, report["num_skipped"], listing,
            )
        self.info.metadata["build_report"] = report

    def build_report(self) -> dict:
        """The report of the current build (see the module docstring for the format)."""
        return {
            "skip_bad_records": self._skip_bad_records,
            "skipped": {k: list(v) for k, v in self._skipped.items()},
            "num_skipped": {k: len(v) for k, v in self._skipped.items()},
            "counts": {k: dict(v) for k, v in self._counts.items()},
        }
