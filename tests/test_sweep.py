"""experiments/study/sweep.py end to end on a tiny grid: every cell trains, evaluates and lands in one table;
more seeds of a cell add rows and a mean ± std line; experiments/study/frontier.py reports the sweep."""
import json
import os
import statistics
import subprocess
import sys

from gandistill_jax import cli
from test_data import make_idx_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tiny_sweep_writes_one_table_and_resumes(tmp_path):
  folder = make_idx_folder(str(tmp_path / "idx"), n_train=256, n_test=128)
  sets = ["data.source='idx'", "data.name='mnist'", f"data.path='{folder}'", f"data.data_dir='{tmp_path / 'tfds'}'",
          f"eval.cache_dir='{tmp_path / 'cache'}'", "model.image_size=28", "model.d_batch_norm=True",
          "loss.reuse_fake=True", "train.steps=4"]
  teacher = str(tmp_path / "teacher")
  assert cli.main(["train-teacher", "--config", os.path.join(ROOT, "experiments/configs/quick.py"), "--quiet",
                   "--workdir", teacher] + [x for s in sets for x in ("--set", s)]) == 0
  cmd = [sys.executable, os.path.join(ROOT, "experiments/study/sweep.py"), "--teacher", teacher,
         "--workdir", str(tmp_path / "sweep"), "--grid", "tiny", "--eval-num", "200"]
  env = os.environ | {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
  subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
  out = json.load(open(tmp_path / "sweep" / "sweep.json"))
  assert sorted(r["name"] for r in out["rows"]) == ["scratch_w2r4_4", "tinygan_w2r4_random_4", "tinygan_w2r4_teacher_4"]
  for r in out["rows"]:
    assert r["x_fewer"] > 10 and r["steps"] == 4 and r["train_seconds"] > 0 and r["fid"] > 0
  table = open(tmp_path / "sweep" / "sweep.md").read()
  assert "| tinygan_w2r4_teacher_4 | tinygan | dcgan | teacher |" in table
  # a second call finds every cell finished and evaluated: nothing retrains
  mtime = os.path.getmtime(tmp_path / "sweep" / "scratch_w2r4_4" / "eval.json")
  rerun = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
  assert os.path.getmtime(tmp_path / "sweep" / "scratch_w2r4_4" / "eval.json") == mtime
  assert "tinygan_w2r4_teacher_4" in rerun.stdout
  # two more seeds of one cell: merged into the same sweep.json, with a mean ± std line
  subprocess.run(cmd + ["--seeds", "1", "2", "--only", "tinygan_w2r4_teacher"], check=True, env=env,
                 capture_output=True, text=True)
  rows = {r["name"]: r for r in json.load(open(tmp_path / "sweep" / "sweep.json"))["rows"]}
  assert set(rows) == {"scratch_w2r4_4", "tinygan_w2r4_random_4", "tinygan_w2r4_teacher_4",
                       "tinygan_w2r4_teacher_4_s1", "tinygan_w2r4_teacher_4_s2"}
  assert [rows[f"tinygan_w2r4_teacher_4{t}"]["seed"] for t in ("", "_s1", "_s2")] == [0, 1, 2]
  assert rows["tinygan_w2r4_teacher_4_s1"]["cell"] == "tinygan_w2r4_teacher_4"
  assert len({rows[f"tinygan_w2r4_teacher_4{t}"]["fid"] for t in ("", "_s1", "_s2")}) == 3   # the seed is used
  fids = [rows[f"tinygan_w2r4_teacher_4{t}"]["fid"] for t in ("", "_s1", "_s2")]
  mean_std = f"{statistics.fmean(fids):.2f} ± {statistics.stdev(fids):.2f}"
  table = open(tmp_path / "sweep" / "sweep.md").read()
  assert f"| tinygan_w2r4_teacher_4 | " in table.split("Over seeds")[1] and mean_std in table
  frontier = subprocess.run([sys.executable, os.path.join(ROOT, "experiments/study/frontier.py"), "--sweep",
                             str(tmp_path / "sweep"), "--out", str(tmp_path / "frontier")],
                            check=True, env=env, capture_output=True, text=True)
  report = open(tmp_path / "frontier" / "frontier.md").read()
  assert mean_std in report and "| scratch_w2r4_4 |" in report and "scratch twin" in report
  assert os.path.getsize(tmp_path / "frontier" / "frontier.png") > 10_000 and "tinygan_w2r4_teacher_4" in frontier.stdout
