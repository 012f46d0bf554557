"""python -m datasets.synthetic_generator: see datasets/synthetic_generator/__init__.py."""
import sys

from .generator import main

sys.exit(main())
