import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gandistill_jax import distill, models, parallel, steps
from gandistill_jax.data import toy
from gandistill_jax.config import default_distill_config
from helpers import random_images, teacher_setup, tiny_config


def distill_config(student_width=2, **distill_kw):
  c = tiny_config(g_width=8, d_width=8)
  c.teacher_model = ml_collections.ConfigDict(c.model.to_dict())
  c.model.g_width = student_width
  c.distill = default_distill_config()
  c.distill.update(distill_kw)
  return c


def random_teacher(config, seed=7):
  gen, disc = models.build_generator(config.teacher_model), models.build_discriminator(config.teacher_model)
  k1, k2 = jax.random.split(jax.random.key(seed))
  g = models.init_variables(gen, k1, jnp.zeros((2, config.model.latent_dim)))
  g["batch_stats"] = jax.tree.map(lambda x: x + 0.1, g["batch_stats"])
  return {"g": g, "d": models.init_variables(disc, k2, jnp.zeros((2, 28, 28, 1)))}


def setup(config, devices, teacher=None):
  task = distill.distill_task(config, teacher or random_teacher(config))
  mesh = parallel.make_mesh(devices)
  state = parallel.replicate(task.init(jax.random.key(0)), mesh)
  return task, state, parallel.jit_step(task.step, mesh, donate=False), mesh


ALL = dict(adv_weight=0.1, dfeat_weight=1.0, gfeat_weight=1.0, d_init="teacher", d_width=0)


def test_teacher_is_bitwise_unchanged_after_distillation_steps():
  config = distill_config(**ALL)
  task, state, step, mesh = setup(config, jax.devices()[:1])
  before = jax.device_get((state.teacher_g, state.teacher_d))
  for i in range(3):
    state, _ = step(state, parallel.host_to_global({"image": random_images(16, seed=i)}, mesh), jax.random.key(1))
  after = jax.device_get((state.teacher_g, state.teacher_d))
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(jax.device_get(state.d_params["Dense_0"]["kernel"]),
                            before[1]["params"]["Dense_0"]["kernel"]), "the teacher-initialised D trains on a copy"


def assert_pixel_loss_falls_tenfold(config, steps_=300):
  """300 steps on one batch: the student's pixel loss to the teacher falls by 10x."""
  _, state, step, mesh = setup(config, jax.devices()[:1])
  batch = parallel.host_to_global({"image": random_images(16)}, mesh)
  losses = []
  for _ in range(steps_):
    state, m = step(state, batch, jax.random.key(1))
    losses.append(float(m["pixel"]))
  assert np.mean(losses[-10:]) < np.mean(losses[:10]) / 10, (losses[:3], losses[-3:])


def assert_one_and_eight_devices_agree(config):
  """Two distill steps on 1 and on 8 devices give the same state and metrics."""
  results = []
  with jax.default_matmul_precision("highest"):
    for n in (1, 8):
      _, state, step, mesh = setup(config, jax.devices()[:n])
      for i in range(2):
        state, m = step(state, parallel.host_to_global({"image": random_images(16, seed=i)}, mesh), jax.random.key(3))
      results.append(jax.device_get((state, m)))
  chex.assert_trees_all_close(results[0], results[1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_pixel_distillation_pulls_the_student_onto_the_teacher(dtype):
  config = distill_config(student_width=4, pixel_p=2)
  config.optim.g_lr = 2e-3
  config.train.compute_dtype = dtype
  assert_pixel_loss_falls_tenfold(config)


def test_one_and_eight_devices_give_the_same_distill_step():
  assert_one_and_eight_devices_agree(distill_config(**ALL))


def test_online_and_offline_first_steps_agree_for_the_same_z():
  online_cfg = distill_config(adv_weight=0.1, dfeat_weight=1.0)
  offline_cfg = distill_config(adv_weight=0.1, dfeat_weight=1.0, mode="offline")
  teacher = random_teacher(online_cfg)
  rng, real = jax.random.key(5), random_images(16)
  z = distill.distill_latent(rng, 0, 16, online_cfg.model.latent_dim)
  gen = models.build_generator(online_cfg.teacher_model)
  zs, images = distill.dump_teacher(lambda z: gen.apply(teacher["g"], z), jax.random.key(0), 4, 16)
  assert zs.shape == (4, 16) and images.shape == (4, 28, 28, 1)
  t_images = np.asarray(gen.apply(teacher["g"], z))
  with jax.default_matmul_precision("highest"):
    _, s_on, step_on, mesh = setup(online_cfg, jax.devices()[:1], teacher)
    _, s_off, step_off, _ = setup(offline_cfg, jax.devices()[:1], teacher)
    s_on, m_on = step_on(s_on, {"image": real}, rng)
    s_off, m_off = step_off(s_off, {"image": real, "z": np.asarray(z), "teacher": t_images}, rng)
  chex.assert_trees_all_close(jax.device_get(s_on), jax.device_get(s_off), atol=1e-6, rtol=1e-5)
  chex.assert_trees_all_close(m_on, m_off, atol=1e-6, rtol=1e-5)


def changed(before, after):
  """Top-level state fields (and s_params parts) whose values moved."""
  out = set()
  for field in ("s_params", "d_params", "teacher_g", "teacher_d"):
    a, b = getattr(before, field), getattr(after, field)
    if field == "s_params":
      out |= {f"s_params.{k}" for k in a if jax.tree.leaves(a[k]) and
              any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a[k]), jax.tree.leaves(b[k])))}
    elif any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))):
      out.add(field)
  return out


