#!/usr/bin/env python3
"""PyTorch reference for swift-vae's MLP protocols, for the speed and quality comparisons of
issues 15 and 16. Not part of CI; install into a virtual environment (PyPI carries a CPU-only
wheel, a tenth of the size of the default one):

  python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install "torch==2.13.0+cpu" numpy
  /tmp/torchenv/bin/python scripts/pytorch_reference.py [--protocol default|iwae-paper|conv]
      [--stochastic-layers 1|2] [--precision fp32|bf16] [--threads N] [--epochs E] [--data-dir DIR]
      [--iw-samples K] [--device cpu|cuda] [--compile none|default|reduce-overhead]

--device cuda runs everything on the GPU (the data set moved there once; TF32 off, so FP32 means
FP32; each epoch's time taken after torch.cuda.synchronize()); --compile wraps the loss in
torch.compile with that mode ("reduce-overhead" replays CUDA graphs), so the PyTorch figures of
the GPU table can be eager or compiled.

--protocol default is the model and protocol of `vae train` / `vae bench` with their defaults:
Fashion-MNIST (Debian's dataset-fashion-mnist) in [0, 1]; encoder 784-400 ReLU → μ, log σ² ∈ R²⁰;
decoder 20-400 ReLU → 784 Bernoulli logits; analytic KL; batch 128, reshuffled every epoch;
Adam (β 0.9, 0.999, ε 1e-8) at 1e-3; nn.Linear's own initialisation (uniform ±1/√in).

--protocol conv is the default protocol with `vae train --arch conv`'s model: two convolutions
(kernel 4, stride 2, padding 1; 32 and 64 channels, ReLU) and a Linear to μ, log σ² ∈ R²⁰; a Linear
back to 64 × 7 × 7 and two transposed convolutions to 784 Bernoulli logits.

--protocol iwae-paper is `vae train --preset iwae-paper` (Burda et al. 2015, one stochastic
layer, k = 1): MNIST (the four IDX files in --data-dir), dynamically binarised (each pixel ~
Bernoulli(intensity), redrawn every time an image is seen); encoder 784-200-200 tanh → μ, log σ²
∈ R⁵⁰; decoder 50-200-200 tanh → 784 Bernoulli logits; Monte-Carlo KL (log q − log p of the
sample, as the paper's code); batch 20; Adam (β 0.9, 0.999, ε 1e-4); the paper's schedule (stage
i = 0…7 lasts 3^i epochs at 1e-3 · 10^(−i/7)); Glorot-uniform weights, zero biases, the output
bias logit(mean training image) clipped to [0.001, 0.999]. With --stochastic-layers 2 it is the
paper's two-layer model (`vae train --preset iwae-paper --stochastic-layers 2`): q(z₁|x) through
784-200-200 → 2·100, q(z₂|z₁) through 100-100-100 → 2·50, p(z₁|z₂) through 50-100-100 → 2·100,
p(x|z₁) through 100-200-200 → 784, every term of log w sampled.

--precision bf16 runs the forward and backward passes under torch.autocast("cpu", bfloat16):
the matrix products take bf16 operands (oneDNN), the weights, Adam's state and the loss stay
FP32. --threads sets torch.set_num_threads (default: all cores); pin the process with taskset
for a one-core figure. Prints each epoch's seconds and the test −ELBO (nats per image, FP32, one
ε per image; for iwae-paper the test set is binarised once with a fixed seed). With --iw-samples K
it then estimates the test log p(x) = log (1/K) Σₖ p(x, zₖ) / q(zₖ|x), zₖ ~ q(z|x), in FP32 over all
test images (the paper's estimate with K = 5,000), and prints its mean and standard error.
"""
import argparse
import gzip
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def idx_images(directory, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rb") as f:
                raw = f.read()
            n = int.from_bytes(raw[4:8], "big")
            return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 784).astype(np.float32) / 255
    raise SystemExit(f"{directory}: no {name}[.gz]")


def glorot(layer):
    bound = math.sqrt(6 / (layer.in_features + layer.out_features))
    nn.init.uniform_(layer.weight, -bound, bound)
    nn.init.zeros_(layer.bias)
    return layer


