"""Distillation objectives as terms: schedules, balancing, the new recipes' terms, custom
terms, the student-side D that learns teacher vs student, and the import rule."""
import ast
import dataclasses
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gandistill_jax import distill, objectives, parallel, recipes
from helpers import random_images
from test_distill import assert_one_and_eight_devices_agree, changed, distill_config, random_teacher, setup


@pytest.mark.parametrize("spec, expected", [
    ("constant", {0: 1.0, 10_000: 1.0}),
    ("warmup:100", {0: 0.0, 99: 0.0, 100: 1.0, 5000: 1.0}),
    ("ramp:100:300", {0: 0.0, 100: 0.0, 200: 0.5, 300: 1.0, 900: 1.0}),
    ("decay:0:2000", {0: 1.0, 500: 0.75, 2000: 0.0, 3000: 0.0}),
    ("decay:1000:2000", {0: 1.0, 1000: 1.0, 1500: 0.5, 2000: 0.0}),
    ("cosine:1000", {0: 1.0, 500: 0.5, 1000: 0.0, 2000: 0.0}),
])
def test_schedules_give_the_documented_weights(spec, expected):
  s = objectives.schedule(spec)
  for step, w in expected.items():
    np.testing.assert_allclose(float(s(step)), w, atol=1e-6, err_msg=f"{spec} at step {step}")
  np.testing.assert_allclose(float(objectives.weight(0.2, spec)(500) if spec != "constant" else 0.2),
                             0.2 * float(s(500)), atol=1e-7)


@pytest.mark.parametrize("spec", ["linear", "warmup", "warmup:x", "ramp:5:5", "decay:-1:3", "cosine:0"])
def test_bad_schedules_are_clear_errors(spec):
  with pytest.raises(ValueError, match="is not valid; use 'constant'"):
    objectives.schedule(spec)


def test_mmd_matches_a_numpy_reference_and_is_near_zero_for_one_distribution():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(20, 5)), rng.normal(1.0, 1.0, size=(30, 5))
  xy = np.concatenate([x, y])
  d2 = ((xy[:, None] - xy[None]) ** 2).sum(-1)
  sigma2 = np.median(d2)
  k = sum(np.exp(-d2 / (2 * s * s * sigma2)) for s in (0.5, 1.0, 2.0))
  kxx, kyy, kxy = k[:20, :20], k[20:, 20:], k[:20, 20:]
  ref = ((kxx.sum() - np.trace(kxx)) / (20 * 19) + (kyy.sum() - np.trace(kyy)) / (30 * 29) - 2 * kxy.mean())
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(float(objectives.mmd2(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))),
                               ref, rtol=1e-4)
    same = objectives.mmd2(jnp.asarray(rng.normal(size=(200, 5)), jnp.float32),
                           jnp.asarray(rng.normal(size=(200, 5)), jnp.float32))
  assert abs(float(same)) < 0.05 * ref   # unbiased: E = 0 for samples of one distribution


def test_gram_matches_numpy():
  f = np.random.default_rng(1).normal(size=(2, 3, 4, 5)).astype(np.float32)
  ref = np.einsum("bhwc,bhwd->bcd", f, f) / 12
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(objectives.gram(jnp.asarray(f)), ref, rtol=1e-5, atol=1e-6)


TINYGAN = dict(pixel_weight=0.2, pixel_schedule="decay:0:4", dfeat_weight=1.0, dfeat_d="student",
               dfeat_layer_weighting="tinygan", adv_weight=0.01, d_loss="hinge", d_real="teacher",
               d_real_data_weight=0.2, d_spectral_norm=True)


