"""Numbers tied to the data they score: digests, shipped feature networks, caches keyed by
what was read, workdirs scored against their own data, and an EMA that fits the run."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import gandistill_jax as gd
from gandistill_jax import config as config_lib, loop, steps, tasks, workdir as workdir_lib
from gandistill_jax.data import arrays, idx
from gandistill_jax.data.errors import DataError
from gandistill_jax.eval import classifier, evaluate

from helpers import tiny_config


def labelled_images(n, seed, classes=3, size=28):
  """Images whose class is a bright square at one of `classes` places, plus noise."""
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % classes
  images = rng.integers(0, 60, (n, size, size, 1), dtype=np.uint8)
  for k in range(classes):
    images[labels == k, 4 + 6 * k:10 + 6 * k, 8:20] = 220
  return images, labels


def test_digest_ignores_order_but_not_pixels_labels_or_count():
  images, labels = labelled_images(50, 0)
  d = arrays.digest(images, labels)
  order = np.random.default_rng(1).permutation(50)
  assert arrays.digest(images[order], labels[order]) == d
  changed = images.copy()
  changed[7, 0, 0] ^= 1
  assert len({d, arrays.digest(changed, labels), arrays.digest(images, (labels + 1) % 3),
              arrays.digest(images[1:], labels[1:]), arrays.digest(images[..., 0], labels)}) == 5


def test_ema_warmup_is_tensorflows_num_updates_rule_and_the_old_rule_is_unchanged():
  for t, want in ((0, 0.1), (1, 2 / 11), (100, 101 / 110), (10_000, 0.999)):
    assert float(steps.ema_decay(t, 0.999, True)) == pytest.approx(want, rel=1e-6)
  assert steps.ema_decay(5, 0.999, False) == 0.999
  train = ml_collections.ConfigDict({"ema_decay": 0.999, "ema_warmup": True})
  params, ema = {"w": jnp.ones(3)}, {"w": jnp.zeros(3)}
  expect = 0.0
  for t in range(5):
    ema = steps.update_ema(params, ema, jnp.int32(t), train)
    d = min(0.999, (1 + t) / (10 + t))
    expect = d * expect + (1 - d)
  np.testing.assert_allclose(ema["w"], expect, rtol=1e-6)
  assert steps.ema_init_share(5, 0.999, True) == pytest.approx(1 - expect, rel=1e-6)
  assert steps.ema_init_share(200, 0.999, False) == pytest.approx(0.999 ** 200)
  assert steps.ema_init_share(200, 0.999, True) < 1e-3
  # without the warm-up: bit for bit the update runs made before it had
  train.ema_warmup = False
  p, e = {"w": jnp.linspace(-1, 1, 7)}, {"w": jnp.linspace(3, 2, 7)}
  np.testing.assert_array_equal(steps.update_ema(p, e, jnp.int32(3), train)["w"],
                                optax.incremental_update(p, e, 1.0 - 0.999)["w"])


def test_a_short_runs_ema_has_left_its_init_and_old_workdirs_keep_their_rule(tmp_path):
  images, labels = labelled_images(64, 0)
  c = tiny_config()
  c.train.update(steps=20, ckpt_every=20, sample_every=20, log_every=20)
  state = loop.train(c, str(tmp_path / "t"), tasks.gan_task(c), progress=False, data=(images, labels))
  moved = lambda ema, init: np.abs(np.asarray(ema) - np.asarray(init)).max()
  init = tasks.gan_task(c).init(loop.run_keys(c.seed)["init"])
  live_gap = max(jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max(),
                                                 state.g_ema, state.g_params)))
  init_gap = max(jax.tree.leaves(jax.tree.map(moved, state.g_ema, init.g_params)))
  assert live_gap < init_gap, "after 20 warm-up steps the EMA is nearer the live weights than its init"
  saved = json.load(open(tmp_path / "t" / "config.json"))
  del saved["train"]["ema_warmup"], saved["schema_version"]
  assert config_lib.migrate(saved)["train"]["ema_warmup"] is False
  assert config_lib.migrate(saved)["schema_version"] == config_lib.SCHEMA_VERSION


def test_distilling_a_teacher_whose_ema_barely_moved_warns(tmp_path, capsys):
  images, labels = labelled_images(64, 0)
  c = tiny_config()
  c.train.update(steps=4, ckpt_every=4, sample_every=4, log_every=4, ema_warmup=False)
  loop.train(c, str(tmp_path / "t"), tasks.gan_task(c), progress=False, data=(images, labels))
  capsys.readouterr()
  workdir_lib.load_teacher(str(tmp_path / "t"), c)
  err = capsys.readouterr().err
  assert "warning: the teacher's EMA generator" in err and "100% of its initial weights after 4 steps" in err


def test_shipped_networks_are_checked_and_a_flipped_byte_is_refused(tmp_path):
  records = [json.load(open(os.path.join(classifier.NETWORKS_DIR, n)))
             for n in sorted(os.listdir(classifier.NETWORKS_DIR)) if n.endswith(".json")]
  assert {r["name"] for r in records} >= {"fashion_mnist-28px-1ch", "fashion_mnist-32px-1ch"}
  for r in records:
    assert r["test_accuracy"] >= 0.89 and r["dtype"] == "float16"
    assert os.path.getsize(os.path.join(classifier.NETWORKS_DIR, r["name"] + ".msgpack")) < 1_500_000
  r = records[0]
  shape = tuple(r["input_shape"])
  net = classifier.shipped_network(shape, r["eval_data_sha256"])
  assert net.id == f"{r['name']}@{r['weights_sha256']}"
  assert classifier.shipped_network(shape, "0" * 64) is None, "other data never meets a shipped network"
  damaged = tmp_path / "networks"
  shutil.copytree(classifier.NETWORKS_DIR, damaged)
  weights = damaged / (r["name"] + ".msgpack")
  data = bytearray(weights.read_bytes())
  data[len(data) // 2] ^= 0x01
  weights.write_bytes(bytes(data))
  with pytest.raises(ValueError, match=f"{r['name']}.msgpack: feature network damaged"):
    classifier.shipped_network(shape, r["eval_data_sha256"], directory=str(damaged))


def npz_dataset(path, seed):
  train, train_labels = labelled_images(600, seed)
  test, test_labels = labelled_images(300, seed + 100)
  np.savez(path, train_images=train, train_labels=train_labels, test_images=test, test_labels=test_labels)
  return test, test_labels


@pytest.mark.slow
def test_own_data_under_fashion_mnists_name_is_scored_against_itself(tmp_path, fashion_mnist_eval):
  """The FID-1234.8 case: an npz left at the default name, evaluated after Fashion-MNIST's
  reference features are cached, through the library and a workdir's eval."""
  fm_config, fm_extractor, _ = fashion_mnist_eval
  c = tiny_config()
  c.data.update(source="npz", path=str(tmp_path / "mine.npz"))   # data.name stays 'fashion_mnist'
  c.eval.cache_dir = fm_config.eval.cache_dir                     # where Fashion-MNIST's features are cached
  test, test_labels = npz_dataset(c.data.path, 0)
  own = gd.evaluate(test, c)
  assert own["fid"] < 1 and own["protocol"]["reference_data"]["sha256"] == arrays.digest(test, test_labels)
  assert not own["protocol"]["feature_network"]["shipped"]
  assert own["protocol"]["feature_network"]["weights_sha256"] not in fm_extractor.id
  # through a workdir: trained on the npz, scored against its own test split
  c.train.update(steps=2, ckpt_every=2, sample_every=2, log_every=2)
  w = str(tmp_path / "t")
  loop.train(c, w, tasks.gan_task(c), progress=False)
  result = gd.evaluate(w, num=200)
  assert result["protocol"]["reference_data"]["sha256"] == own["protocol"]["reference_data"]["sha256"]
  assert result["protocol"]["feature_network"] == own["protocol"]["feature_network"]
  # other data at the same path: refused until asked for, then scored against it
  test2, labels2 = npz_dataset(c.data.path, 1)
  with pytest.raises(DataError, match="changed since the run read it.*--set data.path="):
    gd.evaluate(w, num=200)
  other = gd.evaluate(w, num=200, overrides=[f"data.path={c.data.path!r}"])
  assert other["protocol"]["reference_data"]["sha256"] == arrays.digest(test2, labels2)
  assert other["protocol"]["feature_network"]["weights_sha256"] != result["protocol"]["feature_network"]["weights_sha256"]