class VAE(nn.Module):
    def __init__(self, hidden, latent, activation, init_glorot):
        super().__init__()
        act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
        make = (lambda i, o: glorot(nn.Linear(i, o))) if init_glorot else nn.Linear
        layers, width = [], 784
        for h in hidden:
            layers += [make(width, h), act()]
            width = h
        self.encoder = nn.Sequential(*layers, make(width, 2 * latent))
        layers, width = [], latent
        for h in reversed(hidden):
            layers += [make(width, h), act()]
            width = h
        self.decoder = nn.Sequential(*layers, make(width, 784))
        self.latent = latent

    def terms(self, x, eps, mc_kl):
        """Per image: −log p(x|z) (Bernoulli on logits) and the KL term (analytic, or the
        Monte-Carlo log q(z|x) − log p(z) of the sample)."""
        mu, logvar = self.encoder(x).float().chunk(2, dim=1)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = self.decoder(z).float()
        # −[x log σ(l) + (1 − x) log(1 − σ(l))] = softplus(l) − x l, stable for any l.
        reconstruction = (F.softplus(logits) - x * logits).sum(1)
        if mc_kl:
            # log N(z; μ, σ²) − log N(z; 0, I); the 2π terms cancel.
            kl = 0.5 * (z * z - eps * eps - logvar).sum(1)
        else:
            kl = 0.5 * (mu * mu + logvar.exp() - logvar - 1).sum(1)
        return reconstruction, kl


class ConvVAE(VAE):
    """`vae train --arch conv`'s reference model: x → Conv k4 s2 p1 (1→32) → ReLU → Conv (32→64)
    → ReLU → Linear(3136, 40) → μ, log σ²; z → Linear(20, 3136) → ReLU → ConvT k4 s2 p1 (64→32)
    → ReLU → ConvT (32→1) → Bernoulli logits; PyTorch's own initialisation."""

    def __init__(self, latent=20):
        nn.Module.__init__(self)
        self.encoder = nn.Sequential(
            nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(3136, 2 * latent))
        self.decoder = nn.Sequential(
            nn.Linear(latent, 3136), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Flatten())
        self.latent = latent


class TwoLayerVAE(nn.Module):
    """Burda et al.'s two-stochastic-layer model, tanh and Glorot-initialised throughout."""

    def __init__(self):
        super().__init__()

        def mlp(sizes):
            layers = []
            for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
                layers.append(glorot(nn.Linear(a, b)))
                if i < len(sizes) - 2:
                    layers.append(nn.Tanh())
            return nn.Sequential(*layers)

        self.encoder = mlp([784, 200, 200, 200])     # → [μ₁ | log σ₁²], z₁ ∈ R¹⁰⁰
        self.encoder2 = mlp([100, 100, 100, 100])    # → [μ₂ | log σ₂²], z₂ ∈ R⁵⁰
        self.decoder2 = mlp([50, 100, 100, 200])     # → [μ_p | log σ_p²] of z₁
        self.decoder = mlp([100, 200, 200, 784])     # → Bernoulli logits
        self.latent, self.latent2 = 100, 50

    def terms(self, x, eps, mc_kl, eps2=None):
        """Per image: −log p(x|z₁) and log q(z₁|x) + log q(z₂|z₁) − log p(z₁|z₂) − log p(z₂) (the 2π
        terms cancel), all at the samples."""
        mu1, lv1 = self.encoder(x).float().chunk(2, dim=1)
        z1 = mu1 + torch.exp(0.5 * lv1) * eps
        mu2, lv2 = self.encoder2(z1).float().chunk(2, dim=1)
        if eps2 is None:
            eps2 = torch.randn_like(mu2)
        z2 = mu2 + torch.exp(0.5 * lv2) * eps2
        mup, lvp = self.decoder2(z2).float().chunk(2, dim=1)
        logits = self.decoder(z1).float()
        reconstruction = (F.softplus(logits) - x * logits).sum(1)
        log_q = -0.5 * (lv1 + eps * eps).sum(1) - 0.5 * (lv2 + eps2 * eps2).sum(1)
        log_p = -0.5 * (lvp + (z1 - mup) ** 2 * torch.exp(-lvp)).sum(1) - 0.5 * (z2 * z2).sum(1)
        return reconstruction, log_q - log_p


