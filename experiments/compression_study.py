"""The full compression study: a teacher; students at widths 32/16/8/4 for each objective
(pixel, joint, joint with a teacher-initialised D, D-feature); same-size scratch
students with the same steps; 3 seeds for the smallest students. Resumable.

    python experiments/compression_study.py --workdir runs/study --profile cpu
    python experiments/compression_study.py --workdir runs/study_gpu --profile gpu

Writes results.json, report.md, samples_same_z.png and fid_vs_params.png to --workdir.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from gandistill_jax import config as config_lib, study

PROFILES = {  # teacher steps, student steps, eval samples
    "tiny": dict(teacher_steps=6, student_steps=6, eval_num=200),
    "cpu": dict(teacher_steps=6000, student_steps=3000, eval_num=5000),
    "gpu": dict(teacher_steps=50000, student_steps=30000, eval_num=10000),
}
WIDTHS = {32: 0, 16: 0, 8: 16, 4: 16}   # student width -> latent projection rank (0 = full)
OBJECTIVE_RECIPES = {"pixel": ("pixel", {}), "joint": ("joint", {}), "jointTD": ("joint", dict(d_init="teacher")),
                     "dfeat": ("pixel", dict(dfeat_weight=1.0, g_lr=0.0))}


def study_runs(profile: str, base=None) -> list[study.Run]:
  p = PROFILES[profile]
  base = base or study.demo_base()
  teacher = study.teacher_config(base, 64, p["teacher_steps"])
  runs = [study.Run("teacher", "teacher", teacher)]
  smallest = min(WIDTHS)
  for width, rank in WIDTHS.items():
    seeds = (0, 1, 2) if width == smallest else (0,)
    for seed in seeds:
      tag = f"_s{seed}" if len(seeds) > 1 else ""
      for name, (recipe, kw) in OBJECTIVE_RECIPES.items():
        c = study.distill_config(teacher, study.Student("dcgan", width, rank), p["student_steps"], recipe, **kw)
        c.seed = seed
        runs.append(study.Run(f"{name}_w{width}{tag}", "distill", c))
      c = study.scratch_config(teacher, study.Student("dcgan", width, rank), p["student_steps"])
      c.seed = seed
      runs.append(study.Run(f"scratch_w{width}{tag}", "scratch", c))
  return runs


def _width(run: study.Run) -> int:
  return (run.config.student if run.kind == "distill" else run.config.model).g_width


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
  ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the base config")
  ap.add_argument("--report-only", action="store_true",
                  help="train nothing: report the runs that are finished and evaluated so far")
  a = ap.parse_args()
  base = config_lib.apply_overrides(study.demo_base(), a.set)
  runs = study_runs(a.profile, base)
  command = "python experiments/compression_study.py " + " ".join(sys.argv[1:])
  if a.report_only:
    done = [r for r in runs if os.path.exists(os.path.join(a.workdir, r.name, "eval.json"))]
    results = {r.name: json.load(open(os.path.join(a.workdir, r.name, "eval.json"))) for r in done}
    print(f"{len(done)} of {len(runs)} runs are finished and evaluated")
    runs = done
  else:
    # Train seed 0 from the smallest student up, then the extra seeds: the headline
    # numbers come first when time runs short. The report keeps the natural order.
    order = sorted(runs, key=lambda r: (r.kind != "teacher", r.config.seed, _width(r)))
    results = study.run_all(order, a.workdir, eval_num=PROFILES[a.profile]["eval_num"])
  print(study.write_report(runs, results, a.workdir, command))


if __name__ == "__main__":
  main()
