"""Converts a MANO file between .pkl and .npz, without chumpy and without running pickled code.

    python -m mano_jax.convert MANO_RIGHT.pkl MANO_RIGHT.npz
    python -m mano_jax.convert MANO_LEFT.pkl mano_left_fixed.pkl --fix-left-shapedirs

The output format follows OUT's extension. The output holds the official keys (see
`mano_jax.io.official_arrays`); anything else in the input (e.g. `hands_coeffs`) is not copied.
User errors print one line to stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

from mano_jax.io import load_model, official_arrays, save_npz, save_pkl

WRITERS = {".npz": save_npz, ".pkl": save_pkl}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mano_jax.convert",
        description="Convert a MANO model file (.pkl or .npz) to .npz or a chumpy-free .pkl.",
    )
    parser.add_argument("input", metavar="IN", help="MANO file to read (.pkl or .npz)")
    parser.add_argument("output", metavar="OUT", help="file to write; .npz or .pkl")
    parser.add_argument(
        "--side", choices=("right", "left"), default=None,
        help="hand side; default: from IN's file name (RIGHT/LEFT)",
    )
    parser.add_argument(
        "--fix-left-shapedirs", action="store_true",
        help="negate shapedirs[:, 0, :] (the known MANO_LEFT sign bug; left models only)",
    )
    return parser


def main(argv=None) -> int:
    """Runs the converter; returns 0, or exits with status 2 on a user error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(args.output)
    writer = WRITERS.get(out.suffix.lower())
    if writer is None:
        parser.error(f"OUT must end in .npz or .pkl, got {args.output!r}")
    try:
        model = load_model(args.input, args.side, fix_left_shapedirs=args.fix_left_shapedirs)
        written = writer(model, out)
    except (OSError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        parser.exit(2, f"{parser.prog}: error: {message}\n")
    print(f"wrote {written} (side={model.side})")
    for key, value in official_arrays(model).items():
        shape = getattr(value, "shape", None)
        if shape is not None and shape != ():
            print(f"  {key}: {tuple(shape)} {value.dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
