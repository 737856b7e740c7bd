"""A plain PyTorch DCGAN on Fashion-MNIST (CPU): a teacher, and students distilled from it.

This is the kind of baseline a researcher would put together in an afternoon, kept here as an
outside point of comparison for sample quality (and speed) only. It is not part of the package,
and torch is not one of the package's dependencies: install it yourself (`pip install torch`)
to run this script.

Usage (from the repository root):

    # teacher: an ordinary GAN at width 64
    python experiments/reference/torch_dcgan_train.py --mode gan --width 64 --steps 4000 --out teacher
    # students at width 16, distilled from that teacher
    python experiments/reference/torch_dcgan_train.py --mode pixel --width 16 --steps 4000 \
        --out w16_pixel --teacher teacher
    python experiments/reference/torch_dcgan_train.py --mode joint --width 16 --steps 4000 \
        --out w16_joint --teacher teacher

Each run writes two files into --dir (default: the current directory):
  <out>.pt   {'G_ema': state dict of the EMA generator, 'width': its width, 'steps': --steps,
              'D': state dict of the discriminator (gan and joint runs)}
  <out>.npz  'images': 10,000 samples of the EMA generator, uint8, shape (N, 28, 28, 1)
The EMA generator's batch-norm statistics are re-estimated for the EMA weights before saving
and sampling. The samples are meant to be scored by the package's own evaluation, next to the
package's runs (see compare_reference.py in this directory).

Architectures (n = --width, latent size Z = 100):
  G(n): Linear(Z, 7*7*2n) -> reshape (2n, 7, 7) -> BN -> ReLU
        -> ConvTranspose(2n, n, 4, 2, 1) -> BN -> ReLU
        -> ConvTranspose(n, 1, 4, 2, 1) -> tanh                       (28x28 output)
  D:    Conv(1, 64, 4, 2, 1) -> LeakyReLU(0.2)
        -> Conv(64, 128, 4, 2, 1) -> BN -> LeakyReLU(0.2)
        -> flatten -> Linear(128*7*7, 1)
  All conv/linear weights ~ N(0, 0.02), biases 0; batch-norm scales ~ N(1, 0.02), shifts 0.

Objectives (batch 64 throughout; the generator keeps an EMA copy with decay 0.999):
  gan    non-saturating BCE; Adam(2e-4, betas=(0.5, 0.999)) for both G and D. The generator
         update reuses the fake batch that the discriminator update just saw.
  pixel  MSE between the student's and the frozen teacher's images for the same z; Adam(1e-3).
  joint  alpha * MSE + (1 - alpha) * adversarial loss against a freshly initialised D;
         Adam(2e-4, betas=(0.5, 0.999)) for both networks.

Other scripts load this file by path and use make_G, make_D, dcgan_init, read_idx_images,
recalibrate_bn, main and the constants Z and FMNIST; main() looks make_G up at call time,
so replacing the module's make_G changes the generator it trains.
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

Z = 100  # latent dimension
FMNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

BATCH = 64
EMA_DECAY = 0.999
EMA_RATE = 0.001  # written out: 1 - 0.999 is not exactly 0.001 in floating point
NUM_SAMPLES_BATCHES = 10
SAMPLES_PER_BATCH = 1000
SAMPLE_SEED = 2024


def make_G(n):
  """The generator at width n: z -> 7x7x2n -> 14x14xn -> 28x28x1 in [-1, 1]."""
  return nn.Sequential(
      nn.Linear(Z, 7 * 7 * 2 * n),
      nn.Unflatten(1, (2 * n, 7, 7)),
      nn.BatchNorm2d(2 * n),
      nn.ReLU(True),
      nn.ConvTranspose2d(2 * n, n, 4, 2, 1),
      nn.BatchNorm2d(n),
      nn.ReLU(True),
      nn.ConvTranspose2d(n, 1, 4, 2, 1),
      nn.Tanh(),
  )


def make_D(n=64):
  """The discriminator: 28x28x1 -> 14x14xn -> 7x7x2n -> one logit."""
  return nn.Sequential(
      nn.Conv2d(1, n, 4, 2, 1),
      nn.LeakyReLU(0.2, True),
      nn.Conv2d(n, 2 * n, 4, 2, 1),
      nn.BatchNorm2d(2 * n),
      nn.LeakyReLU(0.2, True),
      nn.Flatten(),
      nn.Linear(2 * n * 49, 1),
  )


def dcgan_init(m):
  """The usual DCGAN initialisation, in place, visiting submodules in order."""
  for mod in m.modules():
    if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
      nn.init.normal_(mod.weight, 0, 0.02)
      nn.init.zeros_(mod.bias)
    elif isinstance(mod, nn.BatchNorm2d):
      nn.init.normal_(mod.weight, 1, 0.02)
      nn.init.zeros_(mod.bias)


def read_idx_images(path):
  """A gzipped IDX image file (the MNIST format) as a uint8 array (count, height, width)."""
  data = gzip.open(path).read()
  # Header: a 4-byte magic number, then count, rows and columns as big-endian 32-bit ints.
  count, height, width = (int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
  return np.frombuffer(data, np.uint8, count * height * width, 16).reshape(count, height, width)


@torch.no_grad()
def recalibrate_bn(G, batches=40, bs=256):
  """Re-estimate G's batch-norm statistics for its current (EMA) weights.

  The running statistics copied along with the EMA weights were collected with the live
  generator's weights, so they are reset and replaced by a plain average over fresh batches.
  """
  gen = torch.Generator().manual_seed(1234)
  for m in G.modules():
    if isinstance(m, nn.BatchNorm2d):
      m.reset_running_stats()
      m.momentum = None  # cumulative average rather than an exponential one
  G.train()
  for _ in range(batches):
    G(torch.randn(bs, Z, generator=gen))
  G.eval()


def parse_args():
  p = argparse.ArgumentParser()
  p.add_argument("--mode", choices=["gan", "pixel", "joint"], required=True)
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--steps", type=int, default=4000)
  p.add_argument("--alpha", type=float, default=0.5)
  p.add_argument("--teacher", default="")
  p.add_argument("--out", required=True)
  p.add_argument("--dir", default=".")
  p.add_argument("--seed", type=int, default=0)
  return p.parse_args()


def adam_gan(params):
  """The DCGAN paper's Adam settings."""
  return torch.optim.Adam(params, 2e-4, betas=(0.5, 0.999))


