"""HIU-JAX training: the main job.

    python train.py                                      # synthetic hands, default config
    python train.py --config configs/freihand.py --workdir runs/freihand
    python train.py --config.num_train_steps=500 --config.parallel=mesh

Flags (the convention of train.py, eval.py and infer.py, hiu_jax/runs.py):
--config FILE (default configs/default.py), --config.KEY=VALUE overrides (typed by the config,
ml_collections' config_flags parser), --workdir DIR (default runs/<config file name>),
--verbose (absl INFO logging). One argparse parser for the three scripts: the same flags parse
in-process (tests call main(argv)), with positional arguments (infer's images) and one-line
errors (exit 2).

On a fresh machine the default run generates the synthetic dataset (under data/synthetic, one
directory per set, e.g. n8192_e1024_s0_v3: datasets/registry.py synthetic_set), builds it with
TFDS (data/tfds) and trains the small network on every local device. Outputs go to the
work directory (default runs/<config name>): checkpoints/ (Orbax: last N and best), metrics.jsonl
(one JSON object per log step), TensorBoard events, config.json and config_source.json (the
config file and overrides, from which eval.py and infer rebuild the config exactly). Restarting with the same
work directory resumes from the newest checkpoint, on the same batches as an uninterrupted run.
SIGTERM or Ctrl-C saves a checkpoint at the current step and exits with status 128 + the
signal's number (`preempted_exit_status`: 143 for SIGTERM, 130 for Ctrl-C), so a scheduler can
tell a preempted run, to be resumed, from a finished one (0) and a failed one (1; 2 for a bad
command line).
"""
from __future__ import annotations

import collections
import os
import signal
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import logging  # noqa: E402

from hiu_jax import runs  # noqa: E402

DEFAULT_CONFIG = "configs/default.py"
# Steps dispatched ahead of the one the loop waits for. JAX dispatches asynchronously: without a
# bound the loop ran ~log_every_steps steps ahead, drained the input pipeline's prefetch buffer
# in a burst, then waited at the log step with the pipeline idle (its buffer full) while the
# device caught up. Waiting for step N - 2 before step N + 1 pulls one batch per step time, so
# tf.data works beside the step all the time (2 CPU cores: 153% busy -> see bench/train_bench.py).
STEPS_IN_FLIGHT = 2


class StopRequested(Exception):
    """Raised inside the loop's bookkeeping when SIGTERM/SIGINT arrived."""


class Preempted(Exception):
    """train_and_evaluate saved a checkpoint and stopped on a signal; args[0] is its name."""


def preempted_exit_status(signal_name: str) -> int:
    """The exit status after a preemption save: 128 + the signal number, as a shell reports a
    process killed by it (SIGTERM 143, SIGINT 130)."""
    return 128 + int(signal.Signals[signal_name])


def check_config(config) -> None:
    """Start-up checks of values the loop divides by or relies on, before JAX or TensorFlow is
    imported (a bad value fails in a fraction of a second); ValueError naming the key."""
    if config.parallel not in ("pmap", "mesh"):
        raise ValueError(f"parallel must be 'pmap' or 'mesh', got {config.parallel!r}")
    for key in sorted(k for k in config.keys() if k.endswith("_every_steps")):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"config.{key} must be a positive number of steps, got {value!r}")


def check_writable_dir(path: str, what: str) -> None:
    """Creates `path` if needed and checks that files can be created in it (so a read-only
    directory fails here, in one line, and not later in an asynchronous checkpoint save)."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the {what} {path}: {e.strerror or e}") from None
    if not os.path.isdir(path):
        raise ValueError(f"the {what} {path} is not a directory")
    probe = os.path.join(path, f".write_test.{os.getpid()}")
    try:
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"the {what} {path} is not writable: {e.strerror or e}") from None


class _Signals:
    """Turns SIGTERM and SIGINT into a flag the training loop checks after every step."""

    def __init__(self):
        self.received = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        if self.received is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        logging.warning("%s received: saving a checkpoint at the current step, then exiting",
                        self.received)


HOST_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def split_cpu_into_devices(count) -> None:
    """Asks XLA for `count` JAX devices on the host CPU (config.cpu_devices), so that on a
    machine without an accelerator the step runs data parallel over them (pmap, as over GPUs):
    one device leaves cores idle while XLA's CPU kernels wait on each other. Does nothing when
    JAX has already started (it reads XLA_FLAGS once) or XLA_FLAGS already sets the count; on
    a host with an accelerator the CPU devices are not the ones that train."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"config.cpu_devices must be an int >= 1, got {count!r}")
    flags = os.environ.get("XLA_FLAGS", "")
    if "jax" in sys.modules or HOST_DEVICE_FLAG in flags:
        return
    os.environ["XLA_FLAGS"] = f"{flags} {HOST_DEVICE_FLAG}={count}".strip()


