"""Training augmentation: the random draws of one example, the geometric jitter they give
(crop scale, rotation about the optical axis, centre shift, mirror) and the photometric changes
(colour jitter, Gaussian blur, pixel noise).

Every random number of an example is a stateless function of its seed (`draws`), so a seed
reproduces the example exactly. Pure TF functions (float32), used by datasets/preprocess.py;
`knobs` is a preprocess.Knobs.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

# Luma weights and the RGB -> YIQ matrix, for saturation and hue jitter as linear colour maps.
_LUMA = np.array([0.299, 0.587, 0.114])
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def draws(rng_seed, crop_size: int, train: bool) -> dict:
    """Every random number of one example (stateless, from rng_seed (2,) int): geometry (5,),
    colour (4,) and blur (2,) f32 uniforms in [-1, 1] / [-1, 1] / [0, 1], and the noise bits
    of a crop_size^2 x 3 crop. Not train: the values that switch every augmentation off."""
    keys = tf.random.experimental.stateless_split(tf.cast(rng_seed, tf.int64), 4)
    n = crop_size
    if not train:
        return {"geometry": tf.zeros((5,)), "colour": tf.zeros((4,)), "blur": tf.ones((2,)),
                "noise": tf.zeros(((n * n * 3 + 3) // 4,), tf.int32)}
    return {
        "geometry": tf.random.stateless_uniform((5,), keys[0], -1.0, 1.0),
        "colour": tf.random.stateless_uniform((4,), keys[1], -1.0, 1.0),
        "blur": tf.random.stateless_uniform((2,), keys[2]),
        "noise": noise_bits((n, n, 3), keys[3]),
    }


def crop_jitter(u, side, knobs, train: bool):
    """The geometric augmentation of one example from its geometry draws u (5,) in [-1, 1].

    side () f32: the crop side before jitter, image pixels. Returns (side * (1 + u0 s), theta
    = u1 rotation_deg in radians (about the optical axis), shift (2,) = u2:4 t * jittered side
    (image pixels, added to the crop centre), flip () bool = (u4 + 1) / 2 < flip_prob, False
    when not train), with s = scale_jitter and t = translation_jitter.
    """
    side = side * (1.0 + u[0] * knobs.scale_jitter)
    theta = u[1] * knobs.rotation_deg * (np.pi / 180.0)
    shift = u[2:4] * knobs.translation_jitter * side
    flip = (u[4] + 1.0) / 2.0 < knobs.flip_prob if train else tf.constant(False)
    return side, theta, shift, flip


def photometric(image, draws_: dict, knobs, by_shifts: bool):
    """Colour jitter, then (with probability blur_prob) a Gaussian blur, then pixel noise, each
    only when its knobs are non-zero. image (N, N, 3) f32 in [0, 1]; no clipping. by_shifts:
    see gaussian_blur (the XLA backend)."""
    if knobs.brightness or knobs.contrast or knobs.saturation or knobs.hue:
        image = color_jitter(image, draws_["colour"], knobs.brightness, knobs.contrast,
                             knobs.saturation, knobs.hue)
    if knobs.blur_prob > 0:
        ub = draws_["blur"]
        sigma = knobs.blur_sigma_min + ub[1] * (knobs.blur_sigma_max - knobs.blur_sigma_min)
        radius = int(math.ceil(3.0 * knobs.blur_sigma_max))
        image = tf.cond(ub[0] < knobs.blur_prob,
                        lambda: gaussian_blur(image, sigma, radius, by_shifts=by_shifts),
                        lambda: image)
    if knobs.noise_std > 0:
        n = knobs.crop_size
        image = image + uniform_noise(draws_["noise"], (n, n, 3), knobs.noise_std)
    return image


def color_jitter(image, u, brightness, contrast, saturation, hue):
    """Brightness, contrast, saturation and hue jitter as ONE affine colour map (cheap).

    image (H, W, 3) f32 in [0, 1]; u (4,) f32 uniform draws in [-1, 1] giving
    b = u0 brightness, c = 1 + u1 contrast, s = 1 + u2 saturation, h = u3 hue turns. Applies
    x -> H_h Sat_s (c (x + b - mu) + mu), mu = per-channel mean of x + b (over every 4th row and
    column); Sat_s = grey + s (x - grey) with luma grey; H_h rotates YIQ chroma by 2 pi h.
    No clipping.
    """
    b, c = u[0] * brightness, 1.0 + u[1] * contrast
    s, h = 1.0 + u[2] * saturation, u[3] * hue * 2.0 * np.pi
    luma = tf.constant(_LUMA, tf.float32)
    sat = s * tf.eye(3) + (1.0 - s) * tf.ones((3, 1)) * luma[None, :]
    ch, sh = tf.cos(h), tf.sin(h)
    rot = tf.stack([tf.constant([1.0, 0.0, 0.0]), tf.stack([0.0, ch, -sh]),
                    tf.stack([0.0, sh, ch])])
    colour = tf.constant(_YIQ_TO_RGB, tf.float32) @ rot @ tf.constant(_RGB_TO_YIQ, tf.float32)
    lin = colour @ sat  # (3, 3)
    mean = tf.reduce_mean(image[::4, ::4], axis=(0, 1))  # every 16th pixel: cheap, enough
    offset = tf.linalg.matvec(lin, (1.0 - c) * mean + b)
    flat = tf.linalg.matmul(tf.reshape(image, (-1, 3)), c * lin, transpose_b=True)
    return tf.reshape(flat, tf.shape(image)) + offset


def gaussian_blur(image, sigma, radius: int, by_shifts: bool = False):
    """image (H, W, C) f32, sigma () px -> separable Gaussian blur, reflect-padded, same shape.

    radius: static kernel half-size (>= 3 sigma of the largest sigma used). by_shifts: sum
    2 radius + 1 shifted copies per axis instead of depthwise convolutions (for XLA, whose CPU
    depthwise convolution is ~20x slower; in a TF graph the convolutions are faster).
    """
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-tf.square(x) / (2.0 * sigma**2))
    k = k / tf.reduce_sum(k)
    img = tf.pad(image, [[radius, radius], [radius, radius], [0, 0]], "REFLECT")
    if by_shifts:
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        img = tf.add_n([k[i] * img[:, i:i + w] for i in range(2 * radius + 1)])
        return tf.add_n([k[i] * img[i:i + h] for i in range(2 * radius + 1)])
    channels = image.shape[-1]
    kx = tf.tile(tf.reshape(k, (1, -1, 1, 1)), (1, 1, channels, 1))
    ky = tf.reshape(kx, (-1, 1, channels, 1))
    img = tf.nn.depthwise_conv2d(img[None], kx, (1, 1, 1, 1), "VALID")
    img = tf.nn.depthwise_conv2d(img, ky, (1, 1, 1, 1), "VALID")
    return img[0]


def noise_bits(shape, seed):
    """The random bytes of uniform_noise: int32 ((prod(shape) + 3) // 4,), 4 bytes per draw."""
    n = int(np.prod(shape))
    return tf.random.stateless_uniform(((n + 3) // 4,), seed, dtype=tf.int32, minval=None,
                                       maxval=None)


def uniform_noise(bits, shape, std: float):
    """Zero-mean noise of standard deviation `std`, uniform on 256 levels, f32 of `shape`, from
    noise_bits(shape, seed) (one random byte per value: ~8x cheaper than stateless_normal,
    which dominated the per-example cost). Levels 0..255 have mean 127.5 and standard
    deviation sqrt((256^2 - 1) / 12); they are shifted and scaled to mean 0, std `std`."""
    n = int(np.prod(shape))
    levels = tf.reshape(tf.bitcast(bits, tf.uint8), (-1,))[:n]
    step = std / math.sqrt((256.0**2 - 1.0) / 12.0)
    return tf.reshape((tf.cast(levels, tf.float32) - 127.5) * step, shape)
