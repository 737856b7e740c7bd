"""MLP generator and discriminator for 2-D toy data (the ring of 8 Gaussians).

The ring benchmark comes from Metz et al. 2017 ("Unrolled GANs"), and is used by
VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018): 8 isotropic Gaussians,
std 0.02, centred on a circle of radius 2. See gandistill_jax.data.toy.
"""
from __future__ import annotations

import flax.linen as nn
import jax


class MLPGenerator(nn.Module):
  """z (B, latent) -> points (B, out_dim) through `depth` ReLU layers of `width` units."""
  width: int = 128
  depth: int = 3
  out_dim: int = 2

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False, return_features: bool = False):
    features, h = [], z
    for _ in range(self.depth):
      h = nn.relu(nn.Dense(self.width)(h))
      features.append(h)
    out = nn.Dense(self.out_dim)(h)
    return (out, features) if return_features else out


class MLPDiscriminator(nn.Module):
  """points (B, dim) -> logits (B,) through `depth` LeakyReLU(0.2) layers."""
  width: int = 128
  depth: int = 3

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, return_features: bool = False):
    features, h = [], x
    for _ in range(self.depth):
      h = nn.leaky_relu(nn.Dense(self.width)(h), 0.2)
      features.append(h)
    logits = nn.Dense(1)(h)[:, 0]
    return (logits, features) if return_features else logits
