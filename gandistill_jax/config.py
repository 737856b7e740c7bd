"""The base config every run starts from, `--set key=value` overrides, and config diffs.

Configs are Python (ml_collections.ConfigDict); experiments/configs/*.py call
`base_config()` and change what they need. Values given on the command line are parsed
as Python literals (ints, floats, bools, tuples, strings) and must keep the type of the
value they replace.
"""
from __future__ import annotations

import ast
import json
import math
import numbers
import os
from typing import Iterable

import ml_collections


# The layout of saved configs; `migrate` brings older ones to it. 1: configs written before
# the version was recorded.
SCHEMA_VERSION = 2


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.schema_version = SCHEMA_VERSION
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = "fashion_mnist"   # a TFDS name, or any name for idx/folder/npz sources
  c.data.source = "auto"          # auto | tfds | idx | folder | npz | toy
  c.data.path = ""                # idx/folder: the folder ('' = find it); npz: the .npz file
  c.data.data_dir = ""            # TFDS data_dir ('' = TFDS's default)
  c.data.download = False         # let TFDS download a dataset that is not prepared
  c.data.split = "train"
  c.data.eval_split = "test"
  c.data.eval_fraction = 0.1      # folder without split folders: the share held out as eval_split (data/folder.py)
  c.data.background = "white"     # folder: the colour alpha is composited on (a name or #rrggbb)
  c.data.resize_filter = "area"   # area | bilinear | bicubic | lanczos3 | nearest (data/resize.py)
  c.data.skip_unreadable = False  # folder: skip (and count) files that cannot be decoded instead of stopping

  c.model = ml_collections.ConfigDict()
  c.model.family = "dcgan"        # dcgan | resnet (SNGAN) | mobile (generator only) | mlp | 'package.module:Name'
  c.model.d_family = ""           # '' = the family's own D (else dcgan) | dcgan | mlp | 'package.module:Name'
  c.model.image_size = 32         # 28, 32 or 64 (data are resized/padded to it)
  c.model.channels = 1
  c.model.latent_dim = 100
  c.model.g_width = 64
  c.model.d_width = 64
  c.model.num_up = 0              # 0 = the family's default depth
  c.model.num_down = 0
  c.model.proj_rank = 0           # 0 = full-rank latent projection
  c.model.g_proj_bias = True      # a bias per latent-projection output (models.family.latent_projection; all G families)
  c.model.proj_init = "matched"   # proj_rank > 0: the factors' init, matched | dcgan (models.family.latent_projection)
  c.model.expand = 2              # mobile: inverted-residual expansion factor
  c.model.upsample = "nearest"    # mobile: nearest | bilinear
  c.model.g_batch_norm = True     # mobile: batch norm in G
  c.model.d_spectral_norm = False
  c.model.d_batch_norm = False    # batch norm in D after every conv but the first (DCGAN)
  c.model.g_depth = 3             # mlp only
  c.model.d_depth = 3
  c.model.out_dim = 2

  c.loss = ml_collections.ConfigDict()
  c.loss.name = "nonsaturating"   # minimax | nonsaturating | hinge | wgan | lsgan
  c.loss.n_critic = 1
  c.loss.gp_weight = 0.0          # WGAN-GP lambda (10 in the paper)
  c.loss.r1_gamma = 0.0
  c.loss.reuse_fake = False       # G's update reuses the critic's last fake batch (one G forward)

  c.optim = ml_collections.ConfigDict()
  c.optim.g_lr = 2e-4
  c.optim.d_lr = 2e-4
  c.optim.b1 = 0.5
  c.optim.b2 = 0.999

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 64         # per update, global (all devices and hosts)
  c.train.steps = 4000
  c.train.ema_decay = 0.999
  c.train.ema_warmup = True       # EMA decay min(ema_decay, (1 + t) / (10 + t)) (steps.ema_decay)
  c.train.log_every = 50
  c.train.sample_every = 500
  c.train.ckpt_every = 500
  c.train.eval_every = 0          # 0 = no periodic eval
  c.train.eval_num = 2000         # samples per periodic eval
  c.train.keep = 3                # last N checkpoints kept
  c.train.best_metric = ""        # e.g. "fid": also keep the best checkpoint by it (lower wins)
  c.train.compile_cache = True    # the commands turn on XLA's persistent compilation cache in <cache_dir>/xla (process-wide)
  c.train.compute_dtype = "float32"   # or "bfloat16": G and D compute in it (params, optimizer, losses, EMA stay fp32)

  c.eval = ml_collections.ConfigDict()
  c.eval.cache_dir = ""           # classifier + reference features ('' = ~/.cache/gandistill_jax)
  c.eval.inception_weights = ""   # InceptionV3 .npz (experiments/tools/convert_inception_weights.py): Inception FID/KID too
  c.eval.inception_num = 10000    # samples scored on Inception features (at most eval's --num)
  c.eval.features = "auto"        # auto | domain | inception: the network FID & co. use (docs/evaluation.md)
  return c


