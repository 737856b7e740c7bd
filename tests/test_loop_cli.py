"""The loop, checkpoints and the CLI: end to end, kill -9 + resume, SIGTERM, reshard, errors."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gandistill_jax import cli, config as config_lib, loop, parallel, tasks, workdir as workdir_lib
from gandistill_jax.checkpoint import Checkpointer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(REPO, "experiments", "configs", "quick.py")
TOY = os.path.join(REPO, "experiments", "configs", "toy_ring.py")


def run_cli(*args, check=True, **kw):
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "gandistill_jax.cli", *args], env=env, capture_output=True,
                        text=True, **kw)
  if check:
    assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def sets(*items):
  return [x for item in items for x in ("--set", item)]


def test_tiny_teacher_run_end_to_end_through_the_cli(tmp_path, idx_data):
  w = str(tmp_path / "w")
  run_cli("train-teacher", "--config", QUICK, "--workdir", w, "--quiet",
          *sets(*idx_data, "train.steps=20", "train.sample_every=10", "train.ckpt_every=10"))
  assert sorted(os.listdir(os.path.join(w, "checkpoints"))) == ["10", "20"]
  assert os.path.exists(os.path.join(w, "samples", "step_0000020.png"))
  lines = [json.loads(l) for l in open(os.path.join(w, "metrics.jsonl"))]
  assert [l["step"] for l in lines] == [10, 20] and all(np.isfinite(l["g_loss"]) for l in lines)
  assert os.listdir(os.path.join(w, "tb")), "TensorBoard events are written"
  assert json.load(open(os.path.join(w, "config.json")))["train"]["steps"] == 20
  run_cli("sample", "--workdir", w, "--num", "10", "--out", str(tmp_path / "s.npz"), "--format", "npz")
  images = np.load(tmp_path / "s.npz")["images"]
  assert images.shape == (10, 28, 28, 1) and images.dtype == np.uint8
  run_cli("sample", "--workdir", w, "--num", "16", "--out", str(tmp_path / "s.png"))
  assert os.path.getsize(tmp_path / "s.png") > 100


def final_params(workdir):
  config = workdir_lib.load_config(workdir)
  state, _, step = workdir_lib.restore_latest(tasks.gan_task(config), workdir, parallel.make_mesh(jax.devices()[:1]))
  return jax.device_get(state), step


def test_kill_9_at_a_random_moment_then_resume_equals_an_uninterrupted_run(tmp_path):
  args = sets("train.steps=1000", "train.ckpt_every=50", "train.log_every=50", "train.sample_every=5000")
  ref = str(tmp_path / "ref")
  run_cli("train-teacher", "--config", TOY, "--workdir", ref, "--quiet", *args)
  killed = str(tmp_path / "killed")
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.Popen([sys.executable, "-m", "gandistill_jax.cli", "train-teacher", "--config", TOY,
                           "--workdir", killed, "--quiet", *args], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpts = os.path.join(killed, "checkpoints")
  while proc.poll() is None and not (os.path.isdir(ckpts) and any(d.isdigit() for d in os.listdir(ckpts))):
    time.sleep(0.05)
  time.sleep(random.uniform(0.0, 0.5))
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, "the run finished before the kill; make it longer"
  run_cli("train-teacher", "--workdir", killed, "--quiet")  # resume with the saved config
  (a, step_a), (b, step_b) = final_params(ref), final_params(killed)
  assert step_a == step_b == 1000
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_sigterm_saves_the_current_step_and_exits_with_the_stop_code(tmp_path):
  w = str(tmp_path / "w")
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.Popen([sys.executable, "-m", "gandistill_jax.cli", "train-teacher", "--config", TOY,
                           "--workdir", w, "--quiet", *sets("train.steps=100000", "train.ckpt_every=100000",
                                                            "train.log_every=10")],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  metrics = os.path.join(w, "metrics.jsonl")
  while proc.poll() is None and not os.path.exists(metrics):
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == cli.EXIT_STOPPED, err[-2000:]
  assert "stopped at step" in out and "Traceback" not in err
  step = Checkpointer(os.path.join(w, "checkpoints")).latest_step()
  assert step is not None and 10 <= step < 100000


def test_resume_onto_eight_devices_from_a_one_device_checkpoint(tmp_path, idx_data):
  config = config_lib.apply_overrides(cli.load_config_file(QUICK), idx_data + ["train.steps=4", "train.ckpt_every=4"])
  w = str(tmp_path / "w")
  with jax.default_matmul_precision("highest"):
    loop.train(config, w, tasks.gan_task(config), mesh=parallel.make_mesh(jax.devices()[:1]), progress=False)
    longer = config_lib.apply_overrides(config, ["train.steps=6"])
    one = loop.train(longer, str(tmp_path / "copy1"), tasks.gan_task(longer),
                     mesh=parallel.make_mesh(jax.devices()[:1]), progress=False)
    state8, _, step = workdir_lib.restore_latest(tasks.gan_task(config), w, parallel.make_mesh(jax.devices()))
    assert step == 4 and len(jax.tree.leaves(state8)[0].sharding.device_set) == 8
    eight = loop.train(longer, w, tasks.gan_task(longer), mesh=parallel.make_mesh(jax.devices()), progress=False)
  chex.assert_trees_all_close(jax.device_get(eight), jax.device_get(one), atol=1e-5, rtol=1e-4)


def test_a_config_that_changes_the_math_is_refused(tmp_path, idx_data):
  w = str(tmp_path / "w")
  run_cli("train-teacher", "--config", QUICK, "--workdir", w, "--quiet", *sets(*idx_data, "train.steps=2"))
  proc = run_cli("train-teacher", "--config", QUICK, "--workdir", w, "--quiet",
                 *sets(*idx_data, "train.steps=4", "loss.name='hinge'", "optim.g_lr=0.1"), check=False)
  assert proc.returncode == 2
  err = proc.stderr.strip().splitlines()[-1]
  assert "different config" in err and "loss.name: 'nonsaturating' -> 'hinge'" in err and "optim.g_lr" in err
  assert "train.steps" not in err  # more steps is a resume, not a different run
  run_cli("train-teacher", "--config", QUICK, "--workdir", w, "--quiet", *sets(*idx_data, "train.steps=4"))


def test_a_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, idx_data):
  config = config_lib.apply_overrides(cli.load_config_file(QUICK), idx_data + ["train.steps=10", "train.ckpt_every=2",
                                                                                "train.log_every=1"])
  task = tasks.gan_task(config)

  def poisoned(state, batch, rng):
    state, metrics = task.step(state, batch, rng)
    return state, metrics | {"g_loss": jnp.where(state.step >= 5, jnp.nan, metrics["g_loss"])}

  w = str(tmp_path / "w")
  with pytest.raises(loop.TrainingDiverged, match="non-finite loss at step 5 .* last good checkpoint \\(step 4\\)"):
    loop.train(config, w, tasks.Task(**{**task.__dict__, "step": poisoned}), progress=False)
  assert Checkpointer(os.path.join(w, "checkpoints")).latest_step() == 4


@pytest.mark.parametrize("args, message", [
    (["train-teacher", "--config", "/nope.py", "--workdir", "/tmp/x"], "--config /nope.py: no such file"),
    (["train-teacher", "--config", QUICK, "--workdir", "/tmp/x", "--set", "train.stepz=3"], "'train.stepz' is not a config key"),
    (["train-teacher", "--config", QUICK, "--workdir", "/tmp/x", "--set", "train.steps=many"], "expected an int"),
    (["train-teacher", "--workdir", "/tmp/definitely_not_a_run"], "holds no run yet; give --config"),
    (["sample", "--out", "x.png"], "give exactly one of --workdir W or --exported FILE"),
])
def test_bad_cli_input_is_one_line_with_exit_code_2(args, message, capsys):
  assert cli.main(args) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and message in err, err


DISTILL = os.path.join(REPO, "experiments", "configs", "fashion_mnist_distill.py")


def test_distill_online_and_offline_through_the_cli(tmp_path, idx_data):
  teacher = str(tmp_path / "teacher")
  run_cli("train-teacher", "--config", QUICK, "--workdir", teacher, "--quiet", *sets(*idx_data, "train.steps=4"))
  small = sets(*idx_data, "model.latent_dim=32", "model.g_width=2", "train.steps=4", "train.batch_size=16",
               "distill.warmup_steps=2")
  run_cli("distill", "--config", DISTILL, "--teacher", teacher, "--workdir", str(tmp_path / "online"), "--quiet", *small)
  saved = json.load(open(tmp_path / "online" / "config.json"))
  assert saved["teacher_model"]["g_width"] == 8 and saved["distill"]["teacher_dir"] == teacher
  pairs = str(tmp_path / "pairs.npz")
  run_cli("dump-teacher", "--teacher", teacher, "--num", "64", "--out", pairs)
  assert np.load(pairs)["images"].shape == (64, 28, 28, 1)
  run_cli("distill", "--config", DISTILL, "--teacher", teacher, "--workdir", str(tmp_path / "offline"), "--quiet",
          *small, *sets("distill.mode='offline'", f"distill.offline_path='{pairs}'"))
  assert Checkpointer(str(tmp_path / "offline" / "checkpoints")).latest_step() == 4
  for which in ("auto", "live", "teacher"):
    run_cli("sample", "--workdir", str(tmp_path / "offline"), "--which", which, "--num", "4", "--format", "npz",
            "--out", str(tmp_path / f"{which}.npz"))
  student, teacher_samples = np.load(tmp_path / "auto.npz")["images"], np.load(tmp_path / "teacher.npz")["images"]
  assert student.shape == teacher_samples.shape == (4, 28, 28, 1)
  artifact = str(tmp_path / "student.jaxexport")
  run_cli("export", "--workdir", str(tmp_path / "offline"), "--out", artifact)
  run_cli("sample", "--exported", artifact, "--num", "4", "--format", "npz", "--out", str(tmp_path / "exp.npz"))
  exported = np.load(tmp_path / "exp.npz")["images"].astype(int)   # the folded inference form: equal
  assert np.abs(exported - student).max() <= 1                         # up to float rounding at a uint8 level

  proc = run_cli("distill", "--config", DISTILL, "--teacher", str(tmp_path / "nope"), "--workdir",
                 str(tmp_path / "x"), *small, check=False)
  assert proc.returncode == 2 and "no such workdir" in proc.stderr.splitlines()[-1]
  proc = run_cli("distill", "--config", DISTILL, "--teacher", teacher, "--workdir", str(tmp_path / "y"),
                 *sets(*idx_data), check=False)
  assert proc.returncode == 2 and "has model.latent_dim=32 but this config has 100" in proc.stderr.splitlines()[-1]


def test_periodic_eval_logs_fid_and_keeps_the_best_checkpoint(tmp_path, idx_data):
  from gandistill_jax.eval import evaluate
  config = config_lib.apply_overrides(cli.load_config_file(QUICK), idx_data + [
      "train.steps=6", "train.ckpt_every=2", "train.eval_every=2", "train.eval_num=64", "train.keep=1",
      "train.best_metric='fid'", f"eval.cache_dir='{tmp_path / 'cache'}'"])
  w = str(tmp_path / "w")
  loop.train(config, w, tasks.gan_task(config), eval_fn=evaluate.periodic_eval_fn(config), progress=False)
  evals = {l["step"]: l["eval/fid"] for l in map(json.loads, open(os.path.join(w, "metrics.jsonl"))) if "eval/fid" in l}
  assert sorted(evals) == [2, 4, 6] and all(np.isfinite(v) and v > 0 for v in evals.values())
  best = min(evals, key=evals.get)
  assert sorted(int(d) for d in os.listdir(os.path.join(w, "checkpoints")) if d.isdigit()) == sorted({best, 6})
