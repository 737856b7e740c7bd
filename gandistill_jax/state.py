"""Train states as pytrees: everything a step reads and writes, nothing else."""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from gandistill_jax import models

PyTree = Any


@flax.struct.dataclass
class GANState:
  """Adversarial training state of one generator/discriminator pair.

  `*_stats` are the flax 'batch_stats' collections (G's batch-norm running statistics,
  D's spectral-norm power-iteration vectors), `{}` where a model has none. `g_ema` is
  the exponential moving average of G's params (Karras et al. 2018; Yazici et al. 2019).
  """
  step: jax.Array
  g_params: PyTree
  g_stats: PyTree
  g_opt: PyTree
  g_ema: PyTree
  d_params: PyTree
  d_stats: PyTree
  d_opt: PyTree


def adam(lr: float, optim: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with the config's betas; DCGAN's (0.5, 0.999) are the defaults in our configs."""
  return optax.adam(lr, b1=optim.b1, b2=optim.b2)


def latent_example(latent_dim: int, batch: int = 2) -> jax.Array:
  return jnp.zeros((batch, latent_dim), jnp.float32)


def init_gan_state(gen, disc, g_tx, d_tx, rng: jax.Array, model_cfg) -> GANState:
  """Fresh state for `gen`/`disc` with optimizers `g_tx`/`d_tx`; pure in `rng`."""
  g_key, d_key = jax.random.split(rng)
  g_vars = models.init_variables(gen, g_key, latent_example(model_cfg.latent_dim))
  d_example = jnp.zeros((2,) + models.sample_shape(model_cfg), jnp.float32)
  d_vars = models.init_variables(disc, d_key, d_example)
  return GANState(
      step=jnp.zeros((), jnp.int32),
      g_params=g_vars["params"], g_stats=g_vars["batch_stats"],
      g_opt=g_tx.init(g_vars["params"]), g_ema=jax.tree.map(jnp.copy, g_vars["params"]),
      d_params=d_vars["params"], d_stats=d_vars["batch_stats"],
      d_opt=d_tx.init(d_vars["params"]))
