"""A PyTorch teacher distilled into a JAX student, against the PyTorch reference's own
students of that teacher, at equal steps.

    nice python experiments/reference/torch_teacher_e2e.py --workdir runs/torch_teacher \
        --results results/torch_teacher

1. The PyTorch reference (torch_dcgan_train.py) trains its teacher G(64) on Fashion-MNIST
   (--mode gan, 4000 steps) and distills two width-8 students from it, each 4000 steps at
   batch 64: `joint` (0.5 MSE + 0.5 adversarial) and `pixel` (MSE).
2. gandistill_jax.torch_convert turns the teacher's file (its EMA generator 'G_ema' and its
   discriminator 'D') into a teacher workdir, and the converted generator is checked
   against PyTorch's on the reference's own sampling z (outputs, uint8 samples and their
   scores: the row converted_teacher_reference_z).
3. The package distills a width-8 student (the same architecture) from that workdir with
   its default recipe (recipes.DEFAULT_RECIPE, the student cut from the teacher:
   recipes.DEFAULT_INIT), 4000 steps at batch 64: the config compare_reference.py gives
   its students.
   The same teacher also teaches as images only: exported (`teacher.jaxexport`, run inside
   the step) and as a black box, (z, image) pairs that PyTorch writes in the documented
   format (`pairs.npz`, distilled offline); these students start random, as the
   reference's do.
4. Every generator is scored by the package's evaluation: FID, KID and precision/recall on
   the Fashion-MNIST domain classifier's features, 10,000 samples against the test split.
   The reference's rows score the 10,000 samples it wrote (its own fixed seed); the
   package's rows 10,000 samples on the evaluation's fixed z.

Every part is skipped when its output exists, so a killed run resumes (the distillation from
its last checkpoint; scores are kept in <workdir>/scores.json). Wall times: the reference's
from its log (training, batch-norm re-estimation and sampling), the package's as measured
here (distillation with its compilation); one shared 2-core CPU ran everything, so they are
rough, and the table adds each run's fastest 500-step stretch.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time

import jax
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "configs"))
REFERENCE = os.path.join(HERE, "torch_dcgan_train.py")

from gandistill_jax import api, export, models, recipes, torch_convert  # noqa: E402
from gandistill_jax.checkpoint import Checkpointer  # noqa: E402
from gandistill_jax.data import pipeline  # noqa: E402
from gandistill_jax.eval import evaluate  # noqa: E402

STUDENT = recipes.Student("dcgan", 8)
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def reference_run(ref_dir: str, mode: str, width: int, steps_: int, out: str) -> None:
  """Trains one reference run unless its .pt and .npz exist; its output goes to <out>.log."""
  if all(os.path.exists(os.path.join(ref_dir, out + ext)) for ext in (".pt", ".npz")):
    return
  cmd = [sys.executable, REFERENCE, "--mode", mode, "--width", str(width), "--steps", str(steps_), "--out", out,
         "--dir", ref_dir, "--seed", "0"] + (["--teacher", "teacher"] if mode != "gan" else [])
  print("running", " ".join(cmd), flush=True)
  with open(os.path.join(ref_dir, out + ".log"), "w") as log:
    subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)


def reference_seconds(ref_dir: str, out: str) -> float | None:
  """The wall time the reference reports in its log ('wrote ... in 1234s'), or None."""
  path = os.path.join(ref_dir, out + ".log")
  if not os.path.exists(path):
    return None
  found = re.findall(r"^wrote .* in (\d+)s$", open(path).read(), re.M)
  return float(found[-1]) if found else None


def torch_params(path: str) -> int:
  """Parameters of the EMA generator in a reference .pt (its batch-norm buffers not counted)."""
  state = torch_convert.read_torch_file(path, key="G_ema")
  return sum(v.size for k, v in state.items() if k.rpartition(".")[2] not in BUFFERS)


def reference_module():
  """torch_dcgan_train.py, loaded by path (make_G, Z and its sampling constants)."""
  sys.modules.setdefault("triton", None)   # torch's GPU compiler next to TensorFlow crashes (tests/conftest.py)
  spec = importlib.util.spec_from_file_location("torch_dcgan_train", REFERENCE)
  ref = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(ref)
  return ref


def conversion_check(ref_dir: str, teacher_dir: str, check: int = 1000) -> tuple[dict, np.ndarray]:
  """The converted teacher on the reference's own sampling z (its seed and batches): ({max
  float difference to PyTorch's G on the first `check` z, uint8 pixel values that differ
  from the reference's samples}, its uint8 images, rounded as the reference rounds)."""
  import torch
  ref = reference_module()
  saved = torch.load(os.path.join(ref_dir, "teacher.pt"), map_location="cpu", weights_only=True)
  g = ref.make_G(saved["width"])
  g.load_state_dict(saved["G_ema"])
  g.eval()
  gen = torch.Generator().manual_seed(ref.SAMPLE_SEED)
  z = torch.cat([torch.randn(ref.SAMPLES_PER_BATCH, ref.Z, generator=gen) for _ in range(ref.NUM_SAMPLES_BATCHES)])
  with torch.no_grad():
    theirs = g(z[:check]).numpy().transpose(0, 2, 3, 1)
  ours = export.load_generator(teacher_dir)
  with jax.default_matmul_precision("highest"):
    images = np.concatenate([ours(z[i:i + 500].numpy()) for i in range(0, len(z), 500)])
  uint8 = np.round((np.clip(images, -1, 1) + 1) * 127.5).astype(np.uint8)
  with np.load(os.path.join(ref_dir, "teacher.npz"), allow_pickle=False) as f:
    written = f["images"]
  levels = np.abs(uint8.astype(np.int16) - written.astype(np.int16))
  return {"max_abs_difference": float(np.abs(images[:check] - theirs).max()), "checked_z": check,
          "pixels_differing": int((levels > 0).sum()), "pixels": int(levels.size),
          "max_level_difference": int(levels.max())}, uint8


