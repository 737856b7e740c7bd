"""The compression frontier: how small a student keeps the teacher's quality.

    python experiments/study/frontier.py --sweep runs/frontier --out results/frontier \
        --earlier results/cpu_study/results.json

Reads a sweep (experiments/study/sweep.py: sweep.json and every cell's inception_fid.json
from experiments/study/inception_fid.py) and writes to --out:

  frontier.md    per cell, mean ± sample std over its seeds of FID / teacher FID and recall /
                 teacher recall (domain classifier), Inception FID where scored, params,
                 samples/s, steps and train minutes; the goals of each size class, met or not
  frontier.png   FID / teacher FID against x fewer parameters and against samples/s, log
                 axes, and recall / teacher recall against x fewer parameters: each cell (mean ± std over seeds), the scratch twins, an earlier
                 study's students (--earlier: its own teacher's ratios), the goals and the
                 published anchors

Ratios, not raw FIDs, put students of different teachers on one plot. The anchors are
NICKEL & DiME (Yeo et al. 2024), StyleGAN2 on FFHQ at 93x and 323x fewer FLOPs (FID 15.93
and 29.38 from a teacher near 4.5: 3.5x and 6.5x), and Lucic et al. 2018's Fashion-MNIST
Inception FIDs (26.5 non-saturating, 21.5 WGAN), for the teacher's Inception FID.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import numpy as np

# (x fewer, FID / teacher FID, recall / teacher recall or None), the goals of issue "Smaller still"
GOALS = ((50, 1.1, 0.9), (100, 1.5, None), (300, 3.0, None))
MIN_RECALL_100X = 0.5
ANCHORS = (("NICKEL & DiME 93x FLOPs", 93, 15.93 / 4.5), ("NICKEL & DiME 323x FLOPs", 323, 29.38 / 4.5))
LUCIC_2018 = {"non-saturating": 26.5, "WGAN": 21.5}


def cells(rows: list[dict]) -> dict[str, list[dict]]:
  by = {}
  for r in rows:
    by.setdefault(r.get("cell", r["name"]), []).append(r)
  return by


def ratio(a: float, b: float) -> float:
  """a / b, NaN where b is 0 (a teacher with no recall at all)."""
  return a / b if b else float("nan")


def mean_std(xs: list[float]) -> tuple[float, float]:
  x = np.asarray(xs, np.float64)
  return float(x.mean()), (float(x.std(ddof=1)) if len(x) > 1 else 0.0)


def fmt(xs: list[float], digits: int = 2) -> str:
  m, s = mean_std(xs)
  return f"{m:.{digits}f} ± {s:.{digits}f}" if len(xs) > 1 else f"{m:.{digits}f}"


def inception(sweep: str, name: str) -> float | None:
  path = os.path.join(sweep, name, "inception_fid.json")
  return json.load(open(path))["fid"] if os.path.exists(path) else None


def goal_of(x_fewer: float):
  met = [g for g in GOALS if x_fewer >= g[0]]
  return met[-1] if met else None


def verdict(rs: list[dict], teacher: dict) -> str:
  """Each goal of the cell's size class, met or not by the cell's mean."""
  goal = goal_of(rs[0]["x_fewer"])
  if goal is None:
    return ""
  fid = ratio(statistics.fmean(r["fid"] for r in rs), teacher["fid"])
  recall = statistics.fmean(r["recall"] for r in rs)
  checks = [(f"FID ≤ {goal[1]}x", fid <= goal[1])]
  if goal[2] is not None:
    checks.append((f"recall ≥ {goal[2]}x", recall >= goal[2] * teacher["recall"]))
  if goal[0] == 100:
    checks.append((f"recall ≥ {MIN_RECALL_100X}", recall >= MIN_RECALL_100X))
  return f"≥{goal[0]}x: " + "; ".join(f"{name} {'met' if ok else 'not met'}" for name, ok in checks)


def table(sweep: str, data: dict) -> str:
  teacher = data["teacher"]
  t_inc = inception(sweep, "teacher")
  lines = [f"Teacher: {teacher['params']:,} G params, FID {teacher['fid']:.2f}, recall {teacher['recall']:.3f}"
           + (f", Inception FID {t_inc:.2f} (10,000 samples against the test split)" if t_inc else ""), "",
           "| cell | G params | x fewer | samples/s | steps | seeds | train min | FID | FID / teacher | recall | "
           "recall / teacher | Inception FID / teacher | goal |",
           "|---" * 13 + "|"]
  by = cells(data["rows"])
  for cell, rs in sorted(by.items(), key=lambda kv: (-kv[1][0]["x_fewer"], statistics.fmean(r["fid"] for r in kv[1]))):
    r0 = rs[0]
    incs = [i / t_inc for i in (inception(sweep, r["name"]) for r in rs) if i is not None] if t_inc else []
    sps = [r["samples_per_s"] for r in rs if r.get("samples_per_s")]
    lines.append(
        f"| {cell} | {r0['params']:,} | {r0['x_fewer']:.1f} | {statistics.fmean(sps):,.0f} | {r0['steps']} | {len(rs)} | "
        f"{statistics.fmean(r['train_seconds'] for r in rs) / 60:.1f} | {fmt([r['fid'] for r in rs])} | "
        f"{fmt([ratio(r['fid'], teacher['fid']) for r in rs])} | {fmt([r['recall'] for r in rs], 3)} | "
        f"{fmt([ratio(r['recall'], teacher['recall']) for r in rs])} | "
        f"{fmt(incs) + (f' ({len(incs)})' if len(incs) < len(rs) else '') if incs else ''} | "
        f"{verdict(rs, teacher) if r0['recipe'] != 'scratch' else 'scratch twin'} |")
  return "\n".join(lines)


def plot(data: dict, earlier: dict | None, path: str) -> None:
  """Three panels: FID / teacher against x fewer parameters and against samples/s, and
  recall / teacher against x fewer parameters."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  teacher = data["teacher"]
  fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
  by = cells(data["rows"])
  recipes = sorted({rs[0]["recipe"] for rs in by.values()})
  colours = {r: plt.cm.tab10(i % 10) for i, r in enumerate(recipes)}
  panels = (("x_fewer", "fid"), ("samples_per_s", "fid"), ("x_fewer", "recall"))
  for ax, (xkey, ykey) in zip(axes, panels):
    for cell, rs in by.items():
      xs = [r[xkey] for r in rs if r.get(xkey)]
      if not xs:
        continue
      m, s = mean_std([ratio(r[ykey], teacher[ykey]) for r in rs])
      recipe = rs[0]["recipe"]
      ax.errorbar(statistics.fmean(xs), m, yerr=s, fmt="s" if recipe == "scratch" else "o",
                  color=colours[recipe], mfc="none" if recipe == "scratch" else colours[recipe], capsize=3,
                  label=recipe)
    if earlier:
      t = earlier["teacher"]
      for name, r in earlier.items():
        if name == "teacher":
          continue
        x = t["efficiency"]["params"] / r["efficiency"]["params"] if xkey == "x_fewer" else \
            r["efficiency"].get("samples_per_s_batch256")
        ax.scatter(x, ratio(r[ykey], t[ykey]), marker="^" if name.startswith("distill") else "v", color="grey",
                   label="earlier study (13x-59x), distilled" if name.startswith("distill") else
                   "earlier study, scratch")
    if xkey == "x_fewer":
      for x, fid, recall in GOALS:
        y = fid if ykey == "fid" else recall
        if y is not None:
          ax.hlines(y, x, x * 1.6, colors="green", linestyles="--")
      if ykey == "recall":
        ax.hlines(ratio(MIN_RECALL_100X, teacher["recall"]), 100, 160, colors="green", linestyles="--")
      ax.plot([], [], "g--", label="goal (from 50x, 100x, 300x)")
      if ykey == "fid":
        for _, x, y in ANCHORS:
          ax.scatter(x, y, marker="*", s=120, color="black", label="NICKEL & DiME (FLOPs; FFHQ StyleGAN2)")
      ax.set_xlabel("x fewer G parameters than the teacher")
    else:
      ax.set_xlabel("samples/s (batch 256, this CPU; noisy)")
    ax.axhline(1.0, color="black", lw=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log" if ykey == "fid" else "linear")
    ax.set_ylabel(f"{'FID' if ykey == 'fid' else 'recall'} / teacher's (domain classifier)")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7)
  fig.suptitle(f"Fashion-MNIST frontier: teacher {teacher['params']:,} G params, FID {teacher['fid']:.2f}, "
               f"recall {teacher['recall']:.3f}; mean ± std over seeds")
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--sweep", required=True, help="a sweep workdir (sweep.json)")
  ap.add_argument("--out", required=True)
  ap.add_argument("--earlier", default="", help="an earlier study's results.json, plotted as its own ratios")
  a = ap.parse_args()
  data = json.load(open(os.path.join(a.sweep, "sweep.json")))
  earlier = json.load(open(a.earlier)) if a.earlier else None
  os.makedirs(a.out, exist_ok=True)
  md = table(a.sweep, data)
  t_inc = inception(a.sweep, "teacher")
  if t_inc:
    md += (f"\n\nTeacher Inception FID {t_inc:.2f}; Lucic et al. 2018 report "
           + ", ".join(f"{v} ({k})" for k, v in LUCIC_2018.items()) + " on Fashion-MNIST.")
  with open(os.path.join(a.out, "frontier.md"), "w") as f:
    f.write(f"Command: `python experiments/study/frontier.py {' '.join(sys.argv[1:])}`\n\n{md}\n\n"
            "![frontier](frontier.png)\n")
  plot(data, earlier, os.path.join(a.out, "frontier.png"))
  print(md)


if __name__ == "__main__":
  main()
