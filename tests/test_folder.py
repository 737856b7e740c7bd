"""Real image folders: mixed modes and sizes, alpha compositing, resizing, the held-out
split, unreadable files, the cache keyed by the files, and a colour run through the CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gandistill_jax.data import folder, pipeline, resize
from gandistill_jax.data.errors import DataError
from test_data import data_cfg

RGBA = (200, 100, 50, 128)


def composite(fg, a, bg):
  """out = round((a fg + (255 - a) bg) / 255), written out by hand."""
  return int(np.floor((a * fg + (255 - a) * bg) / 255 + 0.5))


def write_mixed(root, size=8):
  """One image per mode a real folder mixes, at different sizes, with known pixel values."""
  os.makedirs(root, exist_ok=True)
  s = size
  Image.new("L", (s, s), 77).save(os.path.join(root, "grey.png"))
  Image.new("LA", (s, s), (77, 0)).save(os.path.join(root, "grey_alpha.png"))            # fully transparent
  Image.new("RGB", (s, s), (10, 20, 30)).save(os.path.join(root, "rgb.png"))
  Image.new("RGBA", (2 * s, 2 * s), RGBA).save(os.path.join(root, "rgba.png"))            # larger: resized
  p = Image.new("P", (s, s), 1)
  p.putpalette([0, 0, 0, 40, 60, 80] + [0] * 762)
  p.save(os.path.join(root, "palette.png"))
  t = Image.new("P", (s, s), 0)
  t.putpalette([0, 0, 0, 40, 60, 80] + [0] * 762)
  t.save(os.path.join(root, "palette_transparent.png"), transparency=0)                  # index 0 transparent
  Image.fromarray(np.full((s, s), 257 * 100, np.uint16)).save(os.path.join(root, "sixteen.png"))   # I;16
  Image.new("RGB", (s, s), (250, 5, 5)).save(os.path.join(root, "photo.jpg"), quality=100)
  Image.new("RGB", (s + 4, s), (0, 128, 255)).save(os.path.join(root, "wide.webp"), lossless=True)  # cropped


def test_mixed_modes_load_to_the_models_channels_with_the_right_values(tmp_path):
  root = str(tmp_path / "mixed")
  write_mixed(root)
  assert {Image.open(os.path.join(root, n)).mode for n in os.listdir(root)} >= {"L", "LA", "P", "RGB", "RGBA", "I;16"}
  paths, _, _ = folder.list_images(root)
  cfg = data_cfg(source="folder", path=root, eval_fraction=0.0, background="white")
  rgb, labels = pipeline.load_split(cfg, "train", 8, 3)
  assert rgb.shape == (len(paths), 8, 8, 3) and rgb.dtype == np.uint8 and not labels.any()
  by = {p: rgb[i] for i, p in enumerate(paths)}
  expect = {"grey.png": (77, 77, 77), "grey_alpha.png": (255, 255, 255), "rgb.png": (10, 20, 30),
            "rgba.png": tuple(composite(c, RGBA[3], 255) for c in RGBA[:3]), "palette.png": (40, 60, 80),
            "palette_transparent.png": (255, 255, 255), "sixteen.png": (100, 100, 100), "wide.webp": (0, 128, 255)}
  for name, value in expect.items():
    assert (by[name] == value).all(), (name, by[name][0, 0], value)
  assert np.abs(by["photo.jpg"].astype(int) - (250, 5, 5)).max() <= 3   # JPEG is lossy

  grey, _ = pipeline.load_split(data_cfg(source="folder", path=root, eval_fraction=0.0, background="#000000"),
                                "train", 8, 1)
  assert grey.shape == (len(paths), 8, 8, 1)
  g = {p: int(grey[i, 0, 0, 0]) for i, p in enumerate(paths)}
  luma = lambda r, gg, b: (19595 * r + 38470 * gg + 7471 * b + 32768) >> 16
  assert g["grey.png"] == 77 and g["sixteen.png"] == 100 and g["grey_alpha.png"] == 0   # on black
  assert g["rgb.png"] == luma(10, 20, 30) == 18
  assert g["rgba.png"] == luma(*(composite(c, RGBA[3], 0) for c in RGBA[:3]))


def test_resizing_against_hand_computed_pixels():
  x = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1) * 10
  blocks = np.array([[x[0, 0:2, 0:2].mean(), x[0, 0:2, 2:4].mean()], [x[0, 2:4, 0:2].mean(), x[0, 2:4, 2:4].mean()]])
  np.testing.assert_array_equal(resize.resize_images(x, 2, "area")[0, ..., 0], np.floor(blocks + 0.5))
  # antialiased bilinear halving: a triangle of radius 2 around output centres 0.5 and 2.5,
  # weights (1 - |d| / 2) at distances (0.5, 0.5, 1.5, 2.5), normalised: (3, 3, 1, 0) / 7
  w = np.array([[3, 3, 1, 0], [0, 1, 3, 3]]) / 7
  np.testing.assert_array_equal(resize.resize_images(x, 2, "bilinear")[0, ..., 0], np.floor(w @ x[0, ..., 0] @ w.T + 0.5))
  np.testing.assert_array_equal(resize.resize_images(x, 2, "nearest")[0, ..., 0].shape, (2, 2))
  wide = np.zeros((1, 4, 6, 1), np.uint8)
  wide[:, :, 1:5] = 200                                       # the centre 4x4 is all 200
  np.testing.assert_array_equal(resize.resize_images(wide, 4, "bicubic"), np.full((1, 4, 4, 1), 200, np.uint8))
  flat = np.full((1, 16, 16, 3), 99, np.uint8)                # every antialiased filter keeps a flat image
  for f in ("area", "bilinear", "bicubic", "lanczos3"):
    np.testing.assert_array_equal(resize.resize_images(flat, 5, f), np.full((1, 5, 5, 3), 99, np.uint8))
  np.testing.assert_array_equal(resize.resize_images(np.ones((1, 28, 28, 1), np.uint8), 32, "area")[0, :2], 0)
  with pytest.raises(DataError, match="data.resize_filter='cubic' is unknown; use one of area, bilinear"):
    resize.resize_images(x, 2, "cubic")


def test_held_out_split_is_deterministic_disjoint_and_stable(tmp_path):
  root = tmp_path / "flat"
  os.makedirs(root)
  for i in range(200):
    Image.new("RGB", (4, 4), (i, 0, 0)).save(root / f"{i:03d}.png")
  cfg = data_cfg(source="folder", path=str(root), eval_fraction=0.25)
  _, train, _ = folder.split_paths(cfg, "train")
  _, test, _ = folder.split_paths(cfg, "test")
  assert not set(train) & set(test) and sorted(train + test) == sorted(folder.list_images(str(root))[0])
  assert 30 <= len(test) <= 70   # 50 expected; the path hash decides
  assert folder.split_paths(cfg, "test")[1] == test
  images, _ = pipeline.load_split(cfg, "test", 4, 3)
  assert sorted(images[:, 0, 0, 0].tolist()) == sorted(int(p[:3]) for p in test)
  Image.new("RGB", (4, 4), (7, 7, 7)).save(root / "new.png")   # adding an image moves no other
  _, test2, _ = folder.split_paths(cfg, "test")
  assert set(test2) - {"new.png"} == set(test)
  none = data_cfg(source="folder", path=str(root), eval_fraction=0.0)
  with pytest.raises(DataError, match="has no 'test' folder and data.eval_fraction is 0"):
    folder.split_paths(none, "test")


def test_split_and_class_folders(tmp_path):
  for split, n in (("train", 3), ("test", 2)):
    for c, colour in (("cat", 10), ("dog", 200)):
      os.makedirs(tmp_path / split / c)
      for i in range(n):
        Image.new("RGB", (6, 6), (colour, i, 0)).save(tmp_path / split / c / f"{i}.png")
  cfg = data_cfg(source="folder", path=str(tmp_path))
  train, train_labels = pipeline.load_split(cfg, "train", 6, 3)
  test, test_labels = pipeline.load_split(cfg, "test", 6, 3)
  np.testing.assert_array_equal(train_labels, [0, 0, 0, 1, 1, 1])
  np.testing.assert_array_equal(test_labels, [0, 0, 1, 1])
  assert (test[test_labels == 1, 0, 0, 0] == 200).all()
  os.makedirs(tmp_path / "test" / "eel")
  Image.new("RGB", (6, 6)).save(tmp_path / "test" / "eel" / "0.png")
  with pytest.raises(DataError, match=r"has class folders \['eel'\] that .*train lacks"):
    pipeline.load_split(cfg, "test", 6, 3)
  Image.new("RGB", (6, 6)).save(tmp_path / "train" / "stray.png")
  with pytest.raises(DataError, match="holds both images .*stray.png.* and class folders"):
    pipeline.load_split(cfg, "train", 6, 3)


def test_unreadable_file_is_named_in_one_line_or_skipped_and_counted(tmp_path, capsys):
  root = tmp_path / "bad"
  os.makedirs(root)
  for i in range(3):
    Image.new("RGB", (4, 4), (i, i, i)).save(root / f"{i}.png")
  (root / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 10)
  cfg = data_cfg(source="folder", path=str(root), eval_fraction=0.0)
  with pytest.raises(DataError) as e:
    pipeline.load_split(cfg, "train", 4, 3)
  assert str(e.value).startswith(f"{root / '1.png'}: not a readable image") and "\n" not in str(e.value)
  cfg.skip_unreadable = True
  images, _ = pipeline.load_split(cfg, "train", 4, 3)
  assert len(images) == 2
  assert "skipped 1 of 3 images" in capsys.readouterr().err


def test_prepared_data_is_keyed_by_the_files_and_recorded(tmp_path):
  root = tmp_path / "f"
  os.makedirs(root)
  Image.new("RGB", (4, 4), (1, 2, 3)).save(root / "a.png")
  Image.new("RGB", (4, 4), (4, 5, 6)).save(root / "b.png")
  cfg = data_cfg(source="folder", path=str(root), eval_fraction=0.0)
  first, _ = pipeline.load_split(cfg, "train", 4, 3)
  record = pipeline.describe_source(cfg)
  assert record["num_files"] == 2 and not pipeline.source_changed(record)
  Image.new("RGB", (4, 4), (9, 9, 9)).save(root / "b.png")     # same names, other pixels
  again, _ = pipeline.load_split(cfg, "train", 4, 3)
  assert again[1, 0, 0].tolist() == [9, 9, 9] and first[1, 0, 0].tolist() == [4, 5, 6]
  assert "changed since the run read it" in pipeline.source_changed(record)


def test_a_colour_teacher_and_student_run_through_the_cli(tmp_path):
  """A generated folder of two colour classes at mixed sizes and modes: teacher, distilled
  student and their evaluation (scored on a domain classifier of the two classes)."""
  rng = np.random.default_rng(0)
  for c, base in (("red", (220, 40, 40)), ("blue", (40, 40, 220))):
    os.makedirs(tmp_path / "data" / c)
    for i in range(40):
      size = int(rng.choice([12, 16, 20]))
      noise = rng.integers(-20, 20, (size, size, 3))
      img = np.clip(np.asarray(base) + noise, 0, 255).astype(np.uint8)
      mode = "RGBA" if i % 2 else "RGB"
      im = Image.fromarray(img)
      (im.convert("RGBA") if mode == "RGBA" else im).save(tmp_path / "data" / c / f"{i}.png")
  env = dict(os.environ, GANDISTILL_CACHE=str(tmp_path / "cache"))
  sets = ["data.source='folder'", "data.name='colours'", f"data.path='{tmp_path / 'data'}'",
          "data.eval_fraction=0.25", "model.channels=3", "model.image_size=32", "train.steps=6",
          "train.sample_every=6", "train.ckpt_every=6", "train.batch_size=16"]
  def cli(*args):
    proc = subprocess.run([sys.executable, "-m", "gandistill_jax.cli", *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc
  flags = [x for s in sets for x in ("--set", s)]
  cli("train-teacher", "--config", "experiments/configs/quick.py", "--workdir", str(tmp_path / "t"), "--quiet", *flags)
  record = json.load(open(tmp_path / "t" / "data.json"))
  assert record["source"] == "folder" and record["num_files"] == 80 and record["image_shape"] == [32, 32, 3]
  cli("distill", "--config", "experiments/configs/fashion_mnist_distill.py", "--teacher", str(tmp_path / "t"),
      "--workdir", str(tmp_path / "s"), "--quiet", *flags, "--set", "model.g_width=4", "--set", "model.latent_dim=32")
  out = cli("eval", "--workdir", str(tmp_path / "s"), "--num", "64").stdout
  result = json.load(open(tmp_path / "s" / "eval.json"))
  assert result["features"] == "domain" and result["protocol"]["reference_split"] == "test"
  assert 10 <= result["protocol"]["reference"] <= 30 and np.isfinite(result["fid"]) and "pixel_l1" in result["fidelity"]
  assert "wrote" in out
