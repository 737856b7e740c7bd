"""The open library: own models by name or dotted path in every command (fresh processes),
own data as numpy or tf.data, the top-level API, old workdirs, metrics hygiene, and the
README's "Use as a library" script."""
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf

import gandistill_jax as gd
from gandistill_jax import config as config_lib, loop, models, tasks, workdir as workdir_lib
from gandistill_jax.data.errors import DataError
from helpers import tiny_config
from test_data import make_idx_folder
from test_loop_cli import DISTILL, QUICK, REPO, sets

TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def idx_data(tmp_path_factory):
  root = tmp_path_factory.mktemp("data")
  folder = make_idx_folder(str(root / "idx"), n_train=128, n_test=64)
  return ["data.source='idx'", "data.name='mnist'", f"data.path='{folder}'", f"data.data_dir='{root / 'tfds'}'",
          f"eval.cache_dir='{root / 'cache'}'"]


def run_cli(*args, check=True):
  """The CLI in a fresh process that can import tests/custom_models.py (and may: these
  workdirs are the test's own)."""
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu", PYTHONPATH=TESTS, GANDISTILL_TRUST_WORKDIR_CODE="1")
  proc = subprocess.run([sys.executable, "-m", "gandistill_jax.cli", *args], env=env, capture_output=True, text=True)
  if check:
    assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def test_models_resolve_by_name_by_dotted_path_and_fail_clearly():
  cfg = tiny_config(family="custom_models:upsample_generator", d_family="custom_models:PlainDiscriminator").model
  gen, disc = models.build_generator(cfg), models.build_discriminator(cfg)
  assert type(gen).__name__ == "UpsampleGenerator" and type(disc).__name__ == "PlainDiscriminator"
  models.register_generator("upsample_test", lambda c: gen)
  assert models.build_generator(tiny_config(family="upsample_test").model) is gen
  models.register_generator("not_a_module", lambda c: 3)
  assert type(models.build_discriminator(tiny_config(family="mobile").model)).__name__ == "Discriminator"
  for family, message in (("nope", "model.family='nope' is unknown"),
                          ("no_such_module_x:G", "cannot import 'no_such_module_x'"),
                          ("custom_models:Missing", "has no 'Missing'"),
                          ("custom_models:UpsampleGenerator", "without a from_config"),
                          ("not_a_module", "built a int, not a flax.linen Module")):
    with pytest.raises(ValueError, match=re.escape(message)):
      models.build_generator(tiny_config(family=family).model)


def test_custom_generator_and_discriminator_through_every_command_in_fresh_processes(tmp_path, idx_data):
  teacher, student = str(tmp_path / "teacher"), str(tmp_path / "student")
  run_cli("train-teacher", "--config", QUICK, "--workdir", teacher, "--quiet",
          *sets(*idx_data, "train.steps=4", "model.d_family='custom_models:PlainDiscriminator'"))
  small = sets(*idx_data, "model.latent_dim=32", "model.g_width=4", "model.family='custom_models:upsample_generator'",
               "distill.student_init='random'", "distill.warmup_steps=1", "train.batch_size=16",
               "train.ckpt_every=2")
  run_cli("distill", "--config", DISTILL, "--teacher", teacher, "--workdir", student, "--quiet",
          *small, *sets("train.steps=2"))
  run_cli("distill", "--teacher", teacher, "--workdir", student, "--quiet", *sets("train.steps=4"))  # resume
  saved = json.load(open(os.path.join(student, "config.json")))
  assert saved["model"]["family"] == "custom_models:upsample_generator" and "student" not in saved
  assert saved["teacher_model"]["d_family"] == "custom_models:PlainDiscriminator"
  assert [json.loads(l)["step"] for l in open(os.path.join(student, "metrics.jsonl"))] == [2, 4]
  run_cli("eval", "--workdir", student, "--num", "64")
  assert np.isfinite(json.load(open(os.path.join(student, "eval.json")))["fid"])
  artifact = str(tmp_path / "s.jaxexport")
  run_cli("export", "--workdir", student, "--out", artifact)
  for source, out in (("--workdir", student), ("--exported", artifact)):
    run_cli("sample", source, out if source == "--workdir" else artifact, "--num", "4", "--format", "npz",
            "--out", str(tmp_path / f"{source[2:]}.npz"))
  a, b = (np.load(tmp_path / f"{n}.npz")["images"] for n in ("workdir", "exported"))
  assert a.shape == (4, 28, 28, 1) and np.abs(a.astype(int) - b).max() <= 1
  proc = run_cli("distill", "--config", DISTILL, "--teacher", teacher, "--workdir", str(tmp_path / "x"),
                 *small, *sets("model.family='no_such_module_x:G'"), check=False)
  assert proc.returncode == 2 and "cannot import 'no_such_module_x'" in proc.stderr.splitlines()[-1]


