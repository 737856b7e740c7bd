"""Reliability by class, through the command line: interrupts (SIGINT like SIGTERM: saved,
one line, exit code 75, resumable), outputs (written atomically at exactly --out, errors
naming the path and the OS's reason), count and size arguments checked before any work,
config files that fail in one line naming them, no Orbax shutdown noise after a damaged
checkpoint, and damaged exported files with messages that hold."""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gandistill_jax import checkpoint, cli, export, files, models
from helpers import tiny_config
from test_files import flip_bytes
from test_loop_cli import QUICK, TOY, sets

ENV = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")


def cli_proc(*args, **kw):
  """The CLI in a fresh process: (exit code, stdout, stderr)."""
  proc = subprocess.run([sys.executable, "-m", "gandistill_jax.cli", *args], env=kw.pop("env", ENV),
                        capture_output=True, text=True, **kw)
  return proc.returncode, proc.stdout, proc.stderr


def one_line_error(capsys, args, *fragments):
  """cli.main(args) exits 2 with one line on stderr holding every fragment; returns it."""
  capsys.readouterr()
  assert cli.main(args) == cli.EXIT_USAGE, args
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and all(f in err[0] for f in fragments), (args, err)
  return err[0]


def leftovers(folder):
  return [os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs if ".tmp" in f]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, idx_data):
  w = str(tmp_path_factory.mktemp("runs") / "teacher")
  assert cli.main(["train-teacher", "--config", QUICK, "--workdir", w, "--quiet",
                   *sets(*idx_data, "train.steps=4", "train.ckpt_every=2")]) == 0
  return w


# 1. Interrupts

