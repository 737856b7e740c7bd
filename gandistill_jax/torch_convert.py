"""PyTorch DCGAN weights as a teacher workdir: `gandistill convert-torch` and its pieces.

A PyTorch DCGAN generator is read from its state dict, as a sequence of layers in module
registration order (the forward order of an nn.Sequential), and mapped onto this package's
dcgan.Generator:

    Linear(Z, c0*s0*s0) | ConvTranspose2d(Z, c0, s0, 1, 0)     -> proj        (z -> s0 x s0 x c0)
    BatchNorm2d(c0)                                            -> BatchNorm_0
    (ConvTranspose2d(c_i, c_i+1, 4, 2, 1) -> BatchNorm2d) * k  -> UpConv_i, BatchNorm_i+1
    ConvTranspose2d(c_last, channels, 4, 2, 1)   (then tanh)   -> UpConv_k    (with its bias)

The first form is the reference's (experiments/reference/torch_dcgan_train.py), the second
pytorch/examples' dcgan, whose first layer runs on a 1 x 1 input: there out[c, i, j] =
sum_z z W[z, c, i, j], the dense map with kernel W[z, c, i, j] at column (i, j, c). The
Linear's output is viewed as (c0, s0, s0) (PyTorch's NCHW order) and its rows are put in
our (s0, s0, c0) order. The projection's bias is one value per (position, channel) and is
kept (batch norm removes only its mean over positions); a conv before batch norm has no bias
here, so its per-channel bias is moved into the running mean (`_batch_norm`); a missing
bias (bias=False) is zero. Running means and variances become `batch_stats`. Activations
carry no weights, so they cannot be read: the map assumes DCGAN's (ReLU, tanh), and
stride 2, padding 1 for every 4x4 ConvTranspose2d after the first; the tests check that
the converted generators reproduce PyTorch's outputs. Anything that does not follow the
pattern, or whose channels are not dcgan's (stage_channels: c_i = width * 2**(k - i)),
is refused in one line naming the layer that does not fit.

Discriminators map onto dcgan.Discriminator: Conv2d(channels, w, 4, 2, 1) ->
(Conv2d(·, 2·, 4, 2, 1) [-> BatchNorm2d]) * k, then the logit from a Linear over the
flattened (c, s, s) activations (the reference) or a Conv2d(c, 1, s, 1, 0) (pytorch/examples;
its sigmoid is not a layer: our D returns the logit, which its BCELoss turns into the same
probability). LeakyReLU(0.2) is assumed.

Key prefixes (`main.` of pytorch/examples, `module.` of DataParallel, `G_ema.`) need no
handling: layers are told apart by their key up to the last dot, whatever it starts with.

A converted workdir is read like a teacher this package trained: config.json (base_config
with the converted model section, plus a `convert` record of where the weights came from)
and one checkpoint of kind 'teacher' whose items are the `generator` (and the
`discriminator` if converted). Its train state is a placeholder (the step): the PyTorch
optimiser state is not converted, so the workdir is for sampling, exporting, evaluating and
teaching, not for resuming adversarial training. Its data section is base_config's
(Fashion-MNIST), which `gandistill eval` scores against unless told other data (--set data.*).

torch is not a dependency: only read_torch_file (and so convert) of a .pt/.pth file imports
it. A state dict saved as .npz (np.savez(path, **{k: v.numpy() for k, v in sd.items()}))
converts without torch.
"""
from __future__ import annotations

import datetime
import errno
import json
import math
import os
import re
import secrets
import shutil
import zipfile
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gandistill_jax import checkpoint, config as config_lib, files, models
from gandistill_jax.models.family import _DEFAULT_NUM_UP, stage_channels

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_AFFINE = ("weight", "bias")


