#!/usr/bin/env python3
"""JAX (XLA on the CPU) reference for swift-vae's default model and protocol, for the speed
comparison of issue 16. Not part of CI; install into a virtual environment:

  python3 -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax numpy
  /tmp/jaxenv/bin/python scripts/jax_reference.py EPOCHS            # both cores
  taskset -c 0 /tmp/jaxenv/bin/python scripts/jax_reference.py EPOCHS   # one core

The model and protocol of `vae train` / `vae bench` with their defaults: Fashion-MNIST (Debian's
dataset-fashion-mnist) in [0, 1]; encoder 784-400 ReLU → μ, log σ² ∈ R²⁰; decoder 20-400 ReLU →
784 Bernoulli logits; analytic KL; batch 128, reshuffled every epoch; Adam (β 0.9, 0.999,
ε 1e-8) at 1e-3; weights and biases uniform in ±1/√in as PyTorch's nn.Linear. Prints each
epoch's seconds (the first includes XLA's compilation) and the test −ELBO in nats per image.
"""
import gzip
import os
import sys
import time

import numpy as np
import jax
import jax.numpy as jnp

DATA = "/usr/share/datasets/fashion-mnist"


def images(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[4:8], "big")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 784).astype(np.float32) / 255


def linear(key, fan_in, fan_out):
    bound = 1 / np.sqrt(fan_in)
    kw, kb = jax.random.split(key)
    return (jax.random.uniform(kw, (fan_in, fan_out), jnp.float32, -bound, bound),
            jax.random.uniform(kb, (fan_out,), jnp.float32, -bound, bound))


def init(key, hidden=400, latent=20):
    k = jax.random.split(key, 4)
    return {"e1": linear(k[0], 784, hidden), "e2": linear(k[1], hidden, 2 * latent),
            "d1": linear(k[2], latent, hidden), "d2": linear(k[3], hidden, 784)}


def negative_elbo(params, x, eps):
    """Summed over the batch: −log p(x|z) (Bernoulli on logits) + KL(q(z|x) ‖ N(0, I))."""
    h = jax.nn.relu(x @ params["e1"][0] + params["e1"][1])
    out = h @ params["e2"][0] + params["e2"][1]
    mu, logvar = jnp.split(out, 2, axis=1)
    z = mu + jnp.exp(0.5 * logvar) * eps
    g = jax.nn.relu(z @ params["d1"][0] + params["d1"][1])
    logits = g @ params["d2"][0] + params["d2"][1]
    # −[x log σ(l) + (1 − x) log(1 − σ(l))] = softplus(l) − x l, stable for any l.
    reconstruction = jnp.sum(jax.nn.softplus(logits) - x * logits)
    kl = 0.5 * jnp.sum(mu * mu + jnp.exp(logvar) - logvar - 1)
    return reconstruction + kl


@jax.jit
def step(params, m, v, t, x, eps, lr=1e-3, b1=0.9, b2=0.999, e=1e-8):
    loss, grads = jax.value_and_grad(lambda p: negative_elbo(p, x, eps) / x.shape[0])(params)
    m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
    v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
    step_size = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    params = jax.tree_util.tree_map(lambda p, m, v: p - step_size * m / (jnp.sqrt(v) + e * jnp.sqrt(1 - b2 ** t)), params, m, v)
    return params, m, v, loss


evaluate = jax.jit(negative_elbo)


def main():
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    train, test = images("train-images-idx3-ubyte.gz"), images("t10k-images-idx3-ubyte.gz")
    rng = np.random.default_rng(1)
    params = init(jax.random.PRNGKey(1))
    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    t, batch = 0, 128
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(len(train))
        for i in range(0, len(train), batch):
            x = train[order[i:i + batch]]
            t += 1
            eps = rng.standard_normal((len(x), 20), dtype=np.float32)
            params, m, v, loss = step(params, m, v, t, x, eps)
        loss.block_until_ready()
        seconds = time.perf_counter() - start
        eps = np.random.default_rng(0).standard_normal((len(test), 20), dtype=np.float32)
        print(f"epoch {epoch}: {seconds:.2f} s, test −ELBO {float(evaluate(params, test, eps)) / len(test):.2f}", flush=True)


if __name__ == "__main__":
    main()
