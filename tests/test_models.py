import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gandistill_jax import config as config_lib, models
from gandistill_jax.models import dcgan


def model_cfg(**kw):
  cfg = config_lib.base_config().model
  cfg.update(kw)
  return cfg


@pytest.mark.parametrize("size, channels", [(28, 1), (32, 3), (64, 3)])
@pytest.mark.parametrize("width", [4, 16])
def test_dcgan_shapes_and_features(size, channels, width):
  cfg = model_cfg(image_size=size, channels=channels, g_width=width, d_width=width)
  gen, disc = models.build_generator(cfg), models.build_discriminator(cfg)
  z = jnp.ones((3, cfg.latent_dim))
  g_vars = models.init_variables(gen, jax.random.key(0), z)
  img, g_feats = gen.apply(g_vars, z, return_features=True)
  assert img.shape == (3, size, size, channels)
  assert float(jnp.abs(img).max()) <= 1.0
  n_up = {28: 2, 32: 3, 64: 4}[size]
  assert [f.shape[-1] for f in g_feats] == [width * 2**(n_up - 1 - i) for i in range(n_up)]
  assert g_feats[-1].shape[1] == size // 2
  d_vars = models.init_variables(disc, jax.random.key(1), img)
  logits, d_feats = disc.apply(d_vars, img, return_features=True)
  assert logits.shape == (3,)
  assert [f.shape[1] for f in d_feats] == [size // 2**(i + 1) for i in range(n_up)]


def assert_same_train_map(loss_a, loss_b, params):
  """Two forms of one network, each given as params -> (scalar loss, batch-norm statistics),
  have the same loss, statistics and parameter gradients (at full matmul precision)."""
  with jax.default_matmul_precision("highest"):
    (l_a, s_a), g_a = jax.value_and_grad(loss_a, has_aux=True)(params)
    (l_b, s_b), g_b = jax.value_and_grad(loss_b, has_aux=True)(params)
  np.testing.assert_allclose(l_a, l_b, rtol=1e-5)
  for a, b in zip(jax.tree.leaves((g_a, s_a)), jax.tree.leaves((g_b, s_b))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [28, 32])
def test_dcgan_default_training_forms_are_the_phase_form(size):
  """The generator's default UpConv forms in training (dcgan.default_upsample) compute the
  same images, batch-norm statistics and parameter gradients as phase everywhere."""
  gen = models.build_generator(model_cfg(image_size=size, g_width=8))
  n = dcgan.default_num_up(size)
  assert set(dcgan.default_upsample(n, train=True)) != {"phase"}
  phase = gen.clone(upsample=("phase",) * n)
  z = jax.random.normal(jax.random.key(0), (4, 100))
  variables = models.init_variables(gen, jax.random.key(1), z)
  def convolutions(g, train):   # im2col layers are matmuls: only phase layers convolve
    jaxpr = jax.make_jaxpr(lambda v: g.apply(v, z, train=train, mutable=["batch_stats"]))(variables)
    return str(jaxpr).count("conv_general_dilated")
  assert convolutions(gen, train=True) == 1 and convolutions(phase, train=True) == n
  assert convolutions(gen, train=False) == n
  def loss(g, params):
    img, stats = g.apply({"params": params, "batch_stats": variables["batch_stats"]}, z, train=True,
                         mutable=["batch_stats"])
    return jnp.sum(jnp.sin(3 * img)), stats
  assert_same_train_map(lambda p: loss(gen, p), lambda p: loss(phase, p), variables["params"])


@pytest.mark.parametrize("size", [28, 32])
def test_dcgan_discriminator_default_slices_are_the_whole_batch_map(size):
  """The discriminator's default convolution slices (dcgan.default_conv_chunk, over every
  device's share of the batch) give the logits, batch-norm statistics and parameter
  gradients of whole-batch convolutions, in train mode with batch norm."""
  disc = models.build_discriminator(model_cfg(image_size=size, d_width=64, d_batch_norm=True))
  chunk = dcgan.default_conv_chunk(64)
  assert chunk > 0 and dcgan.default_conv_chunk(32) == 0   # on CPU: the teacher's D slices all but its first convolution
  # the batch below gives every device two slices
  x = jax.random.uniform(jax.random.key(0), (2 * chunk * jax.device_count(), size, size, 1), minval=-1, maxval=1)
  variables = models.init_variables(disc, jax.random.key(1), x[:2])
  whole = disc.clone(conv_chunk=0)
  def loss(d, params):
    logits, stats = d.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
                            mutable=["batch_stats"])
    return jnp.sum(jnp.sin(logits)), stats
  convolutions = lambda d: str(jax.make_jaxpr(lambda p: loss(d, p))(variables["params"])).count("conv_general_dilated")
  n = dcgan.default_num_up(size)
  assert convolutions(whole) == n and convolutions(disc) == 1 + 2 * (n - 1)
  assert_same_train_map(lambda p: loss(disc, p), lambda p: loss(whole, p), variables["params"])