def _layers(state_dict: Mapping[str, np.ndarray]) -> list[tuple[str, str, dict]]:
  """[(name, kind, arrays)] in the state dict's order: name is a key up to its last dot (the
  module), kind 'bn' (running statistics), 'linear' (2-D weight) or 'conv' (4-D weight)."""
  modules: dict[str, dict] = {}
  for key, value in state_dict.items():
    name, _, leaf = key.rpartition(".")
    modules.setdefault(name, {})[leaf] = np.asarray(value)
  out = []
  for name, arrays in modules.items():
    if "running_mean" in arrays and "running_var" in arrays and set(arrays) <= set(_BN):
      out.append((name, "bn", arrays))
    elif set(arrays) <= set(_AFFINE) and "weight" in arrays and arrays["weight"].ndim in (2, 4):
      out.append((name, "linear" if arrays["weight"].ndim == 2 else "conv", arrays))
    else:
      shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items())
      hint = " (spectral norm's weight_orig is not converted)" if "weight_orig" in arrays else ""
      raise ValueError(f"layer {name!r} ({shapes}) is no Linear, Conv2d, ConvTranspose2d or BatchNorm2d with "
                       f"running statistics; a DCGAN holds only those{hint}")
  if not out:
    raise ValueError("the state dict is empty")
  return out


def _describe(name: str, kind: str, arrays: dict) -> str:
  """'BatchNorm2d 'main.1' (64 channels)', 'Linear '0' (weight (784, 100))', ..."""
  if kind == "bn":
    return f"BatchNorm2d {name!r} ({arrays['running_mean'].shape[0]} channels)"
  label = "Linear" if kind == "linear" else "Conv2d/ConvTranspose2d"
  return f"{label} {name!r} (weight {tuple(arrays['weight'].shape)})"


def _f32(x) -> np.ndarray:
  return np.asarray(x, np.float32)


def _bias(arrays: dict, n: int) -> np.ndarray:
  """A layer's bias, or zeros for a layer built with bias=False."""
  return _f32(arrays["bias"]) if "bias" in arrays else np.zeros(n, np.float32)


def _batch_norm(name: str, arrays: dict, conv_bias: np.ndarray) -> tuple[dict, dict]:
  """(params, batch_stats) of a BatchNorm2d after a conv with bias b (per channel; zeros for
  none). Our conv before batch norm has no bias, so b moves into the running mean: in eval
  mode BN(W x + b) with mean m is BN(W x) with mean m - b, and in training batch norm
  subtracts the batch's mean, b included, so there b never mattered. affine=False: scale 1,
  shift 0."""
  channels = conv_bias.shape[0]
  if arrays["running_mean"].shape != (channels,):
    raise ValueError(f"layer {name!r} normalises {arrays['running_mean'].shape[0]} channels; the layer before it "
                     f"makes {channels}")
  scale = _f32(arrays["weight"]) if "weight" in arrays else np.ones(channels, np.float32)
  return ({"scale": scale, "bias": _bias(arrays, channels)},
          {"mean": _f32(arrays["running_mean"]) - conv_bias, "var": _f32(arrays["running_var"])})


def _chw_to_hwc(rows: np.ndarray, c: int, s: int) -> np.ndarray:
  """Rows of a (c*s*s, ...) matrix in PyTorch's (c, h, w) flatten order, put in our (h, w, c)."""
  return rows.reshape(c, s, s, -1).transpose(1, 2, 0, 3).reshape(c * s * s, -1)


def _square(n: int, c: int) -> int:
  """s with c * s * s = n, or 0 if there is none."""
  s = math.isqrt(n // c) if c and n % c == 0 else 0
  return s if s * s * c == n else 0


def _check_size(made: int, image_size: int | None, what: str) -> None:
  if image_size is not None and made != image_size:
    raise ValueError(f"the {what} works on {made}x{made} images, not image_size={image_size}")


def _depth(n: int, image_size: int) -> int:
  """model.num_up/num_down for n stages: 0 (the family's default, as this package's own
  configs give it) where n is the default for the size, else n."""
  return 0 if _DEFAULT_NUM_UP.get(image_size) == n else n


def _model_config(**values) -> ml_collections.ConfigDict:
  """base_config's model section with `values` set."""
  model = config_lib.base_config().model
  model.update(family="dcgan", **values)
  return model


def _projection(name: str, kind: str, arrays: dict, c0: int) -> tuple[dict, int]:
  """({'kernel', 'bias'} of our dense projection, start size s0) from the generator's first
  layer, a Linear(Z, c0*s0*s0) or a ConvTranspose2d(Z, c0, s0, 1, 0) on a 1 x 1 input."""
  w = _f32(arrays["weight"])
  if kind == "linear":
    s0 = _square(w.shape[0], c0)
    if not s0:
      raise ValueError(f"layer {name!r} (Linear to {w.shape[0]} features) is not c0 x s0 x s0 for the {c0} channels "
                       f"that its batch norm normalises")
    bias = _chw_to_hwc(_bias(arrays, w.shape[0])[:, None], c0, s0)[:, 0]
    return {"kernel": _chw_to_hwc(w, c0, s0).T, "bias": bias}, s0
  if kind == "conv" and w.shape[1] == c0 and w.shape[2] == w.shape[3]:
    s0 = w.shape[2]
    return {"kernel": w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1), "bias": np.tile(_bias(arrays, c0), s0 * s0)}, s0
  raise ValueError(f"layer {_describe(name, kind, arrays)} is not a generator's first layer: a Linear(Z, c0*s0*s0) or "
                   f"a square ConvTranspose2d(Z, c0, s0) before the BatchNorm2d({c0})")


