"""Small builders shared by the tests: tiny configs, models, states and jitted steps."""
import jax
import numpy as np

from gandistill_jax import config as config_lib, models, parallel, state as state_lib, steps, tasks


def tiny_config(**model_kw):
  c = config_lib.base_config()
  c.model.update(dict(image_size=28, g_width=4, d_width=4, latent_dim=16) | model_kw)
  c.train.batch_size = 16
  return c


def teacher_setup(config, devices, seed=0):
  """(state on `devices`, jitted teacher step, mesh)."""
  gen, disc = models.build_generator(config.model), models.build_discriminator(config.model)
  g_tx = state_lib.adam(config.optim.g_lr, config.optim)
  d_tx = state_lib.adam(config.optim.d_lr, config.optim)
  mesh = parallel.make_mesh(devices)
  state = parallel.replicate(tasks.init_gan_state(gen, disc, g_tx, d_tx, jax.random.key(seed), config.model), mesh)
  step = parallel.jit_step(steps.make_teacher_step(gen, disc, g_tx, d_tx, config), mesh, donate=False)
  return state, step, mesh


def random_images(n, size=28, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 1)).astype(np.float32)
