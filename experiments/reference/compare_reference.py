"""Ours vs the plain PyTorch reference (experiments/reference/torch_dcgan_train.py) at equal steps,
every sample set scored by this package's own evaluation (same extractor, sample count
and reference split).

    pip install torch==2.13.0     # experiment-only
    nice python experiments/reference/compare_reference.py --workdir runs/compare --steps 4000 --widths 16

Reference runs (teacher width 64; students: pixel = MSE with Adam 1e-3, joint = 0.5 MSE +
0.5 adversarial vs a fresh width-64 D, scratch = its GAN at the student's width) write
10,000 EMA samples as .npz; they are reused when present. Ours: the Fashion-MNIST teacher
config, students cut from our teacher (recipes.DEFAULT_INIT) and distilled with our `pixel`
recipe (L1, Adam 1e-3) and our default recipe, and our scratch baseline (the teacher's recipe and
discriminator, the generator at the student's width). Prints one table and writes <table>.md / <table>.json.

Inception FID too: `--inception-weights ~/.cache/gandistill_jax/inception_fid.npz
--inception-num 2000` (experiments/tools/convert_inception_weights.py makes the file) adds a table of
FID on InceptionV3 pool3 features for every row, on the first N samples of each set.

The study's students: a width `WrR` (e.g. `--widths 32 24r16 8r12`) is our width-W student
with a rank-R latent projection (recipes.Student); the reference has no low-rank projection,
so it runs at width W full rank, a larger generator than ours (its samples are shared
with plain width W). `--reference-low-rank` gives the reference's student the same rank-R
projection instead (experiments/reference/torch_reference_low_rank.py; samples ref_<objective>_wWrR):
a like-for-like row.

Seed-to-seed spread: `--seeds 0 1 2` trains every student row once per seed on both sides
(rows of seed s > 0 are named *_s<s>; the teacher is seed 0) and adds mean ± sd rows, e.g.
    nice python experiments/reference/compare_reference.py --workdir runs/compare --widths 8 \
        --objectives scratch --seeds 0 1 2 --table seeds_w8
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

import ml_collections
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "configs"))
REFERENCE = os.path.join(HERE, "torch_dcgan_train.py")
REFERENCE_LOW_RANK = os.path.join(HERE, "torch_reference_low_rank.py")

from gandistill_jax import config as config_lib, recipes, study  # noqa: E402
from gandistill_jax.data import pipeline  # noqa: E402
from gandistill_jax.eval import evaluate  # noqa: E402


def reference_run(workdir: str, mode: str, width: int, steps_: int, name: str, seed: int, rank: int = 0) -> str:
  """The reference's samples (.npz) for one run, trained first if missing; `rank` > 0 gives
  its student a rank-`rank` latent projection (torch_reference_low_rank.py)."""
  path = os.path.join(workdir, name + ".npz")
  if not os.path.exists(path):
    script = [REFERENCE_LOW_RANK, "--rank", str(rank)] if rank else [REFERENCE]
    cmd = [sys.executable, *script, "--mode", mode, "--width", str(width), "--steps", str(steps_),
           "--out", name, "--dir", workdir, "--seed", str(seed)] + (["--teacher", "ref_teacher"] if mode != "gan" else [])
    print("running", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
  return path


def student_of(spec: str):
  """'24r16' -> recipes.Student('dcgan', 24, 16); '16' -> recipes.Student('dcgan', 16)."""
  m = re.fullmatch(r"(\d+)(?:r(\d+))?", spec)
  if not m:
    raise argparse.ArgumentTypeError(f"width {spec!r}: expected W or WrR, e.g. 16 or 24r16")
  return recipes.Student("dcgan", int(m[1]), int(m[2] or 0))


OBJECTIVES = {"pixel": "pixel", "joint": "joint", "scratch": "gan"}   # ours -> the reference's --mode


def score_npz(path: str, config, score, num: int) -> dict:
  with np.load(path, allow_pickle=False) as f:
    images = pipeline.to_float(f["images"][:num])
  return score.quality(images, latent_seed=None)


def inception_table(rows: dict, config, a, ref_dir: str, refs: dict) -> list[str]:
  """Markdown lines: Inception FID of every row's first `a.inception_num` samples (ours:
  the EMA generator on fixed z) against the test split's Inception features."""
  from gandistill_jax import export
  from gandistill_jax.eval import metrics
  config = ml_collections.ConfigDict(config.to_dict())
  config.eval.update(inception_weights=a.inception_weights)
  ref = evaluate.reference_from_config(config.data, config.model.image_size, config.model.channels)
  inception = evaluate.scorer(ref, config_lib.cache_dir(config), "inception", a.inception_weights)
  features, real = (lambda x: inception.outputs(x)[1]), inception.real
  n = a.inception_num
  def fid_of(images):
    return metrics.fid(real, features(images))
  lines = [f"Inception FID ({n} samples per set, InceptionV3 pool3 against the {len(real)} test images; "
           f"lower is better; few samples bias FID upwards, equally for every row):", "",
           "| run | reference Inception FID | ours Inception FID | ours / reference |", "|---|---|---|---|"]
  for name, r in rows.items():
    gen = export.load_generator(os.path.join(a.workdir, name))
    ours = fid_of(gen(np.random.default_rng(0).standard_normal((n, gen.latent_dim)).astype(np.float32)))
    ref = None
    if r["reference"] is not None:
      with np.load(os.path.join(ref_dir, refs[name][2] + ".npz"), allow_pickle=False) as f:
        ref = fid_of(pipeline.to_float(f["images"][:n]))
    lines.append(f"| {name} | {'(not run)' if ref is None else f'{ref:.2f}'} | {ours:.2f} | "
                 f"{'' if ref is None else f'{ours / ref:.2f}'} |")
    print(lines[-1], flush=True)
  return lines


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--steps", type=int, default=4000)
  ap.add_argument("--widths", type=student_of, nargs="+", default=[recipes.Student("dcgan", 16)],
                  help="student widths, W or WrR (a rank-R latent projection)")
  ap.add_argument("--num", type=int, default=10000, help="samples scored per run")
  ap.add_argument("--recipe", default=recipes.DEFAULT_RECIPE, help="our distill recipe in the 'joint' column")
  ap.add_argument("--objectives", nargs="+", choices=OBJECTIVES, default=list(OBJECTIVES),
                  help="which student rows to run")
  ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="train every student row once per seed")
  ap.add_argument("--table", default="compare", help="name of the .md/.json written in --workdir")
  ap.add_argument("--inception-weights", default="", help="also score Inception FID with these weights (.npz)")
  ap.add_argument("--inception-num", type=int, default=2000, help="samples per set for the Inception FID")
  ap.add_argument("--reference-low-rank", action="store_true",
                  help="a WrR row's reference student gets the rank-R projection too (else: full rank at width W)")
  ap.add_argument("--skip-missing", action="store_true",
                  help="leave out reference runs that have no samples yet instead of training them")
  a = ap.parse_args()
  import fashion_mnist_teacher
  os.makedirs(a.workdir, exist_ok=True)
  teacher = fashion_mnist_teacher.get_config()
  teacher.train.steps = a.steps
  teacher.train.update(sample_every=1000, ckpt_every=1000)
  ours = [study.Run("teacher", "teacher", teacher)]
  refs = {"teacher": ("gan", 64, "ref_teacher", 0, 0)}
  groups = {}   # "scratch_w8" -> row names over seeds
  for s in a.widths:
    ours_configs = {"pixel": ("distill", lambda: recipes.distill_config(teacher, s, a.steps, "pixel", recipes.DEFAULT_INIT)),
                    "joint": ("distill", lambda: recipes.distill_config(teacher, s, a.steps, a.recipe, recipes.DEFAULT_INIT)),
                    "scratch": ("scratch", lambda: recipes.scratch_config(teacher, s, a.steps))}
    for objective in a.objectives:
      for seed in a.seeds:
        name = f"{objective}_{s.tag}" + (f"_s{seed}" if seed else "")
        kind, make = ours_configs[objective]
        config = make()
        config.seed = seed
        ours.append(study.Run(name, kind, config))
        rank = s.proj_rank if a.reference_low_rank else 0
        ref_name = f"ref_{objective}_w{s.width}" + (f"r{rank}" if rank else "") + (f"_s{seed}" if seed else "")
        refs[name] = (OBJECTIVES[objective], s.width, ref_name, seed, rank)
        groups.setdefault(f"{objective}_{s.tag}", []).append(name)
  ref_dir = os.path.join(a.workdir, "reference")
  os.makedirs(ref_dir, exist_ok=True)
  score = evaluate.reference(teacher)
  rows = {}
  for name, (mode, width, out, seed, rank) in refs.items():   # the teacher first: the students need it
    if a.skip_missing and not os.path.exists(os.path.join(ref_dir, out + ".npz")):
      continue
    rows[name] = {"reference": score_npz(reference_run(ref_dir, mode, width, a.steps, out, seed, rank),
                                         teacher, score, a.num)}
  ours_results = study.run_all(ours, a.workdir, eval_num=a.num, progress=False)
  for run in ours:
    rows.setdefault(run.name, {"reference": None})["ours"] = ours_results[run.name]
  lines = [f"Fashion-MNIST, {a.steps} steps per run, {a.num} samples each, FID on the package's domain-classifier "
           f"features against the test split (lower is better); our joint column: recipe '{a.recipe}'"
           + (("; a row wWrR is our rank-R student against the reference's rank-R student at width W"
               if a.reference_low_rank else "; a row wWrR is our rank-R student against the reference's full-rank width W")
              if any(s.proj_rank for s in a.widths) else "") + ".", "",
           "| run | reference FID | ours FID | ours / reference | reference recall | ours recall |", "|---|---|---|---|---|---|"]
  for name, r in rows.items():
    ref, our = r["reference"], r["ours"]
    if ref is None:
      lines.append(f"| {name} | (not run) | {our['fid']:.2f} | | | {our['recall']:.3f} |")
      continue
    lines.append(f"| {name} | {ref['fid']:.2f} | {our['fid']:.2f} | {our['fid'] / ref['fid']:.2f} | "
                 f"{ref['recall']:.3f} | {our['recall']:.3f} |")
  if len(a.seeds) > 1:
    lines += ["", f"Mean ± sample standard deviation of FID over seeds {a.seeds} (rows where both sides ran every seed):", "",
              "| run | reference FID | ours FID | ours / reference |", "|---|---|---|---|"]
    for group, names in groups.items():
      if all(rows[n]["reference"] is not None for n in names):
        ref, our = (np.array([rows[n][side]["fid"] for n in names]) for side in ("reference", "ours"))
        lines.append(f"| {group} | {ref.mean():.2f} ± {ref.std(ddof=1):.2f} | {our.mean():.2f} ± {our.std(ddof=1):.2f} | "
                     f"{our.mean() / ref.mean():.2f} |")
  if a.inception_weights:
    lines += ["", *inception_table(rows, teacher, a, ref_dir, refs)]
  md = "\n".join(lines)
  with open(os.path.join(a.workdir, a.table + ".md"), "w") as f:
    f.write(md + "\n")
  with open(os.path.join(a.workdir, a.table + ".json"), "w") as f:
    json.dump({n: {k: v and {m: v[m] for m in ("fid", "kid", "precision", "recall")} for k, v in r.items()}
               for n, r in rows.items()}, f, indent=2)
  print(md)


if __name__ == "__main__":
  main()