def default_distill_config() -> ml_collections.ConfigDict:
  """The `distill` section of a distill run's config (gandistill_jax.distill reads it)."""
  d = ml_collections.ConfigDict()
  d.mode = "online"          # online | offline
  d.offline_path = ""        # offline: the pairs .npz (teachers.read_pairs; e.g. from `gandistill dump-teacher`)
  # What the run recorded of its teacher (teachers.record; set by `distill --teacher/--pairs`):
  d.teacher_kind = "workdir"  # workdir | exported | function | pairs
  d.teacher_dir = ""         # the teacher's workdir or file
  d.teacher_sha256 = ""      # a file teacher's SHA-256, checked again on resume
  d.teacher_has_d = True     # a workdir teacher keeps its discriminator (a converted generator may not)
  d.student_init = "random"  # random | teacher (channels selected from the teacher's, gandistill_jax.prune)
  d.prune_by = "bn_scale"    # student_init="teacher": bn_scale | l1 | sensitivity (see gandistill_jax.prune)
  d.g_lr = 0.0               # the student's learning rate (0 = optim.g_lr)
  # Terms: weight > 0 turns a term on; *_schedule multiplies it (objectives.schedule).
  d.pixel_weight = 1.0
  d.pixel_p = 1
  d.pixel_schedule = "constant"
  d.adv_weight = 0.0
  d.adv_schedule = "constant"
  d.adv_balance = False      # VQGAN-style adaptive weight against the pixel term
  d.warmup_steps = 0         # the adversarial term starts at this step
  d.dfeat_weight = 0.0
  d.dfeat_layer_weights = ()  # () = by dfeat_layer_weighting
  d.dfeat_layer_weighting = "uniform"  # uniform (1/n each) | tinygan (..., 1/8, 1/4, 1)
  d.dfeat_d = "teacher"      # teacher (frozen D) | student (the student-side D, TinyGAN)
  d.dfeat_schedule = "constant"
  d.dfeat_balance = False
  d.gfeat_weight = 0.0
  d.content_weight = 0.0     # GCC content (RMSE of D activations)
  d.style_weight = 0.0       # GCC style (RMSE of Gram matrices)
  d.gcc_d = "teacher"        # which D's activations GCC compares
  d.mmd_weight = 0.0
  d.mmd_balance = False
  # The student-side discriminator (trained when adv or a 'student' D term is on).
  d.d_init = "fresh"         # fresh | teacher
  d.d_width = 0              # fresh D width (0 = the student's g_width)
  d.d_spectral_norm = False  # fresh D: spectral norm instead of the teacher's normalisation
  d.d_loss = ""              # '' = loss.name; e.g. 'hinge' (TinyGAN)
  d.d_real = "data"          # data: real vs student | teacher: teacher vs student (TinyGAN)
  d.d_real_data_weight = 0.0  # d_real='teacher': real data also counts as real, at this weight
  return d


def cache_dir(config) -> str:
  """Where evaluation networks, reference features and compiled XLA programs are cached:
  eval.cache_dir, else $GANDISTILL_CACHE, else ~/.cache/gandistill_jax."""
  return os.path.expanduser(config.get("eval", {}).get("cache_dir", "") or os.environ.get("GANDISTILL_CACHE", "")
                            or "~/.cache/gandistill_jax")


# Keys that never change the math of a run; everything else must match to resume.
NON_MATH_KEYS = ("schema_version", "train.steps", "train.log_every", "train.sample_every", "train.ckpt_every",
                 "train.eval_every", "train.eval_num", "train.keep", "train.best_metric", "train.compile_cache",
                 "data.data_dir", "data.path", "data.download", "data.skip_unreadable", "distill.teacher_dir",
                 "distill.offline_path", "distill.teacher_sha256", "eval.cache_dir",
                 "eval.inception_weights", "eval.inception_num", "eval.features")


