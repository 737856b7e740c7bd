"""Layers that are mathematically identical to the textbook ones but fast on XLA:CPU.

The DCGAN generator upsamples with a 4x4, stride-2, padding-1 transposed convolution
(Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional
GANs"). In PyTorch's convention, for input x (H, W, C_in) and kernel K (4, 4, C_in, C_out)

    y[o] = sum_{i, k : o = 2 i + k - 1} x[i] K[k]            (1-D shown; 2-D is separable)

so y is 2H x 2W. XLA:CPU lowers the backward pass of a transposed convolution badly
(measured 10-17x slower than an equivalent stride-1 convolution here), so `UpConv`
computes (1) with the "phase" (sub-pixel) decomposition instead: write the output index
as o + 1 = 2 j + p with phase p in {0, 1}; then k = 2 (j - i) + p and only
i in {j - 1, j} contribute, so

    y_pad[2 j + p] = sum_{a in {0,1}} x_pad[j + a] K[2 (1 - a) + p],   x_pad[t] = x[t - 1],

a 2x2 VALID convolution over x padded by one pixel, with 4 C_out output channels (one
per phase pair (p_y, p_x)), followed by depth-to-space and a one-pixel crop. The kernel
is stored in the ConvTranspose layout (4, 4, C_in, C_out), so weights move 1:1 between
this layer and `torch.nn.ConvTranspose2d(k=4, s=2, p=1)` (after transposing its
(C_in, C_out, kH, kW) layout), and the extra work is only the ((H + 1) / H)^2 border.

`UpConv(method="dilated")` computes the same y as the textbook form of (1): a stride-1
convolution of x dilated by 2 (zeros between pixels), padded by 2, with the spatially
flipped kernel. Its backward pass is the slow one on XLA:CPU, but forward-only it can be
the faster of the two, e.g. for the last layer (few output channels, where the phase form's
4 C_out-column matmul is narrow); export picks per layer by timing (export.inference_form).

`UpConv(method="im2col")` is the phase form with the 2x2 convolution written out: the four
shifted windows of x_pad side by side in channels, (B, H + 1, W + 1, 4 C_in), times the
phase kernel as one (4 C_in, 4 C_out) matrix. It is the fastest forward form here for
the small students' last layer (C_in = 8, C_out = 1: 0.6 vs 1.1 ms at batch 256) and
much slower forward-only for wide layers, so export tries it per layer too. Forward and
backward together it is the faster form for a generator's hidden layers here (the kernel
gradient is one (4 C_in, N) x (N, 4 C_out) matmul over the patches), so they train with it
(dcgan.default_upsample).

`batch_chunked` applies a per-sample layer (a convolution) to slices of the batch and
stacks the results: the same map, but XLA:CPU computes a wide strided convolution, and
its kernel gradient (a convolution over the batch axis), faster over slices of 32 samples
than over a batch of 64 (the DCGAN discriminator's 64->128 layer: forward 6.4 vs 13.3 ms;
see dcgan.default_conv_chunk).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")


def batch_chunked(f, x: jax.Array, chunk: int, devices: int = 1) -> jax.Array:
  """f(x) for a per-sample f (f(x)[i] depends on x[i] only), computed on `chunk`-sample slices.

  The batch is taken to be split evenly over `devices` (data parallelism), and each slice
  takes `chunk` consecutive samples from every device's share, so no sample leaves its
  device. Falls back to f(x) when a share does not split into two or more slices.
  """
  if chunk <= 0 or x.shape[0] % devices or (x.shape[0] // devices) % chunk or x.shape[0] // devices <= chunk:
    return f(x)
  k, rest = x.shape[0] // devices // chunk, x.shape[1:]
  xs = x.reshape(devices, k, chunk, *rest)
  ys = [f(xs[:, j].reshape(devices * chunk, *rest)) for j in range(k)]
  ys = [y.reshape(devices, chunk, *y.shape[1:]) for y in ys]
  return jnp.stack(ys, axis=1).reshape(x.shape[0], *ys[0].shape[2:])


def depth_to_space(x: jax.Array, block: int = 2) -> jax.Array:
  """(B, H, W, b*b*C) -> (B, b*H, b*W, C); channel index = (p_y * b + p_x) * C + c."""
  b, h, w, c = x.shape
  c_out = c // (block * block)
  x = x.reshape(b, h, w, block, block, c_out)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * block, w * block, c_out)


def phase_kernel(kernel: jax.Array) -> jax.Array:
  """Maps a (4, 4, C_in, C_out) transposed-conv kernel to the (2, 2, C_in, 4 C_out) phase kernel.

  phase[a_y, a_x, c_in, (p_y, p_x, c_out)] = kernel[2 (1 - a_y) + p_y, 2 (1 - a_x) + p_x, c_in, c_out].
  """
  c_in, c_out = kernel.shape[2:]
  k = kernel.reshape(2, 2, 2, 2, c_in, c_out)  # (1 - a_y, p_y, 1 - a_x, p_x, c_in, c_out)
  k = k[::-1, :, ::-1]
  return k.transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, c_in, 4 * c_out)


def conv_transpose_4x4_s2(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Transposed convolution, kernel 4, stride 2, padding 1 (output 2H x 2W), as phases."""
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  y = lax.conv_general_dilated(x, phase_kernel(kernel).astype(x.dtype), (1, 1), "VALID",
                               dimension_numbers=_DIMS)
  return depth_to_space(y)[:, 1:-1, 1:-1]


def conv_transpose_4x4_s2_dilated(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The same transposed convolution as an input-dilated convolution with the flipped kernel."""
  return lax.conv_general_dilated(x, kernel[::-1, ::-1].astype(x.dtype), (1, 1), ((2, 2), (2, 2)),
                                  lhs_dilation=(2, 2), dimension_numbers=_DIMS)


def conv_transpose_4x4_s2_im2col(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The phase form with its 2x2 convolution as one matmul over explicit patches."""
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  h, w = x.shape[1] - 1, x.shape[2] - 1
  patches = jnp.concatenate([x[:, a_y:a_y + h, a_x:a_x + w] for a_y in (0, 1) for a_x in (0, 1)], axis=-1)
  y = patches @ phase_kernel(kernel).reshape(4 * x.shape[-1], -1).astype(x.dtype)
  return depth_to_space(y)[:, 1:-1, 1:-1]


UPSAMPLE_METHODS = {"phase": conv_transpose_4x4_s2, "dilated": conv_transpose_4x4_s2_dilated,
                    "im2col": conv_transpose_4x4_s2_im2col}


class UpConv(nn.Module):
  """4x4 stride-2 transposed convolution (2x upsampling); `method` picks the (identical) computation."""
  features: int
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = nn.initializers.normal(0.02)
  method: str = "phase"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features))
    y = UPSAMPLE_METHODS[self.method](x, kernel)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,))
    return y