def test_teacher_param_count_matches_the_pytorch_reference_family():
  # 28x28, width 64, latent 100: projection 627,200 + its bias 6,272 + BN + 131,072 + 1,025 (+ BN):
  # the reference's 766k (DESIGN.md); without the bias (model.g_proj_bias=False, runs before it) 6,272 fewer.
  counts = {}
  for bias in (True, False):
    cfg = model_cfg(image_size=28, g_width=64, g_proj_bias=bias)
    g_vars = models.init_variables(models.build_generator(cfg), jax.random.key(0), jnp.ones((1, 100)))
    counts[bias] = models.param_count(g_vars["params"])
  assert counts == {True: 627_200 + 6_272 + 256 + 131_072 + 128 + 1_025, False: 627_200 + 256 + 131_072 + 128 + 1_025}


def test_low_rank_projection_shrinks_small_students():
  full = model_cfg(image_size=28, g_width=4)
  low = model_cfg(image_size=28, g_width=4, proj_rank=16)
  count = lambda c: models.param_count(models.init_variables(
      models.build_generator(c), jax.random.key(0), jnp.ones((1, 100)))["params"])
  assert count(low) == count(full) - 100 * 7 * 7 * 8 + 100 * 16 + 16 * 7 * 7 * 8


@pytest.mark.parametrize("family", ["dcgan", "mobile"])
def test_low_rank_factors_start_at_the_full_rank_init_variance(family):
  """proj_init='matched': A ~ N(0, 1/d_z), B ~ N(0, 0.02^2 d_z / r), so the product A B has the
  full-rank projection's N(0, 0.02^2) entry variance; 'dcgan' (older runs) gives r 0.02^4."""
  def product_std(**kw):
    cfg = model_cfg(family=family, image_size=28, g_width=8, **kw)
    p = models.init_variables(models.build_generator(cfg), jax.random.key(0), jnp.ones((1, 100)))["params"]
    return float(jnp.std(dcgan.projection_matrix(p))), p
  full, _ = product_std()
  matched, p = product_std(proj_rank=12, proj_init="matched")
  legacy, _ = product_std(proj_rank=12, proj_init="dcgan")
  np.testing.assert_allclose(full, 0.02, rtol=0.02)
  np.testing.assert_allclose(matched, 0.02, rtol=0.1)
  np.testing.assert_allclose(float(jnp.std(p["proj_low_rank"]["kernel"])), 0.1, rtol=0.1)
  gen = models.build_generator(model_cfg(family=family, image_size=28, g_width=8, proj_rank=12))
  variables = models.init_variables(gen, jax.random.key(0), jnp.ones((1, 100)))
  z = jax.random.normal(jax.random.key(1), (4, 100))
  _, inter = gen.apply(variables, z, capture_intermediates=True, mutable=["intermediates"])
  w = dcgan.projection_matrix(variables["params"])   # the map the generator applies to z
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(inter["intermediates"]["proj"]["__call__"][0],
                               z @ w + variables["params"]["proj"].get("bias", 0.0), rtol=1e-5, atol=1e-6)
  assert np.linalg.matrix_rank(np.asarray(w)) == 12
  np.testing.assert_allclose(legacy, 0.02 ** 2 * 12 ** 0.5, rtol=0.1)
  with pytest.raises(ValueError, match="model.proj_init='xavier' is unknown"):
    product_std(proj_rank=12, proj_init="xavier")


def test_spectral_norm_discriminator_keeps_its_power_iteration_state():
  cfg = model_cfg(d_spectral_norm=True, d_width=8)
  disc = models.build_discriminator(cfg)
  variables = models.init_variables(disc, jax.random.key(0), jnp.ones((2, 32, 32, 1)))
  assert variables["batch_stats"], "spectral norm stores u/sigma in 'batch_stats'"
  _, updates = disc.apply(variables, jnp.ones((2, 32, 32, 1)), train=True, mutable=["batch_stats"])
  assert jax.tree.structure(updates["batch_stats"]) == jax.tree.structure(variables["batch_stats"])


def test_mlp_pair_shapes():
  cfg = model_cfg(family="mlp", latent_dim=8, g_width=32, d_width=32)
  gen, disc = models.build_generator(cfg), models.build_discriminator(cfg)
  z = jnp.ones((5, 8))
  out = gen.apply(models.init_variables(gen, jax.random.key(0), z), z)
  assert out.shape == (5, 2)
  assert disc.apply(models.init_variables(disc, jax.random.key(0), out), out).shape == (5,)


@pytest.mark.parametrize("kw, match", [
    (dict(image_size=30), "image_size=30 is not supported"),
    (dict(family="stylegan"), "model.family='stylegan' is unknown"),
    (dict(image_size=28, num_up=3), "not divisible by 2\\*\\*num_up=8"),
])
def test_bad_model_configs_are_clear_errors(kw, match):
  cfg = model_cfg(**kw)
  with pytest.raises(ValueError, match=match):
    gen = models.build_generator(cfg)
    models.init_variables(gen, jax.random.key(0), jnp.ones((1, 100)))
