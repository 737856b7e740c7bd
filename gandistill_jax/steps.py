"""Pure, jit-able train steps: (state, batch, rng) -> (state, metrics). No I/O, no clock.

Randomness: the step folds `state.step` into the run's key, so a step's randomness is
a function of (seed, step) alone, which is what makes killed runs resume bitwise.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from gandistill_jax import losses
from gandistill_jax.state import GANState


def apply_model(module: nn.Module, params, stats, x, train: bool, **kwargs):
  """module.apply with the 'batch_stats' collection; returns (output, new_stats).

  In train mode the collection is mutable (batch norm updates its running averages,
  spectral norm its power iteration); otherwise it is read only and returned as is.
  """
  variables = {"params": params, "batch_stats": stats} if stats else {"params": params}
  if train and stats:
    out, updates = module.apply(variables, x, train=True, mutable=["batch_stats"], **kwargs)
    return out, updates["batch_stats"]
  return module.apply(variables, x, train=train, **kwargs), stats


def sample_latent(rng: jax.Array, batch: int, latent_dim: int) -> jax.Array:
  """z ~ N(0, I)."""
  return jax.random.normal(rng, (batch, latent_dim), jnp.float32)


def split_critic_batches(real: jax.Array, n_critic: int) -> jax.Array:
  """(n_critic * B, ...) -> (n_critic, B, ...) without moving data between devices.

  Row b * n_critic + i goes to critic update i. Each device holds a contiguous block of
  rows, i.e. whole groups of n_critic consecutive rows, so the reshape and the axis swap
  stay local to every device when the batch is sharded along its first axis.
  """
  if real.shape[0] % n_critic:
    raise ValueError(f"global batch {real.shape[0]} is not divisible by loss.n_critic={n_critic}")
  b = real.shape[0] // n_critic
  return real.reshape((b, n_critic) + real.shape[1:]).swapaxes(0, 1)


def make_d_update(disc: nn.Module, d_tx: optax.GradientTransformation, loss_cfg: ml_collections.ConfigDict):
  """One discriminator update on (real, fake): returns update(d_params, d_stats, d_opt, real, fake, key)."""
  adv = losses.adversarial(loss_cfg.name)
  gp_weight, r1_gamma = loss_cfg.get("gp_weight", 0.0), loss_cfg.get("r1_gamma", 0.0)

  def update(d_params, d_stats, d_opt, real, fake, key):
    def loss_fn(params):
      logits, stats = apply_model(disc, params, d_stats, jnp.concatenate([real, fake]), train=True)
      real_logits, fake_logits = jnp.split(logits, 2)
      loss = adv.d_loss(real_logits, fake_logits)
      d_fn = lambda x: apply_model(disc, params, stats, x, train=False)[0]
      metrics = {"d_loss": loss, "d_real": jnp.mean(real_logits), "d_fake": jnp.mean(fake_logits)}
      if gp_weight:
        metrics["gp"] = losses.gradient_penalty(d_fn, real, fake, key)
        loss = loss + gp_weight * metrics["gp"]
      if r1_gamma:
        metrics["r1"] = losses.r1_penalty(d_fn, real)
        loss = loss + r1_gamma * metrics["r1"]
      return loss, (stats, metrics)

    grads, (stats, metrics) = jax.grad(loss_fn, has_aux=True)(d_params)
    updates, d_opt = d_tx.update(grads, d_opt, d_params)
    return optax.apply_updates(d_params, updates), stats, d_opt, metrics

  return update


def make_teacher_step(gen: nn.Module, disc: nn.Module, g_tx: optax.GradientTransformation,
                      d_tx: optax.GradientTransformation, config: ml_collections.ConfigDict
                      ) -> Callable[[GANState, dict, jax.Array], tuple[GANState, dict]]:
  """Adversarial step: `loss.n_critic` D updates, then one G update and the EMA update.

  batch["image"] holds n_critic * B real samples; critic update i sees rows i, i + n, ...
  (see `split_critic_batches`) and a fresh z. G's batch-norm statistics are updated by
  the G pass only. Used for teachers and for the from-scratch student baseline.
  """
  loss_cfg, latent_dim = config.loss, config.model.latent_dim
  n_critic, ema_decay = loss_cfg.get("n_critic", 1), config.train.ema_decay
  adv = losses.adversarial(loss_cfg.name)
  d_update = make_d_update(disc, d_tx, loss_cfg)

  def step(state: GANState, batch: dict, rng: jax.Array) -> tuple[GANState, dict]:
    key = jax.random.fold_in(rng, state.step)
    d_key, g_key = jax.random.split(key)
    reals = split_critic_batches(batch["image"], n_critic)
    b = reals.shape[1]

    # A Python loop, not lax.scan: n_critic is small and XLA:CPU runs convolutions inside
    # a while loop ~50x slower than unrolled ones (measured on this DCGAN step).
    d_params, d_stats, d_opt = state.d_params, state.d_stats, state.d_opt
    for real, k in zip(reals, jax.random.split(d_key, n_critic)):
      z_key, gp_key = jax.random.split(k)
      fake, _ = apply_model(gen, state.g_params, state.g_stats, sample_latent(z_key, b, latent_dim), train=True)
      d_params, d_stats, d_opt, d_metrics = d_update(d_params, d_stats, d_opt, real,
                                                     jax.lax.stop_gradient(fake), gp_key)

    z = sample_latent(g_key, b, latent_dim)
    def g_loss_fn(g_params):
      fake, g_stats = apply_model(gen, g_params, state.g_stats, z, train=True)
      logits, _ = apply_model(disc, d_params, d_stats, fake, train=False)
      return adv.g_loss(logits), g_stats

    (g_loss, g_stats), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.g_params)
    updates, g_opt = g_tx.update(grads, state.g_opt, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    g_ema = optax.incremental_update(g_params, state.g_ema, 1.0 - ema_decay)
    new_state = state.replace(step=state.step + 1, g_params=g_params, g_stats=g_stats, g_opt=g_opt,
                              g_ema=g_ema, d_params=d_params, d_stats=d_stats, d_opt=d_opt)
    metrics = d_metrics | {"g_loss": g_loss}
    return new_state, metrics

  return step


def recompute_batch_stats(gen: nn.Module, params, stats, rng: jax.Array, latent_dim: int,
                          num: int = 1024):
  """Batch-norm statistics of `params` (e.g. the EMA weights) on `num` fresh z.

  Running statistics belong to the weights that produced them; EMA weights need their
  own before they sample or teach. With momentum 0 one train-mode pass over a large
  batch sets the running mean/var to that batch's statistics.
  """
  if not stats:
    return stats
  z = sample_latent(rng, num, latent_dim)
  _, new_stats = apply_model(gen.clone(bn_momentum=0.0), params, stats, z, train=True)
  return new_stats
