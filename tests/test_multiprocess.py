"""Several processes: 2 real processes on localhost (2 CPU devices each, joined through the
CLI's --coordinator) train and distill to the parameters of 1 process with 4 devices, log
each step once, and resume after one of them is killed."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import chex
import jax
import pytest

from gandistill_jax import distill, parallel, tasks, workdir as workdir_lib
from gandistill_jax.checkpoint import Checkpointer
from test_loop_cli import DISTILL, QUICK, sets

pytestmark = pytest.mark.slow
TEACHER_ARGS = ("train.steps=6", "train.ckpt_every=3", "train.log_every=1", "train.sample_every=3")
STUDENT_ARGS = ("model.latent_dim=32", "model.g_width=2", "train.steps=4", "train.batch_size=16",
                "distill.warmup_steps=2", "train.ckpt_every=2", "train.log_every=1", "train.sample_every=2")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def launch(args, processes: int, devices_each: int, log_dir: str) -> list[subprocess.Popen]:
  """Starts `gandistill <args>` as `processes` processes of one run (1: no coordinator)."""
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_each}", JAX_PLATFORMS="cpu")
  port = free_port()
  procs = []
  for i in range(processes):
    join = ["--coordinator", f"localhost:{port}", "--num-processes", str(processes), "--process-id", str(i)]
    log = open(os.path.join(log_dir, f"process{i}.log"), "a")
    procs.append(subprocess.Popen([sys.executable, "-m", "gandistill_jax.cli", *args, "--quiet",
                                   *(join if processes > 1 else [])], env=env, stdout=log, stderr=log))
  return procs


def run(args, processes: int, devices_each: int, log_dir: str, timeout: float = 300) -> None:
  procs = launch(args, processes, devices_each, log_dir)
  for p in procs:
    assert p.wait(timeout=timeout) == 0, open(os.path.join(log_dir, "process0.log")).read()[-3000:]


def final_state(workdir):
  config = workdir_lib.load_config(workdir)
  task = distill.distill_task(config) if "distill" in config else tasks.gan_task(config)
  state, _, step = workdir_lib.restore_latest(task, workdir, parallel.make_mesh(jax.devices()[:1]))
  return jax.device_get(state), step


def logged_steps(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line)["step"] for line in f]


@pytest.fixture(scope="module")
def one_process_runs(tmp_path_factory, idx_data):
  """Teacher and distill runs of 1 process with 4 devices: the reference."""
  root = str(tmp_path_factory.mktemp("one"))
  run(["train-teacher", "--config", QUICK, "--workdir", f"{root}/teacher", *sets(*idx_data, *TEACHER_ARGS)], 1, 4, root)
  run(["distill", "--config", DISTILL, "--teacher", f"{root}/teacher", "--workdir", f"{root}/student",
       *sets(*idx_data, *STUDENT_ARGS)], 1, 4, root)
  return root


def test_two_processes_train_and_distill_as_one_process_with_four_devices(one_process_runs, idx_data, tmp_path):
  root = str(tmp_path)
  run(["train-teacher", "--config", QUICK, "--workdir", f"{root}/teacher", *sets(*idx_data, *TEACHER_ARGS)], 2, 2, root)
  run(["distill", "--config", DISTILL, "--teacher", f"{root}/teacher", "--workdir", f"{root}/student",
       *sets(*idx_data, *STUDENT_ARGS)], 2, 2, root)
  for name, steps in (("teacher", 6), ("student", 4)):
    (ours, step), (ref, ref_step) = final_state(f"{root}/{name}"), final_state(f"{one_process_runs}/{name}")
    assert step == ref_step == steps
    chex.assert_trees_all_close(ours, ref, atol=1e-5, rtol=1e-4)
    assert logged_steps(f"{root}/{name}") == list(range(1, steps + 1)), "each step is logged once"
  assert sorted(os.listdir(f"{root}/teacher/samples")) == ["step_0000003.png", "step_0000006.png"]


def test_kill_one_process_then_restart_both_resumes_to_the_same_result(idx_data, tmp_path):
  root, workdir = str(tmp_path), str(tmp_path / "teacher")
  args = ["train-teacher", "--config", QUICK, "--workdir", workdir,
          *sets(*idx_data, "train.steps=40", "train.ckpt_every=5", "train.log_every=1", "train.sample_every=40")]
  procs = launch(args, 2, 2, root)
  ckpts = os.path.join(workdir, "checkpoints")
  deadline = time.time() + 300
  while not (os.path.isdir(ckpts) and any(d.isdigit() for d in os.listdir(ckpts))) and time.time() < deadline:
    assert all(p.poll() is None for p in procs), "a process ended before the first checkpoint"
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGKILL)   # one host dies; the scheduler then stops the other and restarts both
  procs[1].wait()
  time.sleep(0.5)
  procs[0].kill()
  procs[0].wait()
  assert Checkpointer(ckpts, read_only=True).latest_step() < 40, "the run finished before the kill; make it longer"
  run(args, 2, 2, root)
  reference = str(tmp_path / "uninterrupted")
  run(args[:4] + [reference] + args[5:], 2, 2, root)
  (a, step_a), (b, step_b) = final_state(workdir), final_state(reference)
  assert step_a == step_b == 40
  chex.assert_trees_all_close(a, b, atol=1e-5, rtol=1e-4)
  assert logged_steps(workdir) == list(range(1, 41))
