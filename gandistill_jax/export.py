"""Generators as plain callables z -> images, from a workdir (and, later, exported files)."""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import jax
import numpy as np

from gandistill_jax import parallel


@dataclasses.dataclass
class LoadedGenerator:
  """A generator ready to sample: call it with z of shape (B, latent_dim)."""
  fn: Callable
  latent_dim: int
  sample_shape: tuple
  source: str

  def __call__(self, z) -> np.ndarray:
    z = np.asarray(z, np.float32)
    if z.ndim != 2 or z.shape[1] != self.latent_dim:
      raise ValueError(f"z has shape {z.shape}; this generator takes (batch, {self.latent_dim})")
    return np.asarray(self.fn(z))


def task_for(config):
  from gandistill_jax import tasks
  if "distill" in config:
    from gandistill_jax import distill
    return distill.distill_task(config)
  return tasks.gan_task(config)


def workdir_generator_variables(workdir: str, which: str = "auto"):
  """(generator module, its variables, config) from a workdir's latest checkpoint.

  which: 'auto'/'ema' = the deployable weights (EMA with recomputed batch statistics),
  'live' = the raw trained weights, 'teacher' = a distill run's frozen teacher.
  """
  from gandistill_jax import loop, models
  config = loop.load_config(workdir)
  task = task_for(config)
  mesh = parallel.make_mesh(jax.devices()[:1])
  state, _, _ = loop.restore_latest(task, workdir, mesh)
  if which in ("auto", "ema", "student"):
    return task.generator, jax.jit(task.generator_variables)(state), config
  if which == "live":
    params = getattr(state, "g_params", None) or state.s_params
    stats = getattr(state, "g_stats", None) if hasattr(state, "g_stats") else state.s_stats
    return task.generator, {"params": params, "batch_stats": stats}, config
  if which == "teacher":
    if "distill" not in config:
      raise ValueError(f"--which teacher needs a distill workdir; {workdir} is a {task.kind} run")
    return models.build_generator(config.teacher_model), state.teacher_g, config
  raise ValueError(f"--which {which!r} is unknown; use auto, ema, live, teacher or student")


def load_generator(path: str, which: str = "auto") -> LoadedGenerator:
  """A callable z -> images (float32 in [-1, 1]) from a workdir."""
  from gandistill_jax import models
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{path}: no such workdir")
  gen, variables, config = workdir_generator_variables(path, which)
  model_cfg = config.teacher_model if which == "teacher" else (
      config.student if "distill" in config else config.model)
  fn = jax.jit(lambda z: gen.apply(variables, z))
  return LoadedGenerator(fn, config.model.latent_dim, models.sample_shape(model_cfg), path)
