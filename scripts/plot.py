"""PNG plots of a run directory written by `demix train` and `demix eval`.

usage: plot.py RUN_DIR [--out DIR]

  training.png     training loss per domain (validation loss per domain as markers), learning
                   rate and tokens/s against the step, from RUN_DIR/metrics.jsonl
  perplexity.png   test perplexity per domain from RUN_DIR/eval.json (known-domain routing) and,
                   when present, every prior's column of RUN_DIR/mixture/mixture.json

The posterior heatmaps of `demix eval --mixture` are drawn by plot_posterior.py.
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def series(records, key):
    points = [(r["step"], r[key]) for r in records if key in r]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training(records, out):
    domains = sorted({k.split("/")[2] for r in records for k in r if k.startswith("train/domain/")})
    fig, (loss_ax, lr_ax, speed_ax) = plt.subplots(1, 3, figsize=(16, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, domain in enumerate(domains):
        color = colors[i % len(colors)]
        loss_ax.plot(*series(records, f"train/domain/{domain}/loss"), color=color, lw=1, label=domain)
        steps, val = series(records, f"val/domain/{domain}/loss")
        loss_ax.plot(steps, val, "o", color=color, ms=4)
    if not domains:
        loss_ax.plot(*series(records, "train/loss"), lw=1, label="train")
    loss_ax.set(xlabel="step", ylabel="loss (nats/token)", title="loss per domain (o: validation)")
    loss_ax.legend(fontsize=7, ncol=2)
    lr_ax.plot(*series(records, "train/lr"))
    lr_ax.set(xlabel="step", ylabel="learning rate", title="learning rate")
    speed_ax.plot(*series(records, "perf/tokens_per_s"))
    speed_ax.set(xlabel="step", ylabel="tokens/s", title="training throughput")
    speed_ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_perplexity(run_dir, out):
    columns = {}  # label -> {domain: perplexity}
    eval_path = os.path.join(run_dir, "eval.json")
    if os.path.exists(eval_path):
        scores = json.load(open(eval_path))["scores"]
        test = [s for s in scores if s["split"] == "test"]
        if test:
            label = f"eval.json: known domain ({test[0]['tokens']} tokens)"
            columns[label] = {s["domain"]: s["perplexity"] for s in test}
    mixture_path = os.path.join(run_dir, "mixture", "mixture.json")
    if os.path.exists(mixture_path):
        rows = json.load(open(mixture_path))["domains"]
        for row in rows:
            for variant, value in row["perplexity"].items():
                if value is not None:  # top-1 has no expert for a novel domain
                    label = f"mixture.json: {variant} ({rows[0]['tokens']} tokens)"
                    columns.setdefault(label, {})[row["domain"]] = value
    if not columns:
        return False
    domains = list(dict.fromkeys(d for c in columns.values() for d in c))
    width = 0.8 / len(columns)
    fig, ax = plt.subplots(figsize=(4.0 + 0.9 * len(domains), 4.5))
    for i, (label, values) in enumerate(columns.items()):
        xs = [d + i * width for d, name in enumerate(domains) if name in values]
        ax.bar(xs, [values[n] for n in domains if n in values], width, label=label)
    ax.set_xticks([d + 0.4 - width / 2 for d in range(len(domains))], domains, rotation=45, ha="right")
    ax.set(ylabel="test perplexity (first N tokens of each domain)", yscale="log",
           title=os.path.basename(os.path.normpath(run_dir)))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", help="directory for the PNGs (default: RUN_DIR)")
    args = parser.parse_args()
    out = args.out or args.run_dir
    os.makedirs(out, exist_ok=True)
    plot_training(read_metrics(os.path.join(args.run_dir, "metrics.jsonl")),
                  os.path.join(out, "training.png"))
    print(f"wrote {out}/training.png")
    if plot_perplexity(args.run_dir, os.path.join(out, "perplexity.png")):
        print(f"wrote {out}/perplexity.png")


if __name__ == "__main__":
    main()