def maybe_initialize_distributed(config) -> None:
    """jax.distributed.initialize when the config or the environment asks for a multi-host run."""
    import jax

    d = config.distributed
    env = any(k in os.environ for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID",
                                        "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES"))
    if not d.coordinator_address and not env:
        return
    kwargs = {}
    if d.coordinator_address:
        kwargs.update(coordinator_address=d.coordinator_address, num_processes=d.num_processes,
                      process_id=d.process_id)
        if d.num_processes < 1 or not 0 <= d.process_id < d.num_processes:
            raise ValueError(f"distributed: process_id {d.process_id} / num_processes "
                             f"{d.num_processes} are not a valid pair")
    if d.local_device_ids:
        kwargs["local_device_ids"] = [int(i) for i in str(d.local_device_ids).split(",")]
    jax.distributed.initialize(**kwargs)


def train_and_evaluate(config, workdir: str, source=None) -> dict:
    """Runs (or resumes) training. Returns the final metrics. Raises on unrecoverable errors.
    source: (config file, overrides) to record in the workdir (runs.write_config_record)."""
    check_config(config)
    import jax
    import numpy as np
    import tensorflow as tf
    from flax import jax_utils
    from tqdm import tqdm

    from datasets import pipeline, registry
    from hiu_jax import checkpoint, evaluation, loss_registry, models, training
    from hiu_jax.logs import MetricWriter

    tf.config.set_visible_devices([], "GPU")  # tf.data only: never take accelerator memory
    if config.batch_size % jax.device_count():
        hint = (" (on a CPU, --config.cpu_devices=1 trains on one device)"
                if jax.default_backend() == "cpu" else "")
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                         f"{jax.device_count()} devices{hint}")
    loss_registry.check_label_hand_model(
        config.loss, [n for n in config.pipeline.mixture_weights.keys()
                      if n in registry.MANO_LABELLED and config.pipeline.mixture_weights[n] > 0],
        config.model.mano_path)
    check_writable_dir(workdir, "work directory")
    check_writable_dir(os.path.join(workdir, "checkpoints"), "checkpoint directory")
    for which in ("last", "best"):
        if os.path.isdir(os.path.join(workdir, "checkpoints", which)):
            check_writable_dir(os.path.join(workdir, "checkpoints", which), "checkpoint directory")
    writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
    writer.write_config(config)
    if source is not None and jax.process_index() == 0:
        runs.write_config_record(workdir, *source)
    settings = pipeline.settings_from_config(config.pipeline)
    # The synthetic set generated on first use; process 0 builds first, other hosts wait.
    run_sources = registry.sources_from_config(config)  # the synthetic set made once, here
    sources = registry.build(run_sources)

    model_pmap = models.build_model(config.model, bn_axis_name="batch" if config.parallel == "pmap"
                                    else None, half_precision=config.half_precision)
    mano_model = model_pmap.mano_model
    rng = jax.random.key(config.seed)
    state = training.create_train_state(model_pmap, config, rng,
                                        (1, config.crop_size, config.crop_size, 3))
    ckpts = checkpoint.Checkpoints(workdir, keep=config.keep_checkpoints)
    start_step = 0
    restored = ckpts.restore(state)
    if restored is not None:
        state, meta = restored
        start_step = int(state.step)
        logging.info("resumed from %s at step %d", workdir, start_step)
        print(f"Resuming {workdir} at step {start_step}", flush=True)
    if start_step >= config.num_train_steps:
        print(f"{workdir} already finished ({start_step} of {config.num_train_steps} steps)")
        ckpts.close()
        return {}

    batches = pipeline.make_dataset(sources, "train", weights=settings.sources.weights,
                                    config=settings,
                                    global_batch_size=config.batch_size, train=True,
                                    seed=config.seed, start_batch=start_step)
    evaluator = evaluation.Evaluator(model_pmap.clone(bn_axis_name=None), mano_model)
    eval_builder, = registry.build(run_sources, [config.data.eval_source])

    def eval_batches():
        return pipeline.make_dataset(eval_builder, config.data.eval_split, config=settings,
                                     global_batch_size=config.batch_size, train=False)

    schedule = training.learning_rate_schedule(config)

    if config.parallel == "pmap":
        step_fn = training.pmap_step(config.loss, mano_model)
        device_state = training.replicate(state)
        unreplicate = jax_utils.unreplicate
        to_device = lambda b: b  # noqa: E731  pmap shards the leading device axis itself
    else:
        mesh = training.make_mesh()
        step_fn = training.mesh_step(config.loss, mano_model, mesh)
        device_state = jax.device_put(state, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
        unreplicate = lambda s: s  # noqa: E731
        to_device = lambda b: training.global_batch_from_local(b, mesh)  # noqa: E731

    signals = _Signals()
    images_per_step = config.batch_size
    bar = tqdm(total=config.num_train_steps, initial=start_step, desc="train", unit="step",
               disable=jax.process_index() != 0, dynamic_ncols=True)
    last = {}
    tick, ticked_step, cpu_tick = time.perf_counter(), start_step, time.process_time()
    in_flight = collections.deque()
    step = start_step
    try:
        for step in range(start_step, config.num_train_steps):
            batch = next(batches)
            if step in tuple(config.debug_nan_steps):
                batch = dict(batch, image=np.full_like(batch["image"], np.nan))
            device_state, metrics = step_fn(device_state, to_device(batch))
            in_flight.append(metrics["loss"])
            if len(in_flight) > STEPS_IN_FLIGHT:  # see STEPS_IN_FLIGHT
                jax.block_until_ready(in_flight.popleft())
            done = step + 1
            if done % config.log_every_steps == 0 or done == config.num_train_steps:
                metrics = jax.tree.map(lambda x: float(np.asarray(x).reshape(-1)[0]),
                                       jax.device_get(metrics))
                now, cpu_now = time.perf_counter(), time.process_time()
                rate = (done - ticked_step) * images_per_step / max(now - tick, 1e-9)
                # CPU time of every thread of this process (steps, input pipeline) per second
                cpu_percent = 100.0 * (cpu_now - cpu_tick) / max(now - tick, 1e-9)
                tick, ticked_step, cpu_tick = now, done, cpu_now
                metrics.update(step=done, learning_rate=float(schedule(done - 1)),
                               images_per_second=rate, cpu_percent=cpu_percent)
                run = int(np.asarray(jax.device_get(device_state.nonfinite_run)).reshape(-1)[0])
                metrics["nonfinite_steps"] = int(np.asarray(jax.device_get(
                    device_state.nonfinite_total)).reshape(-1)[0])
                writer.scalars(done, metrics)
                bar.set_postfix(loss=f"{metrics['loss']:.4g}", img_s=f"{rate:.1f}")
                last = metrics
                if run >= config.max_nonfinite_steps:
                    raise FloatingPointError(
                        f"{run} consecutive steps had a non-finite loss or gradient (last at step "
                        f"{done}); the parameters were left untouched. Lower the learning rate or "
                        f"check the data; the last good checkpoint is in {workdir}/checkpoints")
            bar.update(1)
            if done % config.checkpoint_every_steps == 0 or done == config.num_train_steps:
                ckpts.save(done, unreplicate(device_state), {"step": done}, force=True)
            if done % config.eval_every_steps == 0 or done == config.num_train_steps:
                host_state = unreplicate(device_state)
                result = evaluator.evaluate(host_state, eval_batches(), progress=False,
                                            max_batches=config.data.eval_max_batches)
                scores = evaluation.validation_values(result)
                if jax.process_index() == 0:
                    evaluation.save_linear(validation_path(workdir, done), result)
                writer.scalars(done, {f"eval/{k}": v for k, v in scores.items()
                                      if isinstance(v, (int, float))})
                ckpts.save_best(done, host_state, {"step": done}, scores)
                last.update({f"eval/{k}": v for k, v in scores.items()})
                tqdm.write(f"step {done}: {evaluation.summary(scores)}")
            if done % config.image_every_steps == 0 or done == config.num_train_steps:
                writer.images(done, evaluator.panels(unreplicate(device_state), eval_batches(),
                                                     config.num_images))
            if signals.received:
                if ckpts.latest_step() != done:  # not saved at this step already (Orbax refuses)
                    ckpts.save(done, unreplicate(device_state), {"step": done}, force=True)
                raise StopRequested(signals.received)
    except StopRequested as stop:
        ckpts.wait()
        print(f"\n{stop}: saved a checkpoint at step {step + 1} in {workdir}/checkpoints; "
              "run the same command to resume", flush=True)
        raise Preempted(str(stop)) from None
    finally:
        bar.close()
        ckpts.wait()
        ckpts.close()
        writer.close()
        if jax.process_index() == 0:
            write_curves(workdir)
    print(f"Done: {config.num_train_steps} steps. Checkpoints in {workdir}/checkpoints, metrics "
          f"in {workdir}/metrics.jsonl, validation curves in {workdir}/{CURVES_NAME}, "
          f"TensorBoard: tensorboard --logdir {workdir}", flush=True)
    return last


CURVES_NAME = "validation_curves.png"


def validation_path(workdir: str, step: int) -> str:
    """<workdir>/validation/step_<step>.npz: the per-sample values behind that validation's
    scores (evaluation.save_linear), from which paired differences between runs follow."""
    return os.path.join(workdir, "validation", f"step_{int(step)}.npz")


def write_curves(workdir: str) -> None:
    """<workdir>/validation_curves.png from metrics.jsonl (at the end of a run, also after a
    preemption or an error: a plotting problem is logged, never raised over the run's own)."""
    from hiu_jax import logs

    try:
        logs.plot_validation_curves(logs.read_metrics(workdir), os.path.join(workdir, CURVES_NAME))
    except Exception as e:  # noqa: BLE001 - the curves must not hide the run's own outcome
        logging.warning("could not plot the validation curves of %s: %s", workdir, e)


def parse_args(argv):
    """(config, config file, overrides, workdir, verbose) of the command line; a bad flag or
    override exits 2 with one line (hiu_jax/runs.py's convention)."""
    parser = runs.ArgumentParser(
        prog="train.py", description="HIU-JAX training. --config.KEY=VALUE overrides a value of "
                                     "the config file.")
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"experiment config file (default {DEFAULT_CONFIG})")
    parser.add_argument("--workdir", help="work directory (default: runs/<config file name>)")
    parser.add_argument("--verbose", action="store_true", help="absl INFO logging")
    args = parser.parse_args(argv)
    try:
        config = runs.apply_overrides(runs.load_config_file(args.config), args.overrides)
    except runs.UserError as e:
        print(f"train.py: {e}", file=sys.stderr)
        sys.exit(2)
    workdir = args.workdir or os.path.join(
        "runs", os.path.splitext(os.path.basename(args.config))[0])
    return config, args.config, args.overrides, workdir, args.verbose


def main(argv=None):
    config, config_file, overrides, workdir, verbose = parse_args(
        sys.argv[1:] if argv is None else argv)
    # keep the console to the progress bar and results
    logging.set_verbosity(logging.INFO if verbose else logging.WARNING)
    try:
        split_cpu_into_devices(config.cpu_devices)
    except ValueError as e:
        print(f"train.py: {e}", file=sys.stderr)
        sys.exit(2)
    maybe_initialize_distributed(config)
    try:
        train_and_evaluate(config, workdir, (config_file, overrides))
    except Preempted as stop:
        sys.exit(preempted_exit_status(stop.args[0]))
    except (FloatingPointError, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"train.py: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