def _check_channels(got: list[int], names: list[str], width: int, image_size: int, what: str,
                    expected: list[int]) -> None:
  for name, have, want in zip(names, got, expected):
    if have != want:
      raise ValueError(f"layer {name!r} makes {have} channels; a dcgan {what} of width {width} at {image_size}x"
                       f"{image_size} has {want} there (channels {expected})")


def generator_from_state_dict(state_dict: Mapping[str, np.ndarray], image_size: int | None = None
                              ) -> tuple[ml_collections.ConfigDict, dict]:
  """(model config, {'params', 'batch_stats'}) of the dcgan.Generator that computes what the
  PyTorch DCGAN generator with this state dict computes in eval mode (the module docstring
  gives the layer map). `image_size`, if given, must be the size the generator makes.
  ValueError, one line naming the layer, for anything else."""
  layers = _layers(state_dict)
  if len(layers) < 3 or layers[0][1] == "bn" or layers[1][1] != "bn":
    start = " -> ".join(_describe(*layer) for layer in layers[:3])
    raise ValueError(f"the state dict starts {start}; a DCGAN generator starts with a Linear or ConvTranspose2d, "
                     f"then a BatchNorm2d, then ConvTranspose2d layers")
  c0 = layers[1][2]["running_mean"].shape[0]
  proj, s0 = _projection(*layers[0], c0)
  bn, stats = _batch_norm(layers[1][0], layers[1][2], np.zeros(c0, np.float32))   # the bias stays in `proj`
  params, batch_stats = {"proj": proj, "BatchNorm_0": bn}, {"BatchNorm_0": stats}
  chans, names, rest, i = [c0], [layers[0][0]], layers[2:], 0
  while rest:
    (name, kind, arrays), rest = rest[0], rest[1:]
    w = _f32(arrays["weight"]) if kind == "conv" else None
    if w is None or w.shape[0] != chans[-1] or w.shape[2:] != (4, 4):
      raise ValueError(f"layer {_describe(name, kind, arrays)} is not the ConvTranspose2d({chans[-1]}, ·, 4, 2, 1) "
                       f"that a DCGAN generator has after {names[-1]!r}")
    params[f"UpConv_{i}"] = {"kernel": w.transpose(2, 3, 0, 1)}
    if not rest:   # the output layer: image channels, its bias kept, then tanh
      params[f"UpConv_{i}"]["bias"] = _bias(arrays, w.shape[1])
      break
    (bn_name, bn_kind, bn_arrays), rest = rest[0], rest[1:]
    if bn_kind != "bn":
      raise ValueError(f"layer {_describe(bn_name, bn_kind, bn_arrays)} follows the hidden ConvTranspose2d {name!r}; "
                       f"a DCGAN generator has a BatchNorm2d there")
    params[f"BatchNorm_{i + 1}"], batch_stats[f"BatchNorm_{i + 1}"] = _batch_norm(bn_name, bn_arrays,
                                                                                _bias(arrays, w.shape[1]))
    chans.append(w.shape[1])
    names.append(name)
    i += 1
  num_up, size = len(chans), s0 * 2**len(chans)
  _check_size(size, image_size, "generator")
  _check_channels(chans, names, chans[-1], size, "generator", stage_channels(chans[-1], size, num_up))
  model = _model_config(image_size=size, channels=int(w.shape[1]), latent_dim=int(proj["kernel"].shape[0]),
                        g_width=chans[-1], num_up=_depth(num_up, size), proj_rank=0, g_proj_bias=True)
  return model, {"params": params, "batch_stats": batch_stats}


