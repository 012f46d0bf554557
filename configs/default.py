"""The default experiment: a small HIU-DMTL on the synthetic hands; runs on a laptop CPU.

Use as `--config configs/default.py` (the default of train.py) and override any field with
`--config.model.num_stacks=1` etc. Full scale: configs/freihand.py; tests: configs/tiny.py.
"""
import ml_collections


def model_config(size: str = "small") -> ml_collections.ConfigDict:
    """The `model` block. size: "full" (ResNet-50 body per stack, paper scale), "small", "tiny"."""
    m = ml_collections.ConfigDict()
    m.num_stacks = 2
    m.stem_channels = (64, 128)
    m.stem_kernel = 7  # the paper's 7x7 stride-2 stem convolutions
    m.encoder_widths = (64, 128, 256, 512)  # bottleneck widths; outputs are 4x these
    m.encoder_blocks = (3, 4, 6, 3)  # ResNet-50
    m.decoder_width = 256
    m.feature_channels = (256, 512, 1024, 2048)  # 64 -> 32 -> 16 -> 8 -> 4 px, then pooled
    m.heatmap_size = 64
    m.mask_size = 256
    m.regressor_hidden = (1024, 1024)
    m.regressor_iterations = 3
    m.regressor_dropout = 0.0
    # GELU, not ReLU: its derivative is continuous, so data-parallel gradients equal one
    # device's to float32 rounding (ReLU's kink at 0 makes them differ by up to ~1e-3 at some
    # steps; models.py), and it learns better: at 2000 steps of the default recipe PA-MPJPE
    # -0.67 +- 0.09 mm, rotation -3.7 +- 1.0 deg, heat-map 2D -0.48 +- 0.05 px, at the same
    # images/s (docs/ablations.md).
    m.activation = "gelu"  # or "relu"
    m.pose_parameterisation = "axis_angle"  # fingers: or "pca" (pca_components) or "rot6d"
    m.global_rotation = "rot6d"  # continuous 6D (no wrap at pi), or "axis_angle"
    m.pca_components = 12
    m.init_cam_scale = 1.2  # s = init_cam_scale * exp(theta_s): HMR's start at the data's mean
    # The regressor's starting global rotation (axis-angle, camera frame): the procedural hand
    # with its fingers up and its palm plane facing the camera, the centre of the synthetic
    # "freihand" viewpoints (datasets/synthetic_generator/placement.py: target frame at
    # a = e = 0, roll pi / 2).
    m.init_global_rot = (1.1263, -1.2277, -1.293)
    m.beta_limit = 3.0  # betas = 3 tanh(theta / 3): within 3 standard deviations of the mean
    m.coarse_to_fine_inputs = True  # the regressor reads the heat-map keypoints and pooled POF
    m.regressor_stop_gradient = False  # True: mesh losses do not reach the stacks
    m.regressor_gradient_scale = 1.0  # else: their gradient into the stacks, times this
    m.zero_init_heads = False  # True: heat-map, mask and POF heads start at zero, not noise
    m.keypoint_temperature = 0.04  # soft-argmax temperature of those keypoints
    m.mano_path = ""  # a MANO_RIGHT.pkl/.npz; empty = the procedural hand
    if size == "small":  # sized for 2 CPU cores: ~0.3 GFLOP per 128 px image
        m.stem_channels = (16, 32)
        m.stem_kernel = 3  # XLA's CPU backward of 7x7 stride-2 convolutions is ~6x their forward
        m.encoder_widths = (16, 32, 64, 128)
        m.encoder_blocks = (1, 1, 1, 1)
        m.decoder_width = 32
        m.feature_channels = (64, 128, 256, 256)
        m.regressor_hidden = (256, 256)
        m.regressor_stop_gradient = True
    elif size == "tiny":
        m.num_stacks = 2
        m.stem_channels = (8, 16)
        m.encoder_widths = (4, 8, 8, 16)
        m.encoder_blocks = (1, 1, 1, 1)
        m.decoder_width = 16
        m.feature_channels = (32, 32, 64, 64)
        m.regressor_hidden = (64, 64)
    elif size != "full":
        raise ValueError(f"size must be 'full', 'small' or 'tiny', got {size!r}")
    return m


