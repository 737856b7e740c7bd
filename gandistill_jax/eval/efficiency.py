"""Size and speed of a generator on the current device: parameters, XLA FLOPs per sample,
throughput at a large batch and latency at batch 1 (median of timed runs after warm-up)."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from gandistill_jax import models


def compiled_flops(fn, *args) -> float:
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan")))


def time_call(fn, arg, repeats: int, warmup: int = 3) -> list[float]:
  for _ in range(warmup):
    jax.block_until_ready(fn(arg))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(arg))
    times.append(time.perf_counter() - t)
  return times


def device_name() -> str:
  d = jax.devices()[0]
  return f"{d.platform}:{d.device_kind}"


def efficiency(gen, variables, latent_dim: int, batch: int = 256, repeats: int = 20) -> dict:
  """{'params', 'flops_per_sample', 'samples_per_s@batch', 'latency_ms@1', 'device'}."""
  apply = jax.jit(lambda z: gen.apply(variables, z))
  z_big = jnp.zeros((batch, latent_dim), jnp.float32)
  z_one = jnp.zeros((1, latent_dim), jnp.float32)
  flops = compiled_flops(lambda z: gen.apply(variables, z), z_big) / batch
  big = time_call(apply, z_big, max(3, repeats // 4))
  one = time_call(apply, z_one, repeats)
  return {"params": models.param_count(variables["params"]), "flops_per_sample": flops,
          f"samples_per_s_batch{batch}": batch / float(np.median(big)),
          "latency_ms_batch1": 1e3 * float(np.median(one)), "device": device_name()}