def test_numpy_and_tf_data_train_the_same_and_bad_images_are_refused(tmp_path):
  config = tiny_config()
  config.train.update(steps=3, log_every=1, sample_every=3, ckpt_every=3)
  images = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
  task = tasks.gan_task(config)
  from_numpy = loop.train(config, str(tmp_path / "np"), task, progress=False, data=images)
  dataset = tf.data.Dataset.from_tensor_slices({"image": images[..., None], "label": np.zeros(40, np.int64)})
  from_tf = loop.train(config, str(tmp_path / "tf"), task, progress=False, data=dataset)
  for x, y in zip(jax.tree.leaves(from_numpy), jax.tree.leaves(from_tf)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  for bad, message in ((images.astype(np.float32) / 127.5 - 1, r"float32 with values in \[-1, 1\]; give uint8"),
                       (dataset.repeat(), "endless"), (images[0], "expected \\(N, H, W\\)")):
    with pytest.raises(DataError, match=message):
      loop.train(config, str(tmp_path / "bad"), task, progress=False, data=bad)


def test_fid_entry_point_matches_the_metric_on_given_features():
  rng = np.random.default_rng(0)
  a, b = rng.integers(0, 256, (50, 8, 8, 1), dtype=np.uint8), rng.integers(0, 128, (50, 8, 8, 1), dtype=np.uint8)
  flat = lambda x: x.reshape(len(x), -1)[:, :6]
  from gandistill_jax.data import pipeline
  from gandistill_jax.eval import metrics
  expected = metrics.fid(flat(pipeline.to_float(a)), flat(pipeline.to_float(b)))
  assert gd.fid(a, b, features=flat) == pytest.approx(expected)
  assert gd.fid(a, a, features=flat) == pytest.approx(0.0, abs=1e-6)
  with pytest.raises(ValueError, match="uint8 in \\[0, 255\\] or float in \\[-1, 1\\]"):
    gd.fid(a * 2.0, b, features=flat)


def test_resumed_run_logs_each_step_once_and_times_steps_only(tmp_path):
  config = tiny_config()
  config.train.update(steps=3, log_every=1, sample_every=100, ckpt_every=2)
  images = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
  w = str(tmp_path / "w")
  loop.train(config, w, tasks.gan_task(config), progress=False, data=images)
  shutil.rmtree(os.path.join(w, "checkpoints", "3"))   # as if killed after logging step 3
  config.train.steps = 4
  loop.train(config, w, tasks.gan_task(config), progress=False, data=images)
  lines = [json.loads(l) for l in open(os.path.join(w, "metrics.jsonl"))]
  assert [l["step"] for l in lines] == [1, 2, 3, 4]
  # the first step of a process compiles: it is not timed; the others are
  assert [l["step"] for l in lines if "steps_per_s" in l] == [2, 4] and all(l.get("steps_per_s", 1) > 0 for l in lines)


def test_old_three_section_distill_workdirs_still_load(tmp_path, idx_data):
  teacher, student = str(tmp_path / "teacher"), str(tmp_path / "student")
  run_cli("train-teacher", "--config", QUICK, "--workdir", teacher, "--quiet", *sets(*idx_data, "train.steps=2"))
  run_cli("distill", "--config", DISTILL, "--teacher", teacher, "--workdir", student, "--quiet",
          *sets(*idx_data, "model.latent_dim=32", "model.g_width=4", "train.steps=2", "train.batch_size=16"))
  path = os.path.join(student, "config.json")
  new = json.load(open(path))
  old = dict(new, model=new["teacher_model"], student=new["model"])
  json.dump(old, open(path, "w"))
  assert config_lib.upgrade(old) == new
  assert workdir_lib.load_config(student).to_dict() == new
  run_cli("distill", "--teacher", teacher, "--workdir", student, "--quiet", *sets("train.steps=3"))
  assert json.load(open(path))["model"] == new["model"]
  assert gd.load_generator(student)(np.zeros((2, 32))).shape == (2, 28, 28, 1)


def readme_library_script() -> str:
  readme = open(os.path.join(REPO, "README.md")).read()
  section = readme[readme.index("## Use as a library"):]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_library_script_runs(tmp_path, fashion_mnist_eval):
  config, _, _ = fashion_mnist_eval
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu", PYTHONPATH=os.path.join(REPO, "experiments"),
             GANDISTILL_CACHE=config.eval.cache_dir, TFDS_DATA_DIR=config.data.data_dir)
  script = tmp_path / "library.py"
  script.write_text(readme_library_script())
  proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  fids = {run: float(re.search(rf"{run} FID: ([\d.]+)", proc.stdout).group(1)) for run in ("teacher", "student")}
  assert all(np.isfinite(f) and f > 0 for f in fids.values()), fids
  assert os.path.getsize(tmp_path / "runs" / "lib" / "student.jaxexport") > 1000
  assert json.load(open(tmp_path / "runs" / "lib" / "student" / "config.json"))["model"]["family"] == \
      "custom_generator:DSGenerator"


