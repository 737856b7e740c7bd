"""The baseline: a student-size DCGAN trained adversarially from scratch on Fashion-MNIST,
with the teacher's recipe and the teacher's discriminator (width 64, batch norm,
loss.reuse_fake): D is never deployed, so the baseline gets the teacher's D capacity.

    gandistill train-scratch --config experiments/configs/fashion_mnist_scratch.py \
        --workdir runs/scratch_w16 --set model.g_width=16
"""
from gandistill_jax.config import base_config


def get_config():
  c = base_config()
  c.data.name = "fashion_mnist"
  c.model.update(image_size=28, channels=1, g_width=16, d_width=64, latent_dim=100, d_batch_norm=True)
  c.loss.reuse_fake = True
  c.train.update(batch_size=64, steps=4000, ema_decay=0.999, log_every=50, sample_every=500, ckpt_every=500)
  return c
