"""Checks the C++ model against an independent PyTorch implementation (float64).

Reads the checkpoint and logits written by demix_parity_dump, rebuilds the forward pass from the
saved tensors alone (config.yaml for the shape), and compares logits. Shares no code with the
C++ side: attention is written out with an explicit causal mask, not scaled_dot_product_attention.

usage: parity_check.py OUT_DIR [--tol 1e-5]
"""

import argparse
import glob
import math
import os
import sys

import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file


def load(path):
    return {k: v.double() for k, v in load_file(path).items()}


def layer_norm(x, w, b):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * w + b


def attention(x, p, prefix, n_head):
    B, T, C = x.shape
    hs = C // n_head
    qkv = x @ p[prefix + "qkv.weight"].T + p[prefix + "qkv.bias"]  # (B, T, 3C)
    q, k, v = qkv.split(C, dim=2)
    q, k, v = (t.view(B, T, n_head, hs).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
    scores = q @ k.transpose(-2, -1) / math.sqrt(hs)  # (B, nh, T, T)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    y = scores.softmax(-1) @ v  # (B, nh, T, hs)
    y = y.transpose(1, 2).reshape(B, T, C)
    return y @ p[prefix + "proj.weight"].T + p[prefix + "proj.bias"]


def mlp(x, p, prefix):
    h = F.gelu(x @ p[prefix + "fc1.weight"].T + p[prefix + "fc1.bias"], approximate="tanh")
    return h @ p[prefix + "fc2.weight"].T + p[prefix + "fc2.bias"]


def forward(cfg, shared, experts, tokens, domains):
    m = cfg["model"]
    n_layer, n_head = m["n_layer"], m["n_head"]
    demix = m["ff"] == "demix"
    demix_layers = set(m["demix_layers"] or range(n_layer)) if demix else set()
    x = shared["wte.weight"][tokens]  # (B, T, C)
    if m["domain_token"]:
        x = torch.cat([shared["domain_tokens.weight"][domains].unsqueeze(1), x], dim=1)
    x = x + shared["wpe.weight"][: x.shape[1]]
    for layer in range(n_layer):
        b = f"blocks.{layer}."
        x = x + attention(layer_norm(x, shared[b + "ln_1.weight"], shared[b + "ln_1.bias"]),
                          shared, b + "attn.", n_head)
        h = layer_norm(x, shared[b + "ln_2.weight"], shared[b + "ln_2.bias"])
        if layer in demix_layers:  # each row through the expert of its domain
            names = cfg["data"]["domains"]
            ff = torch.stack([mlp(h[r], experts[names[d]], b + "ff.")
                              for r, d in enumerate(domains.tolist())])
        else:
            ff = mlp(h, shared, b + "ff.")
        x = x + ff
    x = layer_norm(x, shared["ln_f.weight"], shared["ln_f.bias"])
    if m["domain_token"]:
        x = x[:, 1:]
    return x @ shared["wte.weight"].T


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--tol", type=float, default=1e-5)
    args = parser.parse_args()
    ckpt = open(os.path.join(args.out_dir, "checkpoints", "latest")).read().strip()
    ckpt = os.path.join(args.out_dir, "checkpoints", ckpt)
    with open(os.path.join(ckpt, "config.yaml")) as f:
        cfg = yaml.safe_load(f)
    shared = load(os.path.join(ckpt, "shared.safetensors"))
    experts = {os.path.basename(p)[: -len(".safetensors")]: load(p)
               for p in sorted(glob.glob(os.path.join(ckpt, "experts", "*.safetensors")))}
    dump = load_file(os.path.join(args.out_dir, "logits.safetensors"))
    with torch.no_grad():
        ref = forward(cfg, shared, experts, dump["tokens"], dump["domains"])
    diff = (ref - dump["logits"].double()).abs().max().item()
    scale = ref.abs().max().item()
    print(f"parity: {len(shared)} shared + {sum(map(len, experts.values()))} expert tensors, "
          f"logits {tuple(ref.shape)}, max |logit| {scale:.3f}, max abs diff {diff:.3e} "
          f"(tolerance {args.tol:.0e})")
    if not diff <= args.tol:
        print("parity: FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
