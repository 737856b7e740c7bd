import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from gandistill_jax import config as config_lib, models
from gandistill_jax.eval import classifier, efficiency, evaluate, metrics


def test_fid_of_a_set_with_itself_is_zero_and_matches_scipys_formula():
  rng = np.random.default_rng(0)
  a = rng.standard_normal((2000, 8))
  b = rng.standard_normal((2000, 8)) @ np.diag(np.linspace(0.5, 2, 8)) + 0.3
  assert abs(metrics.fid(a, a)) < 1e-6
  mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
  expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
  np.testing.assert_allclose(metrics.fid(a, b), expected, rtol=1e-8)
  # and the closed form for diagonal covariances
  closed = np.sum((mu1 - mu2) ** 2)
  assert metrics.fid(a, b) > closed


def test_kid_is_unbiased_on_equal_distributions():
  rng = np.random.default_rng(1)
  values = [metrics.kid(rng.standard_normal((300, 16)), rng.standard_normal((300, 16)), subsets=10, subset_size=100,
                        seed=s)[0] for s in range(20)]
  assert abs(np.mean(values)) < 3 * np.std(values) / np.sqrt(len(values)) + 1e-4
  different, se = metrics.kid(rng.standard_normal((300, 16)), rng.standard_normal((300, 16)) + 1.0, 10, 100)
  assert different > 10 * se > 0


def test_precision_recall_density_coverage_on_hand_made_sets():
  grid = np.array([[x, y] for x in range(10) for y in range(10)], float)
  same = metrics.prdc(grid, grid + 1e-3)
  assert same["precision"] == same["recall"] == same["coverage"] == 1.0
  assert 0.9 < same["density"] < 1.5
  far = metrics.prdc(grid, grid + 100.0)
  assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
  half = metrics.prdc(grid, grid[grid[:, 0] < 5] - 1e-3)  # fakes cover only the left half
  assert half["precision"] == 1.0 and half["coverage"] == 0.5
  assert 0.4 <= half["recall"] <= 0.6


def test_classifier_score_and_class_coverage():
  confident_uniform = np.eye(10)[np.arange(1000) % 10] * 50
  np.testing.assert_allclose(metrics.classifier_score(confident_uniform), 10.0, rtol=1e-6)
  one_class = np.eye(10)[np.zeros(1000, int)] * 50
  np.testing.assert_allclose(metrics.classifier_score(one_class), 1.0, rtol=1e-6)
  assert metrics.class_coverage(one_class, 10) == {"classes_covered": 1, "class_tv_to_uniform": pytest.approx(0.9)}


def test_efficiency_is_positive_and_conv_flops_grow_about_4x_with_width():
  def flops(width):
    cfg = config_lib.base_config().model
    cfg.update(image_size=32, g_width=width)
    gen = models.build_generator(cfg)
    v = models.init_variables(gen, jax.random.key(0), jnp.zeros((1, 100)))
    return efficiency.efficiency(gen, v, 100, batch=16, repeats=3)
  small, big = flops(16), flops(32)
  for e in (small, big):
    assert e["params"] > 0 and e["flops_per_sample"] > 0 and e["latency_ms_batch1"] > 0
    assert e["samples_per_s_batch16"] > 0
  proj = 2 * 100 * 4 * 4 * 4  # the latent projection grows only linearly with width
  ratio = (big["flops_per_sample"] - 2 * proj * 32) / (small["flops_per_sample"] - 2 * proj * 16)
  assert 3.3 < ratio < 4.3, ratio


@pytest.mark.slow
def test_domain_classifier_reaches_90_percent_on_real_fashion_mnist(fashion_mnist_eval):
  config, extractor, real = fashion_mnist_eval
  assert extractor.test_accuracy >= 0.90 and real.shape == (10000, classifier.FEATURE_DIM)
  cached = evaluate.reference(config)
  assert cached.extractor.id == extractor.id and cached.extractor.record["eval_data_sha256"], "the shipped network"
  np.testing.assert_array_equal(cached.real, real)


def test_time_call_times_back_to_back_calls_per_call():
  calls = []
  def fn(x):
    calls.append(1)
    time.sleep(0.002)
    return x
  times = efficiency.time_call(fn, jnp.zeros(3), repeats=4, warmup=1, min_seconds=0.02)
  assert len(times) == 4 and all(0.002 <= t < 0.05 for t in times)
  # warm-up 1 call, calibration runs of 1, 2, ..., c calls, then 4 timings of c calls each; a call
  # sleeps >= 2 ms, so the run of c / 2 calls that fell short of 20 ms means c <= 16
  c = len(calls) // 6
  assert len(calls) == 1 + (2 * c - 1) + 4 * c and c in (1, 2, 4, 8, 16)
  calls.clear()
  assert len(efficiency.time_call(fn, jnp.zeros(3), repeats=3, warmup=0)) == 3 and len(calls) == 3