def discriminator_from_state_dict(state_dict: Mapping[str, np.ndarray], image_size: int | None = None
                                  ) -> tuple[ml_collections.ConfigDict, dict]:
  """(model config with the D keys set, {'params', 'batch_stats'}) of the dcgan.Discriminator
  that computes the logit of the PyTorch DCGAN discriminator with this state dict (the
  module docstring gives the layer map): batch norm after every conv but the first, or
  none. `image_size`, if given, must be the size it takes. ValueError, one line naming the
  layer, for anything else."""
  *body, (out_name, out_kind, out_arrays) = _layers(state_dict)
  normed = any(kind == "bn" for _, kind, _ in body)
  params, batch_stats, chans, names = {}, {}, [], []
  while body:
    (name, kind, arrays), body = body[0], body[1:]
    i = len(chans)
    w = _f32(arrays["weight"]) if kind == "conv" else None
    if w is None or w.shape[2:] != (4, 4) or (chans and w.shape[1] != chans[-1]):
      raise ValueError(f"layer {_describe(name, kind, arrays)} is not the Conv2d({chans[-1] if chans else 'channels'}, "
                       f"·, 4, 2, 1) that a DCGAN discriminator has " + (f"after {names[-1]!r}" if names else "first"))
    params[f"Conv_{i}"] = {"kernel": w.transpose(2, 3, 1, 0)}
    if i > 0 and normed:
      if not body or body[0][1] != "bn":
        raise ValueError(f"layer {name!r} has no BatchNorm2d after it; a DCGAN discriminator with batch norm has one "
                         f"after every conv but the first")
      (bn_name, _, bn_arrays), body = body[0], body[1:]
      params[f"BatchNorm_{i - 1}"], batch_stats[f"BatchNorm_{i - 1}"] = _batch_norm(bn_name, bn_arrays,
                                                                                  _bias(arrays, w.shape[0]))
    else:
      params[f"Conv_{i}"]["bias"] = _bias(arrays, w.shape[0])
    chans.append(w.shape[0])
    names.append(name)
  w = _f32(out_arrays["weight"]) if out_kind != "bn" and chans else np.zeros((0, 0))
  flat = w.reshape(1, -1)   # a Linear's (1, c*s*s) or a Conv2d(c, 1, s)'s (1, c, s, s): (c, h, w) order
  s = _square(flat.shape[1], chans[-1]) if w.shape[0] == 1 else 0
  if not s or (out_kind == "conv" and w.shape[1] != chans[-1]):
    raise ValueError(f"layer {_describe(out_name, out_kind, out_arrays)} is not a DCGAN discriminator's logit: "
                     f"a Linear(c*s*s, 1) or a Conv2d(c, 1, s) over the last conv's c x s x s activations")
  params["Dense_0"] = {"kernel": _chw_to_hwc(flat.T, chans[-1], s), "bias": _bias(out_arrays, 1)}
  size = s * 2**len(chans)
  _check_size(size, image_size, "discriminator")
  _check_channels(chans, names, chans[0], size, "discriminator", [chans[0] * 2**i for i in range(len(chans))])
  model = _model_config(image_size=size, channels=int(params["Conv_0"]["kernel"].shape[2]), d_width=chans[0],
                        num_down=_depth(len(chans), size), d_batch_norm=normed, d_spectral_norm=False)
  return model, {"params": params, "batch_stats": batch_stats}


D_KEYS = ("d_family", "d_width", "num_down", "d_batch_norm", "d_spectral_norm")


def _check_variables(module, variables: dict, example, what: str) -> None:
  """Refuses variables whose structure or shapes are not what `module` builds."""
  want = jax.eval_shape(lambda: models.init_variables(module, jax.random.key(0), example))
  got = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jnp.float32), variables)
  if jax.tree.structure(want) != jax.tree.structure(got):
    raise ValueError(f"the {what}'s variables are not the ones its model config builds ({sorted(want['params'])} "
                     f"vs {sorted(got['params'])})")
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(want)[0], jax.tree.leaves(got)):
    if a.shape != b.shape:
      raise ValueError(f"the {what}'s {jax.tree_util.keystr(path)} has shape {b.shape}; its model config builds "
                       f"{a.shape}")


