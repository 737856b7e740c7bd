"""The main job end to end on tiny settings: every run, the eval and the report."""
import json
import math
import os

from gandistill_jax import cli
from test_data import make_idx_folder


def test_tiny_demo_writes_a_complete_report(tmp_path):
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
  assert results["distill_w8r7"]["efficiency"]["params"] < results["teacher"]["efficiency"]["params"] / 40
  for png in ("samples_same_z.png", "fid_vs_params.png"):
    assert os.path.getsize(os.path.join(w, png)) > 1000
  # a re-run skips what is finished and rewrites the same report
  assert cli.main(["demo", "--tiny", "--quiet", "--workdir", w] + [x for s in sets for x in ("--set", s)]) == 0
