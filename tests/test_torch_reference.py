"""Our DCGAN G and D compute what a PyTorch DCGAN computes (the reference's architecture:
../shared/reference/torch_dcgan_train.py, written out here): from the same weights, the same
images, discriminator loss, generator loss and parameter gradients, in train mode with batch
norm. torch is a test-only dependency (CI installs it for the Inception test too)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gandistill_jax import losses
from gandistill_jax.models import dcgan

torch = pytest.importorskip("torch", reason="needs torch (.ci/run installs it)")
nn = torch.nn


def torch_dcgan(n: int):
  """The reference's G(n) and D(64) at 28x28, DCGAN init."""
  g = nn.Sequential(nn.Linear(100, 7 * 7 * 2 * n), nn.Unflatten(1, (2 * n, 7, 7)), nn.BatchNorm2d(2 * n), nn.ReLU(),
                    nn.ConvTranspose2d(2 * n, n, 4, 2, 1), nn.BatchNorm2d(n), nn.ReLU(),
                    nn.ConvTranspose2d(n, 1, 4, 2, 1), nn.Tanh())
  d = nn.Sequential(nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128),
                    nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(128 * 49, 1))
  for m in list(g.modules()) + list(d.modules()):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
      nn.init.normal_(m.weight, 0, 0.02); nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
      nn.init.normal_(m.weight, 1, 0.02); nn.init.zeros_(m.bias)
  return g, d


def chw_to_hwc(w, c, h):
  """Rows of a (C*H*W, ...) torch matrix (NCHW flatten) in our (H*W*C) order."""
  return w.reshape(c, h, h, -1).transpose(1, 2, 0, 3).reshape(c * h * h, -1)


def to_flax(g, d, n):
  """Our parameters from the torch modules (biases before batch norm have no effect and are dropped)."""
  t = lambda p: p.detach().numpy()
  gp = {"proj": {"kernel": chw_to_hwc(t(g[0].weight), 2 * n, 7).T},
        "BatchNorm_0": {"scale": t(g[2].weight), "bias": t(g[2].bias)},
        "UpConv_0": {"kernel": t(g[4].weight).transpose(2, 3, 0, 1)},
        "BatchNorm_1": {"scale": t(g[5].weight), "bias": t(g[5].bias)},
        "UpConv_1": {"kernel": t(g[7].weight).transpose(2, 3, 0, 1), "bias": t(g[7].bias)}}
  dp = {"Conv_0": {"kernel": t(d[0].weight).transpose(2, 3, 1, 0), "bias": t(d[0].bias)},
        "Conv_1": {"kernel": t(d[2].weight).transpose(2, 3, 1, 0)},
        "BatchNorm_0": {"scale": t(d[3].weight), "bias": t(d[3].bias)},
        "Dense_0": {"kernel": chw_to_hwc(t(d[6].weight).T, 128, 7), "bias": t(d[6].bias)}}
  return gp, dp


def test_dcgan_losses_and_gradients_equal_pytorch():
  n, b = 8, 16
  torch.manual_seed(0)
  g, d = torch_dcgan(n)
  gp, dp = to_flax(g, d, n)
  gen, disc = dcgan.Generator(image_size=28, width=n), dcgan.Discriminator(image_size=28, width=64, batch_norm=True)
  g_stats = gen.init(jax.random.key(0), jnp.zeros((2, 100)))["batch_stats"]
  d_stats = disc.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))["batch_stats"]
  rng = np.random.default_rng(0)
  z = rng.standard_normal((b, 100)).astype(np.float32)
  real = rng.uniform(-1, 1, (b, 28, 28, 1)).astype(np.float32)

  bce = nn.BCEWithLogitsLoss()
  fake_t = g(torch.from_numpy(z))
  loss_d_t = bce(d(torch.from_numpy(real.transpose(0, 3, 1, 2)).contiguous()), torch.ones(b, 1)) + \
      bce(d(fake_t.detach()), torch.zeros(b, 1))
  loss_d_t.backward()
  grad_d_t = {k: p.grad.numpy().copy() for k, p in d.named_parameters()}
  d.zero_grad()
  loss_g_t = bce(d(fake_t), torch.ones(b, 1))   # the G update scores the same fake batch
  loss_g_t.backward()
  grad_g_t = {k: p.grad.numpy() for k, p in g.named_parameters()}

  g_apply = lambda p: gen.apply({"params": p, "batch_stats": g_stats}, z, train=True, mutable=["batch_stats"])[0]
  d_apply = lambda p, x: disc.apply({"params": p, "batch_stats": d_stats}, x, train=True, mutable=["batch_stats"])[0]
  with jax.default_matmul_precision("highest"):
    fake = g_apply(gp)
    loss_d, grad_d = jax.value_and_grad(lambda p: losses.minimax_d(d_apply(p, real), d_apply(p, fake)))(dp)
    loss_g, grad_g = jax.value_and_grad(lambda p: losses.nonsaturating_g(d_apply(dp, g_apply(p))))(gp)

  close = lambda a, b: np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-6)
  close(fake, fake_t.detach().numpy().transpose(0, 2, 3, 1))
  close(loss_d, loss_d_t.item())
  close(loss_g, loss_g_t.item())
  close(grad_d["Conv_0"]["kernel"], grad_d_t["0.weight"].transpose(2, 3, 1, 0))
  close(grad_d["Conv_1"]["kernel"], grad_d_t["2.weight"].transpose(2, 3, 1, 0))
  close(grad_d["BatchNorm_0"]["scale"], grad_d_t["3.weight"])
  close(grad_d["Dense_0"]["kernel"], chw_to_hwc(grad_d_t["6.weight"].T, 128, 7))
  close(grad_g["proj"]["kernel"], chw_to_hwc(grad_g_t["0.weight"], 2 * n, 7).T)
  close(grad_g["BatchNorm_0"]["scale"], grad_g_t["2.weight"])
  close(grad_g["UpConv_0"]["kernel"], grad_g_t["4.weight"].transpose(2, 3, 0, 1))
  close(grad_g["BatchNorm_1"]["bias"], grad_g_t["5.bias"])
  close(grad_g["UpConv_1"]["kernel"], grad_g_t["7.weight"].transpose(2, 3, 0, 1))