# Keys added after workdirs were first written, with the value that reproduces what those
# runs did: a saved config without the key resumes under exactly this value. Keyed by the
# full key, or by its last part for keys every model section has.
LEGACY_DEFAULTS = {
    "d_batch_norm": False, "reuse_fake": False, "d_family": "", "expand": 2, "upsample": "nearest",
    "g_batch_norm": True, "g_proj_bias": False, "proj_init": "dcgan", "train.compute_dtype": "float32",
    "train.ema_warmup": False, "data.eval_fraction": 0.0,
    "data.background": "white", "data.resize_filter": "area",
    "distill.student_init": "random", "distill.prune_by": "bn_scale", "distill.g_lr": 0.0,
    "distill.pixel_schedule": "constant", "distill.adv_schedule": "constant", "distill.adv_balance": False,
    "distill.dfeat_layer_weighting": "uniform", "distill.dfeat_d": "teacher",
    "distill.dfeat_schedule": "constant", "distill.dfeat_balance": False, "distill.content_weight": 0.0,
    "distill.style_weight": 0.0, "distill.gcc_d": "teacher", "distill.mmd_weight": 0.0,
    "distill.mmd_balance": False, "distill.d_spectral_norm": False, "distill.d_loss": "",
    "distill.d_real": "data", "distill.d_real_data_weight": 0.0,
    "distill.teacher_kind": "workdir", "distill.teacher_has_d": True,
}


def upgrade(config):
  """A saved or user config in the current layout (a dict or ConfigDict; returned as given
  type). Distill configs once had three model sections: `model` (the teacher's), `student`
  and `teacher_model`; now `model` is always the model the run trains (the student) and
  `teacher_model` is recorded from the teacher's workdir. Keys that never change the math
  and were added later (NON_MATH_KEYS, e.g. eval.inception_num) get their defaults, so
  `--set` works on them for old workdirs too."""
  as_dict = isinstance(config, dict)
  d = dict(config) if as_dict else config.to_dict()
  if "distill" in d and "student" in d:
    d["model"] = d.pop("student")
  defaults = base_config()
  for key in NON_MATH_KEYS:
    section, _, leaf = key.partition(".")
    if section in d and isinstance(d[section], dict) and leaf not in d[section] and leaf in defaults.get(section, {}):
      d[section] = dict(d[section], **{leaf: defaults[section][leaf]})
  return d if as_dict else ml_collections.ConfigDict(d)


def migrate(saved: dict) -> dict:
  """A config read from a workdir, in the current layout, once, on load: the old distill
  layout renamed (upgrade), every key added since filled with the value that reproduces
  what the run did (LEGACY_DEFAULTS; model keys in every model section) and
  `schema_version` set. Modules then read `cfg.key` directly."""
  d = json.loads(json.dumps(upgrade(dict(saved))))
  base = base_config().to_dict()
  for key, value in LEGACY_DEFAULTS.items():
    section, _, leaf = key.rpartition(".")
    if not section:   # a bare key: every section of the base config that has it (model keys: both models)
      names = [n for n, v in base.items() if isinstance(v, dict) and leaf in v]
      section_names = tuple(names) + (("teacher_model",) if "model" in names else ())
    else:
      section_names = (section,)
    for name in section_names:
      if isinstance(d.get(name), dict) and leaf not in d[name]:
        d[name][leaf] = value
  d["schema_version"] = SCHEMA_VERSION
  return d


def _legacy_default(key: str):
  return LEGACY_DEFAULTS.get(key, LEGACY_DEFAULTS.get(key.rpartition(".")[2], _MISSING))


_MISSING = object()


# The fewest samples a score is computed from: precision/recall/density/coverage look at 3
# nearest neighbours and FID at covariances (a meaningful FID takes thousands).
MIN_EVAL_SAMPLES = 10

# (key, lowest allowed value, highest allowed value or None); checked before a run writes anything.
RANGES = (
    ("train.steps", 1, None), ("train.batch_size", 1, None), ("train.log_every", 1, None),
    ("train.sample_every", 1, None), ("train.ckpt_every", 1, None), ("train.keep", 1, None),
    ("train.eval_every", 0, None), ("train.eval_num", MIN_EVAL_SAMPLES, None), ("train.ema_decay", 0.0, 0.999999),
    ("model.latent_dim", 1, None), ("model.g_width", 1, None), ("model.d_width", 1, None),
    ("model.channels", 1, None), ("model.image_size", 1, None), ("model.proj_rank", 0, None),
    ("loss.n_critic", 1, None), ("loss.gp_weight", 0.0, None), ("loss.r1_gamma", 0.0, None),
    ("optim.g_lr", 1e-12, None), ("optim.d_lr", 1e-12, None), ("optim.b1", 0.0, 0.999999),
    ("optim.b2", 0.0, 0.999999), ("distill.pixel_p", 1, 2), ("distill.warmup_steps", 0, None),
    ("data.eval_fraction", 0.0, 0.99), ("eval.inception_num", MIN_EVAL_SAMPLES, None),
)


COMPUTE_DTYPES = ("float32", "bfloat16")


def _kind(value) -> str:
  """The type a config value has, as checks and messages name it."""
  if isinstance(value, bool):
    return "True or False"
  if isinstance(value, numbers.Integral):
    return "an int"
  if isinstance(value, numbers.Real):
    return "a number"
  if isinstance(value, str):
    return "a string"
  if isinstance(value, (list, tuple)):
    return "a list"
  return type(value).__name__


