"""The `gandistill` command line. Errors a user can fix are one line and exit code 2."""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys

# Quiet start-up: TF (used for data only) logs its oneDNN notice through absl before any
# log level applies; without oneDNN's custom ops it has nothing to say.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


class UsageError(ValueError):
  """A mistake in what the user asked for."""


def load_config_file(path: str):
  """Runs a config file's get_config() (configs are Python, as in flax/examples)."""
  if not os.path.isfile(path):
    raise UsageError(f"--config {path}: no such file")
  spec = importlib.util.spec_from_file_location("gandistill_user_config", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:
    raise UsageError(f"--config {path}: line {e.lineno}: {e.msg}") from None
  if not hasattr(module, "get_config"):
    raise UsageError(f"--config {path}: the file defines no get_config()")
  return module.get_config()


def resolve_config(args):
  """The config of a run: --config (plus --set), or the one saved in an existing workdir."""
  from gandistill_jax import config as config_lib, workdir as workdir_lib
  saved = os.path.join(args.workdir, "config.json")
  if args.config:
    config = load_config_file(args.config)
  elif os.path.exists(saved):
    config = workdir_lib.load_config(args.workdir)
  else:
    raise UsageError(f"--workdir {args.workdir} holds no run yet; give --config to start one")
  return config_lib.apply_overrides(config_lib.upgrade(config), args.set or [])


def cmd_train(args, kind: str) -> None:
  from gandistill_jax import loop, tasks
  config = resolve_config(args)
  task = tasks.gan_task(config, kind)
  state = loop.train(config, args.workdir, task, eval_fn=_eval_hook(config), progress=not args.quiet)
  _report_end(kind, state, config, args.workdir)


def _report_end(kind: str, state, config, workdir: str) -> None:
  from gandistill_jax import parallel
  step = int(parallel.to_host(state.step))
  if step >= config.train.steps:
    print(f"{kind} run finished at step {step}; workdir: {workdir}")
  else:
    print(f"{kind} run stopped at step {step} of {config.train.steps} (SIGTERM) and saved; run the same "
          f"command to resume; workdir: {workdir}")


def distill_config(args):
  """The run's config (`model` = the student) with the teacher's architecture recorded as
  config.teacher_model."""
  import ml_collections
  from gandistill_jax import workdir as workdir_lib
  config = resolve_config(args)
  if "distill" not in config:
    raise UsageError("the config has no 'distill' section; use a distill config "
                     "(e.g. experiments/configs/fashion_mnist_distill.py)")
  teacher_model, teacher = workdir_lib.load_teacher(args.teacher, config)
  config.teacher_model = ml_collections.ConfigDict(teacher_model.to_dict())
  config.distill.teacher_dir = os.path.abspath(args.teacher)
  return config, teacher


def cmd_distill(args) -> None:
  from gandistill_jax import distill, loop
  config, teacher = distill_config(args)
  task = distill.distill_task(config, teacher)
  state = loop.train(config, args.workdir, task, eval_fn=_eval_hook(config), progress=not args.quiet)
  _report_end("distill", state, config, args.workdir)


def cmd_dump_teacher(args) -> None:
  import jax
  import numpy as np
  from gandistill_jax import distill, models, workdir as workdir_lib
  config = workdir_lib.load_config(args.teacher)
  teacher_model, teacher = workdir_lib.load_teacher(args.teacher, config)
  gen = models.build_generator(teacher_model)
  z, images = distill.dump_teacher(gen, teacher["g"], jax.random.key(args.seed), args.num, teacher_model.latent_dim)
  np.savez(args.out, z=z, teacher=images)
  print(f"wrote {args.num} (z, G_t(z)) pairs to {args.out}")


def cmd_eval(args) -> None:
  from gandistill_jax.eval import evaluate
  r = evaluate.evaluate_workdir(args.workdir, args.teacher or "", num=args.num, overrides=args.set or [])
  print(evaluate.summary_table({os.path.basename(os.path.normpath(args.workdir)): r}))
  p = r["protocol"]
  print(f"wrote {os.path.join(args.workdir, 'eval.json')} ({p['generated']} samples on the z of seed "
        f"{p['latent_seed']} vs {p['reference']} {p['reference_split']} images, data sha256 "
        f"{p['reference_data']['sha256'][:12]}; features: {p['feature_network']['name']}, weights sha256 "
        f"{p['feature_network']['weights_sha256'][:12]}, test accuracy {p['feature_network']['test_accuracy']:.4f})")


def cmd_demo(args) -> None:
  from gandistill_jax import config as config_lib, recipes, study
  base = load_config_file(args.config) if args.config else recipes.demo_base()
  base = config_lib.apply_overrides(study.with_demo_schedule(config_lib.upgrade(base)), args.set or [])
  runs = study.demo_runs(base, tiny=args.tiny)
  if args.tiny:
    for run in runs:
      run.config.train.update(log_every=2, sample_every=6, ckpt_every=6)
  eval_num = 200 if args.tiny else base.demo.eval_num
  command = "gandistill demo " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["demo"] else "gandistill demo"
  try:
    print(study.run_seeds(runs, args.seeds, args.workdir, command, eval_num=eval_num, progress=not args.quiet,
                          side_process=not args.one_process))
  except study.StudyStopped as e:
    print(f"gandistill demo: {e}")
    return
  print(f"report: {os.path.join(args.workdir, 'report.md')}")


def cmd_export(args) -> None:
  from gandistill_jax import export
  header = export.export_workdir(args.workdir, args.out, args.which, optimize=not args.no_optimize)
  form = header["inference_form"]
  print(f"wrote {args.out}: z ({header['latent_dim']},) -> {header['output_shape']} in [-1, 1], "
        f"{header['params']:,} params, platforms {header['platforms']}" +
        (f"; batch norm folded, projection {'fused' if form['fused_projection'] else 'as trained'}, "
         f"upsampling {'/'.join(form['upsample'])}" if form else ""))


def _eval_hook(config):
  if not config.train.eval_every:
    return None
  from gandistill_jax.eval import evaluate
  return evaluate.periodic_eval_fn(config)


def cmd_sample(args) -> None:
  import numpy as np
  from gandistill_jax import export, images
  if bool(args.workdir) == bool(args.exported):
    raise UsageError("give exactly one of --workdir W or --exported FILE")
  if args.num < 1:
    raise UsageError(f"--num {args.num}: give at least 1 sample")
  generate = export.load_generator(args.exported or args.workdir, which=args.which)
  samples = generate(np.random.default_rng(args.seed).standard_normal((args.num, generate.latent_dim)).astype(np.float32))
  if args.format == "npz":
    from gandistill_jax.data.arrays import to_uint8
    np.savez_compressed(args.out, images=to_uint8(samples))
  else:
    images.save_samples(samples, args.out)
  print(f"wrote {args.num} samples to {args.out}")


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="gandistill", description="Compress GAN generators by knowledge distillation.")
  sub = p.add_subparsers(dest="command", required=True)

  def run_args(q):
    q.add_argument("--config", help="a Python config file with get_config() (not needed to resume)")
    q.add_argument("--workdir", required=True, help="where the run lives; an existing one is resumed")
    q.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")

  q = sub.add_parser("train-teacher", help="train a teacher GAN adversarially")
  run_args(q)
  q.set_defaults(func=lambda a: cmd_train(a, "teacher"))
  q = sub.add_parser("train-scratch", help="train a student-size GAN from scratch (the baseline)")
  run_args(q)
  q.set_defaults(func=lambda a: cmd_train(a, "scratch"))

  q = sub.add_parser("distill", help="distill a trained teacher into a small student")
  run_args(q)
  q.add_argument("--teacher", required=True, help="the teacher's workdir")
  q.set_defaults(func=cmd_distill)

  q = sub.add_parser("dump-teacher", help="store (z, G_t(z)) pairs for offline (black-box) distillation")
  q.add_argument("--teacher", required=True, help="the teacher's workdir")
  q.add_argument("--num", type=int, default=20000)
  q.add_argument("--out", required=True, help="the .npz to write (distill.offline_path)")
  q.add_argument("--seed", type=int, default=1)
  q.set_defaults(func=cmd_dump_teacher)

  q = sub.add_parser("eval", help="FID, KID, precision/recall, fidelity to the teacher, efficiency -> eval.json")
  q.add_argument("--workdir", required=True)
  q.add_argument("--teacher", help="a teacher workdir, for the fidelity of a non-distill run")
  q.add_argument("--num", type=int, default=10000, help="generated samples")
  q.add_argument("--set", action="append", metavar="KEY=VALUE",
                 help="a data.* or eval.* value for this evaluation, e.g. eval.cache_dir=... (repeatable)")
  q.set_defaults(func=cmd_eval)

  q = sub.add_parser("demo", help="the main job: teacher, distilled and scratch students, eval, report")
  q.add_argument("--workdir", default="runs/demo")
  q.add_argument("--config", help="the base config (default: the Fashion-MNIST demo's); its optional `demo` section "
                                  "sets teacher_steps, student_steps and eval_num, e.g. experiments/configs/emoji_demo.py")
  q.add_argument("--seeds", type=int, nargs="+", default=[0],
                 help="train and score the whole demo once per seed (workdir/seed_<k>/), then report mean ± std")
  q.add_argument("--one-process", action="store_true",
                 help="train every run in this process (by default, on a CPU, the scratch baselines train in a "
                      "second process beside the teacher and the distilled students)")
  q.add_argument("--set", action="append", metavar="KEY=VALUE", help="override the base config (repeatable)")
  q.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (for tests)")
  q.add_argument("--quiet", action="store_true")
  q.set_defaults(func=cmd_demo)

  q = sub.add_parser("export", help="serialise a generator (jax.export, StableHLO) into one deployable file")
  q.add_argument("--workdir", required=True)
  q.add_argument("--out", required=True, help="e.g. student.jaxexport")
  q.add_argument("--which", default="auto", choices=["auto", "ema", "live", "teacher", "student"])
  q.add_argument("--no-optimize", action="store_true",
                 help="export the generator as trained (default: batch norm folded, fastest upsampling; same outputs)")
  q.set_defaults(func=cmd_export)

  q = sub.add_parser("sample", help="generate samples as a PNG grid or an .npz of uint8 images")
  q.add_argument("--workdir", help="a run's workdir (its latest checkpoint)")
  q.add_argument("--exported", help="an exported generator file (gandistill export)")
  q.add_argument("--which", default="auto", choices=["auto", "ema", "live", "teacher", "student"],
                 help="which generator of a workdir: auto = the EMA one where there is one")
  q.add_argument("--num", type=int, default=64)
  q.add_argument("--out", required=True)
  q.add_argument("--format", choices=["png", "npz"], default="png")
  q.add_argument("--seed", type=int, default=0)
  q.set_defaults(func=cmd_sample)
  for q in sub.choices.values():
    g = q.add_argument_group("multi-process runs (one process per host; every process runs the same command)")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address, e.g. host0:1234")
    g.add_argument("--num-processes", type=int, help="how many processes join")
    g.add_argument("--process-id", type=int, help="this process's index, 0 .. N-1")
    g.add_argument("--distributed", action="store_true",
                   help="join with what jax.distributed reads from the cluster (SLURM, Open MPI, TPU pods)")
  return p


