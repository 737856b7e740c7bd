"""DCGAN teacher on Fashion-MNIST (28x28x1, base width 64, ~760k G params).

The recipe of the PyTorch DCGAN reference: batch norm in D (real and fake batches apart)
and the G update scoring the D update's fake batch (loss.reuse_fake).
"""
from gandistill_jax.config import base_config


def get_config():
  c = base_config()
  c.data.name = "fashion_mnist"
  c.model.update(image_size=28, channels=1, g_width=64, d_width=64, latent_dim=100)
  c.model.d_batch_norm = True
  c.loss.update(name="nonsaturating", reuse_fake=True)
  c.train.update(batch_size=64, steps=6000, ema_decay=0.999, log_every=50, sample_every=500, ckpt_every=500)
  return c