def test_a_workdir_trained_on_arrays_is_scored_against_them(tmp_path):
  images, labels = labelled_images(256, 0)
  c = tiny_config()
  c.train.update(steps=2, ckpt_every=2, sample_every=2, log_every=2)
  c.eval.cache_dir = str(tmp_path / "cache")
  w = str(tmp_path / "t")
  loop.train(c, w, tasks.gan_task(c), progress=False, data=(images, labels))
  record = json.load(open(os.path.join(w, "data.json")))
  assert record["source"] == "arrays" and record["train_sha256"] == arrays.digest(images, labels)
  result = gd.evaluate(w, num=100)
  assert result["protocol"]["reference_data"]["sha256"] == arrays.digest(images, labels)
  network = result["protocol"]["feature_network"]
  assert network["train_data_sha256"] == network["test_data_sha256"] == arrays.digest(images, labels), \
      "no held-out split: the protocol shows the accuracy is on the training data"
  with pytest.raises(ValueError, match="config= does not apply to a workdir"):
    gd.evaluate(w, config=c, num=100)
  held_out, held_labels = labelled_images(128, 5)
  explicit = gd.evaluate(w, num=100, data=(held_out, held_labels))
  assert explicit["protocol"]["reference_data"]["sha256"] == arrays.digest(held_out, held_labels)
  os.remove(os.path.join(w, "data.npz"))   # as a run from before the arrays were kept
  with pytest.raises(DataError, match=r"trained on the caller's arrays.*data=\(images, labels\)"):
    gd.evaluate(w, num=100)
  with pytest.raises(ValueError, match="no reference data"):
    gd.evaluate(images)
  with pytest.raises(DataError, match="no class labels"):
    gd.evaluate(images, data=images)


