"""A training run's work directory: its checkpoints, its config exactly as trained, its model.

The command-line convention of train.py, eval.py and infer.py:

    --workdir DIR              the run's work directory (config.json, config_source.json,
                               checkpoints/)
    --checkpoint DIR           (eval, infer) a work directory, its checkpoints/ or
                               checkpoints/last|best
    --which last|best          (eval, infer) which checkpoint (default last)
    --config FILE              a config file (train: default configs/default.py; eval and infer:
                               default the run's recorded one)
    --config.KEY=VALUE         an override of one config value, parsed by ml_collections'
                               config_flags exactly as absl would (types from the config)

train.py writes <workdir>/config.json (the resolved config) and <workdir>/config_source.json
(`RECORD_NAME`): the config file, the command-line overrides in order, and the config blocks
train.py itself replaced at start-up (the synthetic set's directories). `run_config` rebuilds
the run's config from that record (the file's get_config(), the overrides, the replaced
blocks) and checks that it equals config.json, so a config file edited since the run is
reported instead of silently used.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

WHICH = ("last", "best")
RECORD_NAME = "config_source.json"
CONFIG_JSON = "config.json"
OVERRIDE_PREFIX = "--config."


class UserError(Exception):
    """Bad input from the command line or the files it names; reported in one line, exit 2."""


# --------------------------------------------------------------------------- checkpoints


def _steps_in(directory: str) -> list:
    """Finished Orbax steps (integer-named subdirectories) of a checkpoints/<which> directory."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(n) for n in os.listdir(directory)
                  if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


def resolve_checkpoint(path: str, which: Optional[str] = None) -> tuple[str, str]:
    """(workdir, which) of a work directory, its checkpoints/ dir, or checkpoints/last|best.

    which: "last" or "best", or None: the directory's own name for checkpoints/last|best, else
    "last". Raises UserError naming the path when it holds no finished checkpoint, or when
    `which` contradicts a checkpoints/last|best path.
    """
    if which is not None and which not in WHICH:
        raise UserError(f"--which must be one of {WHICH}, got {which!r}")
    p = os.path.normpath(os.path.abspath(path))
    if not os.path.isdir(p):
        raise UserError(f"checkpoint directory not found: {path}")
    base = os.path.basename(p)
    if base in WHICH and os.path.basename(os.path.dirname(p)) == "checkpoints":
        if which is not None and which != base:
            raise UserError(f"--which {which} contradicts the checkpoint directory {path}")
        workdir, which = os.path.dirname(os.path.dirname(p)), base
    elif os.path.isdir(os.path.join(p, "checkpoints")):
        workdir = p
    elif base == "checkpoints" and any(os.path.isdir(os.path.join(p, w)) for w in WHICH):
        workdir = os.path.dirname(p)
    else:
        raise UserError(f"{path} is neither a training work directory (with checkpoints/) nor a "
                        "checkpoints directory (with last/ or best/)")
    which = which or "last"
    directory = os.path.join(workdir, "checkpoints", which)
    if not _steps_in(directory):
        raise UserError(f"no finished checkpoint in {directory}")
    return workdir, which


# --------------------------------------------------------------------------- configs


