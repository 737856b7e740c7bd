"""A compression study: a teacher, distilled students, scratch students, all evaluated,
then one report (report.md, results.json, sample grids for the same z, FID vs params).

A study is a list of runs; each run lives in workdir/<name>/ and is skipped when it has
already finished and been evaluated, so a re-run resumes where the last one stopped.
`gandistill demo` is a small study sized for a 2-core CPU; experiments/study/compression_study.py
runs the full one.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Sequence

import jax
import ml_collections

from gandistill_jax import distill, loop, recipes, reports, tasks, teachers
from gandistill_jax.eval import evaluate

class StudyStopped(RuntimeError):
  """A run of the study was preempted (SIGINT or SIGTERM); everything finished so far is kept."""


class RunFailed(RuntimeError):
  """A run of the study ended with an error; its log is named."""


EXIT_STOPPED = 75   # a `gandistill` command stopped by a signal, saved and resumable (cli.EXIT_STOPPED)


@dataclasses.dataclass
class Run:
  name: str
  kind: str                 # teacher | scratch | distill
  config: ml_collections.ConfigDict


def _finished(workdir: str, steps_: int) -> bool:
  from gandistill_jax.checkpoint import Checkpointer
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    return False
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  done = ckpt.latest_step() == steps_
  ckpt.close()
  return done


def _train(run: Run, wd: str, teacher_dir: str, progress: bool) -> None:
  """Trains (or resumes) one run in this process; StudyStopped if a signal stopped it."""
  config, start = run.config, time.perf_counter()
  if run.kind == "distill":
    config, teacher = teachers.attach(config, teacher_dir, wd)
    loop.train(config, wd, distill.distill_task(config, teacher), progress=progress)
  else:
    loop.train(config, wd, tasks.gan_task(config, run.kind), progress=progress)
  _add_train_seconds(wd, time.perf_counter() - start)
  if not _finished(wd, config.train.steps):  # the loop saved and returned on SIGTERM
    raise StudyStopped(f"stopped during {run.name} (SIGINT or SIGTERM); re-run the same command to resume")


class SideProcess:
  """Runs that need nothing from the study (the scratch baselines), trained one after the
  other in a second process while this one trains the rest: one small model's training
  keeps about one core of a CPU busy, so a 2-core machine does two at once. Each child is
  `gandistill train-<kind> --workdir <run>` resuming the config written here, with its
  output in <run>/train.log; a SIGTERM here is passed on, and the child saves."""

  def __init__(self, runs: Sequence[Run], workdir: str):
    self.runs, self.workdir, self.error, self.proc = list(runs), workdir, None, None
    self.stopping = threading.Event()
    self.thread = threading.Thread(target=self._work, daemon=True)

  def _work(self):
    for run in self.runs:
      wd = os.path.join(self.workdir, run.name)
      if _finished(wd, run.config.train.steps) or self.stopping.is_set():
        continue
      os.makedirs(wd, exist_ok=True)
      loop.check_or_write_config(run.config, wd)
      start = time.perf_counter()
      with open(os.path.join(wd, "train.log"), "a") as log:
        self.proc = subprocess.Popen([sys.executable, "-m", "gandistill_jax.cli", f"train-{run.kind}", "--workdir",
                                      wd, "--quiet"], stdout=log, stderr=subprocess.STDOUT)
        rc = self.proc.wait()
      _add_train_seconds(wd, time.perf_counter() - start)
      if rc != 0 or not _finished(wd, run.config.train.steps):
        stopped = rc in (0, EXIT_STOPPED)
        self.error = (StudyStopped if stopped else RunFailed)(
            f"{run.name} {'stopped' if stopped else 'failed'} (exit code {rc}); its output is in "
            f"{os.path.join(wd, 'train.log')}; re-run the same command to resume")
        return

  def __enter__(self):
    self.thread.start()
    return self

  def __exit__(self, *exc):
    if exc[0] is not None:
      self.stopping.set()
      if self.proc is not None and self.proc.poll() is None:
        self.proc.send_signal(signal.SIGTERM)   # the child saves and exits
    self.thread.join()
    if self.error and exc[0] is None:
      raise self.error


def run_all(runs: Sequence[Run], workdir: str, teacher_dir: str = "", eval_num: int = 5000,
            progress: bool = True, side_process: bool = False) -> dict[str, dict]:
  """Trains (or resumes) and evaluates every run in order; returns {name: eval result}.
  Distill runs learn from `teacher_dir` (default workdir/teacher). Each run's training wall
  time (summed over resumptions) is kept in its train_seconds.json and in the result.

  `side_process`: on a single-process CPU run, the scratch runs train in a second process
  (SideProcess) at the same time as the others; every run's result is what it would be
  alone (each is a pure function of its config)."""
  teacher_dir = teacher_dir or os.path.join(workdir, "teacher")
  side = [r for r in runs if r.kind == "scratch"] if (
      side_process and jax.process_count() == 1 and jax.default_backend() == "cpu") else []
  side_names = {r.name for r in side}
  if side:   # both processes read the data: prepare it here first
    from gandistill_jax.data import pipeline
    for data in {json.dumps(r.config.data.to_dict(), sort_keys=True) for r in runs}:
      pipeline.prepare_source(ml_collections.ConfigDict(json.loads(data)))
  results = {}
  with SideProcess(side, workdir):
    for run in runs:
      if run.name not in side_names:
        wd = os.path.join(workdir, run.name)
        if not _finished(wd, run.config.train.steps):
          _train(run, wd, teacher_dir, progress)
        results[run.name] = _evaluate(run, wd, teacher_dir, eval_num)
  for run in runs:   # the side runs, now finished; then all in the given order
    if run.name in side_names:
      results[run.name] = _evaluate(run, os.path.join(workdir, run.name), teacher_dir, eval_num)
  return {r.name: results[r.name] for r in runs}


def _evaluate(run: Run, wd: str, teacher_dir: str, eval_num: int) -> dict:
  """The run's eval.json when it was scored as asked, else a fresh evaluation. The study's
  eval.* settings (e.g. `--set eval.inception_weights=...`) rule, also for runs trained
  before they were given: they are passed on, not read from the run."""
  config = run.config
  overrides = [f"eval.{k}={v!r}" for k, v in config.eval.items()]
  eval_path = os.path.join(wd, "eval.json")
  previous = json.load(open(eval_path)) if os.path.exists(eval_path) else None
  if previous and _scored_as_asked(previous, eval_num, config.eval):
    result = previous
  else:
    result = evaluate.evaluate_workdir(wd, "" if run.kind != "scratch" else teacher_dir, num=eval_num,
                                       overrides=overrides)
  return result | {"train_seconds": train_seconds(wd), "steps": int(config.train.steps)}


def _scored_as_asked(result: dict, eval_num: int, eval_config) -> bool:
  """Whether an eval.json has `eval_num` samples and, where Inception FID is asked for,
  Inception numbers from the same weights file and sample count."""
  if "protocol" not in result:   # scored before eval.json had it
    return False
  inception_primary = result.get("features") == "inception"
  if result["counts"]["generated"] != (min(eval_num, eval_config.inception_num) if inception_primary else eval_num):
    return False
  weights = eval_config.inception_weights
  if not weights:
    return True
  inception = result.get("inception")
  return bool(inception) and inception["weights"] == os.path.basename(weights) and (
      inception["generated"] == min(eval_num, eval_config.inception_num))


def train_seconds(workdir: str) -> float:
  path = os.path.join(workdir, "train_seconds.json")
  return json.load(open(path))["seconds"] if os.path.exists(path) else float("nan")


def _add_train_seconds(workdir: str, seconds: float) -> None:
  before = train_seconds(workdir)
  with open(os.path.join(workdir, "train_seconds.json"), "w") as f:
    json.dump({"seconds": seconds + (0.0 if math.isnan(before) else before)}, f)


def with_seed(runs: Sequence[Run], seed: int) -> list[Run]:
  """The same runs with config.seed = `seed` (init, data order, z: all follow it)."""
  out = []
  for r in runs:
    config = ml_collections.ConfigDict(r.config.to_dict())
    config.seed = seed
    out.append(Run(r.name, r.kind, config))
  return out


def seed_workdir(workdir: str, seed: int, seeds: Sequence[int]) -> str:
  """One seed's study folder: the workdir itself for a single seed 0, else workdir/seed_<k>."""
  return workdir if list(seeds) == [0] else os.path.join(workdir, f"seed_{seed}")


