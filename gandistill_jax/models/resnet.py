"""ResNet generator and discriminator of SNGAN (Miyato et al. 2018, "Spectral
Normalization for Generative Adversarial Networks", appendix B.4), for 32 and 64 px.

Generator (batch norm, ReLU, nearest upsampling), with n = log2(size / 4) up-blocks:

    z -> Dense(4*4*c_0) -> [ResBlockUp c_i] x n -> BN -> ReLU -> conv3x3(channels) -> tanh
    ResBlockUp(x) = conv3x3(ReLU(BN(conv3x3(up(ReLU(BN(x))))))) + conv1x1(up(x))

Discriminator (spectral norm on every layer, ReLU, no normalisation by batch):

    x -> OptimizedBlock d_0 -> [ResBlockDown d_i] -> ResBlock x 2 (32 px) -> ReLU
      -> sum over space -> SN-Dense(1)

Widths follow the paper at `width` = `d_width` = 64: 32 px G 256 channels throughout
(4 * width), D 128 (2 * d_width); 64 px G 512 at 4x4 and 8x8, then 256, 128, 64 (8, 8, 4,
2, 1 x width) and D 64 -> 1024 (1, 2, 4, 8, 16 x d_width).
A smaller `width` shrinks every stage by the same factor, as the DCGAN family's does.
Every G conv whose output next meets a batch norm has no bias (the norm cancels a
per-channel bias, so its gradient is rounding noise that Adam would turn into updates);
the last conv has one, and so has the projection (`proj_bias`): its bias is one value per
(position, channel), which a batch norm does not cancel and the shortcut sees directly.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

_SIZES = {32: 3, 64: 4}


def _num_blocks(image_size: int) -> int:
  if image_size not in _SIZES:
    raise ValueError(f"image_size={image_size} is not supported by the ResNet family; use one of "
                     f"{sorted(_SIZES)} (model.image_size; the data are resized to it)")
  return _SIZES[image_size]


def generator_channels(width: int, image_size: int) -> list[int]:
  """Output channels of the up-blocks (and the projection's), coarse to fine."""
  n = _num_blocks(image_size)
  return [4 * width] * (n + 1) if image_size == 32 else [8 * width, 8 * width, 4 * width, 2 * width, width]


def discriminator_channels(width: int, image_size: int) -> list[int]:
  """Output channels of the D blocks, fine to coarse."""
  return [2 * width] * 4 if image_size == 32 else [width * 2**i for i in range(5)]


def _up(x):
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, 2 * h, 2 * w, c), "nearest")


def _down(x):
  return nn.avg_pool(x, (2, 2), (2, 2))


class ResBlockUp(nn.Module):
  features: int
  bn_momentum: float

  @nn.compact
  def __call__(self, x, train: bool):
    bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum)
    h = nn.Conv(self.features, (3, 3), use_bias=False)(_up(nn.relu(bn()(x))))
    h = nn.Conv(self.features, (3, 3), use_bias=False)(nn.relu(bn()(h)))
    return h + nn.Conv(self.features, (1, 1), use_bias=False, name="shortcut")(_up(x))


class ResNetGenerator(nn.Module):
  """z (B, latent) -> images (B, size, size, channels) in [-1, 1]; features: the
  projection's and every block's output, coarse to fine."""
  image_size: int = 32
  channels: int = 3
  width: int = 64
  proj_bias: bool = True
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, z, train: bool = False, return_features: bool = False):
    chans = generator_channels(self.width, self.image_size)
    h = nn.Dense(4 * 4 * chans[0], use_bias=self.proj_bias, name="proj")(z).reshape(z.shape[0], 4, 4, chans[0])
    features = [h]
    for c in chans[1:]:
      h = ResBlockUp(c, self.bn_momentum)(h, train)
      features.append(h)
    h = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum)(h))
    img = jnp.tanh(nn.Conv(self.channels, (3, 3), name="to_image")(h))
    return (img, features) if return_features else img


class _SNConv(nn.Module):
  features: int
  kernel: int

  @nn.compact
  def __call__(self, x, train: bool):
    return nn.SpectralNorm(nn.Conv(self.features, (self.kernel, self.kernel)))(x, update_stats=train)


class ResBlockDown(nn.Module):
  """Pre-activation residual block, optionally downsampling; `first` is SNGAN's
  OptimizedBlock (no activation before the first conv, pooling before the shortcut conv)."""
  features: int
  down: bool
  first: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    h = x if self.first else nn.relu(x)
    h = _SNConv(self.features, 3)(h, train)
    h = _SNConv(self.features, 3)(nn.relu(h), train)
    if self.down:
      h = _down(h)
    shortcut = x
    if self.first:
      shortcut = _SNConv(self.features, 1, name="shortcut")(_down(x), train)
    elif self.down or x.shape[-1] != self.features:
      shortcut = _SNConv(self.features, 1, name="shortcut")(x, train)
      shortcut = _down(shortcut) if self.down else shortcut
    return h + shortcut


class ResNetDiscriminator(nn.Module):
  """images -> logits (B,); features: every block's output, fine to coarse. Spectral norm
  keeps its power-iteration vectors in 'batch_stats' (updated when train=True)."""
  image_size: int = 32
  width: int = 64

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    chans = discriminator_channels(self.width, self.image_size)
    n_down = 2 if self.image_size == 32 else 4       # to 8x8 (32 px) or 4x4 (64 px)
    h, features = x, []
    for i, c in enumerate(chans):
      down = i < n_down
      h = ResBlockDown(c, down, first=i == 0)(h, train)
      features.append(h)
    h = jnp.sum(nn.relu(h), axis=(1, 2))
    logits = nn.SpectralNorm(nn.Dense(1, name="head"))(h, update_stats=train)[:, 0]
    return (logits, features) if return_features else logits
