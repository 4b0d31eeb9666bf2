"""Tables and plots of the experiment drivers, from the JSON reports that `demix eval` writes.

usage: tables.py EXPERIMENT RESULTS_DIR LABEL=NAME ...
  NAME.eval.json: a `demix eval` report (known-domain / dense perplexities per domain);
  NAME/mixture.json: a `demix eval --mixture` report (one column per prior).
Writes RESULTS_DIR/table.md, table.json and table.png, and prints the table.
"""

import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def columns(results, label, name):
    """{column label: {domain: test perplexity}} for one model."""
    plain = os.path.join(results, f"{name}.eval.json")
    if os.path.exists(plain):
        scores = json.load(open(plain))["scores"]
        return {label: {s["domain"]: s["perplexity"] for s in scores if s["split"] == "test"}}
    report = json.load(open(os.path.join(results, name, "mixture.json")))
    out = {}
    for row in report["domains"]:
        for variant, ppl in row["perplexity"].items():
            if ppl is not None and not (isinstance(ppl, float) and math.isnan(ppl)):
                out.setdefault(f"{label} {variant}", {})[row["domain"]] = ppl
    return out


def main():
    experiment, results, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
    table = {}
    for spec in specs:
        label, name = spec.split("=", 1)
        table.update(columns(results, label, name))
    if experiment == "in_domain":  # the training domains: those every model was scored on
        shared = set.intersection(*(set(col) for col in table.values()))
        table = {c: {d: v for d, v in col.items() if d in shared} for c, col in table.items()}
    if experiment == "novel_domains":  # only the held-out domains
        novel = set()
        for name in [s.split("=", 1)[1] for s in specs]:
            mixture = os.path.join(results, name, "mixture.json")
            if os.path.exists(mixture):
                novel |= {r["domain"] for r in json.load(open(mixture))["domains"]
                          if r["role"] == "novel"}
        table = {c: {d: v for d, v in col.items() if d in novel} for c, col in table.items()}
        table = {c: col for c, col in table.items() if col}
    domains = sorted({d for col in table.values() for d in col},
                     key=lambda d: min(list(col).index(d) for col in table.values() if d in col))
    lines = ["| domain | " + " | ".join(table) + " |", "|---|" + "---:|" * len(table)]
    for d in domains:
        lines.append(f"| {d} | " + " | ".join(
            f"{table[c][d]:.2f}" if d in table[c] else "-" for c in table) + " |")
    means = [math.exp(sum(math.log(table[c][d]) for d in domains) / len(domains))
             if all(d in table[c] for d in domains) else None for c in table]
    lines.append("| *geometric mean* | " + " | ".join(
        f"{m:.2f}" if m else "-" for m in means) + " |")
    text = "\n".join(lines) + "\n"
    open(os.path.join(results, "table.md"), "w").write(text)
    json.dump(table, open(os.path.join(results, "table.json"), "w"), indent=1)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(domains)), 4))
    width = 0.8 / len(table)
    for i, (c, col) in enumerate(table.items()):
        ax.bar([j + i * width for j in range(len(domains))],
               [col.get(d, 0) for d in domains], width, label=c)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(domains))], domains, rotation=30,
                  ha="right")
    ax.set_ylabel("test perplexity")
    ax.set_title(experiment.replace("_", " "))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(results, "table.png"), dpi=120)
    print(f"{results}/table.md\n{text}")


if __name__ == "__main__":
    main()
