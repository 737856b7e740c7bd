import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from gandistill_jax.models.layers import UPSAMPLE_METHODS, UpConv, depth_to_space


def torch_conv_transpose_reference(x, kernel):
  """PyTorch ConvTranspose2d(k=4, s=2, p=1) by its definition: y[2i + k - 1] += x[i] K[k]."""
  b, h, w, _ = x.shape
  out = np.zeros((b, 2 * h + 2, 2 * w + 2, kernel.shape[-1]), np.float64)
  for i in range(h):
    for j in range(w):
      for ky in range(4):
        for kx in range(4):
          out[:, 2 * i + ky, 2 * j + kx] += x[:, i, j] @ kernel[ky, kx]
  return out[:, 1:-1, 1:-1]


@pytest.mark.parametrize("method", sorted(UPSAMPLE_METHODS))
@pytest.mark.parametrize("shape", [(2, 4, 4, 8, 16), (3, 7, 7, 5, 3), (1, 1, 1, 2, 2), (2, 8, 6, 4, 1)])
def test_upconv_equals_transposed_convolution(shape, method):
  b, h, w, c_in, c_out = shape
  kx, kk = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (b, h, w, c_in))
  kernel = jax.random.normal(kk, (4, 4, c_in, c_out)) / np.sqrt(4 * c_in)
  with jax.default_matmul_precision("highest"):
    ours = UPSAMPLE_METHODS[method](x, kernel)
    lax_ref = lax.conv_transpose(x, kernel.swapaxes(2, 3), (2, 2), ((2, 2), (2, 2)),
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"), transpose_kernel=True)
  assert ours.shape == (b, 2 * h, 2 * w, c_out)
  np.testing.assert_allclose(ours, lax_ref, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(ours, torch_conv_transpose_reference(np.asarray(x), np.asarray(kernel)),
                             atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", sorted(UPSAMPLE_METHODS))
def test_upconv_gradients_equal_transposed_convolution(method):
  x = jax.random.normal(jax.random.key(1), (2, 4, 4, 3))
  kernel = jax.random.normal(jax.random.key(2), (4, 4, 3, 5)) * 0.3
  ref = lambda x, k: lax.conv_transpose(x, k.swapaxes(2, 3), (2, 2), ((2, 2), (2, 2)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), transpose_kernel=True)
  loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)))
  with jax.default_matmul_precision("highest"):
    g_ours = jax.grad(loss(UPSAMPLE_METHODS[method]), argnums=(0, 1))(x, kernel)
    g_ref = jax.grad(loss(ref), argnums=(0, 1))(x, kernel)
  for a, b in zip(g_ours, g_ref):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_upconv_module_has_conv_transpose_layout():
  variables = UpConv(7).init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)))
  assert variables["params"]["kernel"].shape == (4, 4, 3, 7)
  assert variables["params"]["bias"].shape == (7,)


def test_depth_to_space_places_phases():
  x = jnp.arange(4.0).reshape(1, 1, 1, 4)  # channels = phases (0,0), (0,1), (1,0), (1,1)
  np.testing.assert_array_equal(depth_to_space(x)[0, :, :, 0], [[0, 1], [2, 3]])
