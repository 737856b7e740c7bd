"""MLP GAN on the ring of 8 Gaussians (hinge loss + R1, as in the tests)."""
from gandistill_jax.config import base_config


def get_config():
  c = base_config()
  c.data.update(name="ring8", source="toy")
  c.model.update(family="mlp", latent_dim=64, g_width=128, d_width=128)
  c.loss.update(name="hinge", r1_gamma=0.1)
  c.optim.update(g_lr=1e-3, d_lr=1e-3)
  c.train.update(batch_size=256, steps=6000, ema_decay=0.99, log_every=200, sample_every=1000, ckpt_every=1000)
  return c