def reference_values(config) -> dict:
  """The flat base values (base_config, and default_distill_config for a distill config)
  whose types every config's values must have; teacher_model.* as model.*."""
  flat = flatten(base_config().to_dict())
  if "distill" in config:
    flat |= {f"distill.{k}": v for k, v in flatten(default_distill_config().to_dict()).items()}
  return flat | {"teacher_model." + k[len("model."):]: v for k, v in flat.items() if k.startswith("model.")}


def check_types(config) -> None:
  """Raises ValueError (one line, naming the key) for a value of another type than the
  base config's (an int where a float is expected is fine)."""
  reference = reference_values(config)
  for key, value in flatten(config.to_dict()).items():
    if key in reference and _kind(value) != _kind(reference[key]) and not (
        _kind(reference[key]) == "a number" and _kind(value) == "an int"):
      raise ValueError(f"{key}={value!r} must be {_kind(reference[key])}")


def missing_keys(config) -> list[str]:
  """The base keys (and a distill config's distill keys) a config lacks."""
  have = flatten(config.to_dict())
  return [k for k in reference_values(config) if k not in have and k != "schema_version"
          and not k.startswith("teacher_model.")]


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError (one line, naming the key) for values no run can use: another type
  than the base config's, out of range, not finite."""
  check_types(config)
  flat = flatten(config.to_dict())
  for key, value in flat.items():
    if isinstance(value, float) and not math.isfinite(value):
      raise ValueError(f"{key}={value!r} must be a finite number")
  for key, lo, hi in RANGES:
    if key not in flat:
      continue
    value = flat[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ValueError(f"{key}={value!r} must be a number")
    if value < lo or (hi is not None and value > hi):
      bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
      raise ValueError(f"{key}={value!r} must be {bound}")
  if flat.get("train.compute_dtype", "float32") not in COMPUTE_DTYPES:
    raise ValueError(f"train.compute_dtype={flat['train.compute_dtype']!r} must be one of {COMPUTE_DTYPES}")
  for key, value in flat.items():
    if key.startswith("distill.") and key.endswith("_weight") and isinstance(value, (int, float)) and value < 0:
      raise ValueError(f"{key}={value!r} must be >= 0")


def parse_value(text: str, old):
  """Parse a command-line value as a Python literal with the type of `old`."""
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  if old is None:
    return value
  if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  elif isinstance(old, tuple) and isinstance(value, list):
    value = tuple(value)
  if _kind(value) != _kind(old):
    raise ValueError(f"expected {_kind(old)}, got {text!r}")
  return value


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> ml_collections.ConfigDict:
  """Apply 'a.b=value' strings to a copy of `config`; unknown keys are errors."""
  config = ml_collections.ConfigDict(config.to_dict())
  for item in overrides:
    key, sep, text = item.partition("=")
    if not sep:
      raise ValueError(f"--set {item!r} is not key=value; e.g. --set train.steps=200")
    node, *path = config, *key.split(".")
    for part in path[:-1]:
      if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
        raise ValueError(f"--set {item!r}: {key!r} is not a config key")
      node = node[part]
    leaf = path[-1]
    if leaf not in node:
      raise ValueError(f"--set {item!r}: {key!r} is not a config key")
    try:
      node[leaf] = parse_value(text, node[leaf])
    except ValueError as e:
      raise ValueError(f"--set {item!r}: {e}") from None
  return config


def flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
  return out


# Model keys that only some generators read (a predicate on the section's values): a
# difference where none reads the key is no difference.
READ_WHEN = {
    "g_proj_bias": lambda m: m.get("family", "dcgan") in ("dcgan", "mobile", "resnet"),
    "proj_init": lambda m: m.get("family", "dcgan") in ("dcgan", "mobile") and m.get("proj_rank", 0) > 0,
}


def math_differences(saved: dict, current: dict) -> list[str]:
  """'key: saved -> current' for every key that changes the math of a run."""
  a, b = flatten(upgrade(saved)), flatten(upgrade(json.loads(json.dumps(current))))
  a |= {k: _legacy_default(k) for k in b if k not in a and _legacy_default(k) is not _MISSING}
  def matters(k):
    section, _, leaf = k.rpartition(".")
    read = READ_WHEN.get(leaf)
    return read is None or read({j[len(section) + 1:]: v for j, v in (a | b).items() if j.startswith(section + ".")})
  keys = sorted(set(a) | set(b))
  return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys
          if a.get(k) != b.get(k) and matters(k) and not any(k == n or k.startswith(n + ".") for n in NON_MATH_KEYS)]
