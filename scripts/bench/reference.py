"""PyTorch reference of a demix model for `demix bench`: the same weights, batch and threads,
trained with the same recipe (fused AdamW, global-norm clipping), eager and torch.compile.

Checks first that its loss on the bench batch equals the C++ loss (relative 1e-4), then times
training steps. Writes a JSON report.

usage: reference.py CHECKPOINT BATCH --expected-loss L --steps N --warmup W --threads T --json OUT
                    [--device cuda] [--bf16] [--no-compile]
"""

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file


class Block(nn.Module):
    def __init__(self, d, n_head, d_ff, n_experts):
        super().__init__()
        self.n_head = n_head
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        n = max(n_experts, 1)
        self.fc1 = nn.ModuleList(nn.Linear(d, d_ff) for _ in range(n))
        self.fc2 = nn.ModuleList(nn.Linear(d_ff, d) for _ in range(n))

    def forward(self, x, segments):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        h = self.ln_2(x)
        # rows are grouped by domain: each expert runs once on its contiguous rows
        ff = torch.cat([self.fc2[e](F.gelu(self.fc1[e](h[a:b]), approximate="tanh"))
                        for e, a, b in segments])
        return x + ff


class Gpt(nn.Module):
    def __init__(self, m, n_experts):
        super().__init__()
        d, d_ff = m["d_model"], m["d_ff"] or 4 * m["d_model"]
        self.wte = nn.Embedding(m["vocab_size"], d)
        self.wpe = nn.Embedding(m["seq_len"], d)
        self.blocks = nn.ModuleList(Block(d, m["n_head"], d_ff, n_experts)
                                    for _ in range(m["n_layer"]))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, tokens, targets, segments):
        x = self.wte(tokens) + self.wpe.weight[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x, segments)
        logits = (self.ln_f(x) @ self.wte.weight.T).float()  # the loss in fp32, as demix
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def load_weights(model, checkpoint, domains):
    shared = load_file(os.path.join(checkpoint, "shared.safetensors"))
    state = {}
    for name, t in shared.items():  # blocks.L.attn.qkv.weight -> blocks.L.qkv.weight
        state[name.replace(".attn.", ".").replace(".ff.", ".")] = t
    for e, domain in enumerate(domains or []):
        for name, t in load_file(os.path.join(checkpoint, "experts", domain + ".safetensors")).items():
            layer, rest = name.split(".ff.")
            kind, param = rest.split(".")
            state[f"{layer}.{kind}.{e}.{param}"] = t
    if not domains:  # dense: the shared FF is "expert" 0
        state = {k.replace(".fc1.", ".fc1.0.").replace(".fc2.", ".fc2.0."): v
                 for k, v in state.items()}
    model.load_state_dict(state, strict=True)


def segments_of(domains):
    out, start = [], 0
    for i in range(1, len(domains) + 1):
        if i == len(domains) or domains[i] != domains[start]:
            out.append((int(domains[start]), start, i))
            start = i
    return out


def time_steps(step, warmup, steps, device):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for i in range(warmup + steps):
        sync()
        start = time.perf_counter()
        step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("batch")
    p.add_argument("--expected-loss", type=float, required=True)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", required=True)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--bf16", action="store_true", help="forward under bfloat16 autocast")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="profile N more eager steps: self CPU time per op, to --json's .profile.txt")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    cfg = yaml.safe_load(open(os.path.join(a.checkpoint, "config.yaml")))
    m = cfg["model"]
    o = {k: float(v) for k, v in cfg["optim"].items() if k != "schedule"}  # YAML 1.1: "1e-08"
    if m.get("domain_token"):
        raise SystemExit("reference.py: +DOMAIN-TOKEN models are not supported")
    domains = cfg["data"]["domains"] if m["ff"] == "demix" else None
    device = torch.device(a.device)
    batch = load_file(a.batch)
    tokens, targets = batch["inputs"].to(device), batch["targets"].to(device)
    segments = segments_of(batch["domains"].tolist()) if domains else [(0, 0, len(tokens))]

    report = {"threads": torch.get_num_threads(), "tokens_per_step": tokens.numel()}
    for variant in ["eager"] + ([] if a.no_compile else ["compile"]):
        model = Gpt(m, len(domains or []))
        load_weights(model, a.checkpoint, domains)
        model.to(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.bf16)
        with torch.no_grad(), autocast():
            loss = model(tokens, targets, segments).item()
        # bf16: the same casts, but other kernels and summation orders than LibTorch's
        if abs(loss - a.expected_loss) > (1e-2 if a.bf16 else 1e-4) * abs(a.expected_loss):
            raise SystemExit(f"reference.py: loss {loss:.6f} != demix {a.expected_loss:.6f}")
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "wte" not in n
                 and "wpe" not in n]
        other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "wte" not in n
                                                                 and "wpe" not in n)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": o["weight_decay"]},
                                 {"params": other, "weight_decay": 0.0}], lr=o["lr"],
                                betas=(o["beta1"], o["beta2"]), eps=o["eps"], fused=True)
        forward = torch.compile(model) if variant == "compile" else model

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = forward(tokens, targets, segments)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), o["grad_clip"], foreach=True)
            opt.step()

        step_s = time_steps(step, a.warmup, a.steps, device)
        if variant == "eager" and a.profile > 0:
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(a.profile):
                    step()
            table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)
            open(a.json.replace(".json", ".profile.txt"), "w").write(table)
        report[variant] = {"loss": loss, "step_s": step_s, "tokens_per_s": tokens.numel() / step_s}
        if device.type == "cuda":
            report[variant]["peak_device_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        del model, opt, forward
        print(f"reference {variant}: loss {loss:.6f}, {step_s * 1e3:.1f} ms/step, "
              f"{tokens.numel() / step_s:.0f} tok/s", flush=True)
    json.dump(report, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
