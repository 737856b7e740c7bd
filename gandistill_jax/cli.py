"""The `gandistill` command line.

Exit codes (docs/usage.md):

    0    finished
    1    the run diverged (a non-finite loss; the last good checkpoint is kept), or an
         unexpected internal error (one line; GANDISTILL_TRACEBACK=1 shows the traceback)
    2    a mistake the user can fix: one line naming the cause and the path
    75   stopped by SIGINT (Ctrl-C) or SIGTERM and saved, resumable: run the same command
         again (EX_TEMPFAIL of sysexits.h; train-teacher, train-scratch, distill)
    130, 143  another command interrupted by SIGINT or SIGTERM (128 + the signal's number);
         its output is written whole or not at all
"""
from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import logging
import os
import signal
import sys
import traceback

# Quiet start-up: TF (used for data only) logs its oneDNN notice through absl before any
# log level applies; without oneDNN's custom ops it has nothing to say.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 1, 2, 75
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
RESUMABLE_COMMANDS = ("train-teacher", "train-scratch", "distill", "demo")


class UsageError(ValueError):
  """A mistake in what the user asked for."""


class Stopped(BaseException):
  """SIGINT or SIGTERM outside a training loop (which saves and returns instead)."""

  def __init__(self, signum: int):
    super().__init__(signal.Signals(signum).name)
    self.signum = signum


_stop_signals: list[int] = []   # every SIGINT/SIGTERM this process received


def _record_stop(signum, frame):
  """While the heavy modules are imported: an exception raised inside an import can leave
  a half-imported library that prints its own traceback, so the signal is only noted."""
  _stop_signals.append(signum)


def _raise_stopped(signum, frame):
  # Raised wherever the main thread is; where Python swallows it (a garbage-collection
  # callback), the training loop still sees the signal through stop_requested.
  _stop_signals.append(signum)
  raise Stopped(signum)


def stop_requested() -> bool:
  return bool(_stop_signals)


def _quiet_swallowed_stop(previous):
  def hook(unraisable):
    if not isinstance(unraisable.exc_value, Stopped):   # a stop a callback swallowed: stop_requested has it
      previous(unraisable)
  return hook


sys.unraisablehook = _quiet_swallowed_stop(sys.unraisablehook)


def _failure_line(path: str, e: BaseException) -> str:
  """'line N: Type: message' of an exception raised by the code in file `path`."""
  lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if os.path.abspath(f.filename) == path]
  first = (str(e).strip().splitlines() or [""])[0][:200]
  return (f"line {lines[-1]}: " if lines else "") + f"{type(e).__name__}" + (f": {first}" if first else "")


CONFIG_FLAG = "--config."


def expand_config_flags(argv: list[str]) -> list[str]:
  """ml_collections' config_flags form (flax/examples, big_vision), `--config.KEY=VALUE` or
  `--config.KEY VALUE`, as the `--set KEY=VALUE` it means: one override per flag, typed by
  the config's own value, applied after the file's get_config()."""
  out, i = [], 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith(CONFIG_FLAG) and len(arg) > len(CONFIG_FLAG):
      key, eq, value = arg[len(CONFIG_FLAG):].partition("=")
      if not key:
        raise ArgumentError("gandistill", f"{arg}: give a config key, e.g. --config.train.steps=10")
      if not eq:
        if i + 1 == len(argv):
          raise ArgumentError("gandistill", f"{arg} needs a value: {arg}=VALUE")
        value, i = argv[i + 1], i + 1
      out += ["--set", f"{key}={value}"]
    else:
      out.append(arg)
    i += 1
  return out


