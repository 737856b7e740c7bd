"""What a command may assume of a workdir, through the command line: a workdir of another
kind is named as such (never called corrupt), a resumed run on other data is refused unless
asked for (data.json keeping the history), a teacher that is not a teacher is warned
about, and a workdir's config.json runs no code unless the user trusts it."""
import json
import os
import shutil

import numpy as np
import pytest

from gandistill_jax import checkpoint, cli, loop, models, tasks, workdir as workdir_lib
from helpers import tiny_config
from test_data import make_idx_folder
from test_loop_cli import DISTILL, QUICK, sets
from test_reliability import ENV, cli_proc, one_line_error

SMALL_STUDENT = ("model.latent_dim=32", "model.g_width=2", "train.batch_size=16", "distill.warmup_steps=1")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, idx_data):
  """A teacher (4 steps), a distill run from it and a scratch run (2 steps each)."""
  root = tmp_path_factory.mktemp("runs")
  w = {k: str(root / k) for k in ("teacher", "distill", "scratch")}
  assert cli.main(["train-teacher", "--config", QUICK, "--workdir", w["teacher"], "--quiet",
                   *sets(*idx_data, "train.steps=4", "train.ckpt_every=2")]) == 0
  assert cli.main(["distill", "--config", DISTILL, "--teacher", w["teacher"], "--workdir", w["distill"], "--quiet",
                   *sets(*idx_data, *SMALL_STUDENT, "train.steps=2")]) == 0
  assert cli.main(["train-scratch", "--config", QUICK, "--workdir", w["scratch"], "--quiet",
                   *sets(*idx_data, "train.steps=2")]) == 0
  return w


def snapshot(workdir):
  return sorted(os.path.relpath(os.path.join(r, f), workdir) for r, _, fs in os.walk(workdir) for f in fs)


# 6. Wrong accusations

def test_a_workdir_of_another_kind_is_named_and_its_checkpoints_left_alone(runs, tmp_path, capsys):
  t, d, s = runs["teacher"], runs["distill"], runs["scratch"]
  before = {k: snapshot(v) for k, v in runs.items()}
  for args, message in [
      (["train-teacher", "--workdir", d], f"--workdir {d} holds a distill run, not a teacher run (`gandistill distill`"),
      (["train-scratch", "--workdir", t], f"--workdir {t} holds a teacher run, not a scratch run"),
      (["train-teacher", "--workdir", s], f"--workdir {s} holds a scratch run, not a teacher run"),
      (["distill", "--workdir", t, "--teacher", t], f"--workdir {t} holds a teacher run, not a distill run"),
      (["dump-teacher", "--teacher", d, "--out", str(tmp_path / "p.npz")], f"--teacher {d} holds a distill run"),
      (["sample", "--workdir", t, "--which", "teacher", "--out", str(tmp_path / "s.png")],
       f"{t} holds a teacher run; only a distill run keeps a teacher"),
      (["eval", "--workdir", d, "--teacher", t], "--teacher is for a teacher or scratch run"),
      (["eval", "--workdir", t, "--teacher", d], f"--teacher {d} holds a distill run")]:
    err = one_line_error(capsys, args, message)
    assert "corrupt" not in err and "unreadable" not in err and "do not match" not in err, err
  code, _, err = cli_proc("train-teacher", "--workdir", d, "--quiet")
  assert code == 2 and len(err.strip().splitlines()) == 1 and "holds a distill run" in err, err
  assert {k: snapshot(v) for k, v in runs.items()} == before and not os.listdir(tmp_path)

  config = workdir_lib.load_config(t)   # the library, given a config that does not fit: not damage either
  config.model.g_width = 16
  with pytest.raises(checkpoint.CheckpointMismatch, match="the checkpoints are not damaged"):
    workdir_lib.restore_network(t, "generator", config)
  with pytest.raises(workdir_lib.WrongKind, match="holds a distill run, not a teacher run"):
    loop.train(workdir_lib.load_config(d), d, tasks.gan_task(workdir_lib.load_config(d)), progress=False)
  assert {k: snapshot(v) for k, v in runs.items()} == before


# 7. Silent changes

def test_a_teacher_that_is_not_a_teacher_is_warned_about_and_a_resume_keeps_its_teacher(runs, tmp_path, idx_data,
                                                                                        capsys):
  w = str(tmp_path / "from_scratch")
  args = ["distill", "--config", DISTILL, "--workdir", w, "--quiet", *sets(*idx_data, *SMALL_STUDENT, "train.steps=2")]
  capsys.readouterr()
  assert cli.main(args + ["--teacher", runs["scratch"]]) == 0
  warnings = [l for l in capsys.readouterr().err.splitlines() if "holds a scratch run" in l]
  assert warnings == [f"gandistill: warning: --teacher {runs['scratch']} holds a scratch run (a baseline trained "
                      f"from scratch), not a teacher; using it as given"], warnings
  one_line_error(capsys, args + ["--teacher", runs["teacher"]],
                 f"{w} distils from {runs['scratch']}", f"give --teacher {runs['scratch']} to resume")


