import chex
import jax
import numpy as np
import pytest

from gandistill_jax import models, parallel, steps
from gandistill_jax.data import toy
from helpers import teacher_setup, tiny_config, random_images


def run_steps(config, devices, batches):
  state, step, mesh = teacher_setup(config, devices)
  key = jax.random.key(42)
  for b in batches:
    state, metrics = step(state, parallel.host_to_global({"image": b}, mesh), key)
  return jax.device_get(state), jax.device_get(metrics)


@pytest.mark.parametrize("loss_kw", [
    dict(name="nonsaturating", n_critic=2, r1_gamma=1.0),
    dict(name="wgan", n_critic=1, gp_weight=10.0),
])
def test_one_two_and_eight_devices_give_the_same_state(loss_kw):
  config = tiny_config(d_spectral_norm=loss_kw["name"] == "wgan")
  config.loss.update(loss_kw)
  batches = [random_images(16 * config.loss.n_critic, seed=i) for i in range(3)]
  with jax.default_matmul_precision("highest"):
    results = [run_steps(config, jax.devices()[:n], batches) for n in (1, 2, 8)]
  (ref_state, ref_metrics), others = results[0], results[1:]
  assert int(ref_state.step) == 3
  for state, metrics in others:
    chex.assert_trees_all_close(state, ref_state, atol=1e-5, rtol=1e-4)
    chex.assert_trees_all_close(metrics, ref_metrics, atol=1e-5, rtol=1e-4)


def test_teacher_step_traces_once():
  config = tiny_config()
  gen, disc = models.build_generator(config.model), models.build_discriminator(config.model)
  state, _, mesh = teacher_setup(config, jax.devices()[:2])
  from gandistill_jax import state as state_lib
  g_tx = state_lib.adam(config.optim.g_lr, config.optim)
  d_tx = state_lib.adam(config.optim.d_lr, config.optim)
  chex.clear_trace_counter()
  step = parallel.jit_step(chex.assert_max_traces(steps.make_teacher_step(gen, disc, g_tx, d_tx, config), n=1), mesh)
  for i in range(5):
    state, _ = step(state, parallel.host_to_global({"image": random_images(16, seed=i)}, mesh), jax.random.key(0))
  assert int(state.step) == 5


def test_split_critic_batches_keeps_each_devices_rows():
  rows = np.arange(12)
  split = steps.split_critic_batches(rows, 3)
  np.testing.assert_array_equal(split, [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]])
  with pytest.raises(ValueError, match="not divisible by loss.n_critic=5"):
    steps.split_critic_batches(rows, 5)


# hinge is checked in bf16 only (CI time): the casts touch G and D, not the loss
@pytest.mark.parametrize("loss,dtype", [("nonsaturating", "float32"), ("hinge", "bfloat16")])
def test_mlp_teacher_covers_the_ring_of_gaussians(loss, dtype):
  config = tiny_config(family="mlp", latent_dim=64, g_width=128, d_width=128)
  config.loss.update(name=loss, r1_gamma=0.1)
  config.train.compute_dtype = dtype
  config.optim.update(g_lr=1e-3, d_lr=1e-3)
  config.train.ema_decay = 0.99
  state, step, mesh = teacher_setup(config, jax.devices()[:1])
  key = jax.random.key(1)
  for i in range(6000):
    state, _ = step(state, {"image": toy.ring_batch(0, i, 256)}, key)
  gen = models.build_generator(config.model)
  samples = gen.apply({"params": state.g_ema}, steps.sample_latent(jax.random.key(5), 2500, 64))
  modes, quality = toy.mode_coverage(np.asarray(samples))
  assert modes >= 7 and quality >= 0.7, (modes, quality)


@pytest.mark.parametrize("d_batch_norm", [False, True])
def test_bfloat16_dcgan_step_stays_close_to_float32(d_batch_norm):
  """Every convolution of the bf16 step (forward and backward) computes in bf16; two steps
  from the same state: losses within 3% and parameter updates pointing the same way
  (cosine > 0.9) as fp32's; parameters, optimizer state, EMA and batch-norm statistics stay fp32."""
  results, bf16_convolutions = {}, {}
  for dtype in ("float32", "bfloat16"):
    config = tiny_config(g_width=8, d_width=8, d_batch_norm=d_batch_norm)
    config.train.compute_dtype = dtype
    state, step, mesh = teacher_setup(config, jax.devices()[:1])
    start = jax.device_get(state)
    hlo = step.lower(state, parallel.host_to_global({"image": random_images(16)}, mesh), jax.random.key(3)).as_text()
    convs = [line for line in hlo.splitlines() if "convolution" in line]
    bf16_convolutions[dtype] = sum("bf16" in line for line in convs) / len(convs)
    for i in range(2):
      state, metrics = step(state, parallel.host_to_global({"image": random_images(16, seed=i)}, mesh), jax.random.key(3))
    results[dtype] = (start, jax.device_get(state), jax.device_get(metrics))
  assert bf16_convolutions == {"float32": 0.0, "bfloat16": 1.0}, bf16_convolutions   # every conv, fwd and bwd
  (start, ref, ref_m), (_, low, low_m) = results["float32"], results["bfloat16"]
  assert {x.dtype for x in jax.tree.leaves(low) if np.issubdtype(x.dtype, np.floating)} == {np.dtype(np.float32)}
  for k in ref_m:
    np.testing.assert_allclose(low_m[k], ref_m[k], rtol=0.03, atol=0.03, err_msg=k)
  for name in ("g_params", "d_params"):
    delta = lambda s: np.concatenate([np.ravel(a - b) for a, b in zip(jax.tree.leaves(getattr(s, name)),
                                                                      jax.tree.leaves(getattr(start, name)))])
    a, b = delta(ref), delta(low)
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.9, name