def log_likelihood(model, images, samples, layers, chunk_rows=20000):
    """Per image: log (1/K) Σₖ w_k with log w = log p(x|z) + log p(z) − log q(z|x) = −(reconstruction
    + sampled KL), every term at the sample (the 2π terms cancel); log-sum-exp in float64."""
    per_chunk = max(1, chunk_rows // samples)
    estimates = []
    device = images.device
    generator = torch.Generator(device=device).manual_seed(2)
    with torch.no_grad():
        for i in range(0, len(images), per_chunk):
            x = images[i:i + per_chunk]
            rows = x.repeat_interleave(samples, dim=0)
            eps = torch.randn(len(rows), model.latent, generator=generator, device=device)
            extra = {"eps2": torch.randn(len(rows), model.latent2, generator=generator, device=device)} if layers == 2 else {}
            reconstruction, kl = model.terms(rows, eps, mc_kl=True, **extra)
            log_w = -(reconstruction + kl).double().view(len(x), samples)
            estimates.append(torch.logsumexp(log_w, dim=1) - math.log(samples))
    return torch.cat(estimates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", choices=["default", "iwae-paper", "conv"], default="default",
                        help="conv: the default protocol with `vae train --arch conv`'s model")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--stochastic-layers", type=int, choices=[1, 2], default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--iw-samples", type=int, default=0, help="after training: test log p(x) with K importance samples")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--compile", choices=["none", "default", "reduce-overhead"], default="none")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    paper = args.protocol == "iwae-paper"
    directory = args.data_dir or ("/work/shared/data/mnist" if paper else "/usr/share/datasets/fashion-mnist")
    train = torch.from_numpy(idx_images(directory, "train-images-idx3-ubyte"))
    test = torch.from_numpy(idx_images(directory, "t10k-images-idx3-ubyte"))
    if args.stochastic_layers == 2 and not paper:
        raise SystemExit("--stochastic-layers 2 is the iwae-paper protocol's model: add --protocol iwae-paper")
    if paper:
        model = TwoLayerVAE() if args.stochastic_layers == 2 else VAE([200, 200], 50, "tanh", init_glorot=True)
        mean = train.mean(0).clamp(0.001, 0.999)
        with torch.no_grad():
            model.decoder[-1].bias.copy_(torch.log(mean / (1 - mean)))
        batch, epsilon = 20, 1e-4
        test = torch.bernoulli(test, generator=torch.Generator().manual_seed(0))
    else:
        model = ConvVAE() if args.protocol == "conv" else VAE([400], 20, "relu", init_glorot=False)
        batch, epsilon = 128, 1e-8
    model.to(device)
    train, test = train.to(device), test.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=epsilon)
    test_eps = torch.from_numpy(np.random.default_rng(0).standard_normal((len(test), model.latent), dtype=np.float32)).to(device)
    terms = model.terms if args.compile == "none" else torch.compile(model.terms, mode=args.compile)

    def learning_rate(epoch):  # epoch counted from 0
        if not paper:
            return 1e-3
        stage, start = 0, 0
        while start + 3 ** stage <= epoch:
            start += 3 ** stage
            stage += 1
        return 1e-3 * 10 ** (-stage / 7)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{args.threads} thread(s)"
    print(f"torch {torch.__version__}, {where}, {args.protocol}, {args.stochastic_layers} stochastic layer(s), {args.precision}, compile {args.compile}", flush=True)
    for epoch in range(args.epochs):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(epoch)
        synchronize()
        start = time.perf_counter()
        order = torch.from_numpy(rng.permutation(len(train))).to(device)
        for i in range(0, len(train), batch):
            x = train[order[i:i + batch]]
            if paper:
                x = torch.bernoulli(x)
            eps = torch.randn(len(x), model.latent, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                reconstruction, kl = terms(x, eps, mc_kl=paper)
            loss = (reconstruction + kl).sum() / len(x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronize()
        seconds = time.perf_counter() - start
        with torch.no_grad():
            # One-layer models: the analytic KL; the two-layer one: every term at one sample.
            total = 0.0
            for i in range(0, len(test), 1000):  # in parts: the conv model's activations of 10,000 images are large
                reconstruction, kl = model.terms(test[i:i + 1000], test_eps[i:i + 1000], mc_kl=False, **({"eps2": torch.from_numpy(
                    np.random.default_rng(1).standard_normal((len(test), 50), dtype=np.float32)[i:i + 1000]).to(device)} if args.stochastic_layers == 2 else {}))
                total += float((reconstruction + kl).sum())
        print(f"epoch {epoch + 1}: {seconds:.2f} s, test −ELBO {total / len(test):.2f}", flush=True)

    if args.iw_samples > 0:
        synchronize()
        start = time.perf_counter()
        estimates = log_likelihood(model, test, args.iw_samples, args.stochastic_layers)
        synchronize()
        error = float(estimates.std()) / math.sqrt(len(estimates))
        print(f"test log p(x) {float(estimates.mean()):.2f} ± {error:.2f} (K = {args.iw_samples}, "
              f"{len(estimates)} images, {time.perf_counter() - start:.2f} s)", flush=True)


if __name__ == "__main__":
    main()
