"""Speed of one plain PyTorch (eager, CPU) DCGAN training step, as an outside reference.

One step is a discriminator update followed by a generator update, both with the
non-saturating BCE loss. As in the PyTorch DCGAN example, the generator runs forward once per
step: its update reuses the fake batch the discriminator was just trained on. The "real" batch
is a fixed tensor of uniform noise, since only the time matters here.

This is a benchmark reference only, the kind of code a researcher would write in an afternoon;
it is not part of the package and torch is not a package dependency (`pip install torch`).
experiments/bench/bench_train_step.py runs it on the same shapes as the package's DCGAN
teacher benchmark, to report a speed ratio.

Usage (from the repository root):

    python experiments/reference/torch_dcgan_step.py [--ngf 64] [--batch 64] [--size 32] [--steps 20]

Architectures (n = --ngf, latent size 100):
  --size 32:
    G: Linear -> 4x4x4n, BN, ReLU -> ConvT(4, 2, 1) to 2n, BN, ReLU -> ConvT to n, BN, ReLU
       -> ConvT to 1, tanh
    D: Conv(4, 2, 1) to n, LReLU 0.2 -> to 2n, LReLU -> to 4n, LReLU -> Linear(4n*4*4, 1)
  any other --size (meant for 28):
    G: Linear -> 7x7x2n, BN, ReLU -> ConvT(4, 2, 1) to n, BN, ReLU -> ConvT to 1, tanh
    D: Conv(4, 2, 1) to n, LReLU 0.2 -> to 2n, LReLU -> Linear(2n*7*7, 1)
  Weights keep PyTorch's default initialisation.

After 3 warm-up steps it times --steps steps and prints one JSON line with the keys impl,
torch, ngf, batch, size, ms_per_step, images_per_s and g_params.
"""
import argparse
import json
import time

import torch
import torch.nn as nn

Z = 100  # latent dimension
WARMUP_STEPS = 3


def build(n, size):
  """G and D for size x size images: G starts at 4x4 (size 32, three transposed
  convolutions) or 7x7 (size 28, two); D mirrors it with as many stride-2 convolutions.
  Modules are created in the order the layers run, so torch's RNG gives each the same
  initial weights for the same seed."""
  ups = 3 if size == 32 else 2
  start = size // 2**ups
  chans = [n * 2**(ups - 1 - i) for i in range(ups)]   # G's hidden channels, coarse to fine
  g_layers = [nn.Linear(Z, start * start * chans[0]), nn.Unflatten(1, (chans[0], start, start)),
              nn.BatchNorm2d(chans[0]), nn.ReLU()]
  for c_in, c_out in zip(chans, chans[1:]):
    g_layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU()]
  g_layers += [nn.ConvTranspose2d(chans[-1], 1, 4, 2, 1), nn.Tanh()]
  d_layers, c_in = [], 1
  for c_out in reversed(chans):
    d_layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
    c_in = c_out
  d_layers += [nn.Flatten(), nn.Linear(chans[0] * start * start, 1)]
  return nn.Sequential(*g_layers), nn.Sequential(*d_layers)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--ngf", type=int, default=64)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--size", type=int, default=32)
  p.add_argument("--steps", type=int, default=20)
  args = p.parse_args()

  torch.set_num_threads(2)
  torch.manual_seed(0)
  n, B = args.ngf, args.batch

  G, D = build(n, args.size)
  opt_G = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
  opt_D = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
  bce = nn.BCEWithLogitsLoss()
  real = torch.rand(B, 1, args.size, args.size) * 2 - 1  # stands in for a data batch

  def train_step():
    fake = G(torch.randn(B, Z))

    # Discriminator: real -> 1, fake (detached) -> 0.
    opt_D.zero_grad()
    loss_D = bce(D(real), torch.ones(B, 1)) + bce(D(fake.detach()), torch.zeros(B, 1))
    loss_D.backward()
    opt_D.step()

    # Generator: non-saturating loss on the same fake batch.
    opt_G.zero_grad()
    loss_G = bce(D(fake), torch.ones(B, 1))
    loss_G.backward()
    opt_G.step()

  for _ in range(WARMUP_STEPS):
    train_step()

  start = time.perf_counter()
  for _ in range(args.steps):
    train_step()
  seconds_per_step = (time.perf_counter() - start) / args.steps

  print(json.dumps({
      "impl": "torch-eager",
      "torch": torch.__version__,
      "ngf": n,
      "batch": B,
      "size": args.size,
      "ms_per_step": round(seconds_per_step * 1e3, 1),
      "images_per_s": round(B / seconds_per_step, 1),
      "g_params": sum(p.numel() for p in G.parameters()),
  }))


if __name__ == "__main__":
  main()
