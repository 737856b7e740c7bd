"""A task is what differs between kinds of run: the state, the step and the generator.

`teacher` and `scratch` runs are the same GAN task (the scratch baseline is simply a
student-size config); `distill` runs build a DistillTask (gandistill_jax.distill).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from gandistill_jax import models, state as state_lib, steps


@dataclasses.dataclass(frozen=True)
class Task:
  kind: str
  config: ml_collections.ConfigDict
  generator: nn.Module                 # the generator this run trains
  init: Callable[[jax.Array], Any]     # rng -> fresh state
  step: Callable                       # pure (state, batch, rng) -> (state, metrics)
  generator_variables: Callable        # state -> {'params', 'batch_stats'} to sample with
  saved_networks: Callable             # state -> {item name: variables} a checkpoint also keeps, to be
                                       # read without the trainer (workdir.restore_network)
  global_batch: int                    # real samples per step (all processes)

  @property
  def latent_dim(self) -> int:
    return self.config.model.latent_dim


def ema_variables(gen: nn.Module, latent_dim: int, seed: int = 0):
  """state -> the EMA params with batch-norm statistics recomputed for them."""
  def variables(state):
    stats = steps.recompute_batch_stats(gen, state.g_ema, state.g_stats, jax.random.key(seed), latent_dim)
    return {"params": state.g_ema, "batch_stats": stats}
  return variables


def latent_example(latent_dim: int, batch: int = 2) -> jax.Array:
  return jnp.zeros((batch, latent_dim), jnp.float32)


def init_gan_state(gen, disc, g_tx, d_tx, rng: jax.Array, model_cfg) -> state_lib.GANState:
  """Fresh state for `gen`/`disc` with optimizers `g_tx`/`d_tx`; pure in `rng`."""
  g_key, d_key = jax.random.split(rng)
  g_vars = models.init_variables(gen, g_key, latent_example(model_cfg.latent_dim))
  d_example = jnp.zeros((2,) + models.sample_shape(model_cfg), jnp.float32)
  d_vars = models.init_variables(disc, d_key, d_example)
  return state_lib.GANState(
      step=jnp.zeros((), jnp.int32),
      g_params=g_vars["params"], g_stats=g_vars["batch_stats"],
      g_opt=g_tx.init(g_vars["params"]), g_ema=jax.tree.map(jnp.copy, g_vars["params"]),
      d_params=d_vars["params"], d_stats=d_vars["batch_stats"],
      d_opt=d_tx.init(d_vars["params"]))


def gan_task(config: ml_collections.ConfigDict, kind: str = "teacher") -> Task:
  """Adversarial training of config.model (a teacher, or a scratch student)."""
  gen, disc = models.build_generator(config.model), models.build_discriminator(config.model)
  g_tx = state_lib.adam(config.optim.g_lr, config.optim)
  d_tx = state_lib.adam(config.optim.d_lr, config.optim)
  generator_variables = ema_variables(gen, config.model.latent_dim, config.seed)
  return Task(
      kind=kind, config=config, generator=gen,
      init=lambda rng: init_gan_state(gen, disc, g_tx, d_tx, rng, config.model),
      step=steps.make_teacher_step(gen, disc, g_tx, d_tx, config),
      generator_variables=generator_variables,
      saved_networks=lambda state: {"generator": generator_variables(state),
                                    "discriminator": {"params": state.d_params, "batch_stats": state.d_stats}},
      global_batch=config.train.batch_size * config.loss.n_critic)
