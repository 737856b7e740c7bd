"""A seconds-long smoke test: a tiny DCGAN on Fashion-MNIST."""
from gandistill_jax.config import base_config


def get_config():
  c = base_config()
  c.data.name = "fashion_mnist"
  c.model.update(image_size=28, channels=1, g_width=8, d_width=8, latent_dim=32)
  c.train.update(batch_size=32, steps=40, log_every=10, sample_every=20, ckpt_every=20, ema_decay=0.9)
  return c