def load_config_file(path: str):
  """Runs a config file's get_config() (configs are Python, as in flax/examples). Every way
  the file can fail (no such file, a syntax error, an exception, a missing get_config, a
  result that is not a full config) is a UsageError naming the file. `file.py:ARG` calls
  get_config(ARG), as ml_collections' config_flags do."""
  import ml_collections
  from gandistill_jax import config as config_lib
  path, arg = _config_argument(path)
  if not os.path.exists(path):
    raise UsageError(f"--config {path}: no such file")
  if not os.path.isfile(path):
    raise UsageError(f"--config {path}: not a file")
  full = os.path.abspath(path)
  loader = importlib.machinery.SourceFileLoader("gandistill_user_config", full)   # any file name, .py or not
  module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
  try:
    loader.exec_module(module)
  except SyntaxError as e:
    where = f"{e.filename}, " if e.filename and os.path.abspath(e.filename) != full else ""
    raise UsageError(f"--config {path}: {where}{f'line {e.lineno}: ' if e.lineno else ''}{e.msg}") from None
  except (Exception, SystemExit) as e:   # the file's own code failed as it was run
    raise UsageError(f"--config {path}: {_failure_line(full, e)}") from None
  if not callable(getattr(module, "get_config", None)):
    raise UsageError(f"--config {path}: the file defines no get_config()")
  try:
    config = module.get_config() if arg is None else module.get_config(arg)
  except (Exception, SystemExit) as e:
    raise UsageError(f"--config {path}: get_config() raised at {_failure_line(full, e)}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise UsageError(f"--config {path}: get_config() returned a {type(config).__name__}, not an "
                     f"ml_collections.ConfigDict; start from gandistill_jax.config.base_config()")
  missing = config_lib.missing_keys(config_lib.upgrade(config))
  if missing:
    raise UsageError(f"--config {path}: get_config() returned a config without {missing[0]}"
                     f"{f' (and {len(missing) - 1} more keys)' if len(missing) > 1 else ''}; start from "
                     f"gandistill_jax.config.base_config()")
  return config


def _config_argument(path: str) -> tuple[str, str | None]:
  """('file.py', 'ARG') for 'file.py:ARG' where file.py exists; else (path, None)."""
  head, colon, arg = path.rpartition(":")
  return (head, arg) if colon and head and os.path.isfile(head) and not os.path.isfile(path) else (path, None)


def resolve_config(args):
  """The config of a run: --config (plus --set), or the one saved in an existing workdir;
  validated, a failure naming where the config came from."""
  from gandistill_jax import config as config_lib, workdir as workdir_lib
  saved = os.path.join(args.workdir, "config.json")
  if args.config:
    config, where = load_config_file(args.config), f"--config {args.config}"
  elif os.path.exists(saved):
    config, where = workdir_lib.load_config(args.workdir), saved
  else:
    raise UsageError(f"--workdir {args.workdir} holds no run yet; give --config to start one")
  config = config_lib.apply_overrides(config_lib.upgrade(config), args.set or [])
  try:
    config_lib.validate(config)
  except ValueError as e:
    raise UsageError(f"{where}{' with --set' if args.set else ''}: {e}") from None
  return config


def cmd_train(args, kind: str) -> int:
  from gandistill_jax import loop, tasks, workdir as workdir_lib
  workdir_lib.check_kind(args.workdir, kind)
  saved = os.path.join(args.workdir, "config.json")
  if os.path.isfile(saved) and "convert" in (workdir_lib.read_json(saved) or {}):
    raise UsageError(f"{args.workdir} holds converted weights (gandistill convert-torch) without an optimiser state: "
                     f"it teaches, samples, exports and evaluates, but does not train on; use a new --workdir")
  config = resolve_config(args)
  loop.enable_compilation_cache(config)
  task = tasks.gan_task(config, kind)
  state = loop.train(config, args.workdir, task, eval_fn=_eval_hook(config), progress=not args.quiet,
                     allow_data_change=args.allow_data_change, should_stop=stop_requested)
  return _report_end(kind, state, config, args.workdir)


def _report_end(kind: str, state, config, workdir: str) -> int:
  from gandistill_jax import parallel
  step = int(parallel.to_host(state.step))
  if step >= config.train.steps:
    print(f"{kind} run finished at step {step}; workdir: {workdir}")
    return 0
  print(f"{kind} run stopped at step {step} of {config.train.steps} (SIGINT or SIGTERM){' and saved' if step else ''}; "
        f"run the same command to resume (exit code {EXIT_STOPPED}); workdir: {workdir}")
  return EXIT_STOPPED


