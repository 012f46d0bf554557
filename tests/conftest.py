"""Shared pytest setup.

Four fake CPU devices are requested before JAX touches a backend (jax-stack.md, pitfall P12), so
data-parallel tests can run anywhere; single-device code is unaffected.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
