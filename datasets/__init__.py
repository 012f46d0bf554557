"""Hand datasets: TFDS builders, the tf.data input pipeline and the synthetic-data generator."""
