"""Teachers from anywhere (gandistill_jax.teachers): a function or an exported file teaches
exactly what the same network in a workdir teaches; stored pairs in the documented format
distil offline through `distill --pairs`; what a teacher lacks is refused in one line; a
resumed run keeps its teacher; the ml_collections `--config.KEY=VALUE` flags."""
import json
import os

import chex
import jax
import numpy as np
import pytest

from gandistill_jax import cli, distill, export, models, parallel, teachers
from helpers import random_images
from test_distill import distill_config, random_teacher
from test_loop_cli import DISTILL, QUICK, run_cli, sets

FRESH_D = dict(adv_weight=0.1, pixel_weight=1.0)


def as_kind(config, kind, has_d=True):
  config.distill.update(teacher_kind=kind, teacher_has_d=has_d)
  if kind != "workdir":
    del config["teacher_model"]
  return config


def one_step(config, teacher, devices, real, rng=jax.random.key(3)):
  task = distill.distill_task(config, teacher)
  mesh = parallel.make_mesh(devices)
  state = parallel.replicate(task.init(jax.random.key(0)), mesh)
  step = parallel.jit_step(task.step, mesh, donate=False)
  state, metrics = step(state, parallel.host_to_global({"image": real}, mesh), rng)
  return jax.device_get(state), jax.device_get(metrics)


def student_part(state):
  return state.replace(teacher_g={}, teacher_d={})


