"""Model families and `build_*(config.model)`: the one place that turns a config into modules.

A family is named in `model.family` (the generator) and `model.d_family` (the
discriminator; '' = the family's own D where it has one, else 'dcgan'), either by a
registered name or by a dotted import path 'package.module:Name' that every command
(train, distill, resume, eval, sample, export) imports again in a fresh process. `Name`
is a builder `f(model_config) -> nn.Module`, or an nn.Module class with a classmethod
`from_config(model_config)`. Register a name in-process with `register_generator` /
`register_discriminator`; a dotted path needs no registration, only an importable module.

Importing a dotted path runs code, so a path read from a workdir (whose config.json may
come from anyone) is imported only when the user trusts workdir code
(`workdir_code_trusted`: `--trust-workdir-code` or GANDISTILL_TRUST_WORKDIR_CODE=1), or when
this process has already built it from the user's own config (`needs_trust`); the check
is workdir.check_trusted, on every config.json read.

A generator or discriminator is a flax.linen Module that follows `GeneratorModule` /
`DiscriminatorModule` below.
"""
from __future__ import annotations

import importlib
import os
from typing import Callable, Protocol

import flax.linen as nn
import jax
import ml_collections

from gandistill_jax.models.dcgan import Discriminator, Generator
from gandistill_jax.models.mlp import MLPDiscriminator, MLPGenerator
from gandistill_jax.models.mobile import MobileGenerator
from gandistill_jax.models.resnet import ResNetDiscriminator, ResNetGenerator

Builder = Callable[[ml_collections.ConfigDict], nn.Module]

TRUST_ENV = "GANDISTILL_TRUST_WORKDIR_CODE"
_built_paths: set[str] = set()   # dotted paths this process has imported and built a module from


class GeneratorModule(Protocol):
  """What the package needs of a generator.

  `__call__(z, train=False, return_features=False)`: z (B, model.latent_dim) float32 ->
  images (B, model.image_size, model.image_size, model.channels) in [-1, 1] (tanh); with
  `return_features=True`, `(images, features)` where features is a list of intermediate
  activations, coarse to fine (read by the gfeat term and by the adapters). `train=True`
  uses batch statistics and updates the 'batch_stats' collection (if there is batch norm).

  `bn_momentum`: a dataclass field giving every BatchNorm's momentum. Needed only with
  batch norm: the EMA weights' statistics are recomputed by one train pass of a clone
  with `bn_momentum=0.0` (steps.recompute_batch_stats).
  """
  bn_momentum: float

  def __call__(self, z: jax.Array, train: bool = False, return_features: bool = False): ...


class DiscriminatorModule(Protocol):
  """What the package needs of a discriminator.

  `__call__(x, train=False, return_features=False)`: images (B, H, W, C) in [-1, 1] ->
  logits (B,); with `return_features=True`, `(logits, features)`, features a list of
  activations fine to coarse (the dfeat, GCC and MMD terms read them). Batch norm, if
  any, lives in 'batch_stats' and is updated when `train=True`.

  `batch_norm`: an optional attribute, True when D normalises by batch statistics; then
  real and fake batches go through D apart and G is scored with D in train mode
  (steps.uses_batch_norm). Absent means False.
  """

  def __call__(self, x: jax.Array, train: bool = False, return_features: bool = False): ...


def _dcgan_g(cfg) -> nn.Module:
  return Generator(image_size=cfg.image_size, channels=cfg.channels, width=cfg.g_width,
                   num_up=cfg.num_up, proj_rank=cfg.proj_rank,
                   proj_bias=cfg.g_proj_bias, proj_init=cfg.proj_init)


def _mobile_g(cfg) -> nn.Module:
  return MobileGenerator(image_size=cfg.image_size, channels=cfg.channels, width=cfg.g_width,
                         num_up=cfg.num_up, proj_rank=cfg.proj_rank,
                         proj_bias=cfg.g_proj_bias, proj_init=cfg.proj_init,
                         expand=cfg.expand,
                         upsample=cfg.upsample, batch_norm=cfg.g_batch_norm)


def _resnet_g(cfg) -> nn.Module:
  return ResNetGenerator(image_size=cfg.image_size, channels=cfg.channels, width=cfg.g_width,
                         proj_bias=cfg.g_proj_bias)


def _resnet_d(cfg) -> nn.Module:
  return ResNetDiscriminator(image_size=cfg.image_size, width=cfg.d_width)


def _mlp_g(cfg) -> nn.Module:
  return MLPGenerator(width=cfg.g_width, depth=cfg.g_depth, out_dim=cfg.out_dim)


