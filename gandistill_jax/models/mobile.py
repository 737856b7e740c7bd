"""A mobile generator family: inverted residual blocks and parameter-free upsampling.

Same shape contract and width knob as the DCGAN generator (stage channels
c_i = width * 2**(num_up - 1 - i), features after the projection and after every
stage but the last, coarse to fine), so it is a drop-in student for every objective:

    z -> [low-rank] Dense(s0*s0*c0) -> [BN] -> ReLU
      -> (upsample x2 -> InvertedResidual(c_i)) for i = 1 .. num_up - 1
      -> upsample x2 -> InvertedResidual(c_last) -> Conv3x3(channels) -> tanh

InvertedResidual (MobileNetV2, Sandler et al. 2018): 1x1 expand to t*c_in -> [BN] -> ReLU
-> depthwise 3x3 -> [BN] -> ReLU -> 1x1 project to c_out -> [BN], plus the input when
c_in == c_out. A dense 3x3 conv c -> c costs 9c^2 weights, the block (t = 2) 4c^2 + 18c:
at a fixed parameter budget the depthwise-separable form buys width, as MobileStyleGAN
(Belousov 2021) and TinyGAN (Chang & Lu 2020) use it. Upsampling is nearest-neighbour
or bilinear (no weights, cheap at inference).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gandistill_jax.models.family import _INIT, _start_size, latent_projection, stage_channels

UPSAMPLE = ("nearest", "bilinear")


def upsample2x(x: jax.Array, method: str) -> jax.Array:
  b, h, w, c = x.shape
  if method == "nearest":
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  return jax.image.resize(x, (b, 2 * h, 2 * w, c), "bilinear")


class InvertedResidual(nn.Module):
  features: int
  expand: int = 2
  batch_norm: bool = True
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    def norm(h):
      return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum)(h) if self.batch_norm else h
    c_in, hidden = x.shape[-1], x.shape[-1] * self.expand
    h = nn.relu(norm(nn.Conv(hidden, (1, 1), use_bias=not self.batch_norm, kernel_init=_INIT)(x)))
    h = nn.Conv(hidden, (3, 3), padding="SAME", feature_group_count=hidden, use_bias=not self.batch_norm,
                kernel_init=_INIT)(h)
    h = nn.relu(norm(h))
    h = norm(nn.Conv(self.features, (1, 1), use_bias=not self.batch_norm, kernel_init=_INIT)(h))
    return h + x if c_in == self.features else h


class MobileGenerator(nn.Module):
  """z (B, latent) -> images (B, size, size, channels) in [-1, 1]."""
  image_size: int = 32
  channels: int = 1
  width: int = 16
  num_up: int = 0          # 0: the DCGAN default for image_size
  proj_rank: int = 0
  proj_bias: bool = True   # family.latent_projection
  proj_init: str = "matched"
  expand: int = 2
  upsample: str = "nearest"
  batch_norm: bool = True
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False, return_features: bool = False):
    if self.upsample not in UPSAMPLE:
      raise ValueError(f"model.upsample={self.upsample!r} is unknown; use one of {UPSAMPLE}")
    chans = stage_channels(self.width, self.image_size, self.num_up)
    s0 = _start_size(self.image_size, len(chans))
    h = latent_projection(z, s0 * s0 * chans[0], self.proj_rank, self.proj_bias or not self.batch_norm,
                          self.proj_init)
    h = h.reshape(z.shape[0], s0, s0, chans[0])
    if self.batch_norm:
      h = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum)(h)
    h = nn.relu(h)
    features = [h]
    block = lambda c: InvertedResidual(c, self.expand, self.batch_norm, self.bn_momentum)
    for c in chans[1:]:
      h = block(c)(upsample2x(h, self.upsample), train)
      features.append(h)
    h = block(chans[-1])(upsample2x(h, self.upsample), train)
    img = jnp.tanh(nn.Conv(self.channels, (3, 3), padding="SAME", kernel_init=_INIT)(h))
    return (img, features) if return_features else img
