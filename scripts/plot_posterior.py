"""Plots of the domain posterior written by `demix eval --mixture`.

usage: plot_posterior.py POSTERIOR_CSV [POSITIONS_CSV] [--title DOMAIN]

POSTERIOR_CSV (domain x expert: the cached prior of each evaluated domain) becomes a heatmap
next to it (.png); POSITIONS_CSV (position x expert: P(D=j | x_<t) along one block) becomes a
line plot.
"""

import argparse
import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    return rows[0][1:], [r[0] for r in rows[1:]], [[float(v) for v in r[1:]] for r in rows[1:]]


def heatmap(path):
    experts, domains, values = read(path)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(experts), 1.0 + 0.45 * len(domains)))
    image = ax.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(experts)), experts, rotation=45, ha="right")
    ax.set_yticks(range(len(domains)), domains)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.5 else "black")
    ax.set_xlabel("expert")
    ax.set_ylabel("evaluated domain")
    ax.set_title("domain posterior (cached prior)")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(os.path.splitext(path)[0] + ".png", dpi=120)


def positions(path, title):
    experts, steps, values = read(path)
    fig, ax = plt.subplots(figsize=(8, 4))
    for j, name in enumerate(experts):
        ax.plot([int(s) for s in steps], [row[j] for row in values], label=name)
    ax.set_xlabel("position t")
    ax.set_ylabel("P(D = j | x<t)")
    ax.set_ylim(0, 1)
    ax.set_title(f"posterior along one block of {title} (uniform prior)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.splitext(path)[0] + ".png", dpi=120)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("posterior_csv")
    parser.add_argument("positions_csv", nargs="?")
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    heatmap(args.posterior_csv)
    if args.positions_csv:
        positions(args.positions_csv, args.title)


if __name__ == "__main__":
    main()
