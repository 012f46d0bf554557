"""datasets/augment.py: photometric augmentation."""
import numpy as np
import tensorflow as tf

from datasets import augment


def test_blur_by_shifts_matches_convolution():
    """The XLA path's blur (shifted sums) equals the TF path's (depthwise convolutions)."""
    image = tf.random.stateless_uniform((40, 56, 3), (1, 2))
    a = augment.gaussian_blur(image, 1.2, 4)
    b = augment.gaussian_blur(image, 1.2, 4, by_shifts=True)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    assert np.abs(a.numpy() - image.numpy()).max() > 0.1  # it does blur
