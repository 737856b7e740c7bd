"""A distillation sweep: recipe x student family x init x size x steps, from one trained teacher.

    nice python experiments/study/sweep.py --teacher runs/t64 --workdir runs/sweep --grid small50x

Every cell is a study run (gandistill_jax.study): trained, evaluated (domain-classifier
FID etc., fidelity to the teacher), resumable and skipped once finished, so the same
command continues a killed sweep. Each finished cell adds a row to sweep.md / sweep.json
in --workdir, with its parameters, compression, steps, wall time and scores; the teacher
is evaluated with the same settings for the ratio column. Scratch baselines are cells too
(recipe 'scratch': the student trained adversarially with the teacher's recipe).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys

from gandistill_jax import recipes, study, workdir as workdir_lib
from gandistill_jax.eval import evaluate

# name -> (recipes, students, inits, steps). Students are (family, width, proj_rank);
# against a width-64 DCGAN teacher (759,681 G params, before model.g_proj_bias; cells take the
# teacher workdir's model config, bias included or not): dcgan w24 r16 58k (13x),
# mobile m32 r16 71k (10.7x), dcgan w8 r12 12.8k (59x), mobile m12 r8 13k (58x); shape50x
# trades width for projection rank at ~12k (w4 r24, w6 r16) and sizes the demo's ~7k student.
GRIDS = {
    "tiny": (("tinygan", "scratch"), (("dcgan", 2, 4),), ("random", "teacher"), (4,)),
    "small50x": (("joint", "tinygan", "gcc", "balanced", "mmd"), (("dcgan", 8, 12),), ("random", "teacher"), (2000,)),
    "family50x": (("joint", "mmd"), (("mobile", 12, 8),), ("random",), (6000,)),
    "tune50x": (("pixel", "joint", "joint_td", "joint_mmd", "scratch"), (("dcgan", 8, 12),), ("teacher",), (2000, 6000)),
    "shape50x": (("joint",), (("dcgan", 4, 24), ("dcgan", 6, 16), ("dcgan", 4, 12), ("dcgan", 8, 6)), ("teacher",), (2000,)),
    "size10x": (("tinygan", "balanced", "scratch"), (("dcgan", 24, 16), ("mobile", 32, 16)), ("random", "teacher"), (3000,)),
}


def cells(grid: str, teacher_cfg) -> list[tuple[str, study.Run]]:
  """(recipe, run) for every cell of the grid."""
  recipe_names, students, inits, steps_list = GRIDS[grid]
  runs = []
  for recipe, (family, width, rank), init, steps_ in itertools.product(recipe_names, students, inits, steps_list):
    student = recipes.Student(family, width, rank)
    if recipe == "scratch":
      if init != inits[0]:
        continue   # a scratch student has no teacher init
      runs.append((recipe, study.Run(f"scratch_{student.tag}_{steps_}", "scratch",
                                     recipes.scratch_config(teacher_cfg, student, steps_))))
      continue
    if init == "teacher" and family != "dcgan":
      continue     # channel selection cuts DCGAN students only
    runs.append((recipe, study.Run(f"{recipe}_{student.tag}_{init}_{steps_}", "distill",
                                   recipes.distill_config(teacher_cfg, student, steps_, recipe, student_init=init))))
  return runs


def table(rows: list[dict], teacher: dict) -> str:
  lines = [f"Teacher: {teacher['params']:,} G params, FID {teacher['fid']:.2f}, recall {teacher['recall']:.3f}", "",
           "| run | recipe | family | init | G params | x fewer | steps | train min | FID | FID / teacher | precision | recall | L1 to teacher |",
           "|---" * 13 + "|"]
  for r in sorted(rows, key=lambda r: (-r["x_fewer"], r["fid"])):
    lines.append(f"| {r['name']} | {r['recipe']} | {r['family']} | {r['init']} | {r['params']:,} | {r['x_fewer']:.1f} | "
                 f"{r['steps']} | {r['train_seconds'] / 60:.1f} | {r['fid']:.2f} | {r['fid'] / teacher['fid']:.2f} | "
                 f"{r['precision']:.3f} | {r['recall']:.3f} | {r['l1']:.3f} |")
  return "\n".join(lines)


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--teacher", required=True, help="a trained teacher workdir")
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--grid", action="append", choices=sorted(GRIDS), required=True, help="repeatable")
  ap.add_argument("--eval-num", type=int, default=5000)
  ap.add_argument("--only", default="", help="run only cells whose name contains this")
  a = ap.parse_args()
  teacher_cfg = workdir_lib.load_config(a.teacher)
  os.makedirs(a.workdir, exist_ok=True)
  t_eval = os.path.join(a.teacher, "eval.json")
  teacher = (json.load(open(t_eval)) if os.path.exists(t_eval) and
             json.load(open(t_eval))["counts"]["generated"] == a.eval_num
             else evaluate.evaluate_workdir(a.teacher, num=a.eval_num))
  t_params = teacher["efficiency"]["params"]
  teacher_row = {"params": t_params, "fid": teacher["fid"], "recall": teacher["recall"]}
  runs = [(recipe, r) for g in a.grid for recipe, r in cells(g, teacher_cfg) if a.only in r.name]
  out_path = os.path.join(a.workdir, "sweep.json")
  rows = {r["name"]: r for r in (json.load(open(out_path))["rows"] if os.path.exists(out_path) else [])}
  for recipe, run in runs:
    res = study.run_all([run], a.workdir, teacher_dir=a.teacher, eval_num=a.eval_num, progress=False)[run.name]
    m = run.config.model
    rows[run.name] = {
        "name": run.name, "recipe": recipe,
        "family": m.family, "width": m.g_width, "proj_rank": m.proj_rank,
        "init": run.config.distill.student_init if run.kind == "distill" else "-",
        "params": res["efficiency"]["params"], "x_fewer": t_params / res["efficiency"]["params"],
        "steps": res["steps"], "train_seconds": res["train_seconds"], "fid": res["fid"],
        "precision": res["precision"], "recall": res["recall"],
        "l1": res.get("fidelity", {}).get("pixel_l1", float("nan"))}
    with open(out_path, "w") as f:
      json.dump({"teacher": teacher_row, "rows": list(rows.values()),
                 "command": "python experiments/study/sweep.py " + " ".join(sys.argv[1:])}, f, indent=2)
    md = table(list(rows.values()), teacher_row)
    with open(os.path.join(a.workdir, "sweep.md"), "w") as f:
      f.write(md + "\n")
    print(md.splitlines()[-1] if len(rows) > 1 else md, flush=True)
  print(table(list(rows.values()), teacher_row))


if __name__ == "__main__":
  main()
