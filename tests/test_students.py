"""Student families and students that start from the teacher."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gandistill_jax import distill, models, prune
from helpers import tiny_config
from test_distill import assert_pixel_loss_falls_tenfold, distill_config, random_teacher


def teacher_variables(cfg, seed=3):
  """A random DCGAN teacher with non-trivial batch-norm parameters and statistics and projection bias."""
  gen = models.build_generator(cfg)
  v = models.init_variables(gen, jax.random.key(seed), jnp.zeros((2, cfg.latent_dim)))
  keys = iter(jax.random.split(jax.random.key(seed + 1), 64))
  perturb = lambda x: x + 0.3 * jax.random.normal(next(keys), x.shape)
  v["params"] = {k: (jax.tree.map(perturb, p) if k.startswith("BatchNorm") else p) for k, p in v["params"].items()}
  if "bias" in v["params"]["proj"]:
    v["params"]["proj"] = dict(v["params"]["proj"], bias=perturb(v["params"]["proj"]["bias"]))
  v["batch_stats"] = jax.tree.map(lambda x: jnp.abs(perturb(x)), v["batch_stats"])
  return gen, v


def model_cfg(**kw):
  return ml_collections.ConfigDict(tiny_config(**kw).model.to_dict())


@pytest.mark.parametrize("prune_by", prune.PRUNE_BY)
def test_pruned_student_at_keep_ratio_one_is_the_teacher(prune_by):
  t_cfg = model_cfg(g_width=8)
  gen, t_vars = teacher_variables(t_cfg)
  s_init = models.init_variables(gen, jax.random.key(9), jnp.zeros((2, 16)))
  s_vars = prune.student_from_teacher(t_vars, t_cfg, t_cfg, s_init, prune_by)
  for a, b in zip(jax.tree.leaves(t_vars), jax.tree.leaves(s_vars)):
    np.testing.assert_array_equal(a, b)
  z = jax.random.normal(jax.random.key(0), (8, 16))
  np.testing.assert_array_equal(gen.apply(s_vars, z), gen.apply(t_vars, z))


def test_a_teacher_without_projection_bias_gives_a_zero_bias():
  """Teachers trained before model.g_proj_bias existed have none; the student's starts at zero
  (the same map), and a student cannot drop a teacher's bias."""
  t_cfg, s_cfg = model_cfg(g_width=8, g_proj_bias=False), model_cfg(g_width=8)
  t_gen, t_vars = teacher_variables(t_cfg)
  s_gen = models.build_generator(s_cfg)
  s_vars = prune.student_from_teacher(t_vars, t_cfg, s_cfg, models.init_variables(s_gen, jax.random.key(9), jnp.zeros((2, 16))))
  np.testing.assert_array_equal(s_vars["params"]["proj"]["bias"], 0.0)
  z = jax.random.normal(jax.random.key(0), (8, 16))
  np.testing.assert_array_equal(s_gen.apply(s_vars, z), t_gen.apply(t_vars, z))
  with pytest.raises(ValueError, match="projection bias"):
    prune.student_from_teacher({}, s_cfg, t_cfg, {})


def test_pruning_keeps_the_largest_channels_and_the_svd_projection():
  t_cfg = model_cfg(g_width=8)
  s_cfg = model_cfg(g_width=4, proj_rank=5)
  gen, t_vars = teacher_variables(t_cfg)
  s_gen = models.build_generator(s_cfg)
  s_init = models.init_variables(s_gen, jax.random.key(9), jnp.zeros((2, 16)))
  s_vars = prune.student_from_teacher(t_vars, t_cfg, s_cfg, s_init, "bn_scale")
  scale0 = np.asarray(t_vars["params"]["BatchNorm_0"]["scale"])
  kept0 = np.sort(np.argsort(-np.abs(scale0))[:8])
  np.testing.assert_array_equal(s_vars["params"]["BatchNorm_0"]["scale"], scale0[kept0])
  np.testing.assert_array_equal(s_vars["batch_stats"]["BatchNorm_0"]["var"],
                                np.asarray(t_vars["batch_stats"]["BatchNorm_0"]["var"])[kept0])
  np.testing.assert_array_equal(s_vars["params"]["proj"]["bias"],
                                np.asarray(t_vars["params"]["proj"]["bias"]).reshape(-1, 16)[:, kept0].reshape(-1))
  proj = np.asarray(t_vars["params"]["proj"]["kernel"]).reshape(16, -1, 16)[:, :, kept0].reshape(16, -1)
  approx = np.asarray(s_vars["params"]["proj_low_rank"]["kernel"]) @ np.asarray(s_vars["params"]["proj"]["kernel"])
  s = np.linalg.svd(proj, compute_uv=False)
  np.testing.assert_allclose(np.linalg.norm(proj - approx), np.sqrt(np.sum(s[5:] ** 2)), rtol=1e-4)  # Eckart-Young
  out = s_gen.apply(s_vars, jnp.zeros((2, 16)))
  assert out.shape == (2, 28, 28, 1)