def distill_config(args):
  """(the run's config, its Teacher): `model` is the student, and what the run records of
  its teacher (teachers.record: kind, workdir or file, SHA-256, and a workdir teacher's
  architecture as teacher_model). A resumed run keeps its teacher (a workdir teacher's
  weights are in the checkpoints): another --teacher or --pairs is refused."""
  from gandistill_jax import teachers
  given = [flag for flag, value in (("--teacher", args.teacher), ("--pairs", args.pairs)) if value]
  if len(given) != 1:
    raise UsageError("give the teacher as exactly one of --teacher (a workdir or an exported .jaxexport file) or "
                     "--pairs (stored z and images, .npz)")
  config = resolve_config(args)
  if "distill" not in config:
    raise UsageError("the config has no 'distill' section; use a distill config "
                     "(e.g. experiments/configs/fashion_mnist_distill.py)")
  config, teacher = teachers.attach(config, args.teacher or args.pairs, args.workdir)
  if args.pairs and teacher.kind != "pairs":
    raise UsageError(f"--pairs {args.pairs} is {teachers.article(teacher.kind)} teacher, not stored pairs; give it as --teacher")
  if args.teacher and teacher.kind == "pairs":
    raise UsageError(f"--teacher {args.teacher} holds stored (z, image) pairs; give it as --pairs")
  return config, teacher


def cmd_distill(args) -> int:
  from gandistill_jax import distill, loop, workdir as workdir_lib
  workdir_lib.check_kind(args.workdir, "distill")
  config, teacher = distill_config(args)
  loop.enable_compilation_cache(config)
  task = distill.distill_task(config, teacher)
  state = loop.train(config, args.workdir, task, eval_fn=_eval_hook(config), progress=not args.quiet,
                     allow_data_change=args.allow_data_change, should_stop=stop_requested)
  return _report_end("distill", state, config, args.workdir)


def cmd_dump_teacher(args) -> None:
  import jax
  import numpy as np
  from gandistill_jax import distill, files, teachers
  files.check_writable(args.out)
  teacher = teachers.resolve(args.teacher)
  z, images = distill.dump_teacher(teacher.generator(), jax.random.key(args.seed), args.num, teacher.latent_dim)
  files.write_atomic(args.out, lambda f: np.savez(f, z=z, images=images), mode="wb")
  print(f"wrote {args.num} (z, G_t(z)) pairs to {args.out}")


def cmd_eval(args) -> None:
  from gandistill_jax import config as config_lib, workdir as workdir_lib
  config = workdir_lib.load_config(args.workdir)
  try:
    config_lib.validate(config_lib.apply_overrides(config, args.set or []))
  except ValueError as e:
    raise UsageError(f"--set: {e}" if args.set else str(e)) from None
  if args.teacher:
    if "distill" in config:
      raise UsageError(f"--teacher is for a teacher or scratch run; {args.workdir} is a distill run, compared with "
                       f"the teacher it keeps")
    workdir_lib.check_teacher(args.teacher)
  from gandistill_jax.eval import evaluate
  r = evaluate.evaluate_workdir(args.workdir, args.teacher or "", num=args.num, overrides=args.set or [])
  print(evaluate.summary_table({os.path.basename(os.path.normpath(args.workdir)): r}))
  p, net = r["protocol"], r["protocol"]["feature_network"]
  accuracy = f", test accuracy {net['test_accuracy']:.4f}" if net.get("test_accuracy") is not None else ""
  print(f"wrote {os.path.join(args.workdir, 'eval.json')} ({p['generated']} samples on the z of seed "
        f"{p['latent_seed']} vs {p['reference']} {p['reference_split']} images, data sha256 "
        f"{p['reference_data']['sha256'][:12]}; features: {net['name']}, weights sha256 "
        f"{net['weights_sha256'][:12]}{accuracy})")


