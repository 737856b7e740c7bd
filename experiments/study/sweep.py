"""A distillation sweep: recipe x student family x init x size x steps, from one trained teacher.

    nice python experiments/study/sweep.py --teacher runs/t64 --workdir runs/sweep --grid small50x

Every cell is a study run (gandistill_jax.study): trained, evaluated (domain-classifier
FID etc., fidelity to the teacher), resumable and skipped once finished, so the same
command continues a killed sweep. Each finished cell adds a row to sweep.md / sweep.json
in --workdir, with its parameters, compression, steps, wall time and scores; the teacher
is evaluated with the same settings for the ratio column. Scratch baselines are cells too
(recipe 'scratch': the student trained adversarially with the teacher's recipe).

`--seeds 0 1 2` runs every cell once per seed (config.seed: init, data order and z follow
it; cells named <cell>_s<k>) and adds a mean +- std table over the seeds each cell has.
Several sweep processes may share one --workdir (e.g. `--only` splits the cells between
two processes on a 2-core machine): each merges its rows into sweep.json when it writes.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys

import ml_collections
import numpy as np

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
    # the frontier against the width-64 teacher with the projection bias (765,953 G params):
    # w8 r12 13.6k (56x), w6 r8 7.4k (104x), w8 r5 7.4k (103x), w4 r3 2.5k (310x); long schedules
    "frontier": (("joint",), (("dcgan", 8, 12), ("dcgan", 6, 8), ("dcgan", 8, 5), ("dcgan", 4, 3)), ("teacher",), (12000,)),
    # at 6000 steps, what moves the ~100x student: a wider fresh D, features from every
    # teacher stage, channels chosen by output sensitivity, a mobile student (m8 r4 6.1k,
    # 125x) with the teacher's projection
    "frontier_ideas": (("joint", "joint_wd", "joint_gfeat"), (("dcgan", 8, 5),), ("teacher",), (6000,)),
    "frontier_init": (("joint",), (("dcgan", 8, 5), ("mobile", 8, 4)), ("sens", "teacher"), (6000,)),
    # the ~100x scratch twin (the teacher's recipe and width-64 D) against the 6000-step students
    "frontier_scratch": (("scratch",), (("dcgan", 6, 8),), ("teacher",), (6000,)),
    # rank against width at 6000 steps: ~100x w4 r12 6.9k, w6 r8 7.4k, w3 r16 7.0k, w2 r24 7.5k;
    # ~300x w3 r4 2.2k, w2 r7 2.4k, w1 r12 2.5k, w4 r3 2.5k
    "frontier_shape": (("joint",), (("dcgan", 2, 24), ("dcgan", 3, 16), ("dcgan", 4, 12), ("dcgan", 6, 8),
                                    ("dcgan", 1, 12), ("dcgan", 2, 7), ("dcgan", 3, 4), ("dcgan", 4, 3)), ("teacher",), (6000,)),
}
# a cell's init -> (distill.student_init, distill.prune_by)
INITS = {"random": ("random", "bn_scale"), "teacher": ("teacher", "bn_scale"), "sens": ("teacher", "sensitivity")}


def cells(grid: str, teacher_cfg, seed: int = 0) -> list[tuple[str, study.Run]]:
  """(recipe, run) for every cell of the grid, with config.seed = `seed` (named <cell>_s<seed>
  for a seed other than 0, so one-seed sweeps keep their names)."""
  recipe_names, students, inits, steps_list = GRIDS[grid]
  runs = []
  teacher_cfg = ml_collections.ConfigDict(teacher_cfg.to_dict())
  teacher_cfg.seed = seed
  tag = f"_s{seed}" if seed else ""
  for recipe, (family, width, rank), init, steps_ in itertools.product(recipe_names, students, inits, steps_list):
    student = recipes.Student(family, width, rank)
    if recipe == "scratch":
      if init != inits[0]:
        continue   # a scratch student has no teacher init
      runs.append((recipe, study.Run(f"scratch_{student.tag}_{steps_}{tag}", "scratch",
                                     recipes.scratch_config(teacher_cfg, student, steps_))))
      continue
    student_init, prune_by = INITS[init]
    runs.append((recipe, study.Run(f"{recipe}_{student.tag}_{init}_{steps_}{tag}", "distill",
                                   recipes.distill_config(teacher_cfg, student, steps_, recipe,
                                                          student_init=student_init, prune_by=prune_by))))
  return runs


def name_init(config) -> str:
  return next(k for k, v in INITS.items() if v == (config.distill.student_init, config.distill.prune_by))


def table(rows: list[dict], teacher: dict) -> str:
  lines = [f"Teacher: {teacher['params']:,} G params, FID {teacher['fid']:.2f}, recall {teacher['recall']:.3f}", "",
           "| run | recipe | family | init | G params | x fewer | steps | train min | FID | FID / teacher | precision | recall | L1 to teacher |",
           "|---" * 13 + "|"]
  for r in sorted(rows, key=lambda r: (-r["x_fewer"], r["fid"])):
    lines.append(f"| {r['name']} | {r['recipe']} | {r['family']} | {r['init']} | {r['params']:,} | {r['x_fewer']:.1f} | "
                 f"{r['steps']} | {r['train_seconds'] / 60:.1f} | {r['fid']:.2f} | {ratio(r['fid'], teacher['fid']):.2f} | "
                 f"{r['precision']:.3f} | {r['recall']:.3f} | {r['l1']:.3f} |")
  return "\n".join(lines)


def ratio(a: float, b: float) -> float:
  """a / b, NaN where b is 0 (a teacher with no recall at all)."""
  return a / b if b else float("nan")


def mean_std(values: list[float]) -> str:
  x = np.asarray(values, np.float64)
  return f"{x.mean():.2f} ± {x.std(ddof=1):.2f}" if len(x) > 1 else f"{x.mean():.2f}"


def seeds_table(rows: list[dict], teacher: dict) -> str:
  """Mean ± sample std over the seeds of every cell run with more than one."""
  by_cell = {}
  for r in rows:
    by_cell.setdefault(r.get("cell", r["name"]), []).append(r)
  lines = ["| cell | G params | x fewer | steps | seeds | train min | FID | FID / teacher | recall | recall / teacher |",
           "|---" * 10 + "|"]
  for cell, rs in sorted(by_cell.items(), key=lambda kv: (-kv[1][0]["x_fewer"], statistics.fmean(r["fid"] for r in kv[1]))):
    if len(rs) < 2:
      continue
    r0 = rs[0]
    lines.append(f"| {cell} | {r0['params']:,} | {r0['x_fewer']:.1f} | {r0['steps']} | {len(rs)} | "
                 f"{statistics.fmean(r['train_seconds'] for r in rs) / 60:.1f} | {mean_std([r['fid'] for r in rs])} | "
                 f"{mean_std([ratio(r['fid'], teacher['fid']) for r in rs])} | {mean_std([r['recall'] for r in rs])} | "
                 f"{mean_std([ratio(r['recall'], teacher['recall']) for r in rs])} |")
  return "\n".join(lines) if len(lines) > 2 else ""


def write(workdir: str, new_rows: dict, teacher_row: dict, command: str) -> str:
  """Merges `new_rows` into workdir/sweep.json (another sweep process may have added rows
  since this one started) and rewrites sweep.md; returns the markdown."""
  out_path = os.path.join(workdir, "sweep.json")
  rows = {r["name"]: r for r in (json.load(open(out_path))["rows"] if os.path.exists(out_path) else [])}
  rows |= new_rows
  with open(out_path + ".tmp", "w") as f:
    json.dump({"teacher": teacher_row, "rows": list(rows.values()), "command": command}, f, indent=2)
  os.replace(out_path + ".tmp", out_path)
  md = table(list(rows.values()), teacher_row)
  seeds = seeds_table(list(rows.values()), teacher_row)
  if seeds:
    md += "\n\nOver seeds (mean ± sample std):\n\n" + seeds
  with open(os.path.join(workdir, "sweep.md"), "w") as f:
    f.write(md + "\n")
  return md


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--teacher", required=True, help="a trained teacher workdir")
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--grid", action="append", choices=sorted(GRIDS), required=True, help="repeatable")
  ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="every cell once per seed")
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
  command = "python experiments/study/sweep.py " + " ".join(sys.argv[1:])
  runs = [(recipe, seed, r) for seed in a.seeds for g in a.grid for recipe, r in cells(g, teacher_cfg, seed)
          if a.only in r.name]
  md = write(a.workdir, {}, teacher_row, command)
  for recipe, seed, run in runs:
    res = study.run_all([run], a.workdir, teacher_dir=a.teacher, eval_num=a.eval_num, progress=False)[run.name]
    m = run.config.model
    row = {"name": run.name, "cell": run.name.removesuffix(f"_s{seed}"), "seed": seed, "recipe": recipe,
           "family": m.family, "width": m.g_width, "proj_rank": m.proj_rank,
           "init": name_init(run.config) if run.kind == "distill" else "-",
           "params": res["efficiency"]["params"], "x_fewer": t_params / res["efficiency"]["params"],
           "samples_per_s": res["efficiency"].get("samples_per_s_batch256"),
           "steps": res["steps"], "train_seconds": res["train_seconds"], "fid": res["fid"],
           "precision": res["precision"], "recall": res["recall"],
           "l1": res.get("fidelity", {}).get("pixel_l1", float("nan"))}
    md = write(a.workdir, {run.name: row}, teacher_row, command)
    print(f"{run.name}: FID {row['fid']:.2f} ({row['fid'] / teacher_row['fid']:.2f}x the teacher), recall "
          f"{row['recall']:.3f}, {row['train_seconds'] / 60:.1f} min", flush=True)
  print(md)


if __name__ == "__main__":
  main()
