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
import numpy as np

from gandistill_jax import config as config_lib, distill, export, loop, steps, tasks, workdir as workdir_lib
from gandistill_jax.eval import efficiency, evaluate
from gandistill_jax.images import grid

GRID_SEED = 4321


class StudyStopped(RuntimeError):
  """A run of the study was preempted; everything finished so far is kept."""


@dataclasses.dataclass
class Run:
  name: str
  kind: str                 # teacher | scratch | distill
  config: ml_collections.ConfigDict


def teacher_config(base: ml_collections.ConfigDict, width: int, steps_: int) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict(base.to_dict())
  c.model.update(g_width=width, d_width=width)
  c.train.steps = steps_
  return c


@dataclasses.dataclass(frozen=True)
class Student:
  """A student architecture: generator family, width, latent-projection rank."""
  family: str
  width: int
  proj_rank: int = 0

  @property
  def tag(self) -> str:
    return f"{'m' if self.family == 'mobile' else 'w'}{self.width}" + (f"r{self.proj_rank}" if self.proj_rank else "")


def student_model(base_model, student: Student) -> ml_collections.ConfigDict:
  m = ml_collections.ConfigDict(base_model.to_dict())
  m.update(family=student.family, g_width=student.width, proj_rank=student.proj_rank)
  return m


