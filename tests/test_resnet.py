"""The SNGAN ResNet family (Miyato et al. 2018): the published sizes, a teacher run on TFDS
mock CIFAR-10 through every command, 1 = 8 devices, and distillation
from a tiny ResNet teacher."""
import json
import os

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from gandistill_jax import cli, distill, models, parallel, recipes
from gandistill_jax.config import default_distill_config
from test_teacher_step import run_steps

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "configs")


def tiny_sngan(size=32, width=4):
  c = recipes.sngan_base("cifar10", size)
  c.model.update(g_width=width, d_width=width, latent_dim=16)
  c.train.batch_size = 8
  return c


@pytest.mark.parametrize("size, g_params, d_params", [(32, 4_270_339 + 4 * 4 * 256, 1_053_825), (64, 8_530_371 + 4 * 4 * 512, 19_542_721)])
def test_published_widths_give_the_sngan_sizes_and_shapes(size, g_params, d_params):
  c = recipes.sngan_base("cifar10", size).model
  gen, disc = models.build_generator(c), models.build_discriminator(c)
  g = jax.eval_shape(lambda: models.init_variables(gen, jax.random.key(0), jnp.zeros((2, 128))))
  d = jax.eval_shape(lambda: models.init_variables(disc, jax.random.key(0), jnp.zeros((2, size, size, 3))))
  assert models.param_count(g["params"]) == g_params and models.param_count(d["params"]) == d_params
  images, feats = jax.eval_shape(lambda v: gen.apply(v, jnp.zeros((2, 128)), return_features=True), g)
  assert images.shape == (2, size, size, 3) and feats[-1].shape[1] == size
  assert jax.eval_shape(lambda v: disc.apply(v, jnp.zeros((2, size, size, 3))), d).shape == (2,)
  with pytest.raises(ValueError, match="image_size=28 is not supported by the ResNet family"):
    models.build_generator(recipes.sngan_base("cifar10", 28).model).init(jax.random.key(0), jnp.zeros((1, 128)))


def test_one_and_eight_devices_give_the_same_resnet_teacher_step():
  config = tiny_sngan()
  config.loss.n_critic = 1
  batches = [np.random.default_rng(i).uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32) for i in range(2)]
  with jax.default_matmul_precision("highest"):
    (s1, m1), (s8, m8) = (run_steps(config, jax.devices()[:n], batches) for n in (1, 8))
  chex.assert_trees_all_close(s1, s8, atol=1e-5, rtol=1e-4)
  chex.assert_trees_all_close(m1, m8, atol=1e-5, rtol=1e-4)


def test_a_resnet_student_learns_a_tiny_resnet_teacher_by_distillation():
  teacher_cfg = tiny_sngan(width=8)
  config = ml_collections.ConfigDict(teacher_cfg.to_dict())
  config.teacher_model = ml_collections.ConfigDict(teacher_cfg.model.to_dict())
  config.model.g_width = 4
  config.distill = default_distill_config()
  config.distill.update(pixel_p=2, adv_weight=0.1, warmup_steps=100)   # D trains; G sees pixels only
  config.optim.g_lr = 2e-3
  t_gen = models.build_generator(config.teacher_model)
  t_disc = models.build_discriminator(config.teacher_model)
  teacher = {"g": models.init_variables(t_gen, jax.random.key(1), jnp.zeros((2, 16))),
             "d": models.init_variables(t_disc, jax.random.key(2), jnp.zeros((2, 32, 32, 3)))}
  task = distill.distill_task(config, teacher)
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = parallel.replicate(task.init(jax.random.key(0)), mesh)
  step = parallel.jit_step(task.step, mesh, donate=False)
  images = {"image": np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32)}
  losses = []
  for _ in range(100):
    state, m = step(state, parallel.host_to_global(images, mesh), jax.random.key(3))
    losses.append(float(m["pixel"]))
  assert np.isfinite(losses).all() and np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses[::10]


def test_the_resnet_configs_run_through_every_command(tmp_path):
  """teacher -> distill and scratch -> eval -> export -> sample, on mock CIFAR-10, with the
  experiments' own config files at tiny widths."""
  data = [f"data.data_dir='{tmp_path / 'tfds'}'", "data.download=True", f"eval.cache_dir='{tmp_path / 'cache'}'",
          "train.steps=2", "train.batch_size=8", "train.log_every=1", "train.sample_every=2", "train.ckpt_every=2"]
  def run(*args, sets=()):
    assert cli.main([*args, "--quiet", *(x for s in [*data, *sets] for x in ("--set", s))]) == 0
  w = {name: str(tmp_path / name) for name in ("teacher", "distill", "scratch")}
  with tfds.testing.mock_data(num_examples=256):
    run("train-teacher", "--config", os.path.join(CONFIGS, "cifar10_sngan.py"), "--workdir", w["teacher"],
        sets=["model.g_width=4", "model.d_width=4"])
    saved = json.load(open(os.path.join(w["teacher"], "config.json")))
    assert saved["loss"]["name"] == "hinge" and saved["loss"]["n_critic"] == 5
    run("distill", "--config", os.path.join(CONFIGS, "cifar10_sngan_distill.py"), "--teacher", w["teacher"],
        "--workdir", w["distill"], sets=["model.g_width=2", "model.d_width=4", "distill.warmup_steps=1"])
    run("train-scratch", "--config", os.path.join(CONFIGS, "cifar10_sngan_scratch.py"), "--workdir", w["scratch"],
        sets=["model.g_width=2", "model.d_width=4"])
    for name, teacher in (("distill", []), ("scratch", ["--teacher", w["teacher"]])):   # a distill run keeps its own
      assert cli.main(["eval", "--workdir", w[name], *teacher, "--num", "32",
                       "--set", f"eval.cache_dir='{tmp_path / 'cache'}'"]) == 0
      result = json.load(open(os.path.join(w[name], "eval.json")))
      assert np.isfinite([result["fid"], result["fidelity"]["pixel_l1"]]).all()
  artifact = str(tmp_path / "student.jaxexport")
  assert cli.main(["export", "--workdir", w["distill"], "--out", artifact]) == 0
  assert cli.main(["sample", "--exported", artifact, "--num", "4", "--format", "npz", "--out", str(tmp_path / "s.npz")]) == 0
  assert np.load(tmp_path / "s.npz")["images"].shape == (4, 32, 32, 3)
