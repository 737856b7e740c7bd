"""DCGAN generator and discriminator (Radford et al. 2016) for 28, 32 and 64 pixel images.

One family, one width knob: `width` is the channel count of the widest-resolution block,
and every coarser block doubles it, so width 64 gives the usual teacher and widths
32/16/8/4 give students of the same shape. Both networks can return their intermediate
activations (a list, coarse to fine for G and fine to coarse for D), which the
feature-distillation objectives need.

Generator, for `num_up` upsampling blocks and start resolution s0 = size / 2**num_up:

    z -> [low-rank] Dense(s0*s0*c0) -> BN -> ReLU -> (UpConv -> BN -> ReLU) x (num_up - 1)
      -> UpConv(channels) -> tanh,     c_i = width * 2**(num_up - 1 - i)

`proj_rank` factorises the latent projection z -> (r) -> s0*s0*c0. In this family the
projection holds most of a small student's parameters (width 8 at 28x28: 79k of 81k),
so the factorisation is what lets a student be 50-100x smaller than its teacher.

For deployment, `fold_batch_norm` rewrites a trained generator's eval-mode batch norms into
the preceding layers (`batch_norm=False`: the projection and every UpConv gain a bias):
with s = gamma / sqrt(var + eps), BN(W x) = (W s) x + (beta - mean s).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gandistill_jax.models.family import (_INIT, _start_size, default_num_up, latent_projection,
                                          stage_channels)
from gandistill_jax.models.layers import UpConv, batch_chunked

_BN_EPS = 1e-5


def default_upsample(n: int, train: bool) -> tuple[str, ...]:
  """The UpConv forms (all the same map) a generator with `n` UpConvs uses unless told.

  In training (forward and backward): im2col for the hidden layers, whose kernel gradient
  is then one (4 C_in, N) x (N, 4 C_out) matmul over the patches instead of XLA's
  convolution over the batch, and phase for the output layer (C_out = image channels,
  too narrow a matmul for im2col). Forward only (sampling, a distillation teacher): phase
  everywhere. Chosen by timing on XLA:CPU: the Fashion-MNIST teacher step runs about 10%
  faster than with phase everywhere (experiments/bench/bench_train_step.py); export still tunes
  each layer's form for sampling (export.inference_form).
  """
  return ("im2col",) * (n - 1) + ("phase",) if train else ("phase",) * n


def projection_matrix(params: dict) -> jax.Array:
  """The d_z x n matrix W that `latent_projection` applies to z (before its bias): A B for a
  rank-r projection, else the `proj` kernel. Its singular values count the directions of z
  the generator can use (experiments/study/projection_spectrum.py)."""
  w = params["proj"]["kernel"]
  return params["proj_low_rank"]["kernel"] @ w if "proj_low_rank" in params else w


class Generator(nn.Module):
  """DCGAN generator: z (B, latent) -> images (B, size, size, channels) in [-1, 1]."""
  image_size: int = 32
  channels: int = 1
  width: int = 64
  num_up: int = 0          # 0: the family's default for image_size
  proj_rank: int = 0       # 0: a full-rank latent projection
  proj_bias: bool = True   # a bias per projection output (see `latent_projection`)
  proj_init: str = "matched"   # the low-rank factors' init (see `latent_projection`)
  bn_momentum: float = 0.9
  batch_norm: bool = True  # False: the folded inference form (biases instead of batch norm)
  upsample: tuple[str, ...] = ()   # per-UpConv method (layers.UPSAMPLE_METHODS); () = default_upsample

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False, return_features: bool = False):
    chans = stage_channels(self.width, self.image_size, self.num_up)
    s0 = _start_size(self.image_size, len(chans))
    methods = self.upsample or default_upsample(len(chans), train)
    if self.batch_norm:
      norm = lambda h: nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=_BN_EPS)(h)
    else:
      norm = lambda h: h
    h = latent_projection(z, s0 * s0 * chans[0], self.proj_rank, self.proj_bias or not self.batch_norm,
                          self.proj_init)
    h = nn.relu(norm(h.reshape(z.shape[0], s0, s0, chans[0])))
    features = [h]
    for c, method in zip(chans[1:], methods):
      h = nn.relu(norm(UpConv(c, use_bias=not self.batch_norm, method=method)(h)))
      features.append(h)
    img = jnp.tanh(UpConv(self.channels, method=methods[-1])(h))
    return (img, features) if return_features else img


def fold_batch_norm(gen: Generator, variables: dict, fuse_projection: bool = False) -> tuple[Generator, dict]:
  """(generator, variables) of the inference form of a trained `gen`: eval-mode batch norms
  folded into the projection and UpConv kernels, and with `fuse_projection` the low-rank
  projection z -> r -> n multiplied out into one z -> n matrix. Same outputs in eval mode."""
  if not gen.batch_norm:
    raise ValueError("this generator has no batch norm to fold (batch_norm=False)")
  params, stats = variables["params"], variables["batch_stats"]
  def scale_shift(i):
    s = params[f"BatchNorm_{i}"]["scale"] / jnp.sqrt(stats[f"BatchNorm_{i}"]["var"] + _BN_EPS)
    return s, params[f"BatchNorm_{i}"]["bias"] - stats[f"BatchNorm_{i}"]["mean"] * s
  n = len(stage_channels(gen.width, gen.image_size, gen.num_up))
  s, t = scale_shift(0)
  reps = params["proj"]["kernel"].shape[1] // s.shape[0]   # the projection's output is (s0, s0, c0), channels last
  s, t = jnp.tile(s, reps), jnp.tile(t, reps)
  bias = params["proj"].get("bias", 0.0)   # BN(xW + b) = xW s + (b s + t), s and t per channel
  folded = {"proj": {"kernel": params["proj"]["kernel"] * s, "bias": bias * s + t}}
  if gen.proj_rank and fuse_projection:
    folded["proj"]["kernel"] = params["proj_low_rank"]["kernel"] @ folded["proj"]["kernel"]
  elif gen.proj_rank:
    folded["proj_low_rank"] = params["proj_low_rank"]
  for i in range(n - 1):
    s, t = scale_shift(i + 1)
    folded[f"UpConv_{i}"] = {"kernel": params[f"UpConv_{i}"]["kernel"] * s, "bias": t}
  folded[f"UpConv_{n - 1}"] = params[f"UpConv_{n - 1}"]
  return gen.clone(batch_norm=False, proj_rank=0 if fuse_projection else gen.proj_rank), {"params": folded}


def default_conv_chunk(in_channels: int) -> int:
  """Samples per slice in which the discriminator runs a convolution of `in_channels` inputs
  unless told (layers.batch_chunked; the same map): on XLA:CPU 32 for the wide layers
  (64 inputs or more), with which the width-64 teacher step ran 1.13x as fast at 28 px and
  1.04x at 32 px (experiments/bench/bench_train_step.py --d-chunks default 0); the whole batch
  for narrow layers, where slicing only adds overhead (a width-8 D's step ran 14% slower
  sliced), and on every other backend."""
  return 32 if jax.default_backend() == "cpu" and in_channels >= 64 else 0


class Discriminator(nn.Module):
  """DCGAN discriminator: images -> logits (B,). LeakyReLU(0.2); spectral norm or batch norm.

  `batch_norm` follows Radford et al. 2016: batch norm after every convolution but the
  first, so a batch is normalised by its own statistics. The train steps then give D the
  real and the fake batch separately (as the DCGAN reference code does), never mixed,
  and the generator's loss sees D in train mode too. Batch norm mixes samples, so it
  cannot be combined with the per-sample gradient penalties (WGAN-GP, R1); spectral norm
  (Miyato et al. 2018) is the normaliser for those.

  Without spectral norm, each convolution runs over slices of `conv_chunk` samples of every
  device's share of the batch (layers.batch_chunked; None = default_conv_chunk, 0 = the
  whole batch): the same map, faster on XLA:CPU.
  """
  image_size: int = 32
  width: int = 64
  num_down: int = 0        # 0: the family's default for image_size
  spectral_norm: bool = False
  batch_norm: bool = False
  bn_momentum: float = 0.9
  conv_chunk: int | None = None   # samples per convolution slice per device; None = default_conv_chunk

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, return_features: bool = False):
    n = self.num_down or default_num_up(self.image_size)
    _start_size(self.image_size, n)
    def layer(module, h):
      if self.spectral_norm:   # not sliced: each call would advance the power iteration
        return nn.SpectralNorm(module)(h, update_stats=train)
      if isinstance(module, nn.Conv):
        chunk = default_conv_chunk(h.shape[-1]) if self.conv_chunk is None else self.conv_chunk
        return batch_chunked(module, h, chunk, jax.device_count())
      return module(h)
    features = []
    h = x
    for i in range(n):
      normed = self.batch_norm and i > 0   # a bias before batch norm would have no effect
      conv = nn.Conv(self.width * 2**i, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                     kernel_init=_INIT, use_bias=not normed)
      h = layer(conv, h)
      if normed:
        h = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum)(h)
      h = nn.leaky_relu(h, 0.2)
      features.append(h)
    logits = layer(nn.Dense(1, kernel_init=_INIT), h.reshape(h.shape[0], -1))[:, 0]
    return (logits, features) if return_features else logits
