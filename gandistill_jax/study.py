"""A compression study: a teacher, distilled students, scratch students, all evaluated,
then one report (report.md, results.json, sample grids for the same z, FID vs params).

A study is a list of runs; each run lives in workdir/<name>/ and is skipped when it has
already finished and been evaluated, so a re-run resumes where the last one stopped.
`gandistill demo` is a small study sized for a 2-core CPU; experiments/compression_study.py
runs the full one.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

import jax
import ml_collections
import numpy as np

from gandistill_jax import config as config_lib, distill, export, loop, steps, tasks
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


def student_model(base_model, width: int, proj_rank: int) -> ml_collections.ConfigDict:
  m = ml_collections.ConfigDict(base_model.to_dict())
  m.update(g_width=width, proj_rank=proj_rank)
  return m


def distill_config(teacher: ml_collections.ConfigDict, width: int, proj_rank: int, steps_: int,
                   **distill_kw) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict(teacher.to_dict())
  c.student = student_model(teacher.model, width, proj_rank)
  c.teacher_model = ml_collections.ConfigDict(teacher.model.to_dict())
  c.distill = distill.default_distill_config()
  c.distill.teacher_dir = ""
  c.distill.update(dict(pixel_weight=1.0, adv_weight=0.05, warmup_steps=min(500, steps_ // 4)) | distill_kw)
  c.train.steps = steps_
  return c


def scratch_config(teacher: ml_collections.ConfigDict, width: int, proj_rank: int, steps_: int):
  c = ml_collections.ConfigDict(teacher.to_dict())
  c.model = student_model(teacher.model, width, proj_rank)
  c.model.d_width = width
  c.train.steps = steps_
  return c


def _finished(workdir: str, steps_: int) -> bool:
  from gandistill_jax.checkpoint import Checkpointer
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    return False
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
  done = ckpt.latest_step() == steps_
  ckpt.close()
  return done


def run_all(runs: Sequence[Run], workdir: str, teacher_name: str = "teacher", eval_num: int = 5000,
            progress: bool = True) -> dict[str, dict]:
  """Trains (or resumes) and evaluates every run in order; returns {name: eval result}."""
  results = {}
  teacher_dir = os.path.join(workdir, teacher_name)
  for run in runs:
    wd = os.path.join(workdir, run.name)
    config = run.config
    if not _finished(wd, config.train.steps):
      if run.kind == "distill":
        config = ml_collections.ConfigDict(config.to_dict())
        t_model, teacher = loop.load_teacher(teacher_dir, config)
        config.teacher_model = ml_collections.ConfigDict(t_model.to_dict())
        config.distill.teacher_dir = os.path.abspath(teacher_dir)
        loop.train(config, wd, distill.distill_task(config, teacher), progress=progress)
      else:
        loop.train(config, wd, tasks.gan_task(config, run.kind), progress=progress)
      if not _finished(wd, config.train.steps):  # the loop saved and returned on SIGTERM
        raise StudyStopped(f"stopped during {run.name} (SIGTERM); re-run the same command to resume")
    eval_path = os.path.join(wd, "eval.json")
    if os.path.exists(eval_path) and json.load(open(eval_path))["counts"]["generated"] == eval_num:
      results[run.name] = json.load(open(eval_path))
    else:
      results[run.name] = evaluate.evaluate_workdir(wd, "" if run.kind != "scratch" else teacher_dir, num=eval_num)
  return results


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
  first = results[names[0]]
  lines = [f"# Compression study: {first['dataset']}", "", f"Command: `{command}`", "",
           f"Device: {t_eff['device']}. FID/KID/PR/DC: {first['counts']['generated']} samples per run against the "
           f"{first['counts']['reference']} images of the {first['reference_split']} split; features: "
           f"{first['feature_extractor']}. Fidelity: the same {results[names[-1]].get('fidelity', {}).get('num_z', 0)} "
           f"z through student and teacher.", "",
           "| run | kind | G params | x fewer | MFLOPs/sample | samples/s (b256) | x faster | FID | KID | precision | recall | density | coverage | L1 to teacher | PSNR dB |",
           "|---" * 15 + "|"]
  for r in runs:
    e, q, fi = results[r.name]["efficiency"], results[r.name], results[r.name].get("fidelity", {})
    lines.append(
        f"| {r.name} | {r.kind} | {e['params']:,} | {t_eff['params'] / e['params']:.1f} | {e['flops_per_sample'] / 1e6:.2f} | "
        f"{e['samples_per_s_batch256']:,.0f} | {e['samples_per_s_batch256'] / t_eff['samples_per_s_batch256']:.1f} | "
        f"{q['fid']:.2f} | {q['kid']:.4f} | {q['precision']:.3f} | {q['recall']:.3f} | {q['density']:.3f} | "
        f"{q['coverage']:.3f} | {fi.get('pixel_l1', float('nan')):.3f} | {fi.get('psnr_db', float('nan')):.1f} |")
  lines += ["", f"Rows of `samples_same_z.png`, top to bottom: {', '.join(names)} (the same 8 z).", "",
            "![samples](samples_same_z.png)", "", "![FID vs parameters](fid_vs_params.png)", ""]
  report = "\n".join(lines)
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write(report)
  return report


def demo_runs(base: ml_collections.ConfigDict, tiny: bool = False) -> list[Run]:
  """Teacher (width 32), joint-distilled students at widths 8 and 4, and the width-4 scratch baseline."""
  t_steps, s_steps = (6, 6) if tiny else (3000, 3000)
  teacher = teacher_config(base, 32, t_steps)
  return [Run("teacher", "teacher", teacher),
          Run("distill_w8", "distill", distill_config(teacher, 8, 16, s_steps)),
          Run("distill_w4", "distill", distill_config(teacher, 4, 16, s_steps)),
          Run("scratch_w4", "scratch", scratch_config(teacher, 4, 16, s_steps))]


def demo_base() -> ml_collections.ConfigDict:
  c = config_lib.base_config()
  c.model.update(image_size=28, channels=1, latent_dim=100)
  c.train.update(batch_size=64, ema_decay=0.999, log_every=50, sample_every=1000, ckpt_every=1000)
  return c
