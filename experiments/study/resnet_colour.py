"""The SNGAN ResNet family on real colour images: a teacher trained adversarially with the
SNGAN recipe (Miyato et al. 2018: ResNet G and D, spectral norm, hinge loss, n_critic 5,
Adam 2e-4 with betas (0, 0.9)), scaled down to what a 2-core CPU trains in minutes, then a
ResNet student distilled from it (recipe `joint`, random init), both scored on Inception
features against the held-out split. The teacher's FID over steps comes from periodic
evaluations during training (train.eval_every, on fewer samples).

    python experiments/tools/install_emoji.py ~/data/emoji-google
    nice python experiments/study/resnet_colour.py --workdir runs/resnet_colour

Resumable (finished runs are skipped). Writes report.md (the study's table, same-z sample
grid, FID vs parameters) and fid_over_steps.png / resnet.md in --workdir.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "configs"))

from gandistill_jax import config as config_lib, loop, recipes, reports, study, tasks  # noqa: E402
from gandistill_jax.eval import evaluate  # noqa: E402


def teacher_config(a):
  import emoji_demo
  colour = emoji_demo.get_config()
  c = recipes.sngan_base("emoji", 32)
  c.data = colour.data
  c.eval = colour.eval
  c.model.update(g_width=a.width, d_width=a.width)
  c.train.update(steps=a.steps, batch_size=a.batch, eval_every=a.eval_every, eval_num=a.eval_every_num,
                 sample_every=a.eval_every, ckpt_every=a.eval_every, log_every=50,
                 ema_decay=0.999)   # 0.9999 averages over more steps than this run has
  return config_lib.apply_overrides(c, a.set or [])


def fid_over_steps(workdir: str) -> list[tuple[int, float, float]]:
  """(step, FID, KID) of the periodic evaluations in a run's metrics.jsonl."""
  out = []
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      m = json.loads(line)
      if "eval/fid" in m:
        out.append((m["step"], m["eval/fid"], m["eval/kid"]))
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--width", type=int, default=8, help="teacher G and D width (recipes.sngan_base: 64; on 2 "
                  "CPU cores width 32 runs 0.08 G updates/s, width 8 about 1.3)")
  ap.add_argument("--student-width", type=int, default=4)
  ap.add_argument("--steps", type=int, default=1200, help="teacher G updates (each after n_critic=5 D updates)")
  ap.add_argument("--student-steps", type=int, default=1200)
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--eval-every", type=int, default=400)
  ap.add_argument("--eval-every-num", type=int, default=250, help="samples of each periodic evaluation")
  ap.add_argument("--num", type=int, default=500, help="samples of the final evaluations")
  ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="teacher config overrides")
  a = ap.parse_args()
  teacher = teacher_config(a)
  student = recipes.distill_config(teacher, recipes.Student("resnet", a.student_width), a.student_steps,
                                   recipes.DEFAULT_RECIPE, "random")
  student.train.update(eval_every=0, sample_every=a.eval_every, ckpt_every=a.eval_every)
  runs = [study.Run("teacher", "teacher", teacher), study.Run(f"distill_r{a.student_width}", "distill", student)]
  t_dir = os.path.join(a.workdir, "teacher")
  if not study._finished(t_dir, teacher.train.steps):
    start = time.perf_counter()
    loop.train(teacher, t_dir, tasks.gan_task(teacher, "teacher"), eval_fn=evaluate.periodic_eval_fn(teacher),
               progress=False)
    study._add_train_seconds(t_dir, time.perf_counter() - start)
  results = study.run_all(runs, a.workdir, eval_num=a.num, progress=False)
  command = "python experiments/study/resnet_colour.py " + " ".join(sys.argv[1:])
  reports.write_report(runs, results, a.workdir, command)
  curve = fid_over_steps(t_dir)

  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.5))
  ax.plot([s for s, _, _ in curve], [f for _, f, _ in curve], "o-")
  ax.set_xlabel("teacher step (G updates)")
  ax.set_ylabel(f"Inception FID ({teacher.train.eval_num} samples)")
  fig.tight_layout()
  fig.savefig(os.path.join(a.workdir, "fid_over_steps.png"), dpi=120)
  plt.close(fig)
  lines = [f"SNGAN ResNet teacher (width {a.width}) and a distilled ResNet student (width {a.student_width}) on "
           f"{teacher.data.path}; `{command}`.", "",
           f"Teacher FID over steps (Inception, {teacher.train.eval_num} samples of the EMA generator against the "
           f"held-out split):", "", "| step | FID | KID |", "|---|---|---|"]
  lines += [f"| {s} | {f:.1f} | {k:.4f} |" for s, f, k in curve]
  lines += ["", "| run | G params | train min | Inception FID | KID | precision | recall |", "|---|---|---|---|---|---|---|"]
  for r in runs:
    q = results[r.name]
    lines.append(f"| {r.name} | {q['efficiency']['params']:,} | {q['train_seconds'] / 60:.1f} | {q['fid']:.1f} | "
                 f"{q['kid']:.4f} | {q['precision']:.3f} | {q['recall']:.3f} |")
  with open(os.path.join(a.workdir, "resnet.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
