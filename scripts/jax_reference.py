#!/usr/bin/env python3
"""JAX (XLA) reference for swift-vae's default model and protocol, for the speed comparisons of
issues 16, 25 and 26. Not part of CI; install into a virtual environment:

  python3 -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax numpy
  /tmp/jaxenv/bin/python scripts/jax_reference.py [EPOCHS] [--data-dir DIR] [--device cpu|gpu] [--protocol default|iwae-paper]
  taskset -c 0 /tmp/jaxenv/bin/python scripts/jax_reference.py 3 --device cpu   # one core

The model and protocol of `vae train` / `vae bench` with their defaults: the IDX files in
--data-dir (gzipped or not; default Debian's dataset-fashion-mnist) in [0, 1]; encoder 784-400
ReLU → μ, log σ² ∈ R²⁰; decoder 20-400 ReLU → 784 Bernoulli logits; analytic KL; batch 128,
reshuffled every epoch; Adam (β 0.9, 0.999, ε 1e-8) at 1e-3; weights and biases uniform in
±1/√in as PyTorch's nn.Linear. JAX gets its best shot: the data set is put on the device once,
each step gathers its batch and draws ε (jax.random, keyed by the step) inside the jitted step,
so a step is one dispatch. --device picks XLA's platform (cpu: every core unless pinned with
taskset). Prints each epoch's seconds (the first includes XLA's compilation; the time is taken
after block_until_ready) and the test −ELBO in nats per image.
"""
import gzip
import os
import sys
import time

import argparse

import numpy as np

DATA = "/usr/share/datasets/fashion-mnist"


def images(data, name):
    path = os.path.join(data, name)
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
        raw = f.read()
    n = int.from_bytes(raw[4:8], "big")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 784).astype(np.float32) / 255


def linear(key, fan_in, fan_out):
    bound = 1 / np.sqrt(fan_in)
    kw, kb = jax.random.split(key)
    return (jax.random.uniform(kw, (fan_in, fan_out), jnp.float32, -bound, bound),
            jax.random.uniform(kb, (fan_out,), jnp.float32, -bound, bound))


def init(key, hidden=(400,), latent=20):
    """Encoder 784-hidden-2·latent and decoder latent-reversed(hidden)-784, as lists of (W, b)."""
    encoder = [784, *hidden, 2 * latent]
    decoder = [latent, *reversed(hidden), 784]
    keys = jax.random.split(key, len(encoder) + len(decoder) - 2)
    layers = [linear(k, a, b) for k, (a, b) in zip(keys, list(zip(encoder, encoder[1:])) + list(zip(decoder, decoder[1:])))]
    return {"encoder": layers[: len(encoder) - 1], "decoder": layers[len(encoder) - 1:]}


def network(layers, h, activation):
    for w, b in layers[:-1]:
        h = activation(h @ w + b)
    w, b = layers[-1]
    return h @ w + b


def negative_elbo(params, x, eps, activation=None, sampled_kl=False):
    """Summed over the batch: −log p(x|z) (Bernoulli on logits) + KL(q(z|x) ‖ N(0, I)), the KL
    analytic or (sampled_kl) log q(z|x) − log p(z) at the sample."""
    activation = activation or jax.nn.relu
    mu, logvar = jnp.split(network(params["encoder"], x, activation), 2, axis=1)
    z = mu + jnp.exp(0.5 * logvar) * eps
    logits = network(params["decoder"], z, activation)
    # −[x log σ(l) + (1 − x) log(1 − σ(l))] = softplus(l) − x l, stable for any l.
    reconstruction = jnp.sum(jax.nn.softplus(logits) - x * logits)
    if sampled_kl:
        kl = 0.5 * jnp.sum(z * z - logvar - eps * eps)
    else:
        kl = 0.5 * jnp.sum(mu * mu + jnp.exp(logvar) - logvar - 1)
    return reconstruction + kl


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("epochs", nargs="?", type=int, default=10)
    parser.add_argument("--data-dir", default=DATA)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--protocol", choices=["default", "iwae-paper"], default="default",
                        help="iwae-paper: `vae train --preset iwae-paper`'s model and first stage (784-200-200-50 tanh, "
                             "batch 20, dynamic binarisation, the sampled KL, Adam ε 1e-4)")
    args = parser.parse_args()
    paper = args.protocol == "iwae-paper"
    os.environ["JAX_PLATFORMS"] = "cuda" if args.device == "gpu" else "cpu"  # before jax is imported
    global jax, jnp
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_default_matmul_precision", "highest")  # FP32 products (no TF32 on a GPU)

    train_np = images(args.data_dir, "train-images-idx3-ubyte")
    test_np = images(args.data_dir, "t10k-images-idx3-ubyte")
    train, test = jnp.asarray(train_np), jnp.asarray(test_np)
    batch, latent, hidden = (20, 50, (200, 200)) if paper else (128, 20, (400,))
    activation = jnp.tanh if paper else jax.nn.relu
    steps = len(train_np) // batch + (1 if len(train_np) % batch else 0)

    @jax.jit
    def step(params, m, v, t, order, key, b1=0.9, b2=0.999, e=1e-4 if paper else 1e-8, lr=1e-3):
        index = jax.lax.dynamic_slice_in_dim(order, (t - 1) % steps * batch, batch)
        x = train[index]
        if paper:  # dynamic binarisation, on the device
            x = jax.random.bernoulli(jax.random.fold_in(key, -t), x).astype(jnp.float32)
        eps = jax.random.normal(jax.random.fold_in(key, t), (batch, latent), jnp.float32)
        loss, grads = jax.value_and_grad(lambda p: negative_elbo(p, x, eps, activation, paper) / batch)(params)
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
        tf = t.astype(jnp.float32)
        step_size = lr * jnp.sqrt(1 - b2 ** tf) / (1 - b1 ** tf)
        params = jax.tree_util.tree_map(lambda p, m, v: p - step_size * m / (jnp.sqrt(v) + e * jnp.sqrt(1 - b2 ** tf)), params, m, v)
        return params, m, v, loss

    evaluate = jax.jit(lambda p, x, eps: negative_elbo(p, x, eps, activation))
    rng = np.random.default_rng(1)
    key = jax.random.PRNGKey(2)
    params = init(jax.random.PRNGKey(1), hidden, latent)
    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    t = 0
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        # A whole number of full batches per epoch, the last one padded by wrapping the order
        # (the timing's shape is what matters; the test figure is a sanity check).
        order = rng.permutation(len(train_np))
        order = jnp.asarray(np.concatenate([order, order[: steps * batch - len(order)]]).astype(np.int32))
        for _ in range(steps):
            t += 1
            params, m, v, loss = step(params, m, v, jnp.int32(t), order, key)
        loss.block_until_ready()
        seconds = time.perf_counter() - start
        eps = jnp.asarray(np.random.default_rng(0).standard_normal((len(test_np), latent), dtype=np.float32))
        print(f"epoch {epoch}: {seconds:.2f} s, test −ELBO {float(evaluate(params, test, eps)) / len(test_np):.2f}", flush=True)


if __name__ == "__main__":
    main()