def test_a_reference_cache_that_records_other_data_or_network_is_never_served(tmp_path):
  images, labels = labelled_images(200, 0)
  ref = evaluate.reference_from_arrays((images, labels), 28, 1)
  cache = str(tmp_path / "cache")
  score = evaluate.scorer(ref, cache)
  [path] = [os.path.join(cache, n) for n in os.listdir(cache) if n.startswith("reference-")]
  np.savez(path, features=np.zeros_like(score.real), feature_network=np.array("another@net"),
           data_sha256=np.array(ref.digest))
  again = evaluate.scorer(ref, cache)
  np.testing.assert_array_equal(again.real, score.real)
  with np.load(path) as f:
    assert str(f["feature_network"]) == score.extractor.id, "rewritten for this network"


@pytest.mark.slow
def test_fashion_mnist_is_scored_by_the_shipped_network_under_any_name(tmp_path, fashion_mnist_eval):
  config, extractor, real = fashion_mnist_eval
  assert extractor.record["name"] == "fashion_mnist-28px-1ch" and "eval_data_sha256" in extractor.record
  test, test_labels = idx.load_idx_split(idx.DEBIAN_FASHION_MNIST, "test")
  np.savez(tmp_path / "fm.npz", train_images=test[:10], test_images=test, test_labels=test_labels)
  c = config_lib.base_config()
  c.model.update(image_size=28, channels=1)
  c.data.update(source="npz", name="anything", path=str(tmp_path / "fm.npz"))
  c.eval.cache_dir = str(tmp_path / "empty_cache")
  r = gd.evaluate(test, c)
  assert r["fid"] < 1 and r["protocol"]["feature_network"]["name"] == "fashion_mnist-28px-1ch"
  cached = os.listdir(tmp_path / "empty_cache")
  assert not [n for n in cached if n.startswith("classifier-")], f"nothing trained: {cached}"
