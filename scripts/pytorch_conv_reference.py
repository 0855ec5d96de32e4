#!/usr/bin/env python3
"""PyTorch reference for swift-vae's conv reference model: the speed comparison and a check of
its checkpoint files. Needs PyTorch (not installed by scripts/setup.sh: `pip install torch`),
and NumPy and safetensors for `check`.

  python3 scripts/pytorch_conv_reference.py train EPOCHS   # seconds per epoch, test −ELBO
  python3 scripts/pytorch_conv_reference.py check RUN/model.safetensors

`train` runs the same model and protocol as `vae bench --arch conv`: Fashion-MNIST in [0, 1],
Bernoulli likelihood on logits, batch 128, Adam 1e-3, 2 threads, and prints each epoch's time
and the test −ELBO (nats per image). `check` loads a swift-vae checkpoint into the equivalent
nn.Sequential modules (the names match) and saves μ and the mean reconstruction of the first
1000 test images to /tmp/torch_mu.npy and /tmp/torch_recon.npy, to compare with `vae encode`
and `vae reconstruct`.
"""
import gzip
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist/")


def images(name):
    with gzip.open(os.path.join(DATA, name)) as f:
        pixels = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    return torch.tensor(pixels, dtype=torch.float32) / 255


class VAE(nn.Module):
    def __init__(self, latent=20):
        super().__init__()
        self.latent = latent
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(3136, 2 * latent))
        self.decoder = nn.Sequential(
            nn.Linear(latent, 3136), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1))

    def forward(self, x):
        h = self.encoder(x)
        mu, logvar = h[:, :self.latent], h[:, self.latent:]
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = self.decoder(z)
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)
        return (reconstruction + kl).mean()


def train(epochs):
    torch.set_num_threads(2)
    torch.manual_seed(1)
    train_images, test_images = images("train-images-idx3-ubyte.gz"), images("t10k-images-idx3-ubyte.gz")
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        start = time.time()
        order = torch.randperm(len(train_images))
        for i in range(0, len(train_images), 128):
            loss = model(train_images[order[i:i + 128]])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds = time.time() - start
        with torch.no_grad():
            test = sum(model(test_images[i:i + 1000]).item() * 1000 for i in range(0, 10000, 1000)) / 10000
        print(f"epoch {epoch + 1}: {seconds:.2f} s  test -ELBO {test:.2f}", flush=True)


def check(path):
    from safetensors.numpy import load_file
    model = VAE()
    weights = load_file(path)
    model.load_state_dict({k: torch.tensor(v) for k, v in weights.items() if not k.startswith("likelihood")})
    with torch.no_grad():
        mu = model.encoder(images("t10k-images-idx3-ubyte.gz")[:1000])[:, :model.latent]
        mean = torch.sigmoid(model.decoder(mu))
    np.save("/tmp/torch_mu.npy", mu.numpy())
    np.save("/tmp/torch_recon.npy", mean.numpy())
    print("wrote /tmp/torch_mu.npy and /tmp/torch_recon.npy")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "train":
        train(int(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "check":
        check(sys.argv[2])
    else:
        sys.exit(__doc__)
