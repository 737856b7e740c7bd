"""The full compression study: a teacher; at each student size, the student distilled with
the default recipe (recipes.DEFAULT_RECIPE; cut from the teacher where it is a DCGAN) and the same student
trained from scratch with the same steps. Resumable.

    python experiments/study/compression_study.py --workdir runs/study --profile cpu
    python experiments/study/compression_study.py --workdir runs/study_gpu --profile gpu   # CIFAR-10 SNGAN ResNet

Writes results.json, report.md, samples_same_z.png and fid_vs_params.png to --workdir.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from gandistill_jax import config as config_lib, recipes, reports, study

# Students against the width-64 DCGAN teacher (765,953 G params): 2.2x, 4.6x, 13x, 21x and 56x
# fewer (the study in docs/results.md: a teacher from before model.g_proj_bias, 759,681 params). w16 r16
# has 15x fewer FLOPs than the teacher, w24 r16 only 7x: the smallest ~10x student that is
# also ~8x faster to sample from.
DCGAN_STUDENTS = (recipes.Student("dcgan", 32), recipes.Student("dcgan", 16), recipes.Student("dcgan", 24, 16),
                  recipes.Student("dcgan", 16, 16), recipes.Student("dcgan", 8, 12))
# Against the CIFAR-10 SNGAN ResNet teacher (width 64, 4.28M G params): about 4x, 16x and 60x fewer.
RESNET_STUDENTS = (recipes.Student("resnet", 32), recipes.Student("resnet", 16), recipes.Student("resnet", 8))

PROFILES = {
    # Fashion-MNIST DCGAN, students cut from the teacher
    "tiny": dict(base=recipes.demo_base, students=DCGAN_STUDENTS, init=recipes.DEFAULT_INIT,
                 teacher_steps=6, student_steps=6, eval_num=200),
    "cpu": dict(base=recipes.demo_base, students=DCGAN_STUDENTS, init=recipes.DEFAULT_INIT,
                teacher_steps=4000, student_steps=4000, eval_num=5000),
    # CIFAR-10 SNGAN ResNet (needs TFDS cifar10 prepared); channel cutting is DCGAN-only
    "gpu": dict(base=recipes.sngan_base, students=RESNET_STUDENTS, init="random",
                teacher_steps=50000, student_steps=30000, eval_num=10000),
}
STUDENTS = DCGAN_STUDENTS + RESNET_STUDENTS


def study_runs(profile: str, base=None) -> list[study.Run]:
  p = PROFILES[profile]
  base = base or p["base"]()
  teacher = recipes.teacher_config(base, 64, p["teacher_steps"])
  runs = [study.Run("teacher", "teacher", teacher)]
  for s in p["students"]:
    runs.append(study.Run(f"distill_{s.tag}", "distill", recipes.distill_config(
        teacher, s, p["student_steps"], recipes.DEFAULT_RECIPE, p["init"])))
    runs.append(study.Run(f"scratch_{s.tag}", "scratch", recipes.scratch_config(teacher, s, p["student_steps"])))
  return runs


def _params_order(run: study.Run) -> int:
  """Smallest student first (STUDENTS lists them largest first); the teacher sorts apart."""
  if run.kind == "teacher":
    return 0
  m = run.config.model
  return -STUDENTS.index(recipes.Student(m.family, m.g_width, m.proj_rank))


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
  ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the base config")
  ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                  help="the whole study once per seed (workdir/seed_<k>/), then mean ± std per run")
  ap.add_argument("--one-process", action="store_true",
                  help="train every run in this process (default on a CPU: the scratch runs in a second process)")
  ap.add_argument("--report-only", action="store_true",
                  help="train nothing: report the runs that are finished and evaluated so far")
  a = ap.parse_args()
  base = config_lib.apply_overrides(PROFILES[a.profile]["base"](), a.set)
  runs = study_runs(a.profile, base)
  command = "python experiments/study/compression_study.py " + " ".join(sys.argv[1:])
  if a.report_only:
    done = [r for r in runs if os.path.exists(os.path.join(a.workdir, r.name, "eval.json"))]
    results = {r.name: json.load(open(os.path.join(a.workdir, r.name, "eval.json"))) for r in done}
    print(f"{len(done)} of {len(runs)} runs are finished and evaluated")
    runs = done
    print(reports.write_report(runs, results, a.workdir, command))
    return
  # Train from the smallest student up: the headline numbers come first when time runs
  # short. The reports keep the natural order.
  by_seed = {}
  for seed in a.seeds:
    wd = study.seed_workdir(a.workdir, seed, a.seeds)
    seeded = study.with_seed(runs, seed)
    order = sorted(seeded, key=lambda r: (r.kind != "teacher", _params_order(r)))
    by_seed[seed] = study.run_all(order, wd, eval_num=PROFILES[a.profile]["eval_num"], side_process=not a.one_process)
    print(reports.write_report(seeded, by_seed[seed], wd, command))
  if len(a.seeds) > 1:
    print(reports.seeds_report(runs, by_seed, a.workdir, command))


if __name__ == "__main__":
  main()
