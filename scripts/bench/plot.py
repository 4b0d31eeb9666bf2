"""Training tokens/s against active parameters, demix vs PyTorch eager and torch.compile, from
the bench.json files that `demix bench` writes. usage: plot.py RESULTS_DIR NAME ..."""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    results, names = sys.argv[1], sys.argv[2:]
    reports = [json.load(open(os.path.join(results, n, "bench.json"))) for n in names]
    sizes = [r["active_parameters"] / 1e6 for r in reports]
    fig, ax = plt.subplots(figsize=(6, 4))
    series = {"demix (C++)": [r["demix"]["tokens_per_s"] for r in reports]}
    for variant in ["eager", "compile"]:
        key = f"reference_{variant}_step_s"
        if all(key in r for r in reports):
            series[f"PyTorch {variant}"] = [r["tokens_per_step"] / r[key] for r in reports]
    for label, rates in series.items():
        ax.plot(sizes, rates, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("active parameters per token (M)")
    ax.set_ylabel("training tokens/s")
    ax.set_title(f"{reports[0]['device']}, {reports[0]['threads']} threads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(results, "tokens_per_s.png"), dpi=120)
    print(f"wrote {results}/tokens_per_s.png")


if __name__ == "__main__":
    main()