def test_a_resume_on_other_data_is_refused_unless_asked_for_and_data_json_keeps_the_history(tmp_path, idx_data,
                                                                                           capsys):
  other = make_idx_folder(str(tmp_path / "other_idx"), n_train=96, n_test=32)
  w = str(tmp_path / "w")
  base = ["train-teacher", "--config", QUICK, "--workdir", w, "--quiet", *sets(*idx_data)]
  assert cli.main(base + sets("train.steps=2")) == 0
  config_before, data_before = open(os.path.join(w, "config.json")).read(), open(os.path.join(w, "data.json")).read()
  code, _, err = cli_proc(*base, *sets("train.steps=4", f"data.path='{other}'"))
  lines = err.strip().splitlines()
  assert code == 2 and lines[-1].startswith(f"gandistill train-teacher: error: {w} was trained on other data"), err
  assert other in lines[-1] and "--allow-data-change" in lines[-1] and "Traceback" not in err
  assert open(os.path.join(w, "config.json")).read() == config_before            # nothing written
  assert open(os.path.join(w, "data.json")).read() == data_before
  assert checkpoint.Checkpointer(os.path.join(w, "checkpoints"), read_only=True).latest_step() == 2

  assert cli.main(base + sets("train.steps=4", f"data.path='{other}'") + ["--allow-data-change"]) == 0
  record = json.load(open(os.path.join(w, "data.json")))
  old = json.loads(data_before)
  assert record["folder"] == other and record["train_examples"] == 96
  assert record["history"] == [old | {"replaced_at_step": 2}]
  assert cli.main(base + sets("train.steps=6", f"data.path='{other}'")) == 0     # the new data, now recorded
  assert json.load(open(os.path.join(w, "data.json")))["history"] == record["history"]

  config = tiny_config()   # the library: the caller's arrays are data too
  config.train.update(steps=2, ckpt_every=2, sample_every=100, log_every=2)
  images = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
  lib = str(tmp_path / "lib")
  loop.train(config, lib, tasks.gan_task(config), progress=False, data=images)
  config.train.steps = 4
  with pytest.raises(loop.DataChanged, match="trained on other data .*allow-data-change"):
    loop.train(config, lib, tasks.gan_task(config), progress=False, data=255 - images)
  loop.train(config, lib, tasks.gan_task(config), progress=False, data=255 - images, allow_data_change=True)
  assert len(workdir_lib.read_data_record(lib)["history"]) == 1


# 9. Untrusted workdirs

EVIL = '''import os
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "IMPORTED"), "w").close()
from gandistill_jax import models
def build(cfg):
  return models.GENERATORS["dcgan"](cfg)
'''


def test_a_dotted_family_in_a_workdir_is_imported_only_when_the_user_trusts_it(runs, tmp_path):
  downloaded = str(tmp_path / "downloaded")
  shutil.copytree(runs["teacher"], downloaded)
  with open(os.path.join(downloaded, "evil_family.py"), "w") as f:
    f.write(EVIL)
  path = os.path.join(downloaded, "config.json")
  saved = json.load(open(path))
  saved["model"]["family"] = "evil_family:build"
  json.dump(saved, open(path, "w"))
  imported = os.path.join(downloaded, "IMPORTED")
  untrusting = {k: v for k, v in ENV.items() if k != models.TRUST_ENV}

  for command in (["sample", "--workdir", ".", "--out", "s.png"], ["export", "--workdir", ".", "--out", "g"],
                  ["train-teacher", "--workdir", ".", "--quiet", "--set", "train.steps=6"]):
    code, _, err = cli_proc(*command, cwd=downloaded, env=untrusting)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "config.json names model.family='evil_family:build'" in err and "--trust-workdir-code" in err, err
    assert not os.path.exists(imported)
  with pytest.raises(workdir_lib.UntrustedCode, match=models.TRUST_ENV):
    workdir_lib.load_config(downloaded)

  code, out, err = cli_proc("sample", "--workdir", ".", "--num", "4", "--out", "s.png", "--trust-workdir-code",
                            cwd=downloaded, env=untrusting)
  assert code == 0 and os.path.exists(imported) and "wrote 4 samples" in out, err[-2000:]
  os.remove(imported)
  code, out, err = cli_proc("sample", "--workdir", ".", "--num", "4", "--out", "s.png", cwd=downloaded,
                            env=dict(untrusting, **{models.TRUST_ENV: "1"}))
  assert code == 0 and os.path.exists(imported), err[-2000:]


def test_a_family_the_process_built_from_its_own_config_needs_no_trust(tmp_path, monkeypatch):
  monkeypatch.delenv(models.TRUST_ENV, raising=False)
  config = tiny_config(family="custom_models:upsample_generator")
  config.train.update(steps=1, ckpt_every=1, sample_every=100, log_every=1)
  w = str(tmp_path / "w")
  loop.train(config, w, tasks.gan_task(config), progress=False, data=np.zeros((32, 28, 28), np.uint8))
  assert not models.needs_trust("custom_models:upsample_generator")
  assert workdir_lib.load_config(w).model.family == "custom_models:upsample_generator"
  assert not models.needs_trust("dcgan") and models.needs_trust("some_module:Name")
