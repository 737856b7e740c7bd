"""Convert pytorch-fid's InceptionV3 weights (.pth) into the .npz that
gandistill_jax.eval.inception.load_inception reads. Run once, where torch is installed:

    pip install torch
    python experiments/convert_pytorch_fid_weights.py pt_inception-2015-12-05-6726825d.pth inception_fid.npz

The .pth comes from the pytorch-fid release page (FID_WEIGHTS_URL in pytorch_fid/inception.py);
gandistill_jax never downloads it. torch.load runs with weights_only=True (no code is unpickled).
"""
import sys

import numpy as np


def main(src: str, dst: str) -> None:
  import torch
  state = torch.load(src, map_location="cpu", weights_only=True)
  arrays = {k: v.numpy() for k, v in state.items() if not k.endswith("num_batches_tracked") and not k.startswith("fc.")}
  np.savez(dst, **arrays)
  print(f"wrote {len(arrays)} arrays to {dst}")


if __name__ == "__main__":
  main(*sys.argv[1:3])
