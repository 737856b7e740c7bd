"""Models defined outside the package, reached by dotted path ('custom_models:...') from
configs in fresh processes (tests/ is put on PYTHONPATH)."""
import flax.linen as nn
import jax.numpy as jnp


class UpsampleGenerator(nn.Module):
  """z -> Dense -> BN -> ReLU -> nearest x2 -> conv -> BN -> ReLU -> nearest x2 -> conv -> tanh."""
  image_size: int
  channels: int
  width: int
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, z, train: bool = False, return_features: bool = False):
    bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum)
    s = self.image_size // 4
    h = nn.relu(bn()(nn.Dense(s * s * 2 * self.width)(z).reshape(-1, s, s, 2 * self.width)))
    features = [h]
    h = h.repeat(2, axis=1).repeat(2, axis=2)
    h = nn.relu(bn()(nn.Conv(self.width, (3, 3))(h)))
    features.append(h)
    image = jnp.tanh(nn.Conv(self.channels, (3, 3))(h.repeat(2, axis=1).repeat(2, axis=2)))
    return (image, features) if return_features else image


def upsample_generator(cfg):
  """A builder function: model.family='custom_models:upsample_generator'."""
  return UpsampleGenerator(image_size=cfg.image_size, channels=cfg.channels, width=cfg.g_width)


class PlainDiscriminator(nn.Module):
  """Two strided convs and a linear head, no normalisation (model.d_family='custom_models:PlainDiscriminator')."""
  width: int

  @classmethod
  def from_config(cls, cfg):
    return cls(width=cfg.d_width)

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    features = []
    for c in (self.width, 2 * self.width):
      x = nn.leaky_relu(nn.Conv(c, (4, 4), strides=2)(x), 0.2)
      features.append(x)
    logits = nn.Dense(1)(x.reshape(x.shape[0], -1))[:, 0]
    return (logits, features) if return_features else logits