def recipe(name: str, steps_: int) -> dict:
  """The `config.distill` settings of a named recipe for a run of `steps_` steps.

    pixel     L1 to the teacher only (Aguinaldo et al. 2019), Adam 1e-3 as in the reference
    joint     L1 + 0.05 x non-saturating adversarial vs a student-size D on real data,
              after a pixel-only warm-up (this package's first recipe)
    tinygan   TinyGAN (Chang & Lu 2020): L1 between a student-side D's activations on student
              vs teacher images (layer weights ..., 1/4, 1), hinge adversarial 0.01, pixel
              L1 0.2 decayed to 0 by 2/3 of the run; D (spectral norm, hinge) takes the
              teacher's images as real and real data at weight 0.2
    gcc       GCC (Li et al. 2021): content + Gram losses on the frozen teacher D's
              activations, adapted G features, adversarial 1 vs a capacity-matched D; no pixel loss
    balanced  L1 + an adversarial term whose weight is balanced against it by gradient norms
              (VQGAN, Esser et al. 2021); D learns teacher vs student (real data at 0.2)
    mmd       L1 + MMD in the frozen teacher D's features (balanced), D-free
    joint_td  joint with the D initialised from the teacher's (Yu & Pool 2020)
    joint_mmd joint + the balanced MMD term
  """
  tinygan_d = dict(d_loss="hinge", d_real="teacher", d_real_data_weight=0.2, d_spectral_norm=True)
  recipes = {
      "pixel": dict(adv_weight=0.0, g_lr=1e-3),
      "joint": dict(pixel_weight=1.0, adv_weight=0.05, warmup_steps=min(500, steps_ // 4)),
      "tinygan": dict(pixel_weight=0.2, pixel_schedule=f"decay:0:{max(1, 2 * steps_ // 3)}", dfeat_weight=1.0,
                      dfeat_d="student", dfeat_layer_weighting="tinygan", adv_weight=0.01, **tinygan_d),
      "gcc": dict(pixel_weight=0.0, content_weight=1.0, style_weight=1.0, gcc_d="teacher", gfeat_weight=1.0,
                  adv_weight=1.0),
      "balanced": dict(pixel_weight=1.0, adv_weight=1.0, adv_balance=True, d_real="teacher",
                       d_real_data_weight=0.2),
      "mmd": dict(pixel_weight=1.0, mmd_weight=1.0, mmd_balance=True),
  }
  recipes["joint_td"] = recipes["joint"] | dict(d_init="teacher")
  recipes["joint_mmd"] = recipes["joint"] | dict(mmd_weight=1.0, mmd_balance=True)
  if name not in recipes:
    raise ValueError(f"recipe {name!r} is unknown; use one of {sorted(recipes)}")
  return recipes[name]


RECIPES = ("pixel", "joint", "tinygan", "gcc", "balanced", "mmd", "joint_td", "joint_mmd")


def distill_config(teacher: ml_collections.ConfigDict, student: Student, steps_: int, recipe_name: str = "joint",
                   student_init: str = "random", **distill_kw) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict(teacher.to_dict())
  c.model = student_model(teacher.model, student)
  c.teacher_model = ml_collections.ConfigDict(teacher.model.to_dict())   # replaced by the teacher workdir's
  c.distill = distill.default_distill_config()
  c.distill.teacher_dir = ""
  c.distill.update(recipe(recipe_name, steps_) | dict(student_init=student_init) | distill_kw)
  c.train.steps = steps_
  return c


def scratch_config(teacher: ml_collections.ConfigDict, student: Student, steps_: int):
  """The student trained adversarially from scratch with the teacher's recipe and the
  teacher's discriminator: D is a training aid that is never deployed, so the baseline gets
  the same D capacity as the teacher (and the PyTorch reference's scratch run); a
  student-size D made the baseline needlessly weak (Fashion-MNIST w16, 4000 steps: FID 48.9
  with D width 16)."""
  c = ml_collections.ConfigDict(teacher.to_dict())
  c.model = student_model(teacher.model, student)
  c.train.steps = steps_
  return c


def _finished(workdir: str, steps_: int) -> bool:
  from gandistill_jax.checkpoint import Checkpointer
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    return False
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  done = ckpt.latest_step() == steps_
  ckpt.close()
  return done


def _train(run: Run, wd: str, teacher_dir: str, progress: bool) -> None:
  """Trains (or resumes) one run in this process; StudyStopped if SIGTERM stopped it."""
  config, start = run.config, time.perf_counter()
  if run.kind == "distill":
    config = ml_collections.ConfigDict(config.to_dict())
    t_model, teacher = workdir_lib.load_teacher(teacher_dir, config)
    config.teacher_model = ml_collections.ConfigDict(t_model.to_dict())
    config.distill.teacher_dir = os.path.abspath(teacher_dir)
    loop.train(config, wd, distill.distill_task(config, teacher), progress=progress)
  else:
    loop.train(config, wd, tasks.gan_task(config, run.kind), progress=progress)
  _add_train_seconds(wd, time.perf_counter() - start)
  if not _finished(wd, config.train.steps):  # the loop saved and returned on SIGTERM
    raise StudyStopped(f"stopped during {run.name} (SIGTERM); re-run the same command to resume")


class SideProcess:
  """Runs that need nothing from the study (the scratch baselines), trained one after the
  other in a second process while this one trains the rest: one small model's training
  keeps about one core of a CPU busy, so a 2-core machine does two at once. Each child is
  `gandistill train-<kind> --workdir <run>` resuming the config written here, with its
  output in <run>/train.log; a SIGTERM here is passed on, and the child saves."""

  def __init__(self, runs: Sequence[Run], workdir: str):
    self.runs, self.workdir, self.error, self.proc = list(runs), workdir, "", None
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
        self.error = (f"{run.name} stopped (exit code {rc}); its output is in {os.path.join(wd, 'train.log')}; "
                      f"re-run the same command to resume")
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
      raise StudyStopped(self.error)


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
  if "protocol" not in result or result["counts"]["generated"] != eval_num:   # scored before eval.json had it
    return False
  weights = eval_config.get("inception_weights", "")
  if not weights:
    return True
  inception = result.get("inception")
  return bool(inception) and inception["weights"] == os.path.basename(weights) and (
      inception["generated"] == min(eval_num, eval_config.get("inception_num", eval_num)))


def train_seconds(workdir: str) -> float:
  path = os.path.join(workdir, "train_seconds.json")
  return json.load(open(path))["seconds"] if os.path.exists(path) else float("nan")


def _add_train_seconds(workdir: str, seconds: float) -> None:
  before = train_seconds(workdir)
  with open(os.path.join(workdir, "train_seconds.json"), "w") as f:
    json.dump({"seconds": seconds + (0.0 if math.isnan(before) else before)}, f)


def write_report(runs: Sequence[Run], results: dict[str, dict], workdir: str, command: str) -> str:
  """report.md, results.json, samples_same_z.png and fid_vs_params.png in `workdir`."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from PIL import Image

  rows, names = [], [r.name for r in runs]
  z = None
  for name in names:
    gen, variables, config = export.workdir_generator_variables(os.path.join(workdir, name))
    if z is None:
      z = steps.sample_latent(jax.random.key(GRID_SEED), 8, config.model.latent_dim)
    rows.append(np.asarray(gen.apply(variables, z)))
    # Speed is re-measured here, for all runs in one sitting, so that its ratios compare
    # like with like (each run's own eval may have shared the machine with other work).
    results[name]["efficiency"] = efficiency.efficiency(gen, variables, config.model.latent_dim)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  strip = grid(np.concatenate(rows), ncol=8)
  Image.fromarray(strip[..., 0] if strip.shape[-1] == 1 else strip).resize(
      (strip.shape[1] * 3, strip.shape[0] * 3), Image.NEAREST).save(os.path.join(workdir, "samples_same_z.png"))

  fig, ax = plt.subplots(figsize=(6, 4))
  for kind, marker in (("teacher", "*"), ("distill", "o"), ("scratch", "s")):
    pts = [(results[r.name]["efficiency"]["params"], results[r.name]["fid"], r.name) for r in runs if r.kind == kind]
    if pts:
      ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, s=60, label=kind)
      for x, y, n in pts:
        ax.annotate(n, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
  ax.set_xscale("log")
  ax.set_xlabel("generator parameters")
  ax.set_ylabel("FID (domain classifier features)")
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "fid_vs_params.png"), dpi=120)
  plt.close(fig)

  teacher = next(r.name for r in runs if r.kind == "teacher")
  t_eff = results[teacher]["efficiency"]
  with_inception = any("inception" in results[r.name] for r in runs)
  first = results[names[0]]
  lines = [f"# Compression study: {first['dataset']}", "", f"Command: `{command}`", "",
           f"Device: {t_eff['device']}. FID/KID/PR/DC: {first['counts']['generated']} samples per run (the z of "
           f"seed {first['protocol']['latent_seed']}) against the {first['counts']['reference']} images of the "
           f"{first['reference_split']} split (data sha256 {first['protocol']['reference_data']['sha256'][:12]}); "
           f"features: {first['feature_extractor']}, weights sha256 "
           f"{first['protocol']['feature_network']['weights_sha256'][:12]}"
           + (f"; Inception FID on InceptionV3 pool3 ({first['inception']['generated']} samples)" if "inception" in first else "")
           + f". Fidelity: the same {results[names[-1]].get('fidelity', {}).get('num_z', 0)} "
           "z through student and teacher.", "",
           "| run | kind | G params | x fewer | steps | train min | MFLOPs/sample | samples/s (b256) | x faster | FID | KID | "
           + ("Inception FID | " if with_inception else "")
           + "precision | recall | density | coverage | L1 to teacher | PSNR dB |",
           "|---" * (17 + with_inception) + "|"]
  for r in runs:
    e, q, fi = results[r.name]["efficiency"], results[r.name], results[r.name].get("fidelity", {})
    inception = f"{q['inception']['fid']:.2f} | " if "inception" in q else ("| " if with_inception else "")
    lines.append(
        f"| {r.name} | {r.kind} | {e['params']:,} | {t_eff['params'] / e['params']:.1f} | {q.get('steps', r.config.train.steps)} | "
        f"{q.get('train_seconds', float('nan')) / 60:.1f} | {e['flops_per_sample'] / 1e6:.2f} | "
        f"{e['samples_per_s_batch256']:,.0f} | {e['samples_per_s_batch256'] / t_eff['samples_per_s_batch256']:.1f} | "
        f"{q['fid']:.2f} | {q['kid']:.4f} | {inception}{q['precision']:.3f} | {q['recall']:.3f} | {q['density']:.3f} | "
        f"{q['coverage']:.3f} | {fi.get('pixel_l1', float('nan')):.3f} | {fi.get('psnr_db', float('nan')):.1f} |")
  lines += ["", f"Rows of `samples_same_z.png`, top to bottom: {', '.join(names)} (the same 8 z).", "",
            "![samples](samples_same_z.png)", "", "![FID vs parameters](fid_vs_params.png)", ""]
  report = "\n".join(lines)
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write(report)
  return report


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


SEED_METRICS = (("fid", "FID"), ("recall", "recall"), ("precision", "precision"), ("pixel_l1", "L1 to teacher"))


def seeds_report(runs: Sequence[Run], by_seed: dict[int, dict[str, dict]], workdir: str, command: str) -> str:
  """report.md and seeds.json in `workdir`: each run's mean ± sample standard deviation over
  seeds of FID, recall, precision and L1 to the teacher, with every seed's value."""
  summary = {}
  for r in runs:
    row = {}
    for key, _ in SEED_METRICS:
      values = [float((res[r.name] | res[r.name].get("fidelity", {})).get(key, math.nan))
                for res in by_seed.values()]
      if not all(math.isnan(v) for v in values):
        row[key] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                    "values": values}
    row["params"] = by_seed[next(iter(by_seed))][r.name]["efficiency"]["params"]
    summary[r.name] = row
  with open(os.path.join(workdir, "seeds.json"), "w") as f:
    json.dump({"seeds": list(by_seed), "runs": summary}, f, indent=2)
  teacher = next(r.name for r in runs if r.kind == "teacher")
  first = by_seed[next(iter(by_seed))][teacher]
  proto = first["protocol"]
  lines = [f"# Compression study over seeds {', '.join(map(str, by_seed))}: {first['dataset']}", "",
           f"Command: `{command}`", "",
           f"Mean ± sample standard deviation over {len(by_seed)} seeds (each seed trains every run, the teacher "
           f"included). FID/recall/precision: {proto['generated']} samples per run against the {proto['reference']} "
           f"images of the {proto['reference_split']} split (data sha256 {proto['reference_data']['sha256'][:12]}); "
           f"features: {proto['feature_network']['name']} (weights sha256 "
           f"{proto['feature_network']['weights_sha256'][:12]}). One report per seed: "
           + ", ".join(f"[seed {k}](seed_{k}/report.md)" for k in by_seed) + ".", "",
           "| run | G params (x fewer) | " + " | ".join(name for _, name in SEED_METRICS) + " |",
           "|---" * (2 + len(SEED_METRICS)) + "|"]
  for r in runs:
    row = summary[r.name]
    cells = [f"{row[k]['mean']:.3f} ± {row[k]['std']:.3f}" if k in row else "" for k, _ in SEED_METRICS]
    lines.append(f"| {r.name} | {row['params']:,} ({summary[teacher]['params'] / row['params']:.1f}x) | "
                 + " | ".join(cells) + " |")
  report = "\n".join(lines + [""])
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write(report)
  return report


def run_seeds(runs: Sequence[Run], seeds: Sequence[int], workdir: str, command: str, eval_num: int = 5000,
              progress: bool = True, side_process: bool = False) -> str:
  """Every run once per seed (each seed in its own seed_workdir, resumable), one report per
  seed and, for several seeds, the mean ± std report in `workdir`; returns the top report."""
  by_seed = {}
  for seed in seeds:
    wd = seed_workdir(workdir, seed, seeds)
    seeded = with_seed(runs, seed)
    by_seed[seed] = run_all(seeded, wd, eval_num=eval_num, progress=progress, side_process=side_process)
    report = write_report(seeded, by_seed[seed], wd, command)
  return report if len(by_seed) == 1 else seeds_report(runs, by_seed, workdir, command)


# The recipe the demo, the study and the distill config use, chosen by experiments/study/sweep.py
# on Fashion-MNIST (docs/results.md, "Choosing the recipe"): students cut from the teacher.
DEFAULT_RECIPE = "joint"
DEFAULT_INIT = "teacher"
# Demo students against its width-32 teacher (350k G params): 12x and 38x fewer parameters.
# Width buys more than projection rank at a fixed size (sweep shape50x), so the small one
# keeps width 8 and a rank-7 projection.
DEMO_STUDENTS = (Student("dcgan", 16, 12), Student("dcgan", 8, 7))


def demo_runs(base: ml_collections.ConfigDict, tiny: bool = False) -> list[Run]:
  """Teacher (width 32, 5000 steps), students distilled with the default recipe at ~12x and
  ~38x fewer parameters (3000 steps), and the same students trained from scratch (3000 steps)."""
  t_steps, s_steps = (6, 6) if tiny else (5000, 3000)
  teacher = teacher_config(base, 32, t_steps)
  runs = [Run("teacher", "teacher", teacher)]
  runs += [Run(f"distill_{s.tag}", "distill", distill_config(teacher, s, s_steps, DEFAULT_RECIPE, DEFAULT_INIT))
           for s in DEMO_STUDENTS]
  runs += [Run(f"scratch_{s.tag}", "scratch", scratch_config(teacher, s, s_steps)) for s in DEMO_STUDENTS]
  return runs


def sngan_base(dataset: str = "cifar10", image_size: int = 32) -> ml_collections.ConfigDict:
  """The SNGAN ResNet recipe (Miyato et al. 2018, CIFAR-10, appendix B.4): ResNet G and D
  with spectral norm, hinge loss, n_critic 5, Adam 2e-4 with betas (0, 0.9), batch 64,
  50k generator updates, z of 128 dims; EMA 0.9999 of G for sampling. Needs the TFDS
  dataset prepared (data.data_dir)."""
  c = config_lib.base_config()
  c.data.update(name=dataset, source="tfds")
  c.model.update(family="resnet", image_size=image_size, channels=3, g_width=64, d_width=64, latent_dim=128)
  c.loss.update(name="hinge", n_critic=5)
  c.optim.update(g_lr=2e-4, d_lr=2e-4, b1=0.0, b2=0.9)
  c.train.update(batch_size=64, steps=50000, ema_decay=0.9999, log_every=100, sample_every=2500, ckpt_every=2500)
  return c


def demo_base() -> ml_collections.ConfigDict:
  c = config_lib.base_config()
  c.model.update(image_size=28, channels=1, latent_dim=100, d_batch_norm=True)
  c.loss.reuse_fake = True
  c.train.update(batch_size=64, ema_decay=0.999, log_every=50, sample_every=1000, ckpt_every=1000)
  return c
