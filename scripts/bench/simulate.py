"""Step time and all-reduced bytes of DEMix vs dense DDP at scale, on paper: an alpha-beta model.

usage: simulate.py [--out DIR]                      the table + PNG for the four GPT-3 shapes
       simulate.py --bytes CONFIG --world W         the gradient bytes one rank all-reduces per
                                                    step (what `demix train` logs under a launch)

Model (per optimizer step, per GPU):
  compute   = tokens * (6 * N_active + 12 * L * C * T) / (peak * mfu)     (same for both)
  allreduce = ring over n ranks of S bytes: 2 (n - 1) alpha + 2 (n - 1) / n * S / beta
  dense DDP: one all-reduce of every gradient over all W GPUs
  DEMix:     the shared gradients over all W GPUs, plus each expert's over its W / E GPUs (groups
             of consecutive ranks, all at once); an expert alone on its GPUs needs none
  a ring inside one 8-GPU node runs at NVLink's (alpha, beta), else at InfiniBand's
  step time without overlap = compute + allreduce; with overlap the all-reduce hides behind the
  backward pass (2/3 of compute): max(compute, compute / 3 + allreduce)
Figures (assumptions, change them with the flags): A100 SXM nodes of 8 GPUs; NVLink 3: all-reduce
bus bandwidth 230 GB/s, alpha 5 us; InfiniBand HDR, one 200 Gb/s NIC per GPU: 23 GB/s, alpha
10 us; bf16 peak 312 TFLOP/s at 45% MFU; fp32 gradients (4 bytes); 8 sequences of 1024 tokens
per GPU; 8 experts (one per domain) in every layer; vocabulary 50257 (GPT-2's, as the paper).
"""

import argparse
import json
import os

import yaml

SHAPES = {  # the paper's GPT-3 shapes: (layers, d_model)
    "GPT-3 small": (12, 768),
    "GPT-3 medium": (24, 1024),
    "GPT-3 large": (24, 1536),
    "GPT-3 XL": (24, 2048),
}


def load_config(path):
    """A demix YAML config with its `base:` chain resolved (sections merged key by key)."""
    raw = yaml.safe_load(open(path)) or {}
    config = {}
    if "base" in raw:
        config = load_config(os.path.join(os.path.dirname(path), raw.pop("base")))
    for section, values in raw.items():
        config.setdefault(section, {}).update(values or {})
    return config


def parameters(V, T, C, L, F):
    """(shared, one expert) parameter counts of a DEMix GPT whose every FF is a DEMix layer."""
    shared = V * C + T * C + L * (4 * C + 3 * C * C + 3 * C + C * C + C) + 2 * C
    expert = L * (C * F + F + F * C + C)
    return shared, expert


def ring(size_bytes, n, alpha, beta):
    return 0.0 if n < 2 else 2 * (n - 1) * alpha + 2 * (n - 1) / n * size_bytes / beta


def link(n, node, nvlink, infiniband):
    return nvlink if n <= node else infiniband


def step(a, V, T, C, L, E, W):
    shared, expert = parameters(V, T, C, L, 4 * C)
    tokens = a.sequences * T
    compute = tokens * (6 * (shared + expert) + 12 * L * C * T) / (a.peak * a.mfu)
    nv, ib = (a.nvlink_alpha, a.nvlink_beta), (a.ib_alpha, a.ib_beta)
    dense_bytes = 4 * (shared + expert)
    group = max(1, W // E)
    demix_shared, demix_expert = 4 * shared, 4 * expert * (group > 1)
    dense_comm = ring(dense_bytes, W, *link(W, a.node, nv, ib))
    demix_comm = ring(demix_shared, W, *link(W, a.node, nv, ib)) + ring(
        demix_expert, group, *link(group, a.node, nv, ib))
    overlap = lambda comm: max(compute, compute / 3 + comm)
    return {"gpus": W, "compute_ms": 1e3 * compute,
            "dense_bytes": dense_bytes, "demix_bytes": demix_shared + demix_expert,
            "dense_ms": 1e3 * (compute + dense_comm), "demix_ms": 1e3 * (compute + demix_comm),
            "dense_overlap_ms": 1e3 * overlap(dense_comm),
            "demix_overlap_ms": 1e3 * overlap(demix_comm)}


def table(a):
    rows, data = [], {}
    for name, (L, C) in SHAPES.items():
        data[name] = []
        for W in (8, 16, 32, 64, 128, 256):
            r = step(a, a.vocab, 1024, C, L, a.experts, W)
            data[name].append(r)
            rows.append(f"| {name} | {W} | {r['dense_bytes'] / 1e6:.0f} | "
                        f"{r['demix_bytes'] / 1e6:.0f} | {r['compute_ms']:.0f} | "
                        f"{r['dense_ms']:.0f} | {r['demix_ms']:.0f} | "
                        f"{r['dense_overlap_ms']:.0f} | {r['demix_overlap_ms']:.0f} |")
    head = ("| shape | GPUs | dense MB all-reduced | DEMix MB all-reduced | compute ms | "
            "dense ms | DEMix ms | dense ms (overlap) | DEMix ms (overlap) |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    return head + "\n" + "\n".join(rows) + "\n", data


def plot(data, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, rows) in enumerate(data.items()):
        gpus = [r["gpus"] for r in rows]
        ax.plot(gpus, [r["dense_ms"] for r in rows], "--", color=f"C{i}", label=f"{name} dense")
        ax.plot(gpus, [r["demix_ms"] for r in rows], "-", color=f"C{i}", label=f"{name} DEMix")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("GPUs")
    ax.set_ylabel("predicted step time, no overlap (ms)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/bench/simulate")
    p.add_argument("--bytes", metavar="CONFIG")
    p.add_argument("--world", type=int, default=1)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--sequences", type=int, default=8)
    p.add_argument("--node", type=int, default=8)
    p.add_argument("--nvlink-alpha", type=float, default=5e-6)
    p.add_argument("--nvlink-beta", type=float, default=230e9)
    p.add_argument("--ib-alpha", type=float, default=10e-6)
    p.add_argument("--ib-beta", type=float, default=23e9)
    p.add_argument("--peak", type=float, default=312e12)
    p.add_argument("--mfu", type=float, default=0.45)
    a = p.parse_args()
    if a.bytes:  # what one rank all-reduces: shared over all, its expert over its group
        m, d = load_config(a.bytes)["model"], load_config(a.bytes)["data"]
        E = len(d["domains"]) if m.get("ff", "demix") == "demix" else 0
        C = m["d_model"]
        shared, expert = parameters(m["vocab_size"], m["seq_len"], C, m["n_layer"],
                                    m.get("d_ff") or 4 * C)
        if E == 0:
            shared, expert = shared + expert, 0
        group = a.world // E if E and a.world > E else 1
        print(json.dumps({"shared_bytes": 4 * shared, "expert_bytes": 4 * expert * (group > 1)}))
        return
    text, data = table(a)
    os.makedirs(a.out, exist_ok=True)
    open(os.path.join(a.out, "table.md"), "w").write(text)
    json.dump(data, open(os.path.join(a.out, "table.json"), "w"), indent=1)
    plot(data, os.path.join(a.out, "table.png"))
    print(text)


if __name__ == "__main__":
    main()
