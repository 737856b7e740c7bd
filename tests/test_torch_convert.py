"""PyTorch DCGANs converted into teacher workdirs (gandistill_jax.torch_convert) compute what
PyTorch computes: the reference's 28 px G(8) (a Linear projection with a bias, NCHW flatten)
and D, and a pytorch/examples-style 64 px G and D (a ConvTranspose2d projection on a 1 x 1
input, no biases, keys under 'module.main.'), read back through the package's own readers;
anything else is refused in one line; an .npz of the weights converts without torch."""
import json
import os
import sys

import jax
import numpy as np
import pytest

from gandistill_jax import export, torch_convert, workdir as workdir_lib

torch = pytest.importorskip("torch", reason="needs torch (.ci/run installs it)")
nn = torch.nn


def randomise(*modules):
  """Weights away from their init: DCGAN-sized conv/linear weights, non-zero biases (the
  projection's is not removed by batch norm), and batch norms whose affine parameters and
  running statistics are far from (1, 0) and (0, 1), so a misplaced one shows."""
  torch.manual_seed(0)
  with torch.no_grad():
    for m in modules:
      for layer in m.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
          layer.weight.normal_(0, 0.05)
          if layer.bias is not None:
            layer.bias.normal_(0, 0.1)
        elif isinstance(layer, nn.BatchNorm2d):
          layer.weight.normal_(1, 0.2)
          layer.bias.normal_(0, 0.2)
          layer.running_mean.normal_(0, 0.3)
          layer.running_var.uniform_(0.5, 2.0)
      m.eval()