@pytest.mark.parametrize("kw, expected", [
    (TINYGAN, {"s_params.generator", "d_params"}),
    (dict(pixel_weight=0.0, dfeat_weight=1.0, dfeat_d="student", d_real="teacher"), {"s_params.generator", "d_params"}),
    (dict(pixel_weight=0.0, content_weight=1.0, style_weight=1.0), {"s_params.generator"}),
    (dict(pixel_weight=0.0, content_weight=1.0, gcc_d="student", adv_weight=1.0), {"s_params.generator", "d_params"}),
    (dict(pixel_weight=0.0, mmd_weight=1.0), {"s_params.generator"}),
    (dict(pixel_weight=1.0, adv_weight=1.0, adv_balance=True, mmd_weight=1.0, mmd_balance=True),
     {"s_params.generator", "d_params"}),
])
def test_new_objectives_move_only_their_parameters_and_never_the_teacher(kw, expected):
  config = distill_config(**kw)
  _, state, step, mesh = setup(config, jax.devices()[:1])
  before = jax.device_get(state)
  after, metrics = step(state, parallel.host_to_global({"image": random_images(16)}, mesh), jax.random.key(1))
  after = jax.device_get(after)
  assert changed(before, after) == expected
  for a, b in zip(jax.tree.leaves((before.teacher_g, before.teacher_d)), jax.tree.leaves((after.teacher_g, after.teacher_d))):
    np.testing.assert_array_equal(a, b)
  assert all(np.isfinite(float(v)) for v in jax.device_get(metrics).values())


def test_tinygan_pixel_weight_decays_on_its_schedule():
  config = distill_config(**TINYGAN)
  _, state, step, mesh = setup(config, jax.devices()[:1])
  weights = []
  for i in range(5):
    state, m = step(state, parallel.host_to_global({"image": random_images(16, seed=i)}, mesh), jax.random.key(1))
    weights.append(float(m["pixel_weight"]))
  np.testing.assert_allclose(weights, [0.2, 0.15, 0.1, 0.05, 0.0], atol=1e-7)


def test_teacher_as_real_discriminator_sees_teacher_and_data_at_their_weights():
  """d_real='teacher': L_D = L(D(G_t z), D(G_s z)) + w L(D(x), D(G_s z)), checked by hand."""
  from gandistill_jax import losses, models, steps
  config = distill_config(pixel_weight=1.0, adv_weight=0.5, d_real="teacher", d_real_data_weight=0.2)
  task, state, step, mesh = setup(config, jax.devices()[:1])
  real = random_images(16)
  _, m = step(state, parallel.host_to_global({"image": real}, mesh), jax.random.key(1))
  z = distill.distill_latent(jax.random.key(1), 0, 16, config.model.latent_dim)
  t_img = models.build_generator(config.teacher_model).apply(state.teacher_g, z)
  s_img, _ = steps.apply_model(task.generator, state.s_params["generator"], state.s_stats, z, train=True)
  d = models.Discriminator(image_size=28, width=config.model.g_width)
  logit = lambda x: d.apply({"params": state.d_params}, x)
  ref = (losses.minimax_d(logit(t_img), logit(s_img)) + 0.2 * losses.minimax_d(logit(real), logit(s_img)))
  np.testing.assert_allclose(float(m["d_loss"]), float(ref), rtol=1e-4)


def test_balanced_weight_is_the_gradient_norm_ratio_at_the_image():
  config = distill_config(pixel_weight=1.0, mmd_weight=1.0, mmd_balance=True)
  teacher = random_teacher(config)
  task = distill.distill_task(config, teacher)
  state = task.init(jax.random.key(0))
  _, m = jax.jit(task.step)(state, {"image": random_images(16)}, jax.random.key(1))
  from gandistill_jax import models, steps
  z = distill.distill_latent(jax.random.key(1), 0, 16, config.model.latent_dim)
  t_gen, t_disc = models.build_generator(config.teacher_model), models.build_discriminator(config.teacher_model)
  t_img = t_gen.apply(state.teacher_g, z)
  s_img, _ = steps.apply_model(task.generator, state.s_params["generator"], state.s_stats, z, train=True)
  feats = lambda x: objectives._flat_features(t_disc.apply(state.teacher_d, x, return_features=True)[1])
  g_pix = jax.grad(lambda x: jnp.mean(jnp.abs(x - t_img)))(s_img)
  g_mmd = jax.grad(lambda x: objectives.mmd2(feats(x), feats(t_img)))(s_img)
  np.testing.assert_allclose(float(m["mmd_weight"]), float(jnp.linalg.norm(g_pix) / (jnp.linalg.norm(g_mmd) + 1e-4)),
                             rtol=1e-3)


