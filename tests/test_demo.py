"""The main job end to end on tiny settings: every run, the eval and the report."""
import json
import math
import os

from gandistill_jax import cli, config as config_lib, recipes, study
from gandistill_jax.eval import evaluate
from test_data import make_idx_folder


def test_tiny_demo_writes_a_complete_report(tmp_path, monkeypatch):
  folder = make_idx_folder(str(tmp_path / "idx"), n_train=256, n_test=128)
  sets = ["data.source='idx'", "data.name='mnist'", f"data.path='{folder}'", f"data.data_dir='{tmp_path / 'tfds'}'",
          f"eval.cache_dir='{tmp_path / 'cache'}'"]
  w = str(tmp_path / "demo")
  assert cli.main(["demo", "--tiny", "--quiet", "--workdir", w] + [x for s in sets for x in ("--set", s)]) == 0
  report = open(os.path.join(w, "report.md")).read()
  for column in ("G params", "MFLOPs/sample", "samples/s", "FID", "KID", "precision", "recall", "L1 to teacher"):
    assert column in report
  results = json.load(open(os.path.join(w, "results.json")))
  assert set(results) == {"teacher", "distill_w16r12", "distill_w8r7", "scratch_w16r12", "scratch_w8r7"}
  for name, r in results.items():
    numbers = [r["fid"], r["kid"], r["precision"], r["recall"], r["efficiency"]["params"],
               r["efficiency"]["flops_per_sample"], r["efficiency"]["samples_per_s_batch256"]]
    assert all(math.isfinite(v) for v in numbers), (name, numbers)
    if name != "teacher":
      assert math.isfinite(r["fidelity"]["pixel_l1"]) and math.isfinite(r["fidelity"]["psnr_db"])
  assert results["distill_w16r12"]["efficiency"]["params"] < results["teacher"]["efficiency"]["params"] / 10
  assert results["distill_w8r7"]["efficiency"]["params"] < results["teacher"]["efficiency"]["params"] / 35
  for png in ("samples_same_z.png", "fid_vs_params.png"):
    assert os.path.getsize(os.path.join(w, png)) > 1000
  # a re-run skips what is finished and rewrites the same report
  assert cli.main(["demo", "--tiny", "--quiet", "--workdir", w] + [x for s in sets for x in ("--set", s)]) == 0
  # eval settings given to a finished study reach its evaluation, and an eval.json is reused
  # only when it was scored as asked (an Inception FID needs a re-eval; a different count too)
  base = config_lib.apply_overrides(recipes.demo_base(), sets)
  calls = []
  def fake_evaluate(workdir, teacher_dir="", num=0, overrides=()):
    calls.append(list(overrides))
    e = config_lib.apply_overrides(base, overrides).eval
    result = {k: v for k, v in results["teacher"].items() if k != "inception"}
    if e.inception_weights:
      result["inception"] = {"fid": 1.0, "weights": os.path.basename(e.inception_weights),
                             "generated": min(num, e.inception_num)}
    with open(os.path.join(workdir, "eval.json"), "w") as f:
      json.dump(result, f)
    return result
  monkeypatch.setattr(evaluate, "evaluate_workdir", fake_evaluate)
  teacher = study.demo_runs(base, tiny=True)[0]
  num = results["teacher"]["counts"]["generated"]
  def rerun(**eval_settings):
    teacher.config.eval.update(eval_settings)
    study.run_all([teacher], w, eval_num=num, progress=False)
    return len(calls)
  assert rerun() == 0                                                       # nothing new asked for
  assert rerun(inception_weights="/weights/inception.npz", inception_num=64) == 1
  assert {"eval.inception_weights='/weights/inception.npz'", "eval.inception_num=64"} <= set(calls[0])
  assert rerun() == 1                                                       # scored as asked
  assert rerun(inception_num=32) == 2                                       # another sample count
  assert rerun(inception_weights="") == 2                                   # not asked: kept as it is
  os.remove(os.path.join(w, "teacher", "eval.json"))
  assert rerun() == 3 and "eval.inception_weights=''" in calls[-1]          # the study's empty setting rules


def test_scratch_runs_in_the_side_process_train_as_they_would_alone(tmp_path):
  """The demo trains its scratch baselines in a second process beside the teacher and the
  distilled students: the same parameters, bit for bit, as training them in this process."""
  import jax
  import numpy as np
  from gandistill_jax import loop, parallel, tasks, workdir as workdir_lib
  folder = make_idx_folder(str(tmp_path / "idx"), n_train=256, n_test=128)
  sets = ["data.source='idx'", "data.name='mnist'", f"data.path='{folder}'", f"data.data_dir='{tmp_path / 'tfds'}'",
          f"eval.cache_dir='{tmp_path / 'cache'}'"]
  runs = [r for r in study.demo_runs(config_lib.apply_overrides(recipes.demo_base(), sets), tiny=True)
          if r.name == "scratch_w8r7"]
  runs[0].config.train.update(steps=3, log_every=1, sample_every=3, ckpt_every=3)
  side = str(tmp_path / "side")
  with study.SideProcess(runs, side):
    pass
  assert open(os.path.join(side, "scratch_w8r7", "train.log")).read().count("finished at step 3") == 1
  task = tasks.gan_task(runs[0].config, "scratch")
  alone = loop.train(runs[0].config, str(tmp_path / "alone"), task, progress=False)
  state, _, _ = workdir_lib.restore_latest(task, os.path.join(side, "scratch_w8r7"), parallel.make_mesh())
  for a, b in zip(jax.tree.leaves(parallel.to_host(state)), jax.tree.leaves(parallel.to_host(alone))):
    np.testing.assert_array_equal(a, b)


def test_a_stopped_run_of_the_study_reads_as_the_commands_stop_code():
  assert study.EXIT_STOPPED == cli.EXIT_STOPPED == 75