def test_a_student_cut_from_the_teacher_does_not_depend_on_the_factor_init():
  """student_init='teacher' overwrites every generator weight, the low-rank factors included
  (truncated SVD): model.proj_init changes only students that start from random weights."""
  t_cfg = model_cfg(g_width=8)
  _, t_vars = teacher_variables(t_cfg)
  inits, cuts = [], []
  for proj_init in ("matched", "dcgan"):
    s_cfg = model_cfg(g_width=4, proj_rank=5, proj_init=proj_init)
    inits.append(models.init_variables(models.build_generator(s_cfg), jax.random.key(9), jnp.zeros((2, 16))))
    cuts.append(prune.student_from_teacher(t_vars, t_cfg, s_cfg, inits[-1], "bn_scale"))
  assert not np.allclose(inits[0]["params"]["proj_low_rank"]["kernel"], inits[1]["params"]["proj_low_rank"]["kernel"])
  for a, b in zip(jax.tree.leaves(cuts[0]), jax.tree.leaves(cuts[1])):
    np.testing.assert_array_equal(a, b)


def test_pruning_refuses_students_it_cannot_cut():
  t_cfg = model_cfg(g_width=4)
  with pytest.raises(ValueError, match="at most the teacher"):
    prune.student_from_teacher({}, t_cfg, model_cfg(g_width=8), {}, "l1")
  with pytest.raises(ValueError, match="student 'resnet'"):
    prune.student_from_teacher({}, t_cfg, model_cfg(g_width=2, family="resnet"), {}, "l1")
  with pytest.raises(ValueError, match="teacher model.family='mobile'"):
    prune.student_from_teacher({}, model_cfg(g_width=4, family="mobile"), model_cfg(g_width=2), {}, "l1")


def test_sensitivity_is_the_output_change_when_a_channel_is_removed():
  """prune_by='sensitivity' scores channel c by E_z mean |G(z) - G_{-c}(z)|: a channel the
  teacher's batch norm already zeroes scores 0 and is the first one dropped; a channel scaled
  up is kept; every score equals the ablation computed directly."""
  t_cfg = model_cfg(g_width=8)
  gen, t_vars = teacher_variables(t_cfg)
  bn = dict(t_vars["params"]["BatchNorm_1"])
  bn["scale"], bn["bias"] = bn["scale"].at[2].set(0.0), bn["bias"].at[2].set(0.0)
  bn["scale"], bn["bias"] = bn["scale"].at[5].set(5.0), bn["bias"].at[5].set(3.0)
  t_vars = dict(t_vars, params=dict(t_vars["params"], BatchNorm_1=bn))
  scores = np.asarray(prune.channel_scores(t_vars, t_cfg, 1, "sensitivity"))
  assert scores[2] == 0.0 and scores.argmax() == 5
  z = jax.random.normal(jax.random.key(0), (prune.SENSITIVITY_BATCH, 16))
  full = gen.apply(t_vars, z)
  for c in (0, 5):
    gone = dict(bn, scale=bn["scale"].at[c].set(0.0), bias=bn["bias"].at[c].set(0.0))
    out = gen.apply(dict(t_vars, params=dict(t_vars["params"], BatchNorm_1=gone)), z)
    np.testing.assert_allclose(scores[c], np.abs(out - full).mean(), rtol=1e-5)
  s_cfg = model_cfg(g_width=4, proj_rank=5)
  s_init = models.init_variables(models.build_generator(s_cfg), jax.random.key(9), jnp.zeros((2, 16)))
  cut = prune.student_from_teacher(t_vars, t_cfg, s_cfg, s_init, "sensitivity")
  kept1 = np.sort(np.argsort(-scores, kind="stable")[:4])
  assert 5 in kept1 and 2 not in kept1
  np.testing.assert_array_equal(cut["params"]["BatchNorm_1"]["scale"], np.asarray(bn["scale"])[kept1])


