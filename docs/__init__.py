"""Scripts that draw the documentation's figures. Run them from the repository root as modules,
e.g. `python -m docs.make_hand_figure`: the root is then on sys.path, so the repository's
`datasets` package imports (it is not installed, see pyproject.toml)."""
