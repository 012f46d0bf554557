"""`python -m mano_jax.procedural OUT.pkl`: writes the procedural hand in the official format."""
from __future__ import annotations

import argparse

from mano_jax import io as mano_io
from mano_jax.model import NUM_FACES, NUM_VERTICES
from mano_jax.procedural.build import procedural_model


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m mano_jax.procedural",
        description="Write the open procedural hand in the official MANO file format.")
    parser.add_argument("out", help="output path, .pkl (official pickle layout) or .npz")
    parser.add_argument("--side", choices=("right", "left"), default="right")
    args = parser.parse_args(argv)
    model = procedural_model(args.side)
    if args.out.endswith(".pkl"):
        mano_io.save_pkl(model, args.out)
    elif args.out.endswith(".npz"):
        mano_io.save_npz(model, args.out)
    else:
        parser.error(f"output must end in .pkl or .npz, got {args.out!r}")
    print(f"wrote the procedural {args.side} hand ({NUM_VERTICES} vertices, {NUM_FACES} faces) "
          f"to {args.out}")


if __name__ == "__main__":
    main()