def test_a_custom_term_changes_training_as_expected():
  """A user's term (push the mean pixel to +1) added without touching the package."""
  config = distill_config(pixel_weight=1e-6)
  config.optim.g_lr = 2e-3
  bright = objectives.Term("bright", lambda t: jnp.mean((t.image - 1.0) ** 2), weight=1.0)
  task = distill.distill_task(config, random_teacher(config), extra_terms=[bright])
  state = task.init(jax.random.key(0))
  step = jax.jit(task.step)
  values = []
  for i in range(60):
    state, m = step(state, {"image": random_images(16)}, jax.random.key(1))
    values.append(float(m["bright"]))
  assert values[-1] < 0.3 * values[0], values[::10]
  with pytest.raises(ValueError, match="distinct names"):
    distill.distill_task(config, random_teacher(config), extra_terms=[dataclasses.replace(bright, name="pixel")])


def test_tinygan_recipe_on_one_and_eight_devices_with_batch_norm_d():
  config = distill_config(**(TINYGAN | dict(d_spectral_norm=False, mmd_weight=0.5, mmd_balance=True)))
  config.teacher_model.d_batch_norm = True
  config.model.d_batch_norm = True
  assert_one_and_eight_devices_agree(config)


TRAINING_MODULES = ("distill", "objectives", "steps", "losses", "loop", "tasks", "prune", "state",
                    "parallel", "checkpoint", "models", "data")


def _imports(path: pathlib.Path) -> set[str]:
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names |= {f"{node.module}.{a.name}" for a in node.names}
  return names


def test_no_training_module_imports_the_evaluation_networks():
  """Scoring never trains: nothing that builds or runs a train step imports gandistill_jax.eval."""
  root = pathlib.Path(distill.__file__).parent
  files = [p for name in TRAINING_MODULES for p in ([root / f"{name}.py"] if (root / f"{name}.py").exists()
                                                    else sorted((root / name).rglob("*.py")))]
  assert len(files) > len(TRAINING_MODULES)
  for f in files:
    bad = {n for n in _imports(f) if n.startswith("gandistill_jax.eval") or n == "eval"}
    assert not bad, f"{f.relative_to(root)} imports {bad}"
  import subprocess, sys
  code = ("import sys, gandistill_jax.distill, gandistill_jax.loop, gandistill_jax.tasks, gandistill_jax.objectives;"
          "print([m for m in sys.modules if m.startswith('gandistill_jax.eval')])")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env=os.environ | {"JAX_PLATFORMS": "cpu"})
  assert out.stdout.strip() == "[]", out.stdout


def test_a_custom_term_can_ask_for_the_student_side_discriminator():
  config = distill_config(pixel_weight=1.0)
  fool = objectives.Term("fool", lambda t: -jnp.mean(t.disc(t.image)[0]), weight=0.1, needs_disc=True)
  task = distill.distill_task(config, random_teacher(config), extra_terms=[fool])
  state = task.init(jax.random.key(0))
  before = jax.device_get(state)
  after, m = jax.jit(task.step)(state, {"image": random_images(16)}, jax.random.key(1))
  assert changed(before, jax.device_get(after)) == {"s_params.generator", "d_params"} and "fool" in m


@pytest.mark.parametrize("name", recipes.RECIPES)
def test_every_named_recipe_takes_a_finite_step(name):
  config = distill_config(student_width=4)
  config.distill.update(recipes.recipe(name, 12), student_init="teacher")
  _, state, step, mesh = setup(config, jax.devices()[:1])
  _, m = step(state, parallel.host_to_global({"image": random_images(16)}, mesh), jax.random.key(1))
  assert all(np.isfinite(float(v)) for v in jax.device_get(m).values()), m
