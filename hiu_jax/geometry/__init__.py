"""The project's shared geometric vocabulary and its conventions, written down once.

Every layer above mano_jax (the network, the losses, the renderer, the input pipeline, the
synthetic generator, evaluation, inference) takes these definitions from here:

  skeleton    the 21 keypoints (names, FreiHAND/OpenPose order), the 20 bones between them,
              the counts NUM_KEYPOINTS (21) and NUM_VERTICES (778, the MANO mesh).
  projection  every projection: the pinhole and its intrinsics check, weak perspective, the
              network's crop camera and its least-squares fit to labels.
  crops       pixel centres, the hand-crop rule, crop matrices and affine maps,
              crop <-> heat-map coordinates.
  warps       the bilinear image warp used to cut crops.

Rotations live one layer down, in mano_jax.rotations (MANO's forward needs them).

Conventions (one everywhere, converted at the edges):

  Units     metres; camera frame OpenCV: x right, y down, z forward (away from the camera).
  Pixels    pixel (column c, row r) has its CENTRE at (u, v) = (c, r) and covers
            [c - 0.5, c + 0.5] x [r - 0.5, r + 0.5]. An image of N columns spans
            u in [-0.5, N - 0.5]. FreiHAND's labels, the pipeline's crops and heat maps, the
            renderer and the metrics all use this convention; nothing adds or subtracts 0.5
            to convert between them. `crops.pixel_centre` is the one place it is code.
  Images    NHWC, float32 in [0, 1] inside the model.

The array functions take an `xp` argument (the array namespace: numpy, jax.numpy or
tensorflow.experimental.numpy), so the NumPy tools, the JAX network and the tf.data pipeline
share one definition of each formula.
"""
from hiu_jax.geometry import crops, projection, skeleton, warps  # noqa: F401