def write_torch_pairs(ref_dir: str, path: str, num: int, seed: int = 7) -> None:
  """The black box's side: the PyTorch teacher's (z, G(z)) for `num` z ~ N(0, I) drawn by
  torch, written in the documented pairs format (z float32 (N, d), images uint8 (N, H, W, C))."""
  import torch
  ref = reference_module()
  saved = torch.load(os.path.join(ref_dir, "teacher.pt"), map_location="cpu", weights_only=True)
  g = ref.make_G(saved["width"])
  g.load_state_dict(saved["G_ema"])
  g.eval()
  z = torch.randn(num, ref.Z, generator=torch.Generator().manual_seed(seed))
  with torch.no_grad():
    x = torch.cat([g(z[i:i + 1000]) for i in range(0, num, 1000)])
  images = ((x.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
  np.savez(path + ".tmp.npz", z=z.numpy(), images=images)
  os.replace(path + ".tmp.npz", path)


def torch_rate(ref_dir: str, out: str) -> float | None:
  """Steps per second of the fastest 500-step stretch in a reference log ('step N/T ... Ss')."""
  marks = [(0, 0.0)] + [(int(n), float(t)) for n, t in re.findall(r"^step (\d+)/\d+ .* (\d+)s$",
                                                                   open(os.path.join(ref_dir, out + ".log")).read(), re.M)]
  rates = [(b[0] - a[0]) / (b[1] - a[1]) for a, b in zip(marks, marks[1:]) if b[1] > a[1]]
  return max(rates) if rates else None


def jax_rate(workdir: str, window: int = 500) -> float | None:
  """Steps per second of the fastest `window`-step stretch of a run's logged intervals
  (metrics.jsonl's steps_per_s: training steps only, as the loop times them)."""
  logged = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  intervals = [(b["step"] - a["step"], (b["step"] - a["step"]) / b["steps_per_s"])   # (steps, seconds)
               for a, b in zip(logged, logged[1:]) if "steps_per_s" in b]
  k = max(1, window // intervals[0][0]) if intervals else 1
  rates = [sum(n for n, _ in intervals[i:i + k]) / sum(t for _, t in intervals[i:i + k])
           for i in range(len(intervals) - k + 1)]
  return max(rates) if rates else None


def finished(workdir: str, steps_: int) -> bool:
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    return False
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  try:
    return ckpt.latest_step() == steps_
  finally:
    ckpt.close()


def ours_samples(workdir: str, num: int) -> tuple[np.ndarray, int]:
  """(num samples on the evaluation's fixed z, generator params) of a workdir's generator."""
  gen, variables, config = export.workdir_generator_variables(workdir)
  return evaluate.generate(gen, variables, config.model.latent_dim, num), models.param_count(variables["params"])


def load_json(path: str) -> dict:
  return json.load(open(path)) if os.path.exists(path) else {}


def save_json(path: str, obj) -> None:
  with open(path + ".tmp", "w") as f:
    json.dump(obj, f, indent=2, default=float)   # numpy scalars
  os.replace(path + ".tmp", path)


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True, help="runs go here (reference/, converted_teacher/, jax_joint_w8/)")
  ap.add_argument("--results", required=True, help="e2e.md and e2e.json go here")
  ap.add_argument("--steps", type=int, default=4000)
  ap.add_argument("--num", type=int, default=10000, help="samples scored per generator")
  ap.add_argument("--pairs", type=int, default=20000, help="(z, image) pairs the black-box teacher writes")
  a = ap.parse_args()
  import fashion_mnist_teacher
  command = "nice python experiments/reference/torch_teacher_e2e.py " + " ".join(sys.argv[1:])
  ref_dir = os.path.join(a.workdir, "reference")
  os.makedirs(ref_dir, exist_ok=True)
  os.makedirs(a.results, exist_ok=True)
  times_path, scores_path = os.path.join(a.workdir, "times.json"), os.path.join(a.workdir, "scores.json")
  times, scores = load_json(times_path), load_json(scores_path)

  reference_run(ref_dir, "gan", 64, a.steps, "teacher")
  for mode in ("joint", "pixel"):
    reference_run(ref_dir, mode, STUDENT.width, a.steps, f"{mode}_w{STUDENT.width}")

  teacher_pt, teacher_dir = os.path.join(ref_dir, "teacher.pt"), os.path.join(a.workdir, "converted_teacher")
  if not os.path.exists(os.path.join(teacher_dir, "config.json")):
    start = time.perf_counter()
    print("converted:", json.dumps(torch_convert.convert(teacher_pt, teacher_dir, key="G_ema", d_key="D")), flush=True)
    times["converted_teacher"] = time.perf_counter() - start
    save_json(times_path, times)
  check, same_z = conversion_check(ref_dir, teacher_dir)
  print("converted teacher vs PyTorch:", json.dumps(check), flush=True)

  teacher = fashion_mnist_teacher.get_config()
  config = recipes.distill_config(teacher, STUDENT, a.steps, recipes.DEFAULT_RECIPE, recipes.DEFAULT_INIT)
  config.train.update(sample_every=1000, ckpt_every=1000)
  ours_name = f"jax_{recipes.DEFAULT_RECIPE}_w{STUDENT.width}"
  ours_dir = os.path.join(a.workdir, ours_name)
  if not finished(ours_dir, a.steps):
    start = time.perf_counter()
    api.distill_student(config, teacher_dir, ours_dir, progress=False)
    times[ours_name] = times.get(ours_name, 0.0) + time.perf_counter() - start   # a resumed run adds its part
    save_json(times_path, times)

  # The same teacher as an images-only program (its .jaxexport) and as a black box known by
  # pairs that PyTorch wrote: students start random (nothing to cut them from), same recipe.
  exported, pairs = os.path.join(a.workdir, "teacher.jaxexport"), os.path.join(a.workdir, "pairs.npz")
  if not os.path.exists(exported):
    export.export_workdir(teacher_dir, exported)
  if not os.path.exists(pairs):
    write_torch_pairs(ref_dir, pairs, a.pairs)
  images_only = recipes.distill_config(teacher, STUDENT, a.steps, recipes.DEFAULT_RECIPE, "random")
  images_only.train.update(sample_every=1000, ckpt_every=1000)
  kinds = {f"jax_exported_w{STUDENT.width}": exported, f"jax_pairs_w{STUDENT.width}": pairs}
  for name, source in kinds.items():
    wd = os.path.join(a.workdir, name)
    if not finished(wd, a.steps):
      start = time.perf_counter()
      api.distill_student(images_only, source, wd, progress=False)
      times[name] = times.get(name, 0.0) + time.perf_counter() - start
      save_json(times_path, times)

  score = evaluate.reference(teacher)
  rows = {   # name: (framework, what it is, samples source, steps)
      "torch_teacher": ("PyTorch", "reference teacher G(64), --mode gan", "teacher", a.steps),
      "converted_teacher": ("JAX", "that teacher converted (torch_convert), on the package's fixed z", teacher_dir, 0),
      "converted_teacher_reference_z": ("JAX", "the converted teacher on the reference's own z, rounded as it rounds",
                                        same_z, 0),
      f"torch_joint_w{STUDENT.width}": ("PyTorch", "reference student, --mode joint, from the teacher",
                                        f"joint_w{STUDENT.width}", a.steps),
      f"torch_pixel_w{STUDENT.width}": ("PyTorch", "reference student, --mode pixel, from the teacher",
                                        f"pixel_w{STUDENT.width}", a.steps),
      ours_name: ("JAX", f"package student, recipe '{recipes.DEFAULT_RECIPE}', init '{recipes.DEFAULT_INIT}', "
                  f"from the converted teacher", ours_dir, a.steps),
      f"jax_exported_w{STUDENT.width}": ("JAX", f"package student, recipe '{recipes.DEFAULT_RECIPE}', init 'random', "
                                         f"from the converted teacher exported (teacher.jaxexport: images only)",
                                         os.path.join(a.workdir, f"jax_exported_w{STUDENT.width}"), a.steps),
      f"jax_pairs_w{STUDENT.width}": ("JAX", f"package student, recipe '{recipes.DEFAULT_RECIPE}', init 'random', "
                                      f"offline from {a.pairs} (z, image) pairs PyTorch wrote (black box)",
                                      os.path.join(a.workdir, f"jax_pairs_w{STUDENT.width}"), a.steps),
  }
  for name, (framework, _, source, _) in rows.items():
    if name in scores:
      continue
    if isinstance(source, np.ndarray):
      result = score.quality(pipeline.to_float(source[:a.num]), latent_seed=None)
      result |= {"params": scores["converted_teacher"]["params"], "seconds": None}
    elif framework == "PyTorch":
      with np.load(os.path.join(ref_dir, source + ".npz"), allow_pickle=False) as f:
        images = pipeline.to_float(f["images"][:a.num])
      result = score.quality(images, latent_seed=None)
      result["params"] = torch_params(os.path.join(ref_dir, source + ".pt"))
      result["seconds"] = reference_seconds(ref_dir, source)
    else:
      images, params = ours_samples(source, a.num)
      result = score.quality(images) | {"params": params, "seconds": times.get(name)}
    scores[name] = result
    save_json(scores_path, scores)
    print(name, f"FID {result['fid']:.2f} recall {result['recall']:.3f}", flush=True)

  rates = {name: torch_rate(ref_dir, source) if framework == "PyTorch" else jax_rate(source) if name.startswith("jax_")
           else None for name, (framework, _, source, _) in rows.items()}
  joint, pixel = scores[f"torch_joint_w{STUDENT.width}"], scores[f"torch_pixel_w{STUDENT.width}"]
  ours = scores[ours_name]
  best_ref = min(joint["fid"], pixel["fid"])
  fmt_time = lambda s: "" if s is None else f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"
  fmt_rate = lambda r: "" if r is None else f"{r:.1f}"
  lines = [f"`{command}`", "",
           f"Fashion-MNIST, 28x28. A PyTorch teacher (the reference's G(64), {a.steps} steps) distilled into "
           f"width-{STUDENT.width} students (the same architecture on both sides) at {a.steps} steps and batch 64, by the "
           f"PyTorch reference itself and by this package from the converted teacher. FID, KID and precision/recall "
           f"on the package's Fashion-MNIST domain-classifier features, {a.num} samples per generator against the "
           f"test split (lower FID is better). Wall time: the reference's from its log (training, batch-norm "
           f"re-estimation, sampling), the package's distillation with its compilation, and for the converted "
           f"teacher the conversion.",
           "", "| run | framework | what | params | FID | KID | precision | recall | steps | wall time | "
           "steps/s, fastest 500 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
  for name, (framework, what, _, steps_) in rows.items():
    r = scores[name]
    lines.append(f"| {name} | {framework} | {what} | {r['params']:,} | {r['fid']:.2f} | {r['kid']:.3g} | "
                 f"{r['precision']:.3f} | {r['recall']:.3f} | {steps_ or '(converted)'} | {fmt_time(r['seconds'])} | "
                 f"{fmt_rate(rates[name])} |")
  lines += ["", f"The converted teacher computes what PyTorch's does: max |G_torch(z) - G_jax(z)| = "
            f"{check['max_abs_difference']:.1e} over the first {check['checked_z']} of the reference's sampling z "
            f"(float32); on all of them its uint8 images differ from the reference's in {check['pixels_differing']} "
            f"of {check['pixels']:,} pixel values (by at most {check['max_level_difference']} level: values that "
            f"close to a rounding boundary), so converted_teacher_reference_z scores what torch_teacher scores. The "
            f"converted_teacher row is the same generator on the package's fixed z: its difference from those rows "
            f"is the sample set's.", "",
            "Speed: one 2-core CPU shared with other jobs whose load changed during the runs, so the wall times "
            "are rough and the fastest 500-step stretch of each run (the reference's log marks, the package's "
            "logged intervals) is the fairer speed comparison. It compares the recipes, not only the frameworks: "
            "the package's joint recipe trains a student-size D (width 8) next to the student, the reference's "
            "joint a width-64 D.", "",
            f"JAX student from the PyTorch teacher: FID {ours['fid']:.2f} against {joint['fid']:.2f} (reference joint) "
            f"and {pixel['fid']:.2f} (reference pixel) at equal steps: "
            + (f"{best_ref / ours['fid']:.2f}x lower than the better reference student."
               if ours["fid"] < best_ref else f"not better than the reference's best student ({best_ref:.2f})."),
            "", "From the same teacher given as images only, the students start random (nothing to cut them from), "
            "as the reference's do: " + "; ".join(
                f"{what} FID {scores[n]['fid']:.2f} ({best_ref / scores[n]['fid']:.2f}x lower than the better "
                f"reference student)" if scores[n]["fid"] < best_ref else f"{what} FID {scores[n]['fid']:.2f} (not "
                f"better than the reference's best, {best_ref:.2f})"
                for n, what in ((f"jax_exported_w{STUDENT.width}", "the exported teacher (online)"),
                                (f"jax_pairs_w{STUDENT.width}", f"the black box's {a.pairs} pairs (offline)"))) + "."]
  md = "\n".join(lines)
  with open(os.path.join(a.results, "e2e.md"), "w") as f:
    f.write(md + "\n")
  keep = ("fid", "kid", "kid_se", "precision", "recall", "density", "coverage", "params", "seconds")
  save_json(os.path.join(a.results, "e2e.json"), {
      "command": command, "steps": a.steps, "num": a.num, "conversion_check": check,
      "rows": {n: {"framework": rows[n][0], "what": rows[n][1], "steps": rows[n][3], "steps_per_s": rates[n]}
               | {k: scores[n].get(k) for k in keep} for n in rows}})
  print(md)


if __name__ == "__main__":
  main()
