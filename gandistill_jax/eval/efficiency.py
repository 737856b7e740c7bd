"""Size and speed of a generator on the current device: parameters, XLA FLOPs per sample,
throughput at a large batch and latency at batch 1 (median of timed runs after warm-up).

Throughput is timed over runs of back-to-back calls (dispatch is asynchronous, as in a
sampling loop) of about `THROUGHPUT_SECONDS` or more each: single batch-256 calls of a small
student take ~1-2 ms here, and medians of a few of them varied by 1.6x between runs."""
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


THROUGHPUT_SECONDS = 0.05


def time_call(fn, arg, repeats: int, warmup: int = 3, min_seconds: float = 0.0) -> list[float]:
  """`repeats` measurements of seconds per call of fn(arg). With `min_seconds`, each one
  times a run of back-to-back calls, as many as made a calibration run last at least
  `min_seconds` (doubling from one); without, single blocking calls (a latency)."""
  for _ in range(warmup):
    jax.block_until_ready(fn(arg))
  def run(calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
      out = fn(arg)
    jax.block_until_ready(out)
    return time.perf_counter() - t
  calls = 1
  while min_seconds and run(calls) < min_seconds:
    calls *= 2
  return [run(calls) / calls for _ in range(repeats)]


def device_name() -> str:
  d = jax.devices()[0]
  return f"{d.platform}:{d.device_kind}"


def efficiency(gen, variables, latent_dim: int, batch: int = 256, repeats: int = 20) -> dict:
  """{'params', 'flops_per_sample', 'samples_per_s@batch', 'latency_ms@1', 'device'}."""
  apply = jax.jit(lambda z: gen.apply(variables, z))
  z_big = jnp.zeros((batch, latent_dim), jnp.float32)
  z_one = jnp.zeros((1, latent_dim), jnp.float32)
  flops = compiled_flops(lambda z: gen.apply(variables, z), z_big) / batch
  big = time_call(apply, z_big, max(3, repeats // 4), min_seconds=THROUGHPUT_SECONDS)
  one = time_call(apply, z_one, repeats)
  return {"params": models.param_count(variables["params"]), "flops_per_sample": flops,
          f"samples_per_s_batch{batch}": batch / float(np.median(big)),
          "latency_ms_batch1": 1e3 * float(np.median(one)), "device": device_name()}