def cmd_demo(args) -> int | None:
  from gandistill_jax import config as config_lib, loop, recipes, study
  base = load_config_file(args.config) if args.config else recipes.demo_base()
  base = config_lib.apply_overrides(study.with_demo_schedule(config_lib.upgrade(base)), args.set or [])
  loop.enable_compilation_cache(base)
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
    print(f"gandistill demo: {e}", file=sys.stderr)
    return EXIT_STOPPED
  except study.RunFailed as e:
    print(f"gandistill demo: error: {e}", file=sys.stderr)
    return EXIT_FAILED
  print(f"report: {os.path.join(args.workdir, 'report.md')}")


def export_format(out: str, given: str | None) -> str:
  """--format, or by --out's extension (.tflite -> tflite, else jaxexport)."""
  named = "tflite" if os.path.splitext(out)[1].lower() == ".tflite" else None
  if given and named and given != named:
    raise UsageError(f"--out {out} names a .tflite file but --format is {given}; make them agree")
  return given or named or "jaxexport"


def cmd_export(args) -> None:
  from gandistill_jax import export, files
  fmt = export_format(args.out, args.format)
  if fmt != "tflite" and (args.weights != "float32" or args.batch):
    raise UsageError("--weights and --batch are for --format tflite")
  files.check_writable(args.out)
  if fmt == "tflite":
    from gandistill_jax import tflite
    header = tflite.export_workdir_tflite(args.workdir, args.out, args.which, args.weights, args.batch)
    print(f"wrote {args.out} (TFLite, {header['bytes']:,} bytes): z ({header['latent_dim']},) -> "
          f"{header['output_shape']} in [-1, 1], {header['params']:,} params, {args.weights} weights, batch "
          f"{header['batch'] or 'any'}; max |TFLite - JAX| {header['max_abs_difference']:.2e} on "
          f"{tflite.CHECK_BATCH} z")
    return
  header = export.export_workdir(args.workdir, args.out, args.which, optimize=not args.no_optimize)
  form = header["inference_form"]
  print(f"wrote {args.out}: z ({header['latent_dim']},) -> {header['output_shape']} in [-1, 1], "
        f"{header['params']:,} params, platforms {header['platforms']}" +
        (f"; batch norm folded, projection {'fused' if form['fused_projection'] else 'as trained'}, "
         f"upsampling {'/'.join(form['upsample'])}" if form else ""))


def cmd_convert_torch(args) -> None:
  from gandistill_jax import torch_convert
  try:
    summary = torch_convert.convert(args.checkpoint, args.out, key=args.key, d_key=args.d_key,
                                    image_size=args.image_size)
  except ImportError as e:   # a .pt file without torch installed
    raise UsageError(str(e)) from None
  g = summary["generator"]
  print(f"wrote teacher workdir {args.out}: DCGAN generator z ({g['latent_dim']},) -> {g['image_size']}x"
        f"{g['image_size']}x{g['channels']}, width {g['g_width']}, {g['params']:,} params"
        + (f"; discriminator {summary['discriminator']['params']:,} params" if "discriminator" in summary else
           "; no discriminator (objectives that read one are refused)")
        + f"; from {args.checkpoint} (sha256 {summary['sha256'][:12]})")


def _eval_hook(config):
  if not config.train.eval_every:
    return None
  from gandistill_jax.eval import evaluate
  return evaluate.periodic_eval_fn(config)


def sample_format(out: str, given: str | None) -> str:
  """--format, or by --out's extension (.npz -> npz, else png); an extension naming the
  other format is refused (the file is written at --out exactly as given)."""
  ext = os.path.splitext(out)[1].lower()
  named = {".npz": "npz", ".png": "png"}.get(ext)
  if given and named and given != named:
    raise UsageError(f"--out {out} names a .{named} file but --format is {given}; make them agree")
  return given or named or "png"


