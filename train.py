"""HIU-JAX training: the main job.

Training (data-parallel over every device and host, Orbax checkpoints, the synthetic default data)
is not implemented yet; see the open train.py issue. This entry point says so instead of failing
obscurely, so the README's quick start stays honest.
"""
import sys


def main() -> int:
    print("train.py: training is not available yet. What works today is the MANO layer and the "
          "procedural hand (mano_jax); see README.md.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
