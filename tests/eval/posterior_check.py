"""Checks the C++ domain posterior and mixture against NumPy (float64), written from the
formulas of the DEMix paper (sec. 5) with an explicit loop over positions.

Reads OUT_DIR/posterior.safetensors written by demix_parity_dump: synthetic per-expert token
log-probabilities of 2048-token blocks (down to -30 nats a token), a prior, and the C++ outputs.

usage: posterior_check.py OUT_DIR [--tol 1e-9]
"""

import argparse
import os
import sys

import numpy as np
from safetensors.numpy import load_file


def logsumexp(x, axis):
    top = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.sum(np.exp(x - top), axis=axis))


def reference(lp, log_prior, last_token):
    B, T, E = lp.shape
    log_post = np.empty_like(lp)
    evidence = np.zeros((B, E))
    for t in range(T):  # evidence about the domain from the tokens before t
        if t > 0:
            evidence = lp[:, t - 1] if last_token else evidence + lp[:, t - 1]
        joint = log_prior[None, :] + evidence
        log_post[:, t] = joint - logsumexp(joint, 1)[:, None]
    mixture = logsumexp(log_post + lp, 2)
    block_evidence = lp[:, -1] if last_token else lp.sum(1)
    block = log_prior[None, :] + block_evidence
    block = block - logsumexp(block, 1)[:, None]
    return log_post, mixture, block


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--tol", type=float, default=1e-9)
    args = parser.parse_args()
    got = load_file(os.path.join(args.out_dir, "posterior.safetensors"))
    lp, log_prior = got["expert_logprobs"], got["log_prior"]
    worst = 0.0
    for kind in ("prefix", "last_token"):
        expected = reference(lp, log_prior, kind == "last_token")
        for name, ref in zip(("log_posterior", "mixture", "block"), expected):
            mine = got[f"{kind}/{name}"]
            if not np.all(np.isfinite(mine)):
                print(f"posterior: {kind}/{name} is not finite", file=sys.stderr)
                return 1
            # posteriors compared as probabilities, mixtures as log-probabilities
            diff = np.max(np.abs(np.exp(mine) - np.exp(ref))) if name != "mixture" else \
                np.max(np.abs(mine - ref) / np.maximum(1.0, np.abs(ref)))
            worst = max(worst, diff)
            print(f"posterior: {kind}/{name} {tuple(mine.shape)} max difference {diff:.2e}")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