def get_config() -> ml_collections.ConfigDict:
    """The default run: `python train.py` on a fresh machine.

    It generates the synthetic hands into data.synthetic_dir if they are not there, builds them
    with TFDS into pipeline.data_dir and trains the small network at 96 x 96 on them.
    """
    config = ml_collections.ConfigDict()
    config.seed = 0
    # The run's length. Every step count below that derives from it is a reference to it
    # (warmup, the loss ramp, the validation, checkpoint and image cadences; the "step"
    # schedule's decay points are fractions of it): `--config.num_train_steps=N` alone scales
    # them all. Override one of them explicitly to fix it.
    config.num_train_steps = 5500  # ~40 minutes with data generation on 2 CPU cores
    steps = config.get_ref("num_train_steps")
    config.model = model_config("small")
    config.crop_size = 96  # the network input; the paper (configs/freihand.py) uses 256
    config.model.heatmap_size = 24
    config.model.mask_size = 48  # the mask head sees 24 x 24 features

    # Data: the synthetic hands (generated on first use), mixed by pipeline.mixture_weights.
    config.data = ml_collections.ConfigDict()
    config.data.synthetic_dir = "data/synthetic"  # generated here if missing (FreiHAND layout)
    config.data.synthetic_num_train = 8192  # ~2 minutes to generate on 2 CPU cores
    config.data.synthetic_num_eval = 1024  # validation: standard errors small enough to compare recipes
    config.data.eval_source = "synthetic_hands"  # the builder evaluated during training
    config.data.eval_split = "test"
    config.data.eval_max_batches = 0  # 0 = the whole split

    # The input pipeline: per-example knobs (their meaning and ranges: datasets/preprocess.py
    # Knobs), the stream (datasets/pipeline.py) and the sources (datasets/registry.py).
    config.pipeline = ml_collections.ConfigDict()
    p = config.pipeline
    p.crop_size = config.get_ref("crop_size")
    p.heatmap_size = config.model.get_ref("heatmap_size")
    p.heatmap_sigma = 2.0
    p.crop_padding = 1.5
    p.min_box_size = 8.0
    p.scale_jitter = 0.25
    p.rotation_deg = 30.0
    p.translation_jitter = 0.1
    p.flip_prob = 0.0
    p.brightness = 0.2
    p.contrast = 0.3
    p.saturation = 0.3
    p.hue = 0.05
    p.blur_prob = 0.1
    p.blur_sigma_min = 0.5
    p.blur_sigma_max = 1.5
    p.noise_std = 0.02
    p.mask_threshold = 0.5
    p.pof_width = 1.0
    p.xla = True  # one XLA program per padded image size: ~1.3x the TF graph's images/s
    # (bench/input_bench.py; the same outputs up to float rounding, datasets/preprocess.py)
    p.shuffle_buffer = 1024  # train: examples per source in the shuffle buffer
    p.seed = config.get_ref("seed")
    p.mixture_weights = ml_collections.ConfigDict({"synthetic_hands": 1.0})  # builder -> weight
    p.data_dir = "data/tfds"  # tfds data_dir ('' = tfds default)
    p.manual_dirs = ml_collections.ConfigDict(  # builder name -> manual_dir (raw files)
        {"synthetic_hands": config.data.get_ref("synthetic_dir")})
    p.builder_configs = ml_collections.ConfigDict()  # builder name -> tfds config, e.g. 'all'

    # The losses (hiu_jax/losses.py; the keys: hiu_jax/loss_registry.py LOSS_KEYS). Term name ->
    # weight; 0 switches a term off (it is then not computed).
    config.loss = ml_collections.ConfigDict()
    config.loss.terms = ml_collections.ConfigDict(dict(
        heatmaps=1000.0,  # MSE of peak-1 Gaussians, per stack (HAMR's heat-map weight)
        heatmap_keypoints=10.0,  # soft-argmax of each stack's heat maps vs the 2D labels: a
        # direct localisation gradient for the stacks
        mask=1.0,  # binary cross-entropy on logits (+ Dice if mask_dice), per stack
        pof=1.0,  # squared error of the POF vectors on the bones' regions, per stack
        keypoints_2d=10.0,  # per regressor iteration; smooth-L1, crop px / crop size
        keypoints_3d=100.0,  # per regressor iteration; L1, metres
        camera=10.0,  # per iteration; squared error to the labels' weak-perspective fit
        vertices=100.0,  # L1, metres
        # mean over 16 joints of |R_pred - R|_F^2: finger articulation does not wait for the
        # global rotation
        mano_pose=20.0,
        global_rotation=5.0,  # |R_pred - R|_F^2 of the global rotation alone
        mano_betas=1.0,  # squared error of the 10 shape coefficients: the shape from its labels
        shape_prior=1e-3,  # ||betas||^2
        pose_prior=1e-4,  # ||finger pose deviation from hands_mean||^2 (radians^2)
        # Self-supervised: the rendered mesh vs the predicted mask. The soft silhouette costs
        # ~40% of a CPU training step at this size; configs/freihand.py (accelerators) keeps it on.
        silhouette=0.0,
        keypoints_consistency=10.0,  # self-supervised: projected mesh joints vs heat-map joints
        pof_consistency=0.1,  # self-supervised: mesh bone directions vs predicted POF
    ))
    config.loss.stack_weights = ()  # one weight per stack; () = 1 for every stack
    config.loss.iteration_weights = ()  # one per regressor iteration; () = 1 for each
    config.loss.keypoint_loss = "smooth_l1"  # or "l1", for keypoints_2d and keypoints_consistency
    config.loss.smooth_l1_beta = 0.01  # smooth-L1 knee, crop-normalised units (2.56 px at 256)
    config.loss.mask_dice = False  # add a Dice loss to the mask term
    config.loss.mask_dice_weight = 1.0  # its weight inside the mask term
    config.loss.silhouette_loss = "l2"  # or "bce" (cross-entropy - target entropy)
    config.loss.silhouette_sigma = 1.0  # soft rasteriser sigma, mask px^2 (edge ~ sqrt(sigma) px)
    # Soft-argmax: softmax(H / T) over the pixels. With peak-1 Gaussian heat maps of sigma s, the
    # weights near the peak are a Gaussian of std s sqrt(T), and the background's mass relative to
    # the peak's is about M^2 exp(-1/T) / (2 pi s^2 T): 6e-8 for T = 0.04, M = 64, s = 2.
    config.loss.softargmax_temperature = 0.04
    config.loss.keypoints_consistency_confidence = True  # weight joints by clip(max heat, 0, 1)
    # "mesh": the 2D bone region of the mesh joints; or "magnitude" (where the POF is long)
    config.loss.pof_consistency_region = "mesh"
    config.loss.pof_consistency_width = 1.0  # half-width of that region, heat-map px
    config.loss.silhouette_size = 0  # side of the rendered silhouette, px; 0 = the mask logits'
    # Self-supervised terms whose targets come from untrained heads are ramped in: their weight is
    # multiplied by clip((step - start) / (end - start), 0, 1); start = end = 0: full weight at
    # once. Here from 1/11 to 3/11 of the run (steps 500 to 1500 of 5500): the consistency terms
    # start once the heat maps localise.
    config.loss.ramp_terms = ("silhouette", "keypoints_consistency", "pof_consistency")
    config.loss.ramp_start_step = steps // 11
    config.loss.ramp_end_step = steps * 3 // 11

    # Optimisation.
    config.batch_size = 16  # global, over all devices of all hosts
    config.learning_rate = 3e-3
    config.warmup_steps = steps * 2 // 55  # 200 of 5500
    config.lr_schedule = "cosine"  # or "step": x lr_decay_factor at each of lr_decay_fractions
    config.lr_decay_fractions = (0.71, 0.89)  # "step": where, as fractions of num_train_steps
    config.lr_decay_factor = 0.1
    config.weight_decay = 1e-4  # AdamW, kernels only (not norms, not biases)
    config.grad_clip_norm = 1.0
    config.grad_accum_steps = 1
    config.half_precision = False  # bfloat16 convolutions, float32 master weights
    config.parallel = "pmap"  # or "mesh": jax.jit over a NamedSharding device mesh
    # Without an accelerator, train.py splits the CPU into this many JAX devices and trains data
    # parallel over them: on 2 cores, 2 devices train at 40 images/s, one at 35, with the cores
    # busier (bench/train_bench.py). Gradients equal one device's to float32 rounding.
    config.cpu_devices = 2
    config.max_nonfinite_steps = 20  # stop after this many consecutive non-finite steps

    # Logging, evaluation, checkpoints: the cadences are 1/11 of the run (500 of 5500 steps:
    # a validation score every few minutes on 2 CPU cores) and 2/11 for images, rounded up.
    config.log_every_steps = 10
    config.eval_every_steps = (steps + 10) // 11
    config.checkpoint_every_steps = (steps + 10) // 11
    config.keep_checkpoints = 3
    config.image_every_steps = (steps * 2 + 10) // 11  # TensorBoard images (skeleton, mask, mesh)
    config.num_images = 4

    # Multi-host: jax.distributed.initialize() when asked here or by the environment
    # (JAX_COORDINATOR_ADDRESS, SLURM, TPU pods). Empty/negative = auto-detect.
    config.distributed = ml_collections.ConfigDict()
    config.distributed.coordinator_address = ""
    config.distributed.num_processes = 0
    config.distributed.process_id = -1
    config.distributed.local_device_ids = ""  # e.g. "0,1"; empty = all

    config.debug_nan_steps = ()  # testing hook: these steps get a NaN image (must be skipped)
    return config
