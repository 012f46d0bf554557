"""mano_jax: the MANO hand model as pure JAX functions (no Flax, no TensorFlow).

    model = mano_jax.procedural_model()              # or mano_jax.load_model("MANO_RIGHT.pkl")
    out = mano_jax.forward(model, pose, betas, flat_hand_mean=False)
    out.vertices  # (B, 778, 3) metres;  out.joints (B, 21, 3);  out.skeleton (B, 16, 3)
"""
from mano_jax.model import (
    JOINT_NAMES,
    MANO_PARENTS,
    NUM_FACES,
    NUM_JOINTS,
    NUM_VERTICES,
    MANOModel,
    fix_left_shapedirs,
    model_from_arrays,
    model_to_arrays,
)
from mano_jax import rotations
from mano_jax.lbs import MANOOutput, TIP_PRESETS, forward
from mano_jax.procedural import procedural_model
from mano_jax.io import load_model, save_npz, save_pkl
