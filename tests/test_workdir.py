"""A run read back without its trainer: the networks a checkpoint keeps, the one fallback
for checkpoints older than them, and the one migration of saved configs."""
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gandistill_jax as gd
from gandistill_jax import (config as config_lib, export, loop, objectives, parallel, tasks,
                            workdir as workdir_lib)
from gandistill_jax.eval import evaluate

from helpers import tiny_config
from test_provenance import labelled_images

IMAGES, LABELS = labelled_images(64, 0)


def trained(tmp_path, name="t", steps=2):
  c = tiny_config()
  c.train.update(steps=steps, ckpt_every=steps, sample_every=steps, log_every=steps)
  w = str(tmp_path / name)
  task = tasks.gan_task(c)
  state = loop.train(c, w, task, progress=False, data=(IMAGES, LABELS))
  return c, w, task, state


def test_the_checkpointed_networks_are_what_the_trainer_computes(tmp_path):
  c, w, task, state = trained(tmp_path)
  _, g, _, step = workdir_lib.restore_network(w, "generator")
  _, d, _, _ = workdir_lib.restore_network(w, "discriminator")
  assert step == 2
  want = parallel.to_host(jax.jit(task.saved_networks)(state))
  for got, expect in ((g, want["generator"]), (d, want["discriminator"])):
    assert jax.tree.structure(got) == jax.tree.structure(expect)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expect)):
      np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="only a distill run keeps a teacher"):
    workdir_lib.restore_network(w, "teacher")


def test_reading_a_run_builds_no_optimizer(tmp_path, monkeypatch):
  _, w, _, _ = trained(tmp_path)
  evaluate.evaluate_workdir(w, num=64, with_efficiency=False)   # trains (and caches) the run's domain classifier
  def no_optimizer(*args, **kwargs):
    raise AssertionError("an optimizer was built to read a run")
  monkeypatch.setattr(optax, "adam", no_optimizer)
  monkeypatch.setattr(optax, "chain", no_optimizer)
  generate = gd.load_generator(w)
  assert generate(np.zeros((2, 16))).shape == (2, 28, 28, 1)
  export.export_workdir(w, str(tmp_path / "g.jaxexport"), optimize=False)
  result = evaluate.evaluate_workdir(w, num=64, with_efficiency=False)
  assert np.isfinite(result["fid"])
  model, teacher = workdir_lib.load_teacher(w, tiny_config())
  assert set(teacher) == {"g", "d"} and model.g_width == tiny_config().model.g_width


def test_checkpoints_older_than_the_network_items_still_read(tmp_path):
  c, w, task, state = trained(tmp_path)
  expect = parallel.to_host(jax.jit(task.generator_variables)(state))
  for item in ("generator", "discriminator"):
    shutil.rmtree(os.path.join(w, "checkpoints", "2", item))   # as a checkpoint written before them
  _, got, _, step = workdir_lib.restore_network(w, "generator")
  assert step == 2
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expect)):
    np.testing.assert_array_equal(a, b)
  model, teacher = workdir_lib.load_teacher(w, c)
  assert set(teacher) == {"g", "d"}


def test_a_distill_run_keeps_its_teacher_and_an_extra_term_needing_a_d_reads_back(tmp_path):
  c, teacher_dir, _, _ = trained(tmp_path, "teacher")
  s = tiny_config(g_width=2)
  s.distill = config_lib.default_distill_config()
  s.train.update(steps=2, ckpt_every=2, sample_every=2, log_every=2)
  w = str(tmp_path / "student")
  fool = objectives.Term("fool", lambda t: -jnp.mean(t.disc(t.image)[0]), weight=0.1, needs_disc=True)
  gd.distill_student(s, teacher_dir, w, extra_terms=[fool], data=(IMAGES, LABELS), progress=False)
  _, t, _, _ = workdir_lib.restore_network(w, "teacher")
  _, t_own, _, _ = workdir_lib.restore_network(teacher_dir, "generator")
  for a, b in zip(jax.tree.leaves(t), jax.tree.leaves(t_own)):
    np.testing.assert_array_equal(a, b)
  result = evaluate.evaluate_workdir(w, num=64, with_efficiency=False)
  assert np.isfinite(result["fidelity"]["pixel_l1"])


def test_the_migration_fills_each_key_where_it_belongs_and_records_the_schema():
  saved = config_lib.base_config().to_dict()
  saved["teacher_model"] = dict(saved["model"])
  del saved["schema_version"], saved["train"]["ema_warmup"], saved["loss"]["reuse_fake"]
  del saved["model"]["g_proj_bias"], saved["teacher_model"]["proj_init"]
  saved["distill"] = {"pixel_weight": 1.0}
  m = config_lib.migrate(saved)
  assert m["schema_version"] == config_lib.SCHEMA_VERSION
  assert m["train"]["ema_warmup"] is False and m["loss"]["reuse_fake"] is False
  assert m["model"]["g_proj_bias"] is False and m["teacher_model"]["proj_init"] == "dcgan"
  assert "reuse_fake" not in m["model"], "a loss key stays in the loss section"
  assert m["distill"]["student_init"] == "random" and m["distill"]["pixel_weight"] == 1.0
  assert config_lib.migrate(m) == m
  old_layout = dict(saved, model=saved["teacher_model"], student=saved["model"])   # before `model` was the student
  assert config_lib.migrate(old_layout)["model"] == m["model"]


def test_the_package_stacks_at_most_six_layers_of_imports_and_has_no_cycle():
  """Module-level imports inside gandistill_jax form a graph without cycles whose longest
  chain is at most 6 modules (the flax examples stack 3)."""
  import ast
  import functools
  import pathlib
  root = pathlib.Path(config_lib.__file__).parent
  modules = {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in root.rglob("*.py")}

  def deps(name):
    out = set()
    for node in ast.parse(modules[name].read_text()).body:
      if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gandistill_jax"):
        out |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                for a in node.names}
      elif isinstance(node, ast.Import):
        out |= {a.name for a in node.names if a.name.startswith("gandistill_jax")}
    return out & set(modules) - {name, "gandistill_jax"}

  @functools.lru_cache(None)
  def depth(name, path=()):
    assert name not in path, f"import cycle: {' -> '.join(path + (name,))}"
    return 1 + max((depth(d, path + (name,)) for d in deps(name)), default=0)

  deepest = max(modules, key=depth)
  assert depth(deepest) <= 6, f"{deepest} stacks {depth(deepest)} layers of imports"
