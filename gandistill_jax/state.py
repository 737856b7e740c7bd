"""Train states as pytrees: everything a step reads and writes, nothing else."""
from __future__ import annotations

from typing import Any

import flax
import jax
import ml_collections
import optax


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
