"""The PyTorch peer of `make bench`: seed 000's G and D in PyTorch, mapped and trained on the same
schedule as anogan_tf's (150 Adam iterations on z, 50 at 1e-1 and 100 at 1e-2, lam 0.7, f(x) at
D's first LeakyReLU; training: batch 256, one D step and two G steps per batch), in float32 or
in bfloat16 autocast (losses in float32). Run by bench.py in a process of its own; PyTorch is
installed for the bench only (`make bench`), and its rows are skipped when it is missing."""

from __future__ import annotations

import contextlib
import os
import time

import numpy as np

LAM, STAGES = 0.7, ((50, 1e-1), (100, 1e-2))


def _torch():
  import torch
  torch.set_num_threads(os.cpu_count() or 1)
  return torch


def networks(seed=0):
  torch = _torch()
  nn = torch.nn
  torch.manual_seed(seed)

  class Generator(nn.Module):
    def __init__(self):
      super().__init__()
      self.dense = nn.Linear(50, 7 * 7 * 32)
      self.body = nn.Sequential(
          nn.BatchNorm2d(32, momentum=0.01, eps=1e-3), nn.LeakyReLU(0.2),
          nn.ConvTranspose2d(32, 16, 3, 2, 1, output_padding=1), nn.BatchNorm2d(16, momentum=0.01, eps=1e-3),
          nn.LeakyReLU(0.2),
          nn.ConvTranspose2d(16, 8, 3, 2, 1, output_padding=1), nn.BatchNorm2d(8, momentum=0.01, eps=1e-3),
          nn.LeakyReLU(0.2),
          nn.ConvTranspose2d(8, 1, 3, 1, 1), nn.Tanh())

    def forward(self, z):
      return self.body(self.dense(z).view(-1, 32, 7, 7))

  class Discriminator(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1 = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1), nn.LeakyReLU(0.2))
      self.rest = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(32 * 7 * 7, 1))

    def features(self, x):
      return self.conv1(x).flatten(1)

    def forward(self, x):
      return self.rest(self.conv1(x))

  return Generator(), Discriminator()


def _autocast(bf16: bool):
  torch = _torch()
  return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _images(n, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, 1, 28, 28)).astype(np.float32)


def map_batch(g, d, x, bf16: bool, seed=0, stages=STAGES):
  """Scores of the images x (n, 1, 28, 28): AnoGAN's search, all images at once."""
  torch = _torch()
  gen = torch.Generator().manual_seed(seed)
  z = (torch.rand((len(x), 50), generator=gen) * 2 - 1).requires_grad_(True)
  with torch.no_grad(), _autocast(bf16):
    fx = d.features(x).float()
  for steps, lr in stages:
    opt = torch.optim.Adam([z], lr=lr, eps=1e-8)
    for _ in range(steps):
      opt.zero_grad(set_to_none=True)
      with _autocast(bf16):
        generated = g(z)
        fg = d.features(generated)
      residual = (x - generated.float()).abs().mean(dim=(1, 2, 3))
      loss = (1 - LAM) * residual + LAM * (fx - fg.float()).abs().mean(dim=1)
      loss.sum().backward()
      opt.step()
  return loss.detach()


def measure_mapping(batch_size: int, n_images: int, bf16: bool) -> dict:
  torch = _torch()
  g, d = networks()
  g.eval(), d.eval()
  for p in list(g.parameters()) + list(d.parameters()):
    p.requires_grad_(False)
  x = torch.from_numpy(_images(n_images + batch_size))
  map_batch(g, d, x[:batch_size], bf16, stages=((2, 1e-1), (2, 1e-2)))  # warm-up
  began = time.perf_counter()
  for first in range(batch_size, batch_size + n_images, batch_size):
    map_batch(g, d, x[first:first + batch_size], bf16)
  seconds = time.perf_counter() - began
  return {"batch_size": batch_size, "images": n_images, "seconds": round(seconds, 3),
          "images_per_second": round(n_images / seconds, 3), "precision": "bfloat16" if bf16 else "float32",
          "torch": torch.__version__}


def measure_training(bf16: bool, batch_size=256, n_images=5120, epochs=3) -> dict:
  torch = _torch()
  g, d = networks()
  g.train(), d.train()
  bce = torch.nn.functional.binary_cross_entropy_with_logits
  g_opt = torch.optim.Adam(g.parameters(), lr=1e-3, eps=1e-8)
  d_opt = torch.optim.Adam(d.parameters(), lr=1e-3, eps=1e-8)
  x_all = torch.from_numpy(_images(n_images))

  def epoch():
    for first in range(0, n_images, batch_size):
      x = x_all[first:first + batch_size]
      z = torch.rand((len(x), 50)) * 2 - 1
      d_opt.zero_grad(set_to_none=True)
      with _autocast(bf16):
        fake = g(z)
        real_logits, fake_logits = d(x).float(), d(fake.detach()).float()
      d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
      d_loss.backward()
      d_opt.step()
      for _ in range(2):
        g_opt.zero_grad(set_to_none=True)
        with _autocast(bf16):
          logits = d(g(z)).float()
        g_loss = bce(logits, torch.ones_like(logits))
        g_loss.backward()
        g_opt.step()

  for first in range(0, 2 * batch_size, batch_size):  # warm-up: two batches
    x = x_all[first:first + batch_size]
    with _autocast(bf16):
      d(g(torch.rand((len(x), 50)) * 2 - 1)).float().mean().backward()
  began = time.perf_counter()
  for _ in range(epochs):
    epoch()
  seconds = time.perf_counter() - began
  return {"batch_size": batch_size, "images": n_images * epochs, "seconds": round(seconds, 3),
          "images_per_second": round(n_images * epochs / seconds, 1), "precision": "bfloat16" if bf16 else "float32",
          "step": "1 D step + 2 G steps per batch", "torch": torch.__version__}