def cmd_sample(args) -> None:
  import numpy as np
  from gandistill_jax import export, files, images
  if bool(args.workdir) == bool(args.exported):
    raise UsageError("give exactly one of --workdir W or --exported FILE")
  fmt = sample_format(args.out, args.format)
  files.check_writable(args.out)
  if args.exported and os.path.exists(args.out) and files.same_file(args.exported, args.out):
    raise UsageError(f"--out {args.out} is the exported file being read; give another --out")
  generate = export.load_generator(args.exported or args.workdir, which=args.which)
  samples = generate(np.random.default_rng(args.seed).standard_normal((args.num, generate.latent_dim)).astype(np.float32))
  if fmt == "npz":
    from gandistill_jax.data.arrays import to_uint8
    files.write_atomic(args.out, lambda f: np.savez_compressed(f, images=to_uint8(samples)), mode="wb")
  else:
    files.write_atomic_path(args.out, lambda path: images.save_samples(samples, path), suffix=".png")
  print(f"wrote {args.num} samples to {args.out} ({fmt})")


class ArgumentError(UsageError):
  """A command line argparse cannot parse; `prog` is the (sub)command it belongs to."""

  def __init__(self, prog: str, message: str):
    super().__init__(message)
    self.prog = prog


class Parser(argparse.ArgumentParser):
  """argparse with its errors as one line (no usage block): ArgumentError, reported by main."""

  def error(self, message):
    raise ArgumentError(self.prog, f"{message} (see {self.prog} --help)")


def count(minimum: int, maximum: int | None = None):
  """An argparse type: a whole number in [minimum, maximum] (sample counts, seeds, process numbers)."""
  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
      raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
    if maximum is not None and value > maximum:
      raise argparse.ArgumentTypeError(f"{value} must be at most {maximum}")
    return value
  return parse


SEED = count(0, 2**32 - 1)