def load_config_file(path: str):
    """get_config() of a config file such as configs/tiny.py. Raises UserError naming the file."""
    if not os.path.isfile(path):
        raise UserError(f"config file not found: {path}")
    name = "_hiu_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"config file {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a broken user file: report it in one line
        raise UserError(f"config file {path} failed to load: {type(e).__name__}: {e}") from None
    if not callable(getattr(module, "get_config", None)):
        raise UserError(f"config file {path} has no get_config()")
    return module.get_config()


def split_overrides(argv: Sequence[str]) -> tuple[list, list]:
    """(other arguments, overrides): every --config.KEY=VALUE (or --config.KEY VALUE) of argv,
    in order, normalised to --config.KEY=VALUE."""
    rest, overrides, argv = [], [], list(argv)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith(OVERRIDE_PREFIX) and "=" not in arg:
            if i + 1 >= len(argv):
                raise UserError(f"bad --config override: {arg} has no value")
            overrides.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        (overrides if arg.startswith(OVERRIDE_PREFIX) else rest).append(arg)
        i += 1
    return rest, overrides


def apply_overrides(config, overrides: Sequence[str]):
    """Applies --config.KEY=VALUE overrides in place (ml_collections' config_flags parser: the
    value's type is the config field's). Returns config; UserError naming a bad override."""
    if not overrides:
        return config
    from absl import flags
    from ml_collections import config_flags

    argv = ["hiu", *overrides]
    values = flags.FlagValues()
    try:
        config_flags.DEFINE_config_dict("config", config, flag_values=values, lock_config=True,
                                        sys_argv=argv)
        values(argv)
    except flags.Error as e:
        raise UserError(f"bad --config override: {e}") from None
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        cause = e.args[0] if isinstance(e, AttributeError) and e.args else e
        if isinstance(cause, KeyError):  # ml_collections: AttributeError(KeyError("'key'"))
            key = str(cause.args[0] if cause.args else cause).strip("\"'")
            message = f"the config has no key {key!r}"
        else:
            message = str(e)
        raise UserError(f"bad --config override: {message}") from None
    return config


def config_as_json(config) -> Any:
    """The config as config.json holds it (FieldReferences resolved, tuples as lists)."""
    return json.loads(config.to_json_best_effort())


def _flatten(tree, prefix="") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _subtree(tree, path: str):
    for key in path.split("."):
        tree = tree[key]
    return tree


def write_config_record(workdir: str, config_file: str, overrides: Sequence[str]) -> None:
    """Writes <workdir>/config_source.json: the config file (as given and absolute) and the
    overrides, from which `recorded_config` rebuilds the run's config."""
    record = {"config_file": config_file, "config_path": os.path.abspath(config_file),
              "overrides": list(overrides)}
    with open(os.path.join(workdir, RECORD_NAME), "w") as f:
        json.dump(record, f, indent=2)


def _read_json(path: str, what: str):
    if not os.path.isfile(path):
        raise UserError(f"{what} not found: {path} (a run of an older train.py? give --config "
                        "configs/<name>.py and its overrides)")
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{what} {path} is not valid JSON ({e})") from None


def recorded_config(workdir: str) -> tuple[Any, str]:
    """(config, source) of a run, exactly as trained: `RECORD_NAME`'s config file, overrides and
    start-up blocks, checked against config.json. UserError when a file is missing or the
    config file now gives other values (it changed since the run)."""
    import ml_collections

    record = _read_json(os.path.join(workdir, RECORD_NAME), "run config record")
    saved = _read_json(os.path.join(workdir, CONFIG_JSON), "run config")
    try:
        path, overrides = record["config_path"], list(record["overrides"])
        # Records of runs before registry.build_from_config also list the blocks train.py
        # rewrote at start-up (the synthetic set's directories); replayed as they were.
        blocks = dict(record.get("replaced_at_start", {}))
    except (KeyError, TypeError, AttributeError):
        raise UserError(f"{os.path.join(workdir, RECORD_NAME)} is not a train.py config "
                        "record") from None
    config = apply_overrides(load_config_file(path), overrides)
    for block, value in blocks.items():
        parent, _, key = block.rpartition(".")
        (_subtree(config, parent) if parent else config)[key] = ml_collections.ConfigDict(value)
    new, old = _flatten(config_as_json(config)), _flatten(saved)
    changed = sorted(k for k in set(new) | set(old)
                     if new.get(k, "<absent>") != old.get(k, "<absent>"))
    if changed:
        shown = "; ".join(f"{k}: run {old.get(k, '<absent>')!r}, now {new.get(k, '<absent>')!r}"
                          for k in changed[:3])
        raise UserError(f"the config file {path} changed since the run in {workdir}: "
                        f"{len(changed)} values differ from its config.json ({shown}"
                        f"{'; ...' if len(changed) > 3 else ''}); restore the file or give "
                        "--config")
    return config, " ".join([record.get("config_file", path), *overrides])


def run_config(workdir: str, config_file: Optional[str] = None,
               overrides: Sequence[str] = ()) -> tuple[Any, str]:
    """(config, source): `config_file`'s get_config() when given, else the run's recorded
    config (`recorded_config`); then `overrides` on top."""
    if config_file:
        config, source = load_config_file(config_file), config_file
    else:
        config, source = recorded_config(workdir)
    if overrides:
        apply_overrides(config, overrides)
        source = " ".join([source, *overrides])
    return config, source


# --------------------------------------------------------------------------- model


class LoadedModel(NamedTuple):
    """A restored model. variables: {"params", "batch_stats"} (host arrays)."""

    config: Any
    config_source: str  # "configs/tiny.py --config.x=1 ..."
    model: Any  # models.HIUNet (bn_axis_name None: inference)
    variables: dict
    step: int
    workdir: str
    which: str


def variables_template(model, crop_size: int) -> dict:
    """{"params", "batch_stats"} of zeros shaped like the model's, without compiling its init
    (jax.eval_shape traces it) and without an optimiser."""
    import jax
    import jax.numpy as jnp

    shape = (1, int(crop_size), int(crop_size), 3)
    abstract = jax.eval_shape(lambda key: model.init(key, jnp.zeros(shape), train=False),
                              jax.random.key(0))
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                        {"params": abstract["params"], "batch_stats": abstract["batch_stats"]})


