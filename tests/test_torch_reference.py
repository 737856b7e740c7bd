"""Our DCGAN G and D compute what a PyTorch DCGAN computes (the reference's architecture:
experiments/reference/torch_dcgan_train.py, written out here): from the same weights, the same
images, discriminator loss, generator loss and parameter gradients, in train mode with batch
norm; and our scratch/teacher train step follows the reference's training loop (Adam, the G
update on the D update's fake batch) step for step. torch is a test-only dependency (CI
installs it for the Inception test too).

Both sides compute in float64. In float32 the comparison was at the mercy of the kinks: with
about 4e5 leaky-ReLU inputs of size ~0.05 and rounding differences of ~3e-8 between the two
frameworks, one input within 3e-8 of zero is likely, and there each side picks its own
slope. On an Intel AMX machine one first-layer input came out +6.7e-10 in JAX and -3.6e-10
in PyTorch, and that one slope changed the kernel gradient of its channel by up to 10%. In
float64 the rounding differences are ~1e-16 and a tie is no longer a practical chance."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gandistill_jax import config as config_lib, losses, steps, tasks
from gandistill_jax.models import dcgan

torch = pytest.importorskip("torch", reason="needs torch (.ci/run installs it)")
nn = torch.nn


def torch_dcgan(n: int):
  """The reference's G(n) and D(64) at 28x28, DCGAN init, in float64."""
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
  return g.double(), d.double()


def chw_to_hwc(w, c, h):
  """Rows of a (C*H*W, ...) torch matrix (NCHW flatten) in our (H*W*C) order."""
  return w.reshape(c, h, h, -1).transpose(1, 2, 0, 3).reshape(c * h * h, -1)


def to_flax(g, d, n):
  """Our parameters from the torch modules. Per-channel biases before batch norm have no
  effect and are dropped; the Linear's bias is one per (channel, position) and is kept."""
  t = lambda p: p.detach().numpy()   # in the torch modules' dtype
  gp = {"proj": {"kernel": chw_to_hwc(t(g[0].weight), 2 * n, 7).T, "bias": chw_to_hwc(t(g[0].bias), 2 * n, 7)[:, 0]},
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
  with torch.no_grad():
    g[0].bias.normal_(0, 0.1)   # a trained projection's bias is not zero, and is not removed by batch norm
  gp, dp = to_flax(g, d, n)
  gen, disc = dcgan.Generator(image_size=28, width=n), dcgan.Discriminator(image_size=28, width=64, batch_norm=True)
  g_stats = gen.init(jax.random.key(0), jnp.zeros((2, 100)))["batch_stats"]
  d_stats = disc.init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))["batch_stats"]
  rng = np.random.default_rng(0)
  z = rng.standard_normal((b, 100))
  real = rng.uniform(-1, 1, (b, 28, 28, 1))

  bce, ones, zeros = nn.BCEWithLogitsLoss(), torch.ones(b, 1, dtype=torch.float64), torch.zeros(b, 1, dtype=torch.float64)
  fake_t = g(torch.from_numpy(z))
  loss_d_t = bce(d(torch.from_numpy(real.transpose(0, 3, 1, 2)).contiguous()), ones) + \
      bce(d(fake_t.detach()), zeros)
  loss_d_t.backward()
  grad_d_t = {k: p.grad.numpy().copy() for k, p in d.named_parameters()}
  d.zero_grad()
  loss_g_t = bce(d(fake_t), ones)   # the G update scores the same fake batch
  loss_g_t.backward()
  grad_g_t = {k: p.grad.numpy() for k, p in g.named_parameters()}

  g_apply = lambda p: gen.apply({"params": p, "batch_stats": g_stats}, z, train=True, mutable=["batch_stats"])[0]
  d_apply = lambda p, x: disc.apply({"params": p, "batch_stats": d_stats}, x, train=True, mutable=["batch_stats"])[0]
  with jax.enable_x64(True), jax.default_matmul_precision("highest"):
    fake = g_apply(gp)
    assert fake.dtype == jnp.float64
    loss_d, grad_d = jax.value_and_grad(lambda p: losses.minimax_d(d_apply(p, real), d_apply(p, fake)))(dp)
    loss_g, grad_g = jax.value_and_grad(lambda p: losses.nonsaturating_g(d_apply(dp, g_apply(p))))(gp)

  assert all(x.dtype == jnp.float64 for x in jax.tree.leaves((grad_d, grad_g)))
  close = lambda a, b: np.testing.assert_allclose(np.asarray(a), b, rtol=1e-9, atol=1e-12)
  close(fake, fake_t.detach().numpy().transpose(0, 2, 3, 1))
  close(loss_d, loss_d_t.item())
  close(loss_g, loss_g_t.item())
  close(grad_d["Conv_0"]["kernel"], grad_d_t["0.weight"].transpose(2, 3, 1, 0))
  close(grad_d["Conv_1"]["kernel"], grad_d_t["2.weight"].transpose(2, 3, 1, 0))
  close(grad_d["BatchNorm_0"]["scale"], grad_d_t["3.weight"])
  close(grad_d["Dense_0"]["kernel"], chw_to_hwc(grad_d_t["6.weight"].T, 128, 7))
  close(grad_g["proj"]["kernel"], chw_to_hwc(grad_g_t["0.weight"], 2 * n, 7).T)
  close(grad_g["proj"]["bias"], chw_to_hwc(grad_g_t["0.bias"], 2 * n, 7)[:, 0])
  close(grad_g["BatchNorm_0"]["scale"], grad_g_t["2.weight"])
  close(grad_g["UpConv_0"]["kernel"], grad_g_t["4.weight"].transpose(2, 3, 0, 1))
  close(grad_g["BatchNorm_1"]["bias"], grad_g_t["5.bias"])
  close(grad_g["UpConv_1"]["kernel"], grad_g_t["7.weight"].transpose(2, 3, 0, 1))


