"""What every benchmark prints first: the machine and library versions it ran on."""
import os
import platform

import jax


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