def load_model(workdir: str, which: str, config) -> LoadedModel:
    """The model and variables of workdir/checkpoints/<which> (see `resolve_checkpoint`);
    config: (ConfigDict, description), e.g. from `run_config`."""
    config, source = config
    from hiu_jax import checkpoint as ckpt
    from hiu_jax import models

    try:
        model = models.build_model(config.model, half_precision=bool(config.half_precision))
        template = variables_template(model, config.crop_size)
    except (FileNotFoundError, ValueError, KeyError, AttributeError) as e:
        raise UserError(f"cannot build the model of {source}: {type(e).__name__}: {e}") from None
    try:
        variables, meta = ckpt.restore_variables(workdir, template, which=which)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    except ckpt.CorruptCheckpointError as e:  # before ValueError: damaged files, not the config
        raise UserError(str(e)) from None
    except (ValueError, TypeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if len(first) > 240:  # orbax lists every key of the checkpoint
            first = first[:240] + " ..."
        raise UserError(f"the checkpoint in {os.path.join(workdir, 'checkpoints', which)} does "
                        f"not match the config {source}: {first}") from None
    return LoadedModel(config, source, model, variables, int(meta.get("step", -1)), workdir,
                       which)


# --------------------------------------------------------------------------- command line


class ArgumentParser(argparse.ArgumentParser):
    """argparse with errors in one line (exit 2) and `--config.KEY=VALUE` overrides collected
    into `args.overrides` (in order) instead of refused."""

    def error(self, message):  # argparse's default also prints the usage
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)

    def parse_args(self, args=None, namespace=None):
        try:
            rest, overrides = split_overrides(sys.argv[1:] if args is None else args)
        except UserError as e:
            self.error(str(e))
        parsed = super().parse_args(rest, namespace)
        parsed.overrides = overrides
        return parsed


def add_run_arguments(parser, *, config_help: str) -> None:
    """The shared flags: --workdir, --checkpoint, --which, --config (see the module docstring);
    the --config.KEY=VALUE overrides are collected by `ArgumentParser`."""
    parser.add_argument("--workdir", help="a training work directory (config.json, "
                                          "config_source.json, checkpoints/)")
    parser.add_argument("--checkpoint",
                        help="a work directory, its checkpoints/ or checkpoints/last|best")
    parser.add_argument("--which", choices=WHICH,
                        help="checkpoints/last (default) or checkpoints/best; best was selected "
                             "on train.py's evaluation split, so it is biased on that split")
    parser.add_argument("--config", help=config_help)


def checkpoint_from_args(args) -> tuple[str, str]:
    """(workdir, which) of --workdir or --checkpoint with --which (`resolve_checkpoint`)."""
    if args.workdir and args.checkpoint:
        raise UserError("give --workdir or --checkpoint, not both")
    if not (args.workdir or args.checkpoint):
        raise UserError("give --workdir DIR (or --checkpoint DIR)")
    if args.config and not os.path.isfile(args.config):
        raise UserError(f"config file not found: {args.config}")
    return resolve_checkpoint(args.workdir or args.checkpoint, args.which)