def test_a_function_or_an_exported_teacher_teaches_what_the_network_teaches(tmp_path):
  """The same weights as a workdir network, a JAX function and an exported file: one
  distill step (pixel + adversarial, fresh D) gives the same student, the exported
  program also on 8 devices."""
  config = distill_config(**FRESH_D)
  weights = random_teacher(config)
  gen = models.build_generator(config.teacher_model)
  fn = lambda z: gen.apply(weights["g"], z)
  path = str(tmp_path / "teacher.jaxexport")
  export.export_generator(gen, weights["g"], 16, (28, 28, 1), path, optimize=False)
  exported = teachers.resolve(path)
  assert (exported.kind, exported.latent_dim, exported.sample_shape) == ("exported", 16, (28, 28, 1))
  real = random_images(16)
  with jax.default_matmul_precision("highest"):
    reference, ref_metrics = one_step(config, weights, jax.devices()[:1], real)
    for teacher, kind, devices in ((fn, "function", jax.devices()[:1]), (exported, "exported", jax.devices()[:1]),
                                   (exported, "exported", jax.devices())):   # the program in a data-parallel jit
      state, metrics = one_step(as_kind(distill_config(**FRESH_D), kind), teacher, devices, real)
      assert state.teacher_g == {} and state.teacher_d == {}
      chex.assert_trees_all_close(student_part(state), student_part(reference), atol=1e-5, rtol=1e-5)
      chex.assert_trees_all_close(metrics, ref_metrics, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("asks, lacks", [
    (dict(dfeat_weight=1.0), "the 'dfeat' term reads its discriminator (set distill.dfeat_weight=0)"),
    (dict(mmd_weight=1.0), "the 'mmd' term reads its discriminator (set distill.mmd_weight=0)"),
    (dict(gfeat_weight=1.0), "gfeat_weight reads its activations (set distill.gfeat_weight=0)"),
    (dict(student_init="teacher"), "cuts the student from its weights (set distill.student_init=random)"),
    (dict(adv_weight=0.1, d_init="teacher"), "from its discriminator (set distill.d_init=fresh)"),
])
def test_what_an_images_only_teacher_lacks_is_refused_in_one_line(asks, lacks):
  with pytest.raises(ValueError, match="an exported teacher \\(images only\\) cannot give what this config asks") as e:
    distill.distill_task(as_kind(distill_config(**asks), "exported"), lambda z: z)
  assert lacks in str(e.value) and "\n" not in str(e.value)


def test_own_terms_that_read_a_missing_discriminator_are_refused():
  """Up front when the term says so (needs_teacher_disc), else when the step is traced."""
  from gandistill_jax import objectives
  reads_d = lambda t: t.teacher_disc(t.image)[0].mean()
  config = as_kind(distill_config(), "exported")
  with pytest.raises(ValueError, match="the 'told' term reads its discriminator \\(leave the term out\\)"):
    distill.distill_task(config, lambda z: z, [objectives.Term("told", reads_d, needs_teacher_disc=True)])
  task = distill.distill_task(config, lambda z: jax.numpy.zeros((len(z), 28, 28, 1)), [objectives.Term("untold", reads_d)])
  state = task.init(jax.random.key(0))
  with pytest.raises(teachers.TeacherError, match="reads the teacher's discriminator, which this teacher does not have"):
    jax.jit(task.step)(state, {"image": random_images(4)}, jax.random.key(1))


def test_a_generator_without_its_discriminator_teaches_what_needs_no_d():
  weights = random_teacher(distill_config())
  with pytest.raises(ValueError, match="this teacher \\(a generator without its discriminator\\) cannot give what "
                                       "this config asks: the 'mmd' term reads its discriminator"):
    distill.distill_task(as_kind(distill_config(mmd_weight=1.0), "workdir", has_d=False), weights | {"d": None})
  config = as_kind(distill_config(gfeat_weight=1.0, student_init="teacher", student_width=4), "workdir", has_d=False)
  state, metrics = one_step(config, weights | {"d": None}, jax.devices()[:1], random_images(16))
  assert state.teacher_d == {} and np.isfinite(metrics["loss"])


def test_pairs_in_the_documented_format_are_read_and_bad_ones_refused(tmp_path):
  rng = np.random.default_rng(0)
  z = rng.standard_normal((6, 16)).astype(np.float32)
  images = rng.integers(0, 256, (6, 28, 28, 1), dtype=np.uint8)
  np.savez(tmp_path / "p.npz", z=z, images=images)
  got_z, got = teachers.read_pairs(str(tmp_path / "p.npz"))
  np.testing.assert_array_equal(got_z, z)
  np.testing.assert_allclose(got, images / 127.5 - 1.0, atol=1e-6)
  assert teachers.resolve(str(tmp_path / "p.npz")).kind == "pairs"
  bad = {"no images": dict(z=z), "3-d images": dict(z=z, images=images[..., 0]),
         "fewer images": dict(z=z, images=images[:5]), "float out of range": dict(z=z, images=images * 2.0),
         "int z": dict(z=z.astype(np.int32), images=images)}
  for name, arrays in bad.items():
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(teachers.TeacherError, match="bad.npz") as e:
      teachers.read_pairs(str(tmp_path / "bad.npz"))
    assert "\n" not in str(e.value), name
  (tmp_path / "junk").write_bytes(b"junk" * 10)
  with pytest.raises(teachers.TeacherError, match="not a teacher"):
    teachers.resolve(str(tmp_path / "junk"))


def test_exported_and_black_box_teachers_through_the_cli(tmp_path, idx_data, capsys):
  """`distill --teacher x.jaxexport` and `distill --pairs p.npz` (written as another
  framework would: uint8 images) train, evaluate with fidelity to their teacher, and a
  resumed run refuses a teacher file that changed."""
  teacher = str(tmp_path / "teacher")
  run_cli("train-teacher", "--config", QUICK, "--workdir", teacher, "--quiet", *sets(*idx_data, "train.steps=4"))
  exported = str(tmp_path / "teacher.jaxexport")
  run_cli("export", "--workdir", teacher, "--out", exported, "--no-optimize")
  pairs = str(tmp_path / "pairs.npz")
  run_cli("dump-teacher", "--teacher", exported, "--num", "64", "--out", pairs)
  with np.load(pairs) as f:
    np.savez(pairs, z=f["z"], images=np.round((f["images"] + 1) * 127.5).astype(np.uint8))
  small = sets(*idx_data, "model.latent_dim=32", "model.g_width=2", "train.steps=4", "train.batch_size=16",
               "distill.student_init=random", "distill.d_init=fresh")
  for flag, source, name in (("--teacher", exported, "exported"), ("--pairs", pairs, "pairs")):
    w = str(tmp_path / name)
    run_cli("distill", "--config", DISTILL, flag, source, "--workdir", w, "--quiet", *small)
    saved = json.load(open(os.path.join(w, "config.json")))
    assert saved["distill"]["teacher_kind"] == name and "teacher_model" not in saved
    assert saved["distill"]["mode"] == ("offline" if name == "pairs" else "online")
    run_cli("eval", "--workdir", w, "--num", "32")
    fidelity = json.load(open(os.path.join(w, "eval.json")))["fidelity"]
    assert 0 < fidelity["pixel_l1"] < 2 and fidelity["num_z"] == 32
  with np.load(pairs) as f:   # the same name, other contents
    np.savez(pairs, z=f["z"], images=255 - f["images"])
  refusals = [   # in this process: each is refused before any work
      (["distill", "--config", DISTILL, "--teacher", pairs, "--workdir", str(tmp_path / "x"), *small],
       "holds stored (z, image) pairs; give it as --pairs"),
      (["sample", "--workdir", str(tmp_path / "pairs"), "--which", "teacher", "--out", str(tmp_path / "t.png")],
       "which its checkpoints do not keep"),
      (["distill", "--pairs", pairs, "--workdir", str(tmp_path / "pairs"), *sets("train.steps=6")],
       f"is not the file {tmp_path / 'pairs'} started from"),
      (["distill", "--config", DISTILL, "--teacher", exported, "--workdir", str(tmp_path / "y"), *small,
        *sets("distill.dfeat_weight=1.0")], "the 'dfeat' term reads its discriminator (set distill.dfeat_weight=0)")]
  for args, message in refusals:
    capsys.readouterr()
    assert cli.main(args) == 2, args
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], (args, err)


