"""The DCGAN teacher recipe: batch norm in D (real and fake apart) and `loss.reuse_fake`."""
import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from gandistill_jax import config as config_lib, losses, models, parallel, steps
from helpers import random_images, teacher_setup, tiny_config


def test_reuse_fake_is_one_g_forward_scored_by_the_updated_d():
  """The G gradient with reuse_fake equals d/dθ L_G(D'(G_θ(z))) for the critic's own z and the
  D' after its update, computed here from scratch with plain jax.grad."""
  config = tiny_config(d_batch_norm=True)
  config.loss.reuse_fake = True
  state, step, mesh = teacher_setup(config, jax.devices()[:1])
  real = random_images(16)
  key = jax.random.key(3)
  with jax.default_matmul_precision("highest"):
    new, metrics = step(state, parallel.host_to_global({"image": real}, mesh), key)
    gen, disc = models.build_generator(config.model), models.build_discriminator(config.model)
    k = jax.random.fold_in(key, state.step)
    d_key, _ = jax.random.split(key := k)
    z_key, _ = jax.random.split(jax.random.split(d_key, 1)[0])
    z = steps.sample_latent(z_key, 16, config.model.latent_dim)

    def g_loss(g_params):
      fake, _ = steps.apply_model(gen, g_params, state.g_stats, z, train=True)
      logits, _ = steps.apply_model(disc, new.d_params, new.d_stats, fake, train=True)
      return losses.nonsaturating_g(logits)

    loss, grads = jax.value_and_grad(g_loss)(state.g_params)
  np.testing.assert_allclose(metrics["g_loss"], loss, rtol=1e-5)
  tx = optax.adam(config.optim.g_lr, b1=config.optim.b1, b2=config.optim.b2)
  updates, _ = tx.update(grads, tx.init(state.g_params), state.g_params)
  chex.assert_trees_all_close(new.g_params, optax.apply_updates(state.g_params, updates), atol=1e-6)


def test_batch_norm_d_normalises_real_and_fake_apart():
  """With batch norm, D's logits on real data do not depend on the fake batch beside them."""
  disc = models.Discriminator(image_size=28, width=4, batch_norm=True)
  x = jnp.asarray(random_images(8))
  variables = disc.init(jax.random.key(0), x)
  a, _ = disc.apply(variables, x, train=True, mutable=["batch_stats"])
  b, _ = disc.apply(variables, x[:4], train=True, mutable=["batch_stats"])
  assert not np.allclose(a[:4], b)   # batch statistics are in play
  assert "batch_stats" in variables


def test_batch_norm_d_refuses_gradient_penalties():
  config = tiny_config(d_batch_norm=True)
  config.loss.r1_gamma = 1.0
  with pytest.raises(ValueError, match="d_batch_norm"):
    teacher_setup(config, jax.devices()[:1])


@pytest.mark.parametrize("reuse", [False, True])
def test_one_and_eight_devices_agree_with_batch_norm_d(reuse):
  config = tiny_config(d_batch_norm=True)
  config.loss.reuse_fake = reuse
  batches = [random_images(16, seed=i) for i in range(2)]
  out = []
  with jax.default_matmul_precision("highest"):
    for n in (1, 8):
      state, step, mesh = teacher_setup(config, jax.devices()[:n])
      for b in batches:
        state, _ = step(state, parallel.host_to_global({"image": b}, mesh), jax.random.key(1))
      out.append(jax.device_get(state))
  chex.assert_trees_all_close(out[0], out[1], atol=1e-5, rtol=1e-4)


def test_old_workdirs_resume_without_the_new_keys():
  saved = config_lib.base_config().to_dict()
  del saved["model"]["d_batch_norm"], saved["loss"]["reuse_fake"]
  assert config_lib.math_differences(saved, config_lib.base_config().to_dict()) == []
  changed = config_lib.base_config()
  changed.loss.reuse_fake = True
  assert config_lib.math_differences(saved, changed.to_dict()) == ["loss.reuse_fake: False -> True"]


def test_old_workdirs_keep_a_projection_without_bias():
  """Runs saved before model.g_proj_bias rebuild without the bias, and resuming one under
  the new default is refused, except for families that never read the key."""
  saved = config_lib.base_config().to_dict()
  del saved["model"]["g_proj_bias"]
  assert config_lib.math_differences(saved, config_lib.base_config().to_dict()) == ["model.g_proj_bias: False -> True"]
  saved["model"]["family"] = "mlp"
  current = config_lib.base_config()
  current.model.family = "mlp"
  assert config_lib.math_differences(saved, current.to_dict()) == []
  old_model = dict(config_lib.migrate(saved)["model"], family="dcgan", image_size=28)
  new_model = dict(config_lib.base_config().model.to_dict(), image_size=28)
  for cfg, has_bias in ((old_model, False), (new_model, True)):
    gen = models.build_generator(ml_collections.ConfigDict(cfg))
    params = jax.eval_shape(lambda: models.init_variables(gen, jax.random.key(0), jnp.zeros((1, 100))))["params"]
    assert ("bias" in params["proj"]) == has_bias


def test_old_low_rank_workdirs_keep_their_factor_init():
  """Runs saved before model.proj_init start their low-rank factors as before ('dcgan'); a
  difference counts only where a generator reads the key (DCGAN or mobile with proj_rank > 0)."""
  saved = config_lib.base_config().to_dict()
  del saved["model"]["proj_init"]
  assert config_lib.math_differences(saved, config_lib.base_config().to_dict()) == []   # full rank
  saved["model"]["proj_rank"] = 12
  current = config_lib.base_config()
  current.model.proj_rank = 12
  assert config_lib.math_differences(saved, current.to_dict()) == ["model.proj_init: 'dcgan' -> 'matched'"]
  current.model.family = saved["model"]["family"] = "resnet"
  assert config_lib.math_differences(saved, current.to_dict()) == []
  gen = models.build_generator(ml_collections.ConfigDict(dict(config_lib.migrate(saved)["model"], family="dcgan")))
  assert gen.proj_init == "dcgan"