def join_processes(args) -> None:
  """jax.distributed.initialize from the command's flags; nothing for a single process."""
  given = [args.coordinator, args.num_processes, args.process_id]
  if not (args.distributed or any(v is not None for v in given)):
    return
  if not args.distributed and any(v is None for v in given):
    raise UsageError("a multi-process run needs --coordinator, --num-processes and --process-id together "
                     "(or --distributed on a cluster jax can read)")
  if args.num_processes is not None and not 0 <= args.process_id < args.num_processes:
    raise UsageError(f"--process-id {args.process_id} is not in 0 .. {args.num_processes - 1}")
  from gandistill_jax import parallel
  parallel.initialize_distributed(args.coordinator or "", args.num_processes, args.process_id)


def _one_line(e: Exception) -> str:
  if isinstance(e, OSError) and e.strerror and e.filename:   # raised by the OS, not by this package
    return f"{e.filename}: {e.strerror}"
  return " ".join(str(e).split())


def main(argv=None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  # Orbax and TFDS log through absl; an error they log is re-raised to us and reported in
  # one line below, so their own (often hundreds of lines of) logging is kept out.
  logging.getLogger("absl").setLevel(logging.CRITICAL)
  from gandistill_jax.data.errors import DataError
  from gandistill_jax.loop import ConfigMismatch, TrainingDiverged
  from gandistill_jax.workdir import WorkdirBusy
  try:
    join_processes(args)
    args.func(args)
  except (UsageError, DataError, ConfigMismatch, WorkdirBusy, OSError, ValueError) as e:  # ArtifactError,
    print(f"gandistill {args.command}: error: {_one_line(e)}", file=sys.stderr)          # CorruptCheckpoint too
    return 2
  except TrainingDiverged as e:
    print(f"gandistill {args.command}: diverged: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