def reference_pair(n=8, d_width=8):
  """The reference's G(n) and D (experiments/reference/torch_dcgan_train.py) at 28 px."""
  g = nn.Sequential(nn.Linear(100, 7 * 7 * 2 * n), nn.Unflatten(1, (2 * n, 7, 7)), nn.BatchNorm2d(2 * n), nn.ReLU(),
                    nn.ConvTranspose2d(2 * n, n, 4, 2, 1), nn.BatchNorm2d(n), nn.ReLU(),
                    nn.ConvTranspose2d(n, 1, 4, 2, 1), nn.Tanh())
  d = nn.Sequential(nn.Conv2d(1, d_width, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(d_width, 2 * d_width, 4, 2, 1),
                    nn.BatchNorm2d(2 * d_width), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(2 * d_width * 49, 1))
  randomise(g, d)
  return g, d


class ExamplesG(nn.Module):
  """pytorch/examples' dcgan generator (64 px), z of shape (B, nz, 1, 1)."""

  def __init__(self, nz, ngf, nc):
    super().__init__()
    up = lambda i, o: [nn.ConvTranspose2d(i, o, 4, 2, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(True)]
    self.main = nn.Sequential(nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8),
                              nn.ReLU(True), *up(ngf * 8, ngf * 4), *up(ngf * 4, ngf * 2), *up(ngf * 2, ngf),
                              nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

  def forward(self, z):
    return self.main(z)


class ExamplesD(nn.Module):
  """pytorch/examples' dcgan discriminator (64 px): a probability, through a sigmoid."""

  def __init__(self, ndf, nc):
    super().__init__()
    down = lambda i, o: [nn.Conv2d(i, o, 4, 2, 1, bias=False), nn.BatchNorm2d(o), nn.LeakyReLU(0.2, True)]
    self.main = nn.Sequential(nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
                              *down(ndf, ndf * 2), *down(ndf * 2, ndf * 4), *down(ndf * 4, ndf * 8),
                              nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())

  def forward(self, x):
    return self.main(x).view(-1)


def numpy_state(module, prefix=""):
  return {prefix + k: v.numpy() for k, v in module.state_dict().items()}


def assert_generator_matches(workdir, g, z, torch_z):
  with jax.default_matmul_precision("highest"):
    ours = export.load_generator(workdir)(z)
  with torch.no_grad():
    theirs = g(torch_z).numpy().transpose(0, 2, 3, 1)
  assert ours.shape == theirs.shape
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


def discriminator_logits(workdir, x):
  module, variables, _, _ = workdir_lib.restore_network(workdir, "discriminator")
  with jax.default_matmul_precision("highest"):
    return np.asarray(module.apply(variables, x, train=False))


def test_reference_teacher_file_converts_to_a_workdir_that_samples_as_pytorch(tmp_path):
  g, d = reference_pair()
  path = str(tmp_path / "teacher.pt")
  torch.save({"G_ema": g.state_dict(), "D": d.state_dict(), "width": 8, "steps": 300}, path)
  out = str(tmp_path / "converted")
  summary = torch_convert.convert(path, out, key="G_ema", d_key="D")
  assert summary["step"] == 300 and summary["generator"]["g_width"] == 8 and summary["generator"]["num_up"] == 2
  assert summary["discriminator"]["d_batch_norm"] is True

  z = np.random.default_rng(0).standard_normal((16, 100)).astype(np.float32)
  assert_generator_matches(out, g, z, torch.from_numpy(z))
  x = np.random.default_rng(1).uniform(-1, 1, (16, 28, 28, 1)).astype(np.float32)
  with torch.no_grad():
    theirs = d(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))[:, 0].numpy()
  np.testing.assert_allclose(discriminator_logits(out, x), theirs, rtol=1e-5, atol=1e-5)

  # read as a teacher: its kind, its provenance, and what a distillation loads from it
  assert workdir_lib.run_kind(out) == "teacher"
  with open(os.path.join(out, "config.json")) as f:
    record = json.load(f)["convert"]
  assert record["key"] == "G_ema" and len(record["sha256"]) == 64 and record["date"]
  student = workdir_lib.load_config(out)
  model, teacher = workdir_lib.load_teacher(out, student)
  assert model.g_width == 8 and set(teacher) == {"g", "d"}


def test_examples_style_64px_generator_and_discriminator(tmp_path):
  g, d = ExamplesG(nz=16, ngf=4, nc=3), ExamplesD(ndf=4, nc=3)
  randomise(g, d)
  model, g_vars = torch_convert.generator_from_state_dict(numpy_state(g, "module."))   # as DataParallel saves
  # four upsamplings, the family's default depth at 64 px, recorded as 0 like the package's own configs
  assert (model.image_size, model.channels, model.latent_dim, model.g_width, model.num_up) == (64, 3, 16, 4, 0)
  d_model, d_vars = torch_convert.discriminator_from_state_dict(numpy_state(d), image_size=64)
  assert (d_model.d_width, d_model.num_down, d_model.d_batch_norm) == (4, 0, True)
  model.update({k: d_model[k] for k in torch_convert.D_KEYS})
  out = str(tmp_path / "examples")
  torch_convert.write_teacher_workdir(out, model, g_vars, d_vars, {"file": "netG.pth"})

  z = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
  assert_generator_matches(out, g, z, torch.from_numpy(z)[:, :, None, None])
  x = np.random.default_rng(1).uniform(-1, 1, (8, 64, 64, 3)).astype(np.float32)
  with torch.no_grad():
    theirs = d(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  np.testing.assert_allclose(1 / (1 + np.exp(-discriminator_logits(out, x))), theirs, rtol=1e-5, atol=1e-6)

  with pytest.raises(FileExistsError, match="not empty"):
    torch_convert.write_teacher_workdir(out, model, g_vars)


def one_line_error(match, fn, *args, **kw):
  with pytest.raises(ValueError, match=match) as e:
    fn(*args, **kw)
  assert "\n" not in str(e.value)
  return str(e.value)


def test_what_is_not_a_dcgan_is_refused_in_one_line(tmp_path):
  mlp = nn.Sequential(nn.Linear(100, 64), nn.ReLU(), nn.Linear(64, 784), nn.Tanh())
  one_line_error("a DCGAN generator starts with", torch_convert.generator_from_state_dict, numpy_state(mlp))
  # channels that do not halve stage by stage: the projection's 16 where width 4 has 8
  odd = nn.Sequential(nn.Linear(100, 7 * 7 * 16), nn.Unflatten(1, (16, 7, 7)), nn.BatchNorm2d(16), nn.ReLU(),
                      nn.ConvTranspose2d(16, 4, 4, 2, 1), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.ConvTranspose2d(4, 1, 4, 2, 1), nn.Tanh())
  one_line_error(r"layer '0' makes 16 channels; a dcgan generator of width 4 at 28x28 has 8",
                 torch_convert.generator_from_state_dict, numpy_state(odd))
  g, d = reference_pair()
  one_line_error("not image_size=32", torch_convert.generator_from_state_dict, numpy_state(g), image_size=32)
  one_line_error("a DCGAN discriminator starts|not the Conv2d", torch_convert.discriminator_from_state_dict,
                 numpy_state(g))
  path = str(tmp_path / "two.pt")
  torch.save({"G_ema": g.state_dict(), "D": d.state_dict()}, path)
  message = one_line_error("say which entry", torch_convert.convert, path, str(tmp_path / "out"))
  assert message.startswith(path) and "'D', 'G_ema'" in message
  message = one_line_error("a DCGAN generator", torch_convert.convert, path, str(tmp_path / "out"), key="D")
  assert message.startswith(path)
  assert not os.path.exists(tmp_path / "out")


def test_npz_weights_convert_without_torch(tmp_path, monkeypatch):
  g, _ = reference_pair()
  path = str(tmp_path / "teacher.npz")
  np.savez(path, **numpy_state(g, "G_ema."))
  pt = tmp_path / "weights.pt"
  pt.write_bytes(b"never read")
  out = str(tmp_path / "from_npz")
  with monkeypatch.context() as m:
    m.setitem(sys.modules, "torch", None)   # `import torch` fails in here
    with pytest.raises(ImportError, match="needs PyTorch"):
      torch_convert.read_torch_file(str(pt))
    assert list(torch_convert.read_torch_file(path, key="G_ema")) == list(g.state_dict())
    assert torch_convert.convert(path, out, key="G_ema")["step"] == 0
  z = np.random.default_rng(2).standard_normal((8, 100)).astype(np.float32)
  assert_generator_matches(out, g, z, torch.from_numpy(z))
  _, teacher = workdir_lib.load_teacher(out)   # a teacher without a discriminator
  assert teacher["d"] is None