def build_parser() -> argparse.ArgumentParser:
  from gandistill_jax import config as config_lib
  p = Parser(prog="gandistill", description="Compress GAN generators by knowledge distillation.",
             epilog="Exit codes: 0 finished, 1 diverged or internal error, 2 a mistake to fix (one line), "
                    f"{EXIT_STOPPED} stopped by SIGINT/SIGTERM and saved (run the same command to resume).")
  sub = p.add_subparsers(dest="command", required=True)

  def run_args(q):
    q.add_argument("--config", help="a Python config file with get_config() (not needed to resume); FILE:ARG "
                                    "calls get_config(ARG)")
    q.add_argument("--workdir", required=True, help="where the run lives; an existing one is resumed")
    q.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value (repeatable); --config.KEY=VALUE (ml_collections' config_flags "
                        "form, e.g. --config.train.steps=10) is the same")
    q.add_argument("--allow-data-change", action="store_true",
                   help="resume on other data than the workdir's data.json records (it keeps the history)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")

  q = sub.add_parser("train-teacher", help="train a teacher GAN adversarially")
  run_args(q)
  q.set_defaults(func=lambda a: cmd_train(a, "teacher"))
  q = sub.add_parser("train-scratch", help="train a student-size GAN from scratch (the baseline)")
  run_args(q)
  q.set_defaults(func=lambda a: cmd_train(a, "scratch"))

  q = sub.add_parser("distill", help="distill a trained teacher into a small student")
  run_args(q)
  q.add_argument("--teacher", help="the teacher: a workdir (this package's run, or `gandistill convert-torch`'s) or "
                                   "an exported generator (.jaxexport); give it again to resume")
  q.add_argument("--pairs", help="a black-box teacher: stored pairs, an .npz with z float32 (N, latent_dim) and images "
                                 "uint8 (N, H, W, C) (docs/teachers.md); the run is offline")
  q.set_defaults(func=cmd_distill)

  q = sub.add_parser("dump-teacher", help="store (z, G_t(z)) pairs for offline (black-box) distillation")
  q.add_argument("--teacher", required=True, help="the teacher's workdir or exported generator (.jaxexport)")
  q.add_argument("--num", type=count(1), default=20000)
  q.add_argument("--out", required=True, help="the .npz to write (distill --pairs), exactly this path")
  q.add_argument("--seed", type=SEED, default=1)
  q.set_defaults(func=cmd_dump_teacher)

  q = sub.add_parser("eval", help="FID, KID, precision/recall, fidelity to the teacher, efficiency -> eval.json")
  q.add_argument("--workdir", required=True)
  q.add_argument("--teacher", help="a teacher workdir, for the fidelity of a non-distill run")
  q.add_argument("--num", type=count(config_lib.MIN_EVAL_SAMPLES), default=10000, help="generated samples")
  q.add_argument("--set", action="append", metavar="KEY=VALUE",
                 help="a data.* or eval.* value for this evaluation, e.g. eval.cache_dir=... (repeatable; or "
                      "--config.KEY=VALUE)")
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
  q.add_argument("--set", action="append", metavar="KEY=VALUE", help="override the base config (repeatable; or --config.KEY=VALUE)")
  q.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (for tests)")
  q.add_argument("--quiet", action="store_true")
  q.set_defaults(func=cmd_demo)

  q = sub.add_parser("export", help="serialise a generator into one deployable file: jax.export (StableHLO) or "
                                    "TensorFlow Lite")
  q.add_argument("--workdir", required=True)
  q.add_argument("--out", required=True, help="e.g. student.jaxexport or student.tflite (exactly this path)")
  q.add_argument("--format", choices=["jaxexport", "tflite"], help="default: by --out's extension (.tflite, else "
                                                                   "jaxexport)")
  q.add_argument("--weights", choices=["float32", "int8"], default="float32",
                 help="tflite: int8 = dynamic-range quantised weights (about 4x smaller; outputs move, see docs)")
  q.add_argument("--batch", type=count(1), help="tflite: a fixed batch (default: any batch; the ResNet family "
                                                "needs a fixed one)")
  q.add_argument("--which", default="auto", choices=["auto", "ema", "live", "teacher", "student"])
  q.add_argument("--no-optimize", action="store_true",
                 help="export the generator as trained (default: batch norm folded, fastest upsampling; same outputs)")
  q.set_defaults(func=cmd_export)

  q = sub.add_parser("convert-torch", help="a PyTorch DCGAN generator (.pt/.pth state dict, or its arrays in .npz) "
                                           "as a teacher workdir")
  q.add_argument("--checkpoint", required=True, help="the PyTorch file: a state dict, or a dict holding one")
  q.add_argument("--out", required=True, help="the teacher workdir to create (a new folder)")
  q.add_argument("--key", help="where the generator's state dict is in the file, e.g. G_ema (default: the file itself)")
  q.add_argument("--d-key", help="where its discriminator's state dict is, e.g. D (optional: without one, objectives "
                                 "that read the teacher's D are refused)")
  q.add_argument("--image-size", type=count(1), help="the image size, where the layers do not fix it")
  q.set_defaults(func=cmd_convert_torch)

  q = sub.add_parser("sample", help="generate samples as a PNG grid or an .npz of uint8 images")
  q.add_argument("--workdir", help="a run's workdir (its latest checkpoint)")
  q.add_argument("--exported", help="an exported generator file (gandistill export: .jaxexport or .tflite)")
  q.add_argument("--which", default="auto", choices=["auto", "ema", "live", "teacher", "student"],
                 help="which generator of a workdir: auto = the EMA one where there is one")
  q.add_argument("--num", type=count(1), default=64)
  q.add_argument("--out", required=True, help="the file to write, exactly this path")
  q.add_argument("--format", choices=["png", "npz"], help="default: by --out's extension (.npz, else png)")
  q.add_argument("--seed", type=SEED, default=0)
  q.set_defaults(func=cmd_sample)
  for q in sub.choices.values():
    q.add_argument("--trust-workdir-code", action="store_true",
                   help="let a workdir's config.json name a model family by a dotted path ('package.module:Name') "
                        "that is then imported and run; only for workdirs you trust (or GANDISTILL_TRUST_WORKDIR_CODE=1)")
    g = q.add_argument_group("multi-process runs (one process per host; every process runs the same command)")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address, e.g. host0:1234")
    g.add_argument("--num-processes", type=count(1), help="how many processes join")
    g.add_argument("--process-id", type=count(0), help="this process's index, 0 .. N-1")
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
  if args.coordinator is not None:
    host, _, port = args.coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
      raise UsageError(f"--coordinator {args.coordinator}: give HOST:PORT, e.g. host0:1234")
  from gandistill_jax import parallel
  parallel.initialize_distributed(args.coordinator or "", args.num_processes, args.process_id)


