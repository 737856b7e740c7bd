"""Model families and `build_*(config.model)`: the one place that turns a config into modules."""
from __future__ import annotations

import flax.linen as nn
import jax
import ml_collections

from gandistill_jax.models.dcgan import Discriminator, Generator
from gandistill_jax.models.mlp import MLPDiscriminator, MLPGenerator
from gandistill_jax.models.mobile import MobileGenerator

FAMILIES = ("dcgan", "mobile", "mlp")   # mobile: a generator family; its D is the DCGAN one


def _check_family(cfg) -> None:
  if cfg.family not in FAMILIES:
    raise ValueError(f"model.family={cfg.family!r} is unknown; use one of {FAMILIES}")


def build_generator(cfg: ml_collections.ConfigDict) -> nn.Module:
  """The generator that `cfg` (a `config.model`-like dict) describes."""
  _check_family(cfg)
  if cfg.family == "mlp":
    return MLPGenerator(width=cfg.g_width, depth=cfg.get("g_depth", 3), out_dim=cfg.get("out_dim", 2))
  if cfg.family == "mobile":
    return MobileGenerator(image_size=cfg.image_size, channels=cfg.channels, width=cfg.g_width,
                           num_up=cfg.get("num_up", 0), proj_rank=cfg.get("proj_rank", 0),
                           expand=cfg.get("expand", 2), upsample=cfg.get("upsample", "nearest"),
                           batch_norm=cfg.get("g_batch_norm", True))
  return Generator(image_size=cfg.image_size, channels=cfg.channels, width=cfg.g_width,
                   num_up=cfg.get("num_up", 0), proj_rank=cfg.get("proj_rank", 0))


def build_discriminator(cfg: ml_collections.ConfigDict) -> nn.Module:
  _check_family(cfg)
  if cfg.family == "mlp":
    return MLPDiscriminator(width=cfg.d_width, depth=cfg.get("d_depth", 3))
  return Discriminator(image_size=cfg.image_size, width=cfg.d_width,
                       num_down=cfg.get("num_down", 0), spectral_norm=cfg.get("d_spectral_norm", False),
                       batch_norm=cfg.get("d_batch_norm", False))


def sample_shape(cfg) -> tuple[int, ...]:
  """Shape of one generated sample (without the batch axis)."""
  if cfg.family == "mlp":
    return (cfg.get("out_dim", 2),)
  return (cfg.image_size, cfg.image_size, cfg.channels)


def init_variables(module: nn.Module, rng: jax.Array, example: jax.Array) -> dict:
  """Initial variables as {'params': ..., 'batch_stats': ...} ('batch_stats' may be {})."""
  variables = module.init(rng, example, train=False)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def param_count(params) -> int:
  """Number of scalars in a parameter pytree."""
  return sum(int(x.size) for x in jax.tree.leaves(params))