def test_scratch_steps_follow_the_pytorch_training_loop():
  """Three steps of our adversarial step (the teacher recipe at width 8: D with batch norm,
  reuse_fake, Adam (0.5, 0.999)) against the reference's loop body from the same weights,
  real batches and z: the losses agree at every step and the parameters and EMA after.
  One step alone would not see a parameter whose gradient is ignored: Adam moves it by
  about lr on the first step regardless, and a missing one shows from the second step on
  (without the projection's bias, step 2's D loss was off by 8e-3)."""
  n, b, T = 8, 16, 3
  torch.manual_seed(1)
  g, d = torch_dcgan(n)
  c = config_lib.base_config()
  c.model.update(image_size=28, g_width=n, d_width=64, latent_dim=100, d_batch_norm=True)
  c.loss.update(name="nonsaturating", reuse_fake=True)
  c.train.update(batch_size=b, ema_decay=0.999, ema_warmup=False)   # the reference's EMA has a fixed decay
  task = tasks.gan_task(c, "scratch")
  gp, dp = to_flax(g, d, n)
  with jax.enable_x64(True):
    state = steps.cast_floats(task.init(jax.random.key(0)), jnp.float64)   # Adam's moments too
    state = state.replace(g_params=jax.tree.map(jnp.array, gp), g_ema=jax.tree.map(jnp.array, gp),
                          d_params=jax.tree.map(jnp.array, dp))
  ema = {k: p.detach().clone() for k, p in g.named_parameters()}
  opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
  opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
  bce, rng, data = nn.BCEWithLogitsLoss(), jax.random.key(3), np.random.default_rng(0)
  ones, zeros = torch.ones(b, 1, dtype=torch.float64), torch.zeros(b, 1, dtype=torch.float64)
  step = jax.jit(task.step)
  with jax.enable_x64(True), jax.default_matmul_precision("highest"):
    for t in range(T):
      real = data.uniform(-1, 1, (b, 28, 28, 1))
      # the z of steps.make_teacher_step with n_critic = 1
      d_key = jax.random.split(jax.random.fold_in(rng, t))[0]
      z = np.array(steps.sample_latent(jax.random.split(jax.random.split(d_key, 1)[0])[0], b, 100), np.float64)
      state, metrics = step(state, {"image": jnp.asarray(real)}, rng)

      fake = g(torch.from_numpy(z))
      loss_d = bce(d(torch.from_numpy(real.transpose(0, 3, 1, 2)).contiguous()), ones) + \
          bce(d(fake.detach()), zeros)
      opt_d.zero_grad(); loss_d.backward(); opt_d.step()
      loss_g = bce(d(fake), ones)
      opt_g.zero_grad(); loss_g.backward(); opt_g.step()
      with torch.no_grad():
        for k, p in g.named_parameters():
          ema[k].mul_(0.999).add_(p, alpha=0.001)
      np.testing.assert_allclose(metrics["d_loss"], loss_d.item(), rtol=1e-10, err_msg=f"D loss at step {t + 1}")
      np.testing.assert_allclose(metrics["g_loss"], loss_g.item(), rtol=1e-10, err_msg=f"G loss at step {t + 1}")

  g_ema = torch_dcgan(n)[0]
  with torch.no_grad():
    for k, p in g_ema.named_parameters():
      p.copy_(ema[k])
  (g_now, d_now), g_ema_now = to_flax(g, d, n), to_flax(g_ema, d, n)[0]
  for ours, theirs in ((state.g_params, g_now), (state.d_params, d_now), (state.g_ema, g_ema_now)):
    jax.tree.map(lambda a, b_: np.testing.assert_allclose(a, b_, rtol=0, atol=1e-12), dict(ours), theirs)
