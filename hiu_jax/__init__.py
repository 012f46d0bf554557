"""hiu_jax: the HIU-DMTL network, the renderer, the losses, the metrics and inference."""