@pytest.mark.parametrize("kw, expected", [
    (dict(), {"s_params.generator"}),
    (dict(pixel_weight=0.0, gfeat_weight=1.0), {"s_params.generator", "s_params.adapters"}),
    (dict(pixel_weight=0.0, dfeat_weight=1.0), {"s_params.generator"}),
    (dict(pixel_weight=0.0, adv_weight=1.0), {"s_params.generator", "d_params"}),
    (dict(pixel_weight=0.0, adv_weight=1.0, g_lr=0.0), {"d_params"}),
    (dict(pixel_weight=0.0, adv_weight=1.0, d_lr=0.0), {"s_params.generator"}),
])
def test_each_objective_moves_only_the_parameters_it_should(kw, expected):
  lrs = {k: kw.pop(k) for k in ("g_lr", "d_lr") if k in kw}
  config = distill_config(**kw)
  config.optim.update(lrs)
  _, state, step, mesh = setup(config, jax.devices()[:1])
  before = jax.device_get(state)
  after, _ = step(state, parallel.host_to_global({"image": random_images(16)}, mesh), jax.random.key(1))
  assert changed(before, jax.device_get(after)) == expected


def test_bad_distill_settings_are_clear_errors():
  with pytest.raises(ValueError, match="offline mode does not have"):
    distill.distill_task(distill_config(mode="offline", gfeat_weight=1.0))
  with pytest.raises(ValueError, match="distill.mode='later' is unknown"):
    distill.distill_task(distill_config(mode="later"))
  with pytest.raises(ValueError, match="d_init='borrowed' is unknown"):
    distill.distill_task(distill_config(d_init="borrowed"))


def test_distilled_small_mlp_student_covers_the_teachers_modes():
  config = tiny_config(family="mlp", latent_dim=64, g_width=128, d_width=128)
  config.loss.update(name="hinge", r1_gamma=0.1)
  config.optim.update(g_lr=1e-3, d_lr=1e-3)
  config.train.ema_decay = 0.99
  t_state, t_step, _ = teacher_setup(config, jax.devices()[:1])
  for i in range(6000):
    t_state, _ = t_step(t_state, {"image": toy.ring_batch(0, i, 256)}, jax.random.key(1))
  teacher = {"g": {"params": t_state.g_ema, "batch_stats": {}},
             "d": {"params": t_state.d_params, "batch_stats": {}}}
  d_cfg = config.copy_and_resolve_references()
  d_cfg.teacher_model = ml_collections.ConfigDict(config.model.to_dict())
  d_cfg.model.update(g_width=32, g_depth=2)
  d_cfg.distill = default_distill_config()
  d_cfg.distill.pixel_p = 2
  d_cfg.train.batch_size = 256
  task, state, step, mesh = setup(d_cfg, jax.devices()[:1], teacher)
  for i in range(3000):
    state, _ = step(state, {"image": toy.ring_batch(1, i, 256)}, jax.random.key(2))
  z = steps.sample_latent(jax.random.key(9), 2500, 64)
  t_modes, t_quality = toy.mode_coverage(np.asarray(models.build_generator(config.model).apply(teacher["g"], z)))
  s_modes, s_quality = toy.mode_coverage(np.asarray(task.generator.apply({"params": state.s_ema}, z)))
  s_params = models.param_count(state.s_ema)
  assert s_params < models.param_count(t_state.g_ema) / 10
  assert t_modes >= 7 and s_modes >= t_modes, (t_modes, t_quality, s_modes, s_quality)


def test_the_callers_teacher_survives_a_donating_step():
  """The step donates its state; the teacher variables the caller passed in stay usable."""
  config = distill_config(adv_weight=0.1)
  teacher = random_teacher(config)
  task = distill.distill_task(config, teacher)
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = parallel.replicate(task.init(jax.random.key(0)), mesh)
  step = parallel.jit_step(task.step, mesh, donate=True)
  state, _ = step(state, parallel.host_to_global({"image": random_images(16)}, mesh), jax.random.key(1))
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(teacher))