def test_config_flags_in_the_ml_collections_form(tmp_path, idx_data, capsys):
  assert cli.expand_config_flags(["train-teacher", "--config", "c.py", "--config.train.steps=10",
                                  "--config.model.g_width", "8", "--set", "seed=1"]) == \
      ["train-teacher", "--config", "c.py", "--set", "train.steps=10", "--set", "model.g_width=8", "--set", "seed=1"]
  w = str(tmp_path / "w")
  run_cli("train-teacher", "--config", QUICK, "--workdir", w, "--quiet", *sets(*idx_data),
          "--config.train.steps=2", "--config.train.log_every", "1")
  saved = json.load(open(os.path.join(w, "config.json")))
  assert saved["train"]["steps"] == 2 and saved["train"]["log_every"] == 1
  config_file = tmp_path / "width.py"
  config_file.write_text(f"import runpy\ndef get_config(arg):\n  c = runpy.run_path({QUICK!r})['get_config']()\n"
                         f"  c.model.g_width = int(arg)\n  return c\n")
  assert cli.load_config_file(f"{config_file}:6").model.g_width == 6
  assert cli.main(["train-teacher", "--config", QUICK, "--workdir", w, "--config.train.steps=x"]) == 2
  assert "train.steps" in capsys.readouterr().err
  help_text = run_cli("train-teacher", "--help").stdout
  assert "--config.KEY=VALUE" in help_text


