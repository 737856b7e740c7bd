"""Pure, jit-able train steps: (state, batch, rng) -> (state, metrics). No I/O, no clock.

Randomness: the step folds `state.step` into the run's key, so a step's randomness is
a function of (seed, step) alone, which is what makes killed runs resume bitwise.

Mixed precision (`train.compute_dtype='bfloat16'`, Micikevicius et al. 2018 without loss
scaling, which bfloat16's fp32 exponent range makes unnecessary): G and D run on bfloat16
copies of their fp32 parameters and inputs, so convolutions and activations are bfloat16;
their outputs come back as fp32, so losses, gradients (through the casts), optimizer
states, the EMA and batch-norm statistics (which flax reduces in fp32) stay fp32.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from gandistill_jax import losses
from gandistill_jax.state import GANState


def cast_floats(tree, dtype):
  """The pytree with its floating-point leaves cast to `dtype` (others as they are)."""
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def apply_model(module: nn.Module, params, stats, x, train: bool, compute_dtype: str = "float32", **kwargs):
  """module.apply with the 'batch_stats' collection; returns (output, new_stats).

  In train mode the collection is mutable (batch norm updates its running averages,
  spectral norm its power iteration); otherwise it is read only and returned as is.
  With a `compute_dtype` other than float32 the module computes on cast copies of
  `params` and `x`; its outputs come back as float32 and new statistics in their own dtype.
  """
  mixed = compute_dtype != "float32"
  if mixed:
    params, x = cast_floats(params, compute_dtype), cast_floats(x, compute_dtype)
  variables = {"params": params, "batch_stats": stats} if stats else {"params": params}
  if train and stats:
    out, updates = module.apply(variables, x, train=True, mutable=["batch_stats"], **kwargs)
    new_stats = jax.tree.map(lambda new, old: new.astype(old.dtype), updates["batch_stats"], stats)
  else:
    out, new_stats = module.apply(variables, x, train=train, **kwargs), stats
  return (cast_floats(out, jnp.float32) if mixed else out), new_stats


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


def uses_batch_norm(disc: nn.Module) -> bool:
  """Whether D normalises by batch statistics (then real and fake go through it apart)."""
  return bool(getattr(disc, "batch_norm", False))


def apply_disc(disc: nn.Module, params, stats, x, compute_dtype: str = "float32", **kwargs):
  """D on a batch the generator is scored on: in train mode when D uses batch norm (a batch
  is normalised by its own statistics, as in the D update), else in inference mode. D's
  state is owned by its own update, so any statistics computed here are dropped."""
  return apply_model(disc, params, stats, x, train=uses_batch_norm(disc), compute_dtype=compute_dtype, **kwargs)[0]


def make_d_update(disc: nn.Module, d_tx: optax.GradientTransformation, loss_cfg: ml_collections.ConfigDict,
                  compute_dtype: str = "float32"):
  """One discriminator update: returns update(d_params, d_stats, d_opt, reals, fake, key).

  `reals` is a list of (batch, weight) that D learns to call real against `fake`:
  L_D = sum_i w_i L_adv(D(real_i), D(fake)) (+ penalties on the first real batch). A teacher
  step passes [(data, 1)]; TinyGAN-style distillation passes [(teacher images, 1),
  (data, 0.2)]. A D without batch norm sees all batches concatenated; a D with batch norm
  sees each batch on its own (Radford et al. 2016), reals first.
  """
  adv = losses.adversarial(loss_cfg.name)
  gp_weight, r1_gamma = loss_cfg.gp_weight, loss_cfg.r1_gamma
  separate = uses_batch_norm(disc)
  if separate and (gp_weight or r1_gamma):
    raise ValueError("model.d_batch_norm=True cannot be combined with loss.gp_weight or loss.r1_gamma "
                     "(batch norm mixes samples, the penalties need per-sample gradients); use "
                     "model.d_spectral_norm=True instead")

  def update(d_params, d_stats, d_opt, reals, fake, key):
    real = reals[0][0]
    def loss_fn(params):
      batches = [x for x, _ in reals] + [fake]
      if separate:
        logits, stats = [], d_stats
        for x in batches:
          out, stats = apply_model(disc, params, stats, x, train=True, compute_dtype=compute_dtype)
          logits.append(out)
      else:
        out, stats = apply_model(disc, params, d_stats, jnp.concatenate(batches), train=True,
                                 compute_dtype=compute_dtype)
        logits = jnp.split(out, np.cumsum([x.shape[0] for x in batches])[:-1])
      fake_logits = logits[-1]
      loss = sum(w * adv.d_loss(l, fake_logits) for (_, w), l in zip(reals, logits))
      d_fn = lambda x: apply_model(disc, params, stats, x, train=False, compute_dtype=compute_dtype)[0]
      metrics = {"d_loss": loss, "d_real": jnp.mean(logits[0]), "d_fake": jnp.mean(fake_logits)}
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
  the G pass only.

  `loss.reuse_fake`: the G update scores the last critic update's fake batch against the
  updated D instead of drawing a new one, as the PyTorch DCGAN example does. G then runs
  forward once per step: the G forward is kept as a VJP, D's update uses its output under
  stop_gradient, and G's gradient is that VJP applied to dL_G/dfake. The batch-norm
  statistics G keeps are those of that one pass. Used for teachers and for the
  from-scratch student baseline.
  """
  loss_cfg, latent_dim = config.loss, config.model.latent_dim
  n_critic = loss_cfg.n_critic
  reuse_fake = loss_cfg.reuse_fake
  dtype = config.train.compute_dtype
  adv = losses.adversarial(loss_cfg.name)
  d_update = make_d_update(disc, d_tx, loss_cfg, dtype)

  def step(state: GANState, batch: dict, rng: jax.Array) -> tuple[GANState, dict]:
    key = jax.random.fold_in(rng, state.step)
    d_key, g_key = jax.random.split(key)
    reals = split_critic_batches(batch["image"], n_critic)
    b = reals.shape[1]
    g_fwd = lambda g_params, z: apply_model(gen, g_params, state.g_stats, z, train=True, compute_dtype=dtype)

    # A Python loop, not lax.scan: n_critic is small and XLA:CPU runs convolutions inside
    # a while loop ~50x slower than unrolled ones (measured on this DCGAN step).
    d_params, d_stats, d_opt = state.d_params, state.d_stats, state.d_opt
    for i, (real, k) in enumerate(zip(reals, jax.random.split(d_key, n_critic))):
      z_key, gp_key = jax.random.split(k)
      z = sample_latent(z_key, b, latent_dim)
      if reuse_fake and i == n_critic - 1:
        fake, g_vjp, g_stats = jax.vjp(lambda p: g_fwd(p, z), state.g_params, has_aux=True)
      else:
        fake, _ = g_fwd(state.g_params, z)
      d_params, d_stats, d_opt, d_metrics = d_update(d_params, d_stats, d_opt, [(real, 1.0)],
                                                     jax.lax.stop_gradient(fake), gp_key)

    score = lambda x: adv.g_loss(apply_disc(disc, d_params, d_stats, x, compute_dtype=dtype))
    if reuse_fake:
      g_loss, d_fake = jax.value_and_grad(score)(fake)
      (grads,) = g_vjp(d_fake)
    else:
      z = sample_latent(g_key, b, latent_dim)
      def g_loss_fn(g_params):
        fake, g_stats = g_fwd(g_params, z)
        return score(fake), g_stats
      (g_loss, g_stats), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.g_params)

    updates, g_opt = g_tx.update(grads, state.g_opt, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    g_ema = update_ema(g_params, state.g_ema, state.step, config.train)
    new_state = state.replace(step=state.step + 1, g_params=g_params, g_stats=g_stats, g_opt=g_opt,
                              g_ema=g_ema, d_params=d_params, d_stats=d_stats, d_opt=d_opt)
    metrics = d_metrics | {"g_loss": g_loss}
    return new_state, metrics

  return step


def ema_decay(step, decay: float, warmup: bool):
  """The EMA's decay at update `step` (0 for the first update).

  With `warmup` it is min(decay, (1 + t) / (10 + t)), the num_updates rule of TensorFlow's
  ExponentialMovingAverage: early updates move the average fast (0.1 at t = 0, 0.91 at
  t = 100), so a short run's EMA is not its initialisation. Without it, the fixed `decay`
  leaves decay^t of the initial weights in the average (82% after 200 steps at 0.999).
  """
  if not warmup:
    return decay
  t = jnp.asarray(step, jnp.float32)
  return jnp.minimum(jnp.float32(decay), (1.0 + t) / (10.0 + t))


def ema_init_share(steps_done: int, decay: float, warmup: bool) -> float:
  """The weight the initial parameters still have in the EMA after `steps_done` updates:
  prod_t ema_decay(t). Warns of a teacher whose EMA has barely moved."""
  if not warmup:
    return float(decay) ** steps_done
  t = np.arange(steps_done, dtype=np.float64)
  return float(np.prod(np.minimum(decay, (1.0 + t) / (10.0 + t))))


def update_ema(params, ema, step, train_cfg):
  """ema <- d ema + (1 - d) params, with d = ema_decay(step, train.ema_decay, train.ema_warmup)."""
  if not train_cfg.ema_warmup:   # the Python-float arithmetic of runs made before the warm-up, bit for bit
    return optax.incremental_update(params, ema, 1.0 - train_cfg.ema_decay)
  return optax.incremental_update(params, ema, 1.0 - ema_decay(step, train_cfg.ema_decay, True))


def recompute_batch_stats(gen: nn.Module, params, stats, rng: jax.Array, latent_dim: int,
                          num: int = 1024):
  """Batch-norm statistics of `params` (e.g. the EMA weights) on `num` fresh z.

  Running statistics belong to the weights that produced them; EMA weights need their
  own before they sample or teach. With momentum 0 one train-mode pass over a large
  batch sets the running mean/var to that batch's statistics.
  """
  if not stats:
    return stats
  if "bn_momentum" not in {f.name for f in dataclasses.fields(gen)}:
    raise ValueError(f"{type(gen).__name__} has batch norm but no bn_momentum field; a generator with "
                     f"batch norm needs one (models.GeneratorModule) so its EMA weights get their own statistics")
  z = sample_latent(rng, num, latent_dim)
  _, new_stats = apply_model(gen.clone(bn_momentum=0.0), params, stats, z, train=True)
  return new_stats
