"""Layer-level timings behind two decisions, each form checked against the other first.

1. Forward upsampling forms (models.layers.UPSAMPLE_METHODS: phase, dilated, im2col) at the
   shapes of the study's teacher and students, batch 256: export picks one per layer by
   timing (export.inference_form), and this shows why it differs by layer.
2. The weight gradient of the step's convolutions as XLA computes it (a convolution over
   the batch) vs as explicit per-tap matmuls, g[k_y, k_x] = sum_(b, y, x) x_shift^T dy:
   measured, and not adopted (see docs/benchmarks.md for the numbers and the reason).

    python experiments/bench/bench_layer_forms.py

Milliseconds per call: the median of 5 timings of back-to-back calls lasting >= 50 ms.
"""
from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(__file__))
from machine import describe  # noqa: E402

from gandistill_jax.eval.efficiency import THROUGHPUT_SECONDS, time_call  # noqa: E402
from gandistill_jax.models import layers  # noqa: E402

_DIMS = ("NHWC", "HWIO", "NHWC")
# (batch, size, C_in, C_out) of UpConv layers: teacher width 64 (28 px), students w24r16 and w8r12
UPSAMPLE_SHAPES = [(256, 7, 128, 64), (256, 14, 64, 1), (256, 7, 48, 24), (256, 14, 24, 1), (256, 7, 16, 8),
                   (256, 14, 8, 1)]
# (batch, size, C_in, C_out, kernel, stride, padding) of the teacher step's convolutions (32 px, batch 64;
# D sees real and fake, 128): D's strided 4x4 convolutions and G's phase (2x2 VALID) convolutions
# (G's inputs are padded by one pixel before its 2x2 VALID convolution: 4, 8, 16 -> 6, 10, 18)
GRAD_SHAPES = [(128, 16, 64, 128, 4, 2, 1), (128, 8, 128, 256, 4, 2, 1), (64, 6, 256, 512, 2, 1, 0),
               (64, 10, 128, 256, 2, 1, 0), (64, 18, 64, 4, 2, 1, 0)]


def ms(fn, *args) -> float:
  jitted = jax.jit(fn)
  return 1e3 * float(np.median(time_call(lambda a: jitted(*a), args, 5, min_seconds=THROUGHPUT_SECONDS)))


def conv(x, k, stride, pad):
  return lax.conv_general_dilated(x, k, (stride, stride), [(pad, pad)] * 2, dimension_numbers=_DIMS)


def weight_grad_taps(x, dy, size, stride, pad):
  """d(sum conv(x, k) * dy)/dk as one matmul per kernel tap over the strided input window."""
  x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  h, w = dy.shape[1:3]
  taps = [jnp.einsum("bhwc,bhwo->co", x[:, i:i + stride * (h - 1) + 1:stride, j:j + stride * (w - 1) + 1:stride], dy)
          for i in range(size) for j in range(size)]
  return jnp.stack(taps).reshape(size, size, x.shape[-1], dy.shape[-1])


def main():
  print(describe())
  print("\nforward UpConv forms, ms per call (fastest in bold):\n")
  print("| batch, size, C_in -> C_out | " + " | ".join(layers.UPSAMPLE_METHODS) + " |")
  print("|---" * (1 + len(layers.UPSAMPLE_METHODS)) + "|")
  for b, s, c_in, c_out in UPSAMPLE_SHAPES:
    x = jax.random.normal(jax.random.key(0), (b, s, s, c_in))
    k = jax.random.normal(jax.random.key(1), (4, 4, c_in, c_out)) / np.sqrt(16 * c_in)
    with jax.default_matmul_precision("highest"):
      ref = layers.conv_transpose_4x4_s2(x, k)
      for f in layers.UPSAMPLE_METHODS.values():
        np.testing.assert_allclose(f(x, k), ref, atol=1e-4)
    t = {name: ms(f, x, k) for name, f in layers.UPSAMPLE_METHODS.items()}
    best = min(t, key=t.get)
    print(f"| {b}, {s}, {c_in} -> {c_out} | " + " | ".join(f"**{v:.2f}**" if n == best else f"{v:.2f}"
                                                          for n, v in t.items()) + " |", flush=True)
  print("\nweight gradient of a convolution, ms per call:\n")
  print("| x shape | kernel | XLA (conv over the batch) | per-tap matmuls | XLA / taps |")
  print("|---|---|---|---|---|")
  for b, s, c_in, c_out, size, stride, pad in GRAD_SHAPES:
    x = jax.random.normal(jax.random.key(0), (b, s, s, c_in))
    k = jax.random.normal(jax.random.key(1), (size, size, c_in, c_out)) * 0.05
    dy = jax.random.normal(jax.random.key(2), conv(x, k, stride, pad).shape)
    xla = lambda x, dy: jax.vjp(lambda k: conv(x, k, stride, pad), k)[1](dy)[0]
    taps = lambda x, dy: weight_grad_taps(x, dy, size, stride, pad)
    with jax.default_matmul_precision("highest"):
      np.testing.assert_allclose(taps(x, dy), xla(x, dy), rtol=1e-4, atol=1e-3)
    t_xla, t_taps = ms(xla, x, dy), ms(taps, x, dy)
    print(f"| {x.shape} | {size}x{size} s{stride}, {c_in} -> {c_out} | {t_xla:.2f} | {t_taps:.2f} | "
          f"{t_xla / t_taps:.2f} |", flush=True)


if __name__ == "__main__":
  main()