def test_a_pytorch_generator_converted_teaches_and_the_student_ships_as_tflite(tmp_path, idx_data):
  """The command-line path of a PyTorch teacher: `convert-torch` (generator only) ->
  `distill --teacher` with the default recipe (the student cut from it; a D started from
  the teacher's is refused) -> `export` to TFLite -> `sample --exported` gives what the
  JAX student gives."""
  torch = pytest.importorskip("torch", reason="needs torch (.ci/run installs it)")
  from test_torch_reference import torch_dcgan
  torch.manual_seed(0)
  g, _ = torch_dcgan(8)
  pt = str(tmp_path / "teacher.pt")
  torch.save({"G_ema": g.float().state_dict(), "width": 8}, pt)
  teacher = str(tmp_path / "teacher")
  out = run_cli("convert-torch", "--checkpoint", pt, "--key", "G_ema", "--out", teacher).stdout
  assert "width 8" in out and "no discriminator" in out
  small = sets(*idx_data, "model.g_width=4", "train.steps=4", "train.batch_size=16")
  student = str(tmp_path / "student")
  proc = run_cli("distill", "--config", DISTILL, "--teacher", teacher, "--workdir", student, *small,
                 "--config.distill.d_init=teacher", check=False)
  assert proc.returncode == 2 and "distill.d_init='teacher'" in proc.stderr and "set distill.d_init=fresh" in proc.stderr
  run_cli("distill", "--config", DISTILL, "--teacher", teacher, "--workdir", student, "--quiet", *small)
  assert json.load(open(os.path.join(student, "config.json")))["distill"]["teacher_has_d"] is False
  lite = str(tmp_path / "student.tflite")
  assert "max |TFLite - JAX|" in run_cli("export", "--workdir", student, "--out", lite).stdout
  for source, name in ((["--workdir", student], "jax.npz"), (["--exported", lite], "lite.npz")):
    run_cli("sample", *source, "--num", "8", "--out", str(tmp_path / name))
  jax_images, lite_images = (np.load(tmp_path / n)["images"].astype(int) for n in ("jax.npz", "lite.npz"))
  assert np.abs(jax_images - lite_images).max() <= 1   # float rounding at a uint8 level
  proc = run_cli("export", "--workdir", student, "--out", str(tmp_path / "s.jaxexport"), "--weights", "int8",
                 check=False)
  assert proc.returncode == 2 and "--weights and --batch are for --format tflite" in proc.stderr
  proc = run_cli("distill", "--config", DISTILL, "--teacher", lite, "--workdir", str(tmp_path / "x"), check=False)
  assert proc.returncode == 2 and "is TensorFlow Lite, which cannot run inside a JAX program" in proc.stderr


def test_pairs_that_cannot_teach_this_student_are_refused_before_training(tmp_path):
  """Corrupt, empty, non-normal z, too few for a batch, another latent size: one line each,
  through teachers.attach (what every distillation does first); also for a workdir
  teacher's offline_path. Float images in [0, 1] are read with a warning."""
  rng = np.random.default_rng(0)
  good = dict(z=rng.standard_normal((64, 16)).astype(np.float32),
              images=rng.integers(0, 256, (64, 28, 28, 1), dtype=np.uint8))
  np.savez(tmp_path / "good.npz", **good)
  (tmp_path / "cut.npz").write_bytes((tmp_path / "good.npz").read_bytes()[:5000])
  cases = {"cut": (None, "truncated or corrupt"),
           "empty": (dict(z=good["z"][:0], images=good["images"][:0]), "with N > 0"),
           "scaled": (dict(z=good["z"] * 1e3, images=good["images"]), "must be draws from N\\(0, I\\)"),
           "few": (dict(z=good["z"][:8], images=good["images"][:8]), "8 pairs cannot fill a batch of 16"),
           "latent": (dict(z=rng.standard_normal((64, 32)).astype(np.float32), images=good["images"]),
                      "maps z of size 32")}
  for name, (arrays, message) in cases.items():
    if arrays is not None:
      np.savez(tmp_path / f"{name}.npz", **arrays)
    with pytest.raises(teachers.TeacherError, match=message) as e:
      teachers.attach(distill_config(), str(tmp_path / f"{name}.npz"), str(tmp_path / "w"))
    assert str(tmp_path / f"{name}.npz") in str(e.value) and "\n" not in str(e.value), name
  with pytest.raises(teachers.TeacherError, match="latent.npz\) maps z of size 32"):
    teachers.record(distill_config(mode="offline", offline_path=str(tmp_path / "latent.npz")),
                    teachers.Teacher("workdir", 16, (28, 28, 1), "t", model=distill_config().teacher_model))
  np.savez(tmp_path / "unit.npz", z=good["z"], images=good["images"] / 255.0)
  config, teacher = teachers.attach(distill_config(), str(tmp_path / "unit.npz"), str(tmp_path / "w"))
  assert teacher.kind == "pairs" and config.distill.mode == "offline"