def run_seeds(runs: Sequence[Run], seeds: Sequence[int], workdir: str, command: str, eval_num: int = 5000,
              progress: bool = True, side_process: bool = False) -> str:
  """Every run once per seed (each seed in its own seed_workdir, resumable), one report per
  seed and, for several seeds, the mean ± std report in `workdir`; returns the top report."""
  by_seed = {}
  for seed in seeds:
    wd = seed_workdir(workdir, seed, seeds)
    seeded = with_seed(runs, seed)
    by_seed[seed] = run_all(seeded, wd, eval_num=eval_num, progress=progress, side_process=side_process)
    report = reports.write_report(seeded, by_seed[seed], wd, command)
  return report if len(by_seed) == 1 else reports.seeds_report(runs, by_seed, workdir, command)


DEMO_SCHEDULE = {"teacher_steps": 5000, "student_steps": 3000, "eval_num": 5000,
                 "students": tuple((s.width, s.proj_rank) for s in recipes.DEMO_STUDENTS)}


def with_demo_schedule(base: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`base` with a `demo` section (the demo's steps and evaluated samples, DEMO_SCHEDULE
  where a config file's own `demo` section is silent), so `--set demo.teacher_steps=...`
  works on any demo config."""
  c = ml_collections.ConfigDict(base.to_dict())
  c.demo = ml_collections.ConfigDict(DEMO_SCHEDULE | dict(base.get("demo", {})))
  return c


def demo_runs(base: ml_collections.ConfigDict, tiny: bool = False) -> list[Run]:
  """Teacher (width 32), students (the teacher's family at `base.demo.students`' (width,
  projection rank)s; by default ~12x and ~38x fewer parameters at 28x28x1) distilled with
  the default recipe, and the same students trained from scratch. Steps and students come
  from `base.demo` (with_demo_schedule), which the runs' configs do not keep."""
  base = ml_collections.ConfigDict(base.to_dict())
  schedule = DEMO_SCHEDULE | dict(base.get("demo", {}))
  if "demo" in base:
    del base["demo"]
  t_steps, s_steps = (6, 6) if tiny else (schedule["teacher_steps"], schedule["student_steps"])
  teacher = recipes.teacher_config(base, 32, t_steps)
  students = [recipes.Student(base.model.family, int(w), int(r)) for w, r in schedule["students"]]
  runs = [Run("teacher", "teacher", teacher)]
  runs += [Run(f"distill_{s.tag}", "distill", recipes.distill_config(teacher, s, s_steps, recipes.DEFAULT_RECIPE,
                                                                      recipes.DEFAULT_INIT))
           for s in students]
  runs += [Run(f"scratch_{s.tag}", "scratch", recipes.scratch_config(teacher, s, s_steps)) for s in students]
  return runs