def test_a_mobile_student_takes_the_teachers_projection_and_first_batch_norm():
  """A mobile student shares the DCGAN's projection and the batch norm after it: those are
  cut from the teacher exactly as for a DCGAN student of its width and rank; its
  inverted-residual blocks and output conv keep their init."""
  t_cfg = model_cfg(g_width=8)
  _, t_vars = teacher_variables(t_cfg)
  m_cfg, d_cfg = model_cfg(g_width=4, proj_rank=5, family="mobile"), model_cfg(g_width=4, proj_rank=5)
  m_init = models.init_variables(models.build_generator(m_cfg), jax.random.key(9), jnp.zeros((2, 16)))
  d_init = models.init_variables(models.build_generator(d_cfg), jax.random.key(9), jnp.zeros((2, 16)))
  m_cut = prune.student_from_teacher(t_vars, t_cfg, m_cfg, m_init, "bn_scale")
  d_cut = prune.student_from_teacher(t_vars, t_cfg, d_cfg, d_init, "bn_scale")
  for col in ("params", "batch_stats"):
    for k, v in m_cut[col].items():
      ref = d_cut[col][k] if k in ("proj", "proj_low_rank", "BatchNorm_0") else m_init[col][k]
      for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(ref)):
        np.testing.assert_array_equal(a, b)
  config = distill_config(student_width=4, student_init="teacher", prune_by="sensitivity")
  config.model.update(family="mobile", proj_rank=5)
  state = distill.distill_task(config, random_teacher(config)).init(jax.random.key(0))
  assert np.isfinite(np.asarray(state.s_params["generator"]["proj"]["kernel"])).all()


def test_distill_task_starts_a_teacher_initialised_student_from_the_teacher():
  """student_init='teacher' at the teacher's width: the distill state's first student is the
  teacher, output for output; at half width it holds the pruned teacher's weights."""
  teacher = random_teacher(distill_config())
  z = jax.random.normal(jax.random.key(1), (8, 16))
  full = distill.distill_task(distill_config(student_width=8, student_init="teacher"), teacher)
  state = full.init(jax.random.key(0))
  s_vars = {"params": state.s_params["generator"], "batch_stats": state.s_stats}
  t_gen = models.build_generator(distill_config().teacher_model)
  np.testing.assert_array_equal(full.generator.apply(s_vars, z), t_gen.apply(teacher["g"], z))
  half_cfg = distill_config(student_width=4, student_init="teacher", prune_by="l1")
  half = distill.distill_task(half_cfg, teacher).init(jax.random.key(0))
  expected = prune.student_from_teacher(teacher["g"], half_cfg.teacher_model, half_cfg.model,
                                        {"params": half.s_params["generator"], "batch_stats": half.s_stats}, "l1")
  got = {"params": half.s_params["generator"], "batch_stats": half.s_stats}
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_mobile_generator_matches_the_dcgan_contract(upsample):
  dc = models.build_generator(model_cfg(g_width=8))
  mb = models.build_generator(model_cfg(g_width=8, family="mobile", upsample=upsample))
  z = jnp.zeros((3, 16))
  d_img, d_feats = dc.apply(models.init_variables(dc, jax.random.key(0), z), z, return_features=True)
  v = models.init_variables(mb, jax.random.key(0), z)
  m_img, m_feats = mb.apply(v, z, return_features=True)
  assert m_img.shape == d_img.shape and [f.shape for f in m_feats] == [f.shape for f in d_feats]
  assert models.param_count(v["params"]) < models.param_count(
      models.init_variables(dc, jax.random.key(0), z)["params"])
  no_bn = models.build_generator(model_cfg(g_width=8, family="mobile", g_batch_norm=False))
  assert not models.init_variables(no_bn, jax.random.key(0), z)["batch_stats"]


def test_mobile_student_learns_the_teacher_by_distillation():
  config = distill_config(student_width=4, pixel_p=2)
  config.model.family = "mobile"
  config.optim.g_lr = 2e-3
  assert_pixel_loss_falls_tenfold(config)
