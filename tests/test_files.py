"""Trustworthy files: corrupt checkpoints are detected and skipped, configs are validated
before anything is written, data builds are keyed by their files, one run per workdir,
and every mistake is one line with exit code 2."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from gandistill_jax import cli, export, loop, parallel, tasks, workdir as workdir_lib
from gandistill_jax.checkpoint import CorruptCheckpoint
from gandistill_jax.data import pipeline
from gandistill_jax.data.errors import DataError
from helpers import tiny_config
from test_data import data_cfg, make_idx_folder
from test_loop_cli import QUICK, sets

IMAGES = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)


def small_config(steps=4):
  c = tiny_config()
  c.train.update(steps=steps, ckpt_every=2, sample_every=100, log_every=2, keep=3)
  return c


def data_files(step_dir):
  """Every file of the step's OCDBT store (the `d/` folders). Which of them a restore reads
  differs from run to run: Orbax's writer threads commit separately, and superseded b-tree
  nodes stay behind unread (in a scan of four 4-step runs, halving any one file under 1 kB went
  unnoticed; in one loaded CI run, halving the largest file did too). So the damage below
  hits every data file of every item (the state and the networks kept beside it), the way a
  crash or a bad disk would hit the whole folder."""
  files = [os.path.join(r, f) for r, _, fs in os.walk(step_dir) for f in fs if os.path.basename(r) == "d"]
  assert files, f"no data files in {step_dir}"
  return files


def flip_bytes(step_dir):
  """Flips one byte in every 64 of the middle three quarters of every data file."""
  for path in data_files(step_dir):
    data = bytearray(open(path, "rb").read())
    for i in range(len(data) // 8, len(data) * 7 // 8, 64):
      data[i] ^= 0xFF
    open(path, "wb").write(bytes(data))


def truncate(step_dir):
  """Cuts every data file to half its length."""
  for path in data_files(step_dir):
    os.truncate(path, os.path.getsize(path) // 2)


def garbage_meta(step_dir):
  open(os.path.join(step_dir, "meta", "metadata"), "w").write("{not json")


@pytest.mark.parametrize("damage", [flip_bytes, truncate, garbage_meta])
def test_a_corrupt_latest_checkpoint_is_skipped_and_the_run_resumes_to_the_same_result(tmp_path, damage, capsys):
  config = small_config()
  clean = loop.train(config, str(tmp_path / "clean"), tasks.gan_task(config), progress=False, data=IMAGES)
  w = str(tmp_path / "w")
  loop.train(config, w, tasks.gan_task(config), progress=False, data=IMAGES)
  damage(os.path.join(w, "checkpoints", "4"))
  capsys.readouterr()
  state, _, step = workdir_lib.restore_latest(tasks.gan_task(config), w, parallel.make_mesh(jax.devices()[:1]))
  err = capsys.readouterr().err.strip().splitlines()
  assert step == 2 and len(err) == 1 and "checkpoint step 4 in" in err[0] and err[0].endswith("using step 2")
  export.load_generator(w)   # sample, eval and export read the same way
  resumed = loop.train(config, w, tasks.gan_task(config), progress=False, data=IMAGES)
  for a, b in zip(jax.tree.leaves(clean), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert os.listdir(os.path.join(w, "corrupt_checkpoints")) == ["4"]


def test_no_intact_checkpoint_is_one_clear_error(tmp_path):
  config = small_config(steps=2)
  w = str(tmp_path / "w")
  loop.train(config, w, tasks.gan_task(config), progress=False, data=IMAGES)
  flip_bytes(os.path.join(w, "checkpoints", "2"))
  with pytest.raises(CorruptCheckpoint, match="no intact checkpoint in .*checkpoint step 2 in"):
    export.load_generator(w)


@pytest.mark.parametrize("key,value,message", [
    ("train.batch_size", 0, "train.batch_size=0 must be >= 1"),
    ("train.steps", -5, "train.steps=-5 must be >= 1"),
    ("model.g_width", 0, "model.g_width=0 must be >= 1"),
    ("model.latent_dim", 0, "model.latent_dim=0 must be >= 1"),
    ("train.ema_decay", 1.0, "train.ema_decay=1.0 must be in"),
    ("train.batch_size", 7, "does not divide"),
    ("model.image_size", 30, "model.image_size"),
])
def test_invalid_configs_are_refused_before_anything_is_written(tmp_path, key, value, message):
  config = small_config()
  section, leaf = key.split(".")
  config[section][leaf] = value
  w = str(tmp_path / "w")
  with pytest.raises(ValueError, match=message):
    loop.train(config, w, tasks.gan_task(config), mesh=parallel.make_mesh(jax.devices()), progress=False,
               data=IMAGES)
  assert not os.path.exists(w)


def test_the_model_cannot_build_arrays_of_size_zero(tmp_path):
  config = small_config()
  config.model.update(g_width=1, proj_rank=0)
  task = tasks.gan_task(config)
  loop.check_shapes(task, parallel.make_mesh(jax.devices()[:1]))   # width 1 is small, not empty
  config.model.channels = 1
  config.data.source = "toy"
  config.model.update(family="mlp", out_dim=0)
  with pytest.raises(ValueError, match="the model config cannot be built|arrays of size zero"):
    loop.check_shapes(tasks.gan_task(config), parallel.make_mesh(jax.devices()[:1]))


def test_a_prepared_idx_build_is_reused_only_for_the_same_files(tmp_path):
  data_dir = str(tmp_path / "tfds")
  a = make_idx_folder(str(tmp_path / "a"), n_train=64, n_test=32)
  b = make_idx_folder(str(tmp_path / "b"), n_train=48, n_test=32)
  cfg = lambda folder: data_cfg(source="idx", name="mnist", path=folder, data_dir=data_dir)
  images_a, _ = pipeline.load_split(cfg(a), "train", 28, 1)
  images_b, _ = pipeline.load_split(cfg(b), "train", 28, 1)
  assert len(images_a) == 64 and len(images_b) == 48     # b is read, not a's cached build
  np.testing.assert_array_equal(pipeline.load_split(cfg(a), "train", 28, 1)[0], images_a)
  os.makedirs(tmp_path / "empty")
  with pytest.raises(DataError, match="empty: no train-images"):
    pipeline.load_split(cfg(str(tmp_path / "empty")), "train", 28, 1)
  assert pipeline.describe_source(cfg(a))["sha256"] != pipeline.describe_source(cfg(b))["sha256"]


def test_a_second_run_on_a_busy_workdir_is_refused_in_one_line(tmp_path, capsys):
  w = str(tmp_path / "w")
  os.makedirs(w)
  with workdir_lib.workdir_lock(w):
    config = small_config()
    with pytest.raises(workdir_lib.WorkdirBusy, match=f"another run \\(pid {os.getpid()}\\) is training in"):
      loop.train(config, w, tasks.gan_task(config), progress=False, data=IMAGES)
    code = subprocess.run([sys.executable, "-m", "gandistill_jax.cli", "train-teacher", "--config", QUICK,
                           "--workdir", w, "--quiet", *sets("data.source='toy'", "model.family='mlp'")],
                          env=dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu"), capture_output=True, text=True)
    assert code.returncode == 2 and len(code.stderr.strip().splitlines()) == 1, code.stderr
    assert "another run" in code.stderr
  loop.train(small_config(steps=2), w, tasks.gan_task(small_config(steps=2)), progress=False, data=IMAGES)  # freed


def test_os_errors_and_bad_arguments_are_one_line_with_exit_code_2(tmp_path, capsys):
  a_file = tmp_path / "file"
  a_file.write_text("x")
  bad_config = tmp_path / "bad.py"
  bad_config.write_text("def get_config(:\n")
  config = small_config(steps=2)
  w = str(tmp_path / "w")
  loop.train(config, w, tasks.gan_task(config), progress=False, data=IMAGES)
  cases = [
      (["train-teacher", "--config", QUICK, "--workdir", str(a_file)], "is a file, not a folder"),
      (["train-teacher", "--config", str(bad_config), "--workdir", str(tmp_path / "x")], "bad.py: line 1"),
      (["sample", "--workdir", w, "--num", "0", "--out", str(tmp_path / "s.png")], "--num: 0 must be at least 1"),
      (["sample", "--workdir", w, "--num", "-3", "--out", str(tmp_path / "s.png")], "--num: -3 must be at least 1"),
      (["sample", "--workdir", w, "--num", "4", "--format", "npz", "--out", str(tmp_path / "no" / "s.npz")],
       "No such file or directory"),
      (["export", "--workdir", w, "--out", str(tmp_path / "no" / "g.jaxexport")], "No such file or directory"),
  ]
  for args, message in cases:
    capsys.readouterr()
    assert cli.main(args) == 2, args
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], (args, err)
  assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_data_that_cannot_train_is_refused_before_anything_is_written(tmp_path):
  config = small_config()
  w = str(tmp_path / "w")
  with pytest.raises(DataError, match="cannot fill a batch"):
    loop.train(config, w, tasks.gan_task(config), progress=False, data=IMAGES[:8])
  assert not os.path.exists(w)


def test_a_half_written_metrics_line_does_not_block_the_resume(tmp_path):
  config = small_config()
  w = str(tmp_path / "w")
  loop.train(config, w, tasks.gan_task(config), progress=False, data=IMAGES)
  with open(os.path.join(w, "metrics.jsonl"), "a") as f:
    f.write('{"step": 5, "d_lo')
  config.train.steps = 6
  loop.train(config, w, tasks.gan_task(config), progress=False, data=IMAGES)
  assert [json.loads(l)["step"] for l in open(os.path.join(w, "metrics.jsonl"))] == [2, 4, 6]