def test_sigint_saves_in_one_line_exits_with_the_stop_code_and_resumes(tmp_path):
  w = str(tmp_path / "w")
  proc = subprocess.Popen([sys.executable, "-m", "gandistill_jax.cli", "train-teacher", "--config", TOY,
                           "--workdir", w, "--quiet", *sets("train.steps=100000", "train.ckpt_every=100000",
                                                            "train.log_every=10")],
                          env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  while proc.poll() is None and not os.path.exists(os.path.join(w, "metrics.jsonl")):
    time.sleep(0.05)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == cli.EXIT_STOPPED == 75, err[-2000:]
  assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
  assert len(out.strip().splitlines()) == 1 and "stopped at step" in out and "run the same command" in out, out
  step = checkpoint.Checkpointer(os.path.join(w, "checkpoints"), read_only=True).latest_step()
  assert step is not None and 10 <= step < 100000
  code, out, err = cli_proc("train-teacher", "--workdir", w, "--quiet", *sets(f"train.steps={step + 20}"))
  assert code == 0 and f"finished at step {step + 20}" in out, err[-2000:]


def test_sigint_before_training_starts_is_one_line_and_the_stop_code(tmp_path):
  proc = subprocess.Popen([sys.executable, "-m", "gandistill_jax.cli", "train-teacher", "--config", TOY,
                           "--workdir", str(tmp_path / "w"), "--quiet"],
                          env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  time.sleep(1.5)   # imports, config, data: before the loop
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == cli.EXIT_STOPPED, err[-2000:]
  assert "Traceback" not in err and "stopped" in (err + out).strip().splitlines()[-1], (out, err)


# 2. Outputs

def test_outputs_are_written_whole_at_exactly_the_path_given(tmp_path, teacher, capsys):
  for args in (["sample", "--workdir", teacher, "--num", "4", "--format", "npz", "--out", str(tmp_path / "F")],
               ["sample", "--workdir", teacher, "--num", "4", "--out", str(tmp_path / "G")],
               ["dump-teacher", "--teacher", teacher, "--num", "8", "--out", str(tmp_path / "P")],
               ["export", "--workdir", teacher, "--no-optimize", "--out", str(tmp_path / "E")]):
    assert cli.main(args) == 0, args
    assert f"{args[-1]}" in capsys.readouterr().out
  assert sorted(os.listdir(tmp_path)) == ["E", "F", "G", "P"]
  assert np.load(tmp_path / "F")["images"].shape == (4, 28, 28, 1)
  assert open(tmp_path / "G", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  assert np.load(tmp_path / "P")["images"].shape == (8, 28, 28, 1)
  assert export.load_generator(str(tmp_path / "E"))(np.zeros((1, 32))).shape == (1, 28, 28, 1)
  one_line_error(capsys, ["sample", "--workdir", teacher, "--format", "npz", "--out", str(tmp_path / "s.png")],
                 "names a .png file but --format is npz")


def test_an_output_that_cannot_be_written_is_one_line_with_the_os_reason(tmp_path, teacher, capsys):
  (tmp_path / "a_folder").mkdir()
  (tmp_path / "a_file").write_text("x")
  cases = [(str(tmp_path / "a_folder"), "a_folder: Is a directory"),
           (str(tmp_path / "a_file" / "x.npz"), "a_file: Not a directory"),
           (str(tmp_path / "missing" / "x.npz"), "missing: No such file or directory"),
           ("/dev/null", "/dev/null: exists and is not a regular file"), ("", "'': No such file or directory"),
           (str(tmp_path / "new_folder") + "/", "new_folder/: Is a directory")]
  for out, message in cases:
    for command in (["sample", "--workdir", teacher], ["dump-teacher", "--teacher", teacher],
                    ["export", "--workdir", teacher]):
      one_line_error(capsys, command + ["--out", out], message)
  assert sorted(os.listdir(tmp_path)) == ["a_file", "a_folder"] and not leftovers(tmp_path)


def test_a_failed_write_keeps_the_earlier_file_and_leaves_nothing_behind(tmp_path, teacher):
  """A write that fails half-way (a file size limit: EFBIG, as a full disk gives ENOSPC)."""
  out = str(tmp_path / "samples.npz")
  code, _, err = cli_proc("sample", "--workdir", teacher, "--num", "2", "--out", out)
  assert code == 0, err[-2000:]
  good = open(out, "rb").read()

  limited = ("import os, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
             f"resource.setrlimit(resource.RLIMIT_FSIZE, ({len(good) + 100}, resource.RLIM_INFINITY)); "
             "os.execv(sys.executable, [sys.executable, '-m', 'gandistill_jax.cli'] + sys.argv[1:])")
  proc = subprocess.run([sys.executable, "-c", limited, "sample", "--workdir", teacher, "--num", "64", "--seed", "3",
                         "--out", out], env=ENV, capture_output=True, text=True)
  err = proc.stderr.strip().splitlines()
  assert proc.returncode == 2 and len(err) == 1 and err[0].endswith(f"{out}: File too large"), proc.stderr[-2000:]
  assert open(out, "rb").read() == good and not leftovers(tmp_path)
  with pytest.raises(RuntimeError, match="half-way"):   # the library's writes: the same rule
    files.write_atomic(out, lambda f: (f.write(b"partial"), (_ for _ in ()).throw(RuntimeError("half-way"))), "wb")
  assert open(out, "rb").read() == good and not leftovers(tmp_path)


# 3. Arguments

def test_count_and_size_arguments_are_checked_before_any_work(tmp_path, teacher, capsys):
  out = str(tmp_path / "x.npz")
  for args, message in [
      (["sample", "--workdir", teacher, "--num", "0", "--out", out], "argument --num: 0 must be at least 1"),
      (["sample", "--workdir", teacher, "--num", "-5", "--out", out], "argument --num: -5 must be at least 1"),
      (["sample", "--workdir", teacher, "--num", "ten", "--out", out], "'ten' is not a whole number"),
      (["sample", "--workdir", teacher, "--seed", "-1", "--out", out], "argument --seed: -1 must be at least 0"),
      (["eval", "--workdir", teacher, "--num", "3"], "argument --num: 3 must be at least 10"),
      (["eval", "--workdir", teacher, "--num", "-5"], "argument --num: -5 must be at least 10"),
      (["eval", "--workdir", teacher, "--set", "eval.inception_num=0"], "eval.inception_num=0 must be >= 10"),
      (["dump-teacher", "--teacher", teacher, "--num", "0", "--out", out], "argument --num: 0 must be at least 1"),
      (["dump-teacher", "--teacher", teacher, "--num", "-5", "--out", out], "argument --num: -5 must be at least 1"),
      (["sample", "--workdir", teacher, "--out", out, "--num-processes", "0"], "--num-processes: 0 must be at least 1"),
      (["sample", "--workdir", teacher, "--out", out, "--coordinator", "host", "--num-processes", "2",
        "--process-id", "0"], "--coordinator host: give HOST:PORT"),
      (["train-teacher", "--config", QUICK, "--workdir", str(tmp_path / "w"), "--set", "model.g_width=True"],
       "--set 'model.g_width=True': expected an int, got 'True'"),
      (["train-teacher", "--config", QUICK, "--workdir", str(tmp_path / "w"), "--set", "train.steps=1e3"],
       "expected an int, got '1e3'"),
      (["train-teacher", "--config", QUICK, "--workdir", str(tmp_path / "w"), "--set", "model.d_batch_norm=1"],
       "expected True or False, got '1'"),
      (["train-teacher", "--config", QUICK, "--workdir", str(tmp_path / "w"), "--set", "optim.g_lr=1e999"],
       "optim.g_lr=inf must be a finite number"),
      (["train-teacher", "--config", QUICK, "--workdir", str(tmp_path / "w"), "--set", "train.batch_size=-8"],
       "train.batch_size=-8 must be >= 1")]:
    one_line_error(capsys, args, message)
  assert os.listdir(tmp_path) == [] and "eval.json" not in os.listdir(teacher)
  code, out, err = cli_proc("dump-teacher", "--teacher", teacher, "--num", "-5", "--out", out)
  assert code == 2 and err.strip() == ("gandistill dump-teacher: error: argument --num: -5 must be at least 1 "
                                       "(see gandistill dump-teacher --help)"), err


# 4. Config files

def test_config_files_that_fail_are_one_line_naming_them(tmp_path, teacher, capsys):
  bad = {
      "raises.py": "from gandistill_jax.config import base_config\ndef get_config():\n  c = base_config()\n"
                   "  raise RuntimeError('no data here')\n",
      "imports.py": "import no_such_module_for_configs\n",
      "syntax.py": "def get_config(:\n",
      "none.py": "X = 1\n",
      "a_dict.py": "def get_config():\n  return {'train': {}}\n",
      "partial.py": "import ml_collections\ndef get_config():\n  return ml_collections.ConfigDict({'seed': 0})\n",
      "exits.py": "import sys\nsys.exit(3)\n",
      "types.py": "from gandistill_jax.config import base_config\nimport ml_collections\ndef get_config():\n"
                  "  d = base_config().to_dict()\n  d['model']['family'] = 5\n  return ml_collections.ConfigDict(d)\n",
  }
  messages = {"raises.py": "get_config() raised at line 4: RuntimeError: no data here",
              "imports.py": "line 1: ModuleNotFoundError", "syntax.py": "line 1: ", "none.py": "defines no get_config()",
              "a_dict.py": "returned a dict, not an ml_collections.ConfigDict",
              "partial.py": "returned a config without", "exits.py": "line 2: SystemExit: 3",
              "types.py": "model.family=5 must be a string"}
  for name, text in bad.items():
    (tmp_path / name).write_text(text)
  (tmp_path / "binary.py").write_bytes(b"\xff\xfe\x00garbage")
  messages["binary.py"] = "cannot contain null bytes"
  for name, message in messages.items():
    one_line_error(capsys, ["train-teacher", "--config", str(tmp_path / name), "--workdir", str(tmp_path / "w")],
                   f"--config {tmp_path / name}: ", message)
  one_line_error(capsys, ["train-teacher", "--config", str(tmp_path), "--workdir", str(tmp_path / "w")], "not a file")
  assert not os.path.exists(tmp_path / "w")
  code, _, err = cli_proc("train-teacher", "--config", str(tmp_path / "raises.py"), "--workdir", str(tmp_path / "w"))
  assert code == 2 and len(err.strip().splitlines()) == 1 and "no data here" in err, err

  damaged = str(tmp_path / "damaged")
  shutil.copytree(teacher, damaged)
  with open(os.path.join(damaged, "config.json"), "wb") as f:
    f.write(b"\xff\xfe{\"model\": ")
  for args in (["sample", "--workdir", damaged, "--out", str(tmp_path / "s.png")], ["eval", "--workdir", damaged],
               ["export", "--workdir", damaged, "--out", str(tmp_path / "e")],
               ["train-teacher", "--workdir", damaged], ["dump-teacher", "--teacher", damaged, "--out",
                                                          str(tmp_path / "p")]):
    one_line_error(capsys, args, f"{damaged}/config.json is damaged: not a JSON file")
  with open(os.path.join(damaged, "config.json"), "w") as f:
    json.dump({"model": {"family": "dcgan"}}, f)
  one_line_error(capsys, ["sample", "--workdir", damaged, "--out", str(tmp_path / "s.png")],
                 f"{damaged}/config.json: not a gandistill config")


# 5. Noise

def test_a_damaged_checkpoint_costs_one_line_and_no_orbax_shutdown_noise(tmp_path, teacher):
  damaged = str(tmp_path / "damaged")
  shutil.copytree(teacher, damaged)
  flip_bytes(os.path.join(damaged, "checkpoints", "4"))
  for args in (["sample", "--workdir", damaged, "--out", str(tmp_path / "s.png")],
               ["export", "--workdir", damaged, "--no-optimize", "--out", str(tmp_path / "e")]):
    code, _, err = cli_proc(*args)
    lines = err.strip().splitlines()
    assert code == 0 and "Event loop is closed" not in err and "Traceback" not in err, err[-3000:]
    assert len(lines) == 1 and "checkpoint step 4 in" in lines[0] and lines[0].endswith("using step 2"), err
  edited = str(tmp_path / "edited")   # networks of other shapes than config.json says: named, not called damaged
  shutil.copytree(teacher, edited)
  saved = json.load(open(os.path.join(edited, "config.json")))
  saved["model"]["g_width"] *= 2
  json.dump(saved, open(os.path.join(edited, "config.json"), "w"))
  code, _, err = cli_proc("sample", "--workdir", edited, "--out", str(tmp_path / "s.png"))
  lines = err.strip().splitlines()
  assert code == 2 and len(lines) == 1 and "the checkpoints are not damaged" in lines[0], err[-3000:]


def test_only_the_closed_event_loop_noise_is_silenced():
  loop = asyncio.new_event_loop()
  loop.close()
  try:
    loop.call_soon_threadsafe(print)
  except RuntimeError as e:
    closed = e
  reported = []
  hook = checkpoint._quiet_unraisable(reported.append)
  for e in (closed, RuntimeError("Event loop is closed"), ValueError("something else")):
    hook(types.SimpleNamespace(exc_type=type(e), exc_value=e, exc_traceback=e.__traceback__, err_msg=None,
                               object=None))
  assert [str(u.exc_value) for u in reported] == ["Event loop is closed", "something else"]   # raised elsewhere


# 8. Artifacts

def test_damaged_exported_files_get_messages_that_hold(tmp_path, capsys):
  config = tiny_config(g_width=4)
  gen = models.build_generator(config.model)
  variables = models.init_variables(gen, jax.random.key(0), jnp.zeros((2, 16)))
  good = str(tmp_path / "g.jaxexport")
  export.export_generator(gen, variables, 16, (28, 28, 1), good, optimize=False)
  header, payload = export.read_artifact(good)

  def write(name, head=None, body=payload, version=export.VERSION):
    if head is not None:
      head = dict(head, sha256=export._digest(head, body))   # edited and hashed again
    raw = json.dumps(head if head is not None else header).encode()
    with open(tmp_path / name, "wb") as f:
      f.write(export.MAGIC + bytes([version]) + len(raw).to_bytes(4, "big") + raw + body)
    return str(tmp_path / name)

  short = tmp_path / "short"
  short.write_bytes(export.MAGIC + bytes([export.VERSION]))
  cases = [(str(short), "truncated (5 bytes"),
           (write("v9", version=9), "unsupported format version 9 (this gandistill_jax reads versions 1 to 2)"),
           (write("latent", header | {"latent_dim": "16"}), "bad header field latent_dim='16'"),
           (write("platforms", {k: v for k, v in header.items() if k != "platforms"}), "bad header field platforms"),
           (write("shape", header | {"output_shape": [32, 32, 1]}), "the program maps"),
           (write("payload", header | {"payload_bytes": 9}, body=b"123456789"), "not a jax.export program")]
  for path, message in cases:
    one_line_error(capsys, ["sample", "--exported", path, "--out", str(tmp_path / "s.png")], path, message)
  assert not os.path.exists(tmp_path / "s.png")
