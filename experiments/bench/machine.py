"""Shared by the benchmarks: the machine they ran on, and the time of a jitted step."""
import os
import platform
import time

import jax


def seconds_per_step(step, state, batch, key, n: int) -> float:
  """Mean wall time of `n` calls of a (state, batch, key) -> (state, metrics) step,
  after one untimed call that compiles it."""
  state, _ = step(state, batch, key)
  jax.block_until_ready(state)
  t = time.perf_counter()
  for _ in range(n):
    state, metrics = step(state, batch, key)
  jax.block_until_ready((state, metrics))
  return (time.perf_counter() - t) / n


def describe() -> str:
  dev = jax.devices()[0]
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return (f"machine: {dev.platform}:{dev.device_kind} x{jax.device_count()} | cpu: {cpu}, "
          f"{os.cpu_count()} cores | jax {jax.__version__} | python {platform.python_version()}")
