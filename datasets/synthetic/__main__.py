"""python -m datasets.synthetic: see datasets/synthetic/__init__.py."""
import sys

from .generator import main

sys.exit(main())
