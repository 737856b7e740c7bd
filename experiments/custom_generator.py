"""An example of your own generator: depthwise-separable upsampling blocks, used by name
in any config without touching the package (see README.md, "Use as a library").

    model.family = "custom_generator:DSGenerator"     # with experiments/ on PYTHONPATH

It follows models.GeneratorModule: `__call__(z, train, return_features)` returns images in
[-1, 1] (and the per-stage activations, coarse to fine), batch norm in 'batch_stats'
with a `bn_momentum` field, and `from_config` builds it from a `config.model` section.

    z -> Dense(s0*s0*2w) -> BN -> ReLU
      -> [nearest x2 -> depthwise 3x3 -> pointwise 1x1 -> BN -> ReLU] with 2w, then w channels
      -> 3x3 conv to the image channels -> tanh,          s0 = image_size / 4
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class DSGenerator(nn.Module):
  image_size: int = 28
  channels: int = 1
  width: int = 16
  bn_momentum: float = 0.9

  @classmethod
  def from_config(cls, cfg) -> "DSGenerator":
    if cfg.image_size % 4:
      raise ValueError(f"DSGenerator needs image_size divisible by 4, got {cfg.image_size}")
    return cls(image_size=cfg.image_size, channels=cfg.channels, width=cfg.g_width)

  @nn.compact
  def __call__(self, z, train: bool = False, return_features: bool = False):
    bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum)
    s0 = self.image_size // 4
    h = nn.Dense(s0 * s0 * 2 * self.width)(z).reshape(z.shape[0], s0, s0, 2 * self.width)
    h = nn.relu(bn()(h))
    features = [h]
    for c in (2 * self.width, self.width):
      b, s, _, k = h.shape
      h = jax.image.resize(h, (b, 2 * s, 2 * s, k), "nearest")
      h = nn.Conv(k, (3, 3), feature_group_count=k)(h)          # depthwise
      h = nn.relu(bn()(nn.Conv(c, (1, 1))(h)))                  # pointwise
      features.append(h)
    image = jnp.tanh(nn.Conv(self.channels, (3, 3))(h))
    return (image, features) if return_features else image
