#!/usr/bin/env python3
"""JAX (XLA) reference for swift-vae's default model and protocol, for the speed comparisons of
issues 16, 25 and 26. Not part of CI; install into a virtual environment:

  python3 -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax numpy
  /tmp/jaxenv/bin/python scripts/jax_reference.py [EPOCHS] [--data-dir DIR] [--device cpu|gpu] [--protocol default|iwae-paper|conv]
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


def conv_layer(key, c_in, c_out, fan_in, k=4):
    """A k × k convolution's weight (HWIO) and bias, uniform in ±1/√fan_in as PyTorch's."""
    bound = 1 / np.sqrt(fan_in)
    kw, kb = jax.random.split(key)
    return (jax.random.uniform(kw, (k, k, c_in, c_out), jnp.float32, -bound, bound),
            jax.random.uniform(kb, (c_out,), jnp.float32, -bound, bound))


def init_conv(key, latent=20, channels=(32, 64)):
    """The conv reference model (`vae train --arch conv`): x → Conv k4 s2 p1 (1→32) → ReLU → Conv
    (32→64) → ReLU → Linear(3136, 2·latent); z → Linear(latent, 3136) → ReLU → ConvT k4 s2 p1
    (64→32) → ReLU → ConvT (32→1) → logits."""
    k = jax.random.split(key, 6)
    flat = channels[1] * 7 * 7
    return {"encoder": [conv_layer(k[0], 1, channels[0], 16), conv_layer(k[1], channels[0], channels[1], channels[0] * 16),
                        linear(k[2], flat, 2 * latent)],
            "decoder": [linear(k[3], latent, flat), conv_layer(k[4], channels[1], channels[0], channels[0] * 16),
                        conv_layer(k[5], channels[0], 1, 16)]}


NHWC = ("NHWC", "HWIO", "NHWC")


def conv_encoder(layers, x, activation):
    h = x.reshape(-1, 28, 28, 1)
    for w, b in layers[:2]:
        h = activation(jax.lax.conv_general_dilated(h, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=NHWC) + b)
    w, b = layers[2]
    return h.reshape(h.shape[0], -1) @ w + b


def conv_decoder(layers, z, activation):
    w, b = layers[0]
    h = activation(z @ w + b).reshape(z.shape[0], 7, 7, -1)
    # PyTorch's ConvTranspose2d(k = 4, s = 2, p = 1): the input dilated by 2, padded by k − 1 − p.
    for i, (w, b) in enumerate(layers[1:]):
        h = jax.lax.conv_transpose(h, w, (2, 2), ((2, 2), (2, 2)), dimension_numbers=NHWC) + b
        if i == 0:
            h = activation(h)
    return h.reshape(h.shape[0], -1)


def negative_elbo(params, x, eps, activation=None, sampled_kl=False, conv=False):
    """Summed over the batch: −log p(x|z) (Bernoulli on logits) + KL(q(z|x) ‖ N(0, I)), the KL
    analytic or (sampled_kl) log q(z|x) − log p(z) at the sample."""
    activation = activation or jax.nn.relu
    encoder, decoder = (conv_encoder, conv_decoder) if conv else (network, network)
    mu, logvar = jnp.split(encoder(params["encoder"], x, activation), 2, axis=1)
    z = mu + jnp.exp(0.5 * logvar) * eps
    logits = decoder(params["decoder"], z, activation)
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
    parser.add_argument("--protocol", choices=["default", "iwae-paper", "conv"], default="default",
                        help="iwae-paper: `vae train --preset iwae-paper`'s model and first stage (784-200-200-50 tanh, "
                             "batch 20, dynamic binarisation, the sampled KL, Adam ε 1e-4); conv: `vae train --arch conv`'s "
                             "model (channels-last convolutions), otherwise the default protocol")
    args = parser.parse_args()
    paper, conv = args.protocol == "iwae-paper", args.protocol == "conv"
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
        loss, grads = jax.value_and_grad(lambda p: negative_elbo(p, x, eps, activation, paper, conv) / batch)(params)
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
        tf = t.astype(jnp.float32)
        step_size = lr * jnp.sqrt(1 - b2 ** tf) / (1 - b1 ** tf)
        params = jax.tree_util.tree_map(lambda p, m, v: p - step_size * m / (jnp.sqrt(v) + e * jnp.sqrt(1 - b2 ** tf)), params, m, v)
        return params, m, v, loss

    evaluate = jax.jit(lambda p, x, eps: negative_elbo(p, x, eps, activation, conv=conv))
    rng = np.random.default_rng(1)
    key = jax.random.PRNGKey(2)
    params = init_conv(jax.random.PRNGKey(1), latent) if conv else init(jax.random.PRNGKey(1), hidden, latent)
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
        test_elbo = sum(float(evaluate(params, test[i:i + 1000], eps[i:i + 1000])) for i in range(0, len(test_np), 1000))
        print(f"epoch {epoch}: {seconds:.2f} s, test −ELBO {test_elbo / len(test_np):.2f}", flush=True)


if __name__ == "__main__":
    main()
