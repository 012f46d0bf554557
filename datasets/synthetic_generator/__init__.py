"""The synthetic hand dataset: rendered hands written in the exact FreiHAND layout.

    python -m datasets.synthetic_generator --out DIR --num N [--num-eval M] [--seed S] \
        [--model MANO.pkl]

Each sample is a hand (the procedural model, or a user's right-hand MANO file) in a random
plausible pose and shape, seen from a FreiHAND-like viewpoint (or a uniform one) through
FreiHAND-like intrinsics with the whole hand in the image, with skin detail (palm/back, nails,
creases, texture, light to dark tones), a forearm or sleeve, key/fill/ambient light with
highlights, over a photograph or a procedural natural texture, sometimes partly hidden by
occluders. The mask holds the visible hand's pixels, as FreiHAND's do. Files (same names,
shapes, units and conventions as FreiHAND v2, so `datasets/freihand` reads them with no special
case):

  training/rgb/%08d.jpg, training/mask/%08d.jpg, training_{K,mano,xyz,verts,scale}.json
  evaluation/rgb/%08d.jpg, evaluation_{K,scale,xyz,verts,mano}.json
  evaluation/mask/%08d.jpg   (extra: FreiHAND's evaluation masks are not public)
  synthetic_info.json        (generator settings, for reproducibility)

MANO values follow FreiHAND: 48 pose values with the hand mean ADDED (flat_hand_mean=False),
10 betas, the uv of keypoint 9 and scale = f / z9, so xyz9 = [u - cx, v - cy, f] / scale.
Keypoints are the mesh-regressed joints plus the FreiHAND fingertip vertices, OpenPose order.

Modules: placement (viewpoints, intrinsics, in-frame placement), hands (poses, MANO, forearm),
appearance (skin), skin_lighting (lights), backgrounds, occluders, rasterizer (the only calls into
hiu_jax.render), generator (batching, writing, info, CLI).
"""
from .appearance import NAIL_RADIUS, SKIN_TONES, skin_layout, surface_layout
from .placement import VIEWPOINTS, hand_frame, sample_camera, sample_global_rotation
from .generator import (GENERATOR_VERSION, IMAGE_SIZE, INFO_NAME, SPLITS, dataset_dir,
                       dataset_name, generate, main, read_info)
from .hands import is_procedural, sample_hand_params

__all__ = ["GENERATOR_VERSION", "IMAGE_SIZE", "INFO_NAME", "NAIL_RADIUS", "SKIN_TONES", "SPLITS",
           "VIEWPOINTS", "dataset_dir", "dataset_name", "generate", "hand_frame", "is_procedural",
           "main", "read_info", "sample_camera", "sample_global_rotation", "sample_hand_params",
           "skin_layout", "surface_layout"]