def main():
  args = parse_args()
  torch.set_num_threads(2)
  torch.manual_seed(args.seed)

  # Training images in [-1, 1], shape (N, 1, 28, 28).
  X = torch.from_numpy(read_idx_images(FMNIST).copy()).float().div_(127.5).sub_(1).unsqueeze(1)

  # Networks. The order of construction fixes which draws of torch's global RNG each one
  # gets: G, then its EMA copy, then D (if any), then the teacher (if any).
  G = make_G(args.width)
  dcgan_init(G)
  ema = make_G(args.width)
  ema.load_state_dict(G.state_dict())

  D = None
  opt_D = None
  if args.mode in ("gan", "joint"):
    D = make_D()
    dcgan_init(D)
    opt_D = adam_gan(D.parameters())

  if args.mode == "pixel":
    opt_G = torch.optim.Adam(G.parameters(), 1e-3)
  else:
    opt_G = adam_gan(G.parameters())

  teacher = None
  if args.mode != "gan":
    saved = torch.load(os.path.join(args.dir, args.teacher + ".pt"))
    teacher = make_G(saved["width"])
    teacher.load_state_dict(saved["G_ema"])
    teacher.eval()

  bce = nn.BCEWithLogitsLoss()
  ones = torch.ones(BATCH, 1)
  zeros = torch.zeros(BATCH, 1)

  # Separate generators for the latents and for the data order.
  gen_z = torch.Generator().manual_seed(args.seed + 2)
  gen_data = torch.Generator().manual_seed(args.seed + 1)
  perm = torch.randperm(len(X), generator=gen_data)
  ptr = 0
  t0 = time.time()

  for step in range(args.steps):
    z = torch.randn(BATCH, Z, generator=gen_z)
    fake = G(z)

    if D is not None:
      # Next real batch; reshuffle once the epoch has no full batch left.
      if ptr + BATCH > len(X):
        perm = torch.randperm(len(X), generator=gen_data)
        ptr = 0
      real = X[perm[ptr:ptr + BATCH]]
      ptr += BATCH

      # Discriminator update on this real batch and the (detached) fake batch.
      loss_D = bce(D(real), ones) + bce(D(fake.detach()), zeros)
      opt_D.zero_grad(set_to_none=True)
      loss_D.backward()
      opt_D.step()

      # Non-saturating generator loss against the just-updated D, same fake batch.
      adv = bce(D(fake), ones)

    if teacher is not None:
      with torch.no_grad():
        target = teacher(z)
      mse = F.mse_loss(fake, target)

    if args.mode == "gan":
      loss = adv
    elif args.mode == "pixel":
      loss = mse
    else:
      loss = args.alpha * mse + (1 - args.alpha) * adv

    opt_G.zero_grad(set_to_none=True)
    loss.backward()
    opt_G.step()

    # EMA of the generator's parameters (buffers are left alone; see recalibrate_bn).
    with torch.no_grad():
      for p_ema, p_live in zip(ema.parameters(), G.parameters()):
        p_ema.mul_(EMA_DECAY).add_(p_live, alpha=EMA_RATE)

    if (step + 1) % 500 == 0:
      print(f"step {step + 1}/{args.steps} loss {loss.item():.4f} {time.time() - t0:.0f}s", flush=True)

  recalibrate_bn(ema)
  saved = {"G_ema": ema.state_dict(), "width": args.width, "steps": args.steps}
  if D is not None:
    saved["D"] = D.state_dict()
  torch.save(saved, os.path.join(args.dir, args.out + ".pt"))

  # Fixed-seed samples from the EMA generator, as uint8 NHWC.
  gen = torch.Generator().manual_seed(SAMPLE_SEED)
  with torch.no_grad():
    x = torch.cat([ema(torch.randn(SAMPLES_PER_BATCH, Z, generator=gen)) for _ in range(NUM_SAMPLES_BATCHES)])
  images = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
  np.savez_compressed(os.path.join(args.dir, args.out + ".npz"), images=images)
  print(f"wrote {args.out}.pt and {args.out}.npz ({len(images)} samples) in {time.time() - t0:.0f}s")


if __name__ == "__main__":
  main()
