import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from gandistill_jax import parallel
from gandistill_jax.models.layers import UPSAMPLE_METHODS, UpConv, batch_chunked, depth_to_space


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


def _strided_conv(x, k):
  return lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("batch, chunk, devices", [(16, 4, 1), (16, 2, 2), (16, 2, 4), (12, 4, 1), (16, 8, 2), (10, 4, 1)])
def test_batch_chunked_is_the_same_map(batch, chunk, devices):
  """Values and gradients of a strided convolution over batch slices equal the whole-batch
  ones, for slices that split each device's share and for shapes that fall back."""
  x = jax.random.normal(jax.random.key(0), (batch, 8, 8, 3))
  k = jax.random.normal(jax.random.key(1), (4, 4, 3, 5)) * 0.2
  sliced = lambda x, k: batch_chunked(lambda h: _strided_conv(h, k), x, chunk, devices)
  loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)) * jnp.arange(batch)[:, None, None, None])
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(sliced(x, k), _strided_conv(x, k), atol=1e-6)
    for a, b in zip(jax.grad(loss(sliced), (0, 1))(x, k), jax.grad(loss(_strided_conv), (0, 1))(x, k)):
      np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)   # sums of up to 16 terms of size ~10


def test_batch_chunked_keeps_samples_on_their_device():
  """Under data parallelism every slice takes rows from each device's own share, so the
  sliced convolution moves no activations between devices (only the kernel gradient is summed)."""
  mesh = parallel.make_mesh()
  n = len(mesh.devices)
  x = jax.device_put(jax.random.normal(jax.random.key(0), (4 * n, 8, 8, 3)), parallel.data_sharded(mesh))
  k = jax.device_put(jnp.ones((4, 4, 3, 5)) * 0.1, parallel.replicated(mesh))
  f = jax.jit(jax.grad(lambda x, k: jnp.sum(batch_chunked(lambda h: _strided_conv(h, k), x, 2, n) ** 2), (0, 1)))
  hlo = f.lower(x, k).compile().as_text()
  for op in ("all-to-all", "collective-permute", "all-gather"):
    assert op not in hlo, op
  with jax.default_matmul_precision("highest"):
    ref = jax.grad(lambda x, k: jnp.sum(_strided_conv(x, k) ** 2), (0, 1))(np.asarray(x), np.asarray(k))
    for a, b in zip(f(x, k), ref):
      np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)