def test_the_compilation_cache_is_opt_in_for_the_library(tmp_path):
  """In a fresh process (the setting is process-wide): a library run leaves jax.config as it
  was; loop.enable_compilation_cache (what the commands call) caches compiled programs in
  <cache dir>/xla."""
  code = ("import sys, numpy as np, jax; sys.path.insert(0, %r)\n"
          "from helpers import tiny_config\nfrom gandistill_jax import loop, tasks\n"
          "c = tiny_config(g_width=64, d_width=64); c.train.update(steps=1, log_every=1, sample_every=9, ckpt_every=9)\n"
          "data = np.zeros((32, 28, 28), np.uint8)\n"
          "loop.train(c, %r, tasks.gan_task(c), progress=False, data=data)\n"
          "print(repr(jax.config.jax_compilation_cache_dir))\n"
          "loop.enable_compilation_cache(c)\n"
          "loop.train(c, %r, tasks.gan_task(c), progress=False, data=data)\n"
          "print(jax.config.jax_compilation_cache_dir)" % (TESTS, str(tmp_path / "w"), str(tmp_path / "w2")))
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu", GANDISTILL_CACHE=str(tmp_path / "cache"))
  proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-2000:]
  before, after = proc.stdout.strip().splitlines()[-2:]
  assert before in ("None", "''"), before
  assert after == str(tmp_path / "cache" / "xla")
  assert os.listdir(tmp_path / "cache" / "xla"), "the step (width 64 compiles for > 0.5 s) is cached"


def test_the_api_imports_light_and_fid_with_own_features_needs_no_tensorflow():
  """`import gandistill_jax.api` loads neither TensorFlow nor jax, and gd.fid with the
  caller's features runs without TensorFlow (fresh processes; the time is printed)."""
  code = ("import sys, time; t = time.perf_counter(); import gandistill_jax.api as api\n"
          "print(time.perf_counter() - t, 'tensorflow' in sys.modules, 'jax' in sys.modules)\n"
          "import numpy as np, gandistill_jax as gd\n"
          "r = np.random.default_rng(0)\n"
          "a, b = r.integers(0, 256, (200, 8, 8, 1), dtype=np.uint8), r.integers(0, 256, (200, 8, 8, 1), dtype=np.uint8)\n"
          "print(gd.fid(a, b, features=lambda x: x.reshape(len(x), -1)[:, :16]), 'tensorflow' in sys.modules)")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stderr[-2000:]
  (seconds, tf_loaded, jax_loaded), (fid, tf_after) = [line.split() for line in proc.stdout.strip().splitlines()[-2:]]
  assert (tf_loaded, jax_loaded, tf_after) == ("False", "False", "False"), proc.stdout
  assert float(seconds) < 1.5 and 0 <= float(fid) < 1, proc.stdout


@pytest.mark.slow
def test_evaluate_scores_images_and_generators_on_the_domain_classifier(fashion_mnist_eval):
  config, _, _ = fashion_mnist_eval
  from gandistill_jax.data import idx
  train, _ = idx.load_idx_split(idx.DEBIAN_FASHION_MNIST, "train")
  real = gd.evaluate(train[:2000], config)
  def noise_generator(z):
    return np.tanh(z.reshape(-1, 28, 28, 1))
  noise_generator.latent_dim = 784
  noise = gd.evaluate(noise_generator, config, num=2000)
  assert real["counts"]["generated"] == noise["counts"]["generated"] == 2000
  assert real["fid"] < 5 < 50 < noise["fid"] and real["recall"] > 0.5
