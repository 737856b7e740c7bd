"""DCGAN teacher on Fashion-MNIST (28x28x1, base width 64, ~760k G params)."""
from gandistill_jax.config import base_config


def get_config():
  c = base_config()
  c.data.name = "fashion_mnist"
  c.model.update(image_size=28, channels=1, g_width=64, d_width=64, latent_dim=100)
  c.loss.name = "nonsaturating"
  c.train.update(batch_size=64, steps=6000, ema_decay=0.999, log_every=50, sample_every=500, ckpt_every=500)
  return c