def _one_line(e: Exception) -> str:
  if isinstance(e, OSError) and e.strerror and e.filename:   # raised by the OS, not by this package
    return f"{e.filename}: {e.strerror}"
  return " ".join(str(e).split())


def main(argv=None) -> int:
  # SIGINT and SIGTERM stop a command in one line (a training loop instead saves and returns),
  # from the first moment: noted during the heavy imports, raised as Stopped after them.
  previous = {}
  _stop_signals.clear()
  try:
    for sig in STOP_SIGNALS:
      previous[sig] = signal.signal(sig, _record_stop)
  except ValueError:   # not the main thread: signals stay as they are
    pass
  command = None
  try:
    args = build_parser().parse_args(expand_config_flags(sys.argv[1:] if argv is None else list(argv)))
    command = args.command
    from gandistill_jax import loop, workdir  # noqa: F401  (jax, numpy, orbax, flax: imported while noted only)
    if _stop_signals:
      raise Stopped(_stop_signals[-1])
    for sig in previous:
      signal.signal(sig, _raise_stopped)
    return _run(args)
  except ArgumentError as e:
    print(f"{e.prog}: error: {e}", file=sys.stderr)
    return EXIT_USAGE
  except Stopped as e:
    name = f"gandistill {command}" if command else "gandistill"
    if command in RESUMABLE_COMMANDS:
      print(f"{name}: stopped by {e} (nothing saved is lost); run the same command to resume", file=sys.stderr)
      return EXIT_STOPPED
    print(f"{name}: stopped by {e}; nothing half-written", file=sys.stderr)
    return 128 + e.signum
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)


def _run(args) -> int:
  """The command, with every error it can meet as one line and its exit code."""
  # Orbax and TFDS log through absl; an error they log is re-raised to us and reported in
  # one line below, so their own (often hundreds of lines of) logging is kept out.
  logging.getLogger("absl").setLevel(logging.CRITICAL)
  if args.trust_workdir_code:
    from gandistill_jax import models
    os.environ[models.TRUST_ENV] = "1"   # also for the processes this one starts
  try:
    join_processes(args)
    return args.func(args) or 0
  except Exception as e:
    if _stop_signals:   # what a stop raised where it landed (e.g. an import turns it into ImportError)
      raise Stopped(_stop_signals[-1]) from None
    return _report_error(f"gandistill {args.command}", e)


def _report_error(name: str, e: Exception) -> int:
  from gandistill_jax.data.errors import DataError
  from gandistill_jax.loop import ConfigMismatch, TrainingDiverged
  from gandistill_jax.workdir import WorkdirBusy
  if isinstance(e, (UsageError, DataError, ConfigMismatch, WorkdirBusy, OSError, ValueError)):  # ArtifactError,
    print(f"{name}: error: {_one_line(e)}", file=sys.stderr)                                   # CorruptCheckpoint too
    return EXIT_USAGE
  if isinstance(e, TrainingDiverged):
    print(f"{name}: diverged: {e}", file=sys.stderr)
    return EXIT_FAILED
  if os.environ.get("GANDISTILL_TRACEBACK"):
    raise e
  print(f"{name}: internal error: {type(e).__name__}: {_one_line(e)[:300]} (GANDISTILL_TRACEBACK=1 shows the "
        f"traceback; please report it)", file=sys.stderr)
  return EXIT_FAILED


if __name__ == "__main__":
  sys.exit(main())