def _check_out(out: str) -> None:
  parent = os.path.dirname(os.path.abspath(out))
  if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
    raise OSError(errno.ENOENT if not os.path.exists(parent) else errno.ENOTDIR if not os.path.isdir(parent)
                  else errno.EACCES, "cannot create the converted teacher's folder there", out)
  if os.path.isdir(out) and os.listdir(out):
    raise FileExistsError(f"{out} exists and is not empty; give a new folder for the converted teacher")
  if os.path.exists(out) and not os.path.isdir(out):
    raise FileExistsError(f"{out} is a file; give a new folder for the converted teacher")


def write_teacher_workdir(out: str, model_config: ml_collections.ConfigDict, g_vars: dict, d_vars: dict | None = None,
                          source: Mapping[str, Any] | None = None, step: int = 0) -> None:
  """Writes `out` as a teacher workdir: config.json (base_config with `model_config`, which
  describes the discriminator too when `d_vars` are given, and `convert`: `source` and the
  date) and one checkpoint at `step` of kind 'teacher' holding the `generator` (and the
  `discriminator`) items and a placeholder train state. The folder is written beside `out`
  and renamed into place, so `out` is the whole workdir or absent. Refuses an existing
  non-empty `out`, and variables whose shapes the config does not build."""
  _check_out(out)
  config = config_lib.base_config()
  config.model = ml_collections.ConfigDict(model_config.to_dict())
  config_lib.validate(config)
  _check_variables(models.build_generator(config.model), g_vars, jnp.zeros((1, config.model.latent_dim)), "generator")
  networks = {"generator": g_vars}
  if d_vars is not None:
    _check_variables(models.build_discriminator(config.model), d_vars,
                     jnp.zeros((1,) + models.sample_shape(config.model)), "discriminator")
    networks["discriminator"] = d_vars
  networks = jax.tree.map(_f32, networks)
  bad = [jax.tree_util.keystr(k) for k, v in jax.tree_util.tree_flatten_with_path(networks)[0] if not np.all(np.isfinite(v))]
  if bad:
    raise ValueError(f"the weights are not finite ({bad[0]}); nothing written to {out}")
  record = dict(source or {}) | {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
  saved = json.loads(config.to_json()) | {"convert": record}
  parent, name = os.path.split(os.path.abspath(out))
  tmp = os.path.join(parent, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
  os.makedirs(tmp)
  try:
    files.write_atomic(os.path.join(tmp, "config.json"), lambda f: json.dump(saved, f, indent=2, sort_keys=True))
    ckpt = checkpoint.Checkpointer(os.path.join(tmp, "checkpoints"), keep=1)
    try:
      meta = {"step": step, "data_step": step, "kind": "teacher", "config": saved}
      ckpt.save(step, {"step": np.asarray(step, np.int32)}, meta, networks=networks)
    finally:
      ckpt.close()
    _check_out(out)
    os.replace(tmp, out)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _to_numpy(obj):
  """A loaded torch object with every tensor as a numpy array (floats as float32)."""
  import torch
  if isinstance(obj, torch.Tensor):
    t = obj.detach().cpu()
    return (t.float() if t.is_floating_point() else t).numpy()
  if isinstance(obj, Mapping):
    return {k: _to_numpy(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return type(obj)(_to_numpy(v) for v in obj)
  return obj


def _load(path: str):
  """The file's contents with numpy arrays for tensors: a .npz's arrays (flat, in order), or
  what torch.load(weights_only=True) reads from any other file."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: {'a folder, not a weights file' if os.path.isdir(path) else 'no such file'}")
  if path.endswith(".npz"):
    try:
      with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:   # corrupt zips; object arrays (pickles)
      raise ValueError(f"{path}: not an .npz of plain arrays, or truncated or corrupt ({type(e).__name__}: "
                       f"{' '.join(str(e).split())[:80]})") from None
  try:
    import torch
  except ImportError:
    raise ImportError(f"reading {path} needs PyTorch (pip install torch), or save the state dict as .npz: "
                      f"np.savez(path, **{{k: v.numpy() for k, v in state_dict.items()}})") from None
  try:
    return _to_numpy(torch.load(path, map_location="cpu", weights_only=True))
  except Exception as e:   # pickle and zip errors of many types: all mean "not a weights file torch can read"
    first = re.sub(r"\x1b\[[0-9;]*m", "", (str(e).strip().splitlines() or [type(e).__name__])[0])   # no colours
    raise ValueError(f"{path}: torch.load(weights_only=True) cannot read it ({first[:160]}); save "
                     f"model.state_dict() with torch.save") from None


def _is_state_dict(obj) -> bool:
  return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, np.ndarray) for v in obj.values())


def _pick(obj, key: str | None, path: str, flag: str = "--key") -> dict[str, np.ndarray]:
  """The state dict in a loaded file: the file itself, or its entry `key` (for a flat .npz,
  the arrays whose names start with 'key.', the prefix removed)."""
  if key:
    if isinstance(obj, Mapping) and key in obj:
      obj = obj[key]
    elif _is_state_dict(obj) and any(k.startswith(key + ".") for k in obj):
      obj = {k[len(key) + 1:]: v for k, v in obj.items() if k.startswith(key + ".")}
    else:
      entries = sorted(obj) if isinstance(obj, Mapping) else []
      raise ValueError(f"{path} has no entry {key!r} ({flag}); it holds {entries[:12]}")
  elif not _is_state_dict(obj):
    dicts = sorted(k for k, v in obj.items() if _is_state_dict(v)) if isinstance(obj, Mapping) else []
    raise ValueError(f"{path} is not a state dict itself; say which entry is ({flag}): "
                     + (", ".join(repr(k) for k in dicts) if dicts else "it holds none"))
  if not _is_state_dict(obj):
    raise ValueError(f"{path}: entry {key!r} is not a state dict (name -> tensor)")
  return dict(obj)


def read_torch_file(path: str, key: str | None = None) -> dict[str, np.ndarray]:
  """The state dict (name -> numpy array, in the saved order) in a .pt/.pth file, read with
  torch.load(map_location='cpu', weights_only=True), or in an .npz of its arrays (no torch
  needed): the file itself if it is one, else its entry `key` (e.g. 'G_ema')."""
  return _pick(_load(path), key, path)


def convert(path: str, out: str, key: str | None = None, d_key: str | None = None,
            image_size: int | None = None) -> dict:
  """Converts the PyTorch DCGAN generator in `path` (the state dict under `key`, or the file
  itself) and, with `d_key`, its discriminator into the teacher workdir `out`; returns a
  summary. A file that records its training steps as an int under 'steps' (the reference
  does) gives the checkpoint that step, else step 0. Errors are one line naming the file."""
  _check_out(out)
  contents = _load(path)
  try:
    model, g_vars = generator_from_state_dict(_pick(contents, key, path), image_size)
    d_vars = None
    if d_key:
      d_model, d_vars = discriminator_from_state_dict(_pick(contents, d_key, path, "--d-key"), model.image_size)
      if d_model.channels != model.channels:
        raise ValueError(f"the discriminator takes {d_model.channels} channels, the generator makes {model.channels}")
      model.update({k: d_model[k] for k in D_KEYS})
  except ValueError as e:
    raise ValueError(str(e) if str(e).startswith(path) else f"{path}: {e}") from None
  steps_ = contents.get("steps") if isinstance(contents, Mapping) else None
  step = steps_ if isinstance(steps_, int) and not isinstance(steps_, bool) and steps_ >= 0 else 0
  sha = files.sha256(path)
  write_teacher_workdir(out, model, g_vars, d_vars, {"file": os.path.abspath(path), "sha256": sha, "key": key,
                                                    "d_key": d_key}, step)
  summary = {"workdir": out, "file": path, "sha256": sha, "step": step,
             "generator": {k: model[k] for k in ("image_size", "channels", "latent_dim", "g_width")}
             | {"num_up": model.num_up or _DEFAULT_NUM_UP[model.image_size],
                "params": models.param_count(g_vars["params"])}}
  if d_vars is not None:
    summary["discriminator"] = {k: model[k] for k in ("d_width", "d_batch_norm")} | {
        "num_down": model.num_down or _DEFAULT_NUM_UP[model.image_size], "params": models.param_count(d_vars["params"])}
  return summary
