"""One process of the two-process data-parallel test (tests/hiu_jax/test_training.py).

    python tests/_multihost_child.py PROCESS_ID PORT OUT.npz

Joins a 2-process JAX runtime on 127.0.0.1:PORT (jax.distributed.initialize; the parent sets
XLA_FLAGS to 2 CPU devices per process), builds tests/_micro_training.py's SmallNet (BatchNorm
over the pmap axis) and its initial state, takes this host's half of the fixed global batch in
the pipeline's per-host layout [local devices, per-device batch, ...], runs one
training.pmap_step (its collectives span both processes' devices) and saves every local replica
of the new state and the step's loss to OUT.npz.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(process_id: int, port: int, out: str) -> None:
    import jax

    # Before any JAX computation (jax-stack.md section 8).
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=process_id, initialization_timeout=120)
    import numpy as np

    from hiu_jax import training
    from tests import _micro_training as mt

    assert jax.process_count() == 2 and jax.device_count() == 4, (
        jax.process_count(), jax.device_count())
    local = jax.local_device_count()
    config = mt.small_config()
    model = mt.SmallNet(bn_axis_name=training.AXIS)
    state = jax.device_get(mt.initial_state(model, config, mt.sgd()))
    batch = mt.global_batch(config)
    host_batch = mt.GLOBAL_BATCH // jax.process_count()
    mine = {k: v[process_id * host_batch:(process_id + 1) * host_batch] for k, v in batch.items()}
    step = training.pmap_step(config.loss, None)
    new_state, metrics = step(training.replicate(state), mt.split_for_devices(mine, local))
    new_state, metrics = jax.device_get((new_state, metrics))
    saved = {}
    for r in range(local):
        for key, value in mt.flat_leaves(jax.tree.map(lambda x: x[r], new_state)).items():
            saved[f"replica{r}{key}"] = value
    saved["loss"] = np.asarray(metrics["loss"])
    np.savez(out, **saved)
    print(f"process {process_id}: loss {metrics['loss']}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