def _dcgan_d(cfg) -> nn.Module:
  return Discriminator(image_size=cfg.image_size, width=cfg.d_width, num_down=cfg.num_down,
                       spectral_norm=cfg.d_spectral_norm, batch_norm=cfg.d_batch_norm)


def _mlp_d(cfg) -> nn.Module:
  return MLPDiscriminator(width=cfg.d_width, depth=cfg.d_depth)


GENERATORS: dict[str, Builder] = {"dcgan": _dcgan_g, "mobile": _mobile_g, "resnet": _resnet_g, "mlp": _mlp_g}
DISCRIMINATORS: dict[str, Builder] = {"dcgan": _dcgan_d, "resnet": _resnet_d, "mlp": _mlp_d}


def register_generator(name: str, builder: Builder) -> None:
  """Makes `model.family=name` build `builder(model_config)` in this process."""
  GENERATORS[name] = builder


def register_discriminator(name: str, builder: Builder) -> None:
  """Makes `model.d_family=name` build `builder(model_config)` in this process."""
  DISCRIMINATORS[name] = builder


def workdir_code_trusted() -> bool:
  """Whether the user lets dotted model paths in workdirs' config.json be imported:
  GANDISTILL_TRUST_WORKDIR_CODE=1 (what `--trust-workdir-code` sets)."""
  return os.environ.get(TRUST_ENV, "").strip().lower() not in ("", "0", "false", "no")


def needs_trust(name) -> bool:
  """Whether building family `name` from a workdir's config would import code the user has
  not run: a dotted path, neither registered nor already built in this process."""
  return (isinstance(name, str) and ":" in name and name not in GENERATORS and name not in DISCRIMINATORS
          and name not in _built_paths)


def _resolve(table: dict[str, Builder], name: str, key: str) -> Builder:
  if name in table:
    return table[name]
  if ":" not in name:
    raise ValueError(f"{key}={name!r} is unknown; use one of {tuple(table)} or a dotted path "
                     f"'package.module:Name'")
  module_name, _, attr = name.partition(":")
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise ValueError(f"{key}={name!r}: cannot import {module_name!r} ({e}); is it on PYTHONPATH?") from None
  except Exception as e:   # the module's own code failed: one line naming it, not its traceback
    raise ValueError(f"{key}={name!r}: importing {module_name!r} failed ({type(e).__name__}: {e})") from None
  if not hasattr(module, attr):
    raise ValueError(f"{key}={name!r}: module {module_name!r} has no {attr!r}")
  obj = getattr(module, attr)
  if isinstance(obj, type):
    if not hasattr(obj, "from_config"):
      raise ValueError(f"{key}={name!r} is a class without a from_config(model_config) classmethod; "
                       f"add one, or point {key} at a builder function")
    return obj.from_config
  return obj


def _build(table, name: str, key: str, cfg) -> nn.Module:
  if not isinstance(name, str):
    raise ValueError(f"{key}={name!r} must be a string: a registered name or 'package.module:Name'")
  module = _resolve(table, name, key)(cfg)
  if not isinstance(module, nn.Module):
    raise ValueError(f"{key}={name!r} built a {type(module).__name__}, not a flax.linen Module")
  if name not in table:
    _built_paths.add(name)
  return module


def build_generator(cfg: ml_collections.ConfigDict) -> nn.Module:
  """The generator that `cfg` (a `config.model`-like dict) describes."""
  return _build(GENERATORS, cfg.family, "model.family", cfg)


def discriminator_family(cfg) -> str:
  """model.d_family, or the generator family's own D, or 'dcgan'."""
  return cfg.d_family or (cfg.family if cfg.family in DISCRIMINATORS else "dcgan")


def build_discriminator(cfg: ml_collections.ConfigDict) -> nn.Module:
  return _build(DISCRIMINATORS, discriminator_family(cfg), "model.d_family", cfg)


def sample_shape(cfg) -> tuple[int, ...]:
  """Shape of one generated sample (without the batch axis)."""
  if cfg.family == "mlp":
    return (cfg.out_dim,)
  return (cfg.image_size, cfg.image_size, cfg.channels)


def init_variables(module: nn.Module, rng: jax.Array, example: jax.Array) -> dict:
  """Initial variables as {'params': ..., 'batch_stats': ...} ('batch_stats' may be {})."""
  variables = module.init(rng, example, train=False)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def param_count(params) -> int:
  """Number of scalars in a parameter pytree."""
  return sum(int(x.size) for x in jax.tree.leaves(params))
