"""A study's reports: report.md, results.json, the same-z sample grid and the FID-vs-
parameters plot of one study, and the mean ± std report over seeds."""
from __future__ import annotations

import json
import math
import os
from typing import Sequence

import jax
import numpy as np

from gandistill_jax import export, steps
from gandistill_jax.eval import efficiency
from gandistill_jax.images import grid

GRID_SEED = 4321


def write_report(runs: Sequence, results: dict[str, dict], workdir: str, command: str) -> str:
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
  inception_primary = results[runs[0].name].get("features") == "inception"
  ax.set_ylabel(f"FID ({'InceptionV3 pool3' if inception_primary else 'domain classifier'} features)")
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "fid_vs_params.png"), dpi=120)
  plt.close(fig)

  teacher = next(r.name for r in runs if r.kind == "teacher")
  t_eff = results[teacher]["efficiency"]
  with_inception = any("inception" in results[r.name] for r in runs) and not inception_primary
  first = results[names[0]]
  lines = [f"# Compression study: {first['dataset']}", "", f"Command: `{command}`", "",
           f"Device: {t_eff['device']}. FID/KID/PR/DC: {first['counts']['generated']} samples per run (the z of "
           f"seed {first['protocol']['latent_seed']}) against the {first['counts']['reference']} images of the "
           f"{first['reference_split']} split (data sha256 {first['protocol']['reference_data']['sha256'][:12]}); "
           f"features: {first['feature_extractor']}, weights sha256 "
           f"{first['protocol']['feature_network']['weights_sha256'][:12]}"
           + (f"; Inception FID on InceptionV3 pool3 ({first['inception']['generated']} samples)" if with_inception else "")
           + f". Fidelity: the same {results[names[-1]].get('fidelity', {}).get('num_z', 0)} "
           "z through student and teacher.", "",
           "| run | kind | G params | x fewer | steps | train min | MFLOPs/sample | samples/s (b256) | x faster | FID | KID | "
           + ("Inception FID | " if with_inception else "")
           + "precision | recall | density | coverage | L1 to teacher | PSNR dB |",
           "|---" * (17 + with_inception) + "|"]
  for r in runs:
    e, q, fi = results[r.name]["efficiency"], results[r.name], results[r.name].get("fidelity", {})
    inception = (f"{q['inception']['fid']:.2f} | " if "inception" in q else "| ") if with_inception else ""
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


SEED_METRICS = (("fid", "FID"), ("recall", "recall"), ("precision", "precision"), ("pixel_l1", "L1 to teacher"))


def seeds_report(runs: Sequence, by_seed: dict[int, dict[str, dict]], workdir: str, command: str) -> str:
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
