"""Tables and plots of the experiment drivers, from the JSON reports that `demix eval` writes.

usage: tables.py in_domain|novel_domains RESULTS_DIR LABEL=NAME ...
       tables.py clusters RESULTS_DIR BALANCE K ...
       tables.py dapt|removal RESULTS_DIR DOMAIN ...
       tables.py mode RESULTS_DIR NAME ...
       tables.py budget_sweep RESULTS_DIR NAME ...
  NAME.eval.json: a `demix eval` report (known-domain / dense perplexities per domain);
  NAME/mixture.json: a `demix eval --mixture` report (one column per prior).
  dapt: demix_before/, dense_before.eval.json, demix_DOMAIN/, dense_DOMAIN.eval.json;
  removal: full/, removed_DOMAIN/, leave_one_out_DOMAIN/ (see scripts/experiments/*.sh).
  mode: NAME.eval.json, NAME.config.yaml, NAME.checkpoint (its path); placement_*.metrics.jsonl.
  budget_sweep: STEPS/NAME.eval.json, STEPS/NAME.metrics.jsonl and, for DEMix, STEPS/NAME_mixture/.
Writes RESULTS_DIR/table.md, table.json and table.png, and prints the table.
"""

import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def eval_report(path):
    """{domain: test perplexity} of a `demix eval` report."""
    scores = json.load(open(path))["scores"]
    return {s["domain"]: s["perplexity"] for s in scores if s["split"] == "test"}


def mixture_report(path):
    """{variant: {domain: test perplexity}} and {domain: role} of a `demix eval --mixture` report."""
    rows = json.load(open(os.path.join(path, "mixture.json")))["domains"]
    variants = {}
    for row in rows:
        for variant, ppl in row["perplexity"].items():
            if ppl is not None and not (isinstance(ppl, float) and math.isnan(ppl)):
                variants.setdefault(variant, {})[row["domain"]] = ppl
    return variants, {row["domain"]: row["role"] for row in rows}


def columns(results, label, name):
    """{column label: {domain: test perplexity}} for one model."""
    plain = os.path.join(results, f"{name}.eval.json")
    if os.path.exists(plain):
        return {label: eval_report(plain)}
    variants, _ = mixture_report(os.path.join(results, name))
    return {f"{label} {variant}": col for variant, col in variants.items()}


def geomean(values):
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))


def markdown(title, header, rows):
    """A Markdown table; None cells print as '-'."""
    cell = lambda v: "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |",
             "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_outputs(results, text, data, fig):
    open(os.path.join(results, "table.md"), "w").write(text)
    json.dump(data, open(os.path.join(results, "table.json"), "w"), indent=1)
    fig.tight_layout()
    fig.savefig(os.path.join(results, "table.png"), dpi=120)
    print(f"{results}/table.md\n{text}")


def dapt(results, new_domains):
    """Experiment 3: per new domain, every old domain and the new one before and after DAPT."""
    demix_before, roles = mixture_report(os.path.join(results, "demix_before"))
    dense_before = eval_report(os.path.join(results, "dense_before.eval.json"))
    old = [d for d, role in roles.items() if role == "train"]
    text, data, summary = "", {}, []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for new in new_domains:
        after, _ = mixture_report(os.path.join(results, f"demix_{new}"))
        dense_after = eval_report(os.path.join(results, f"dense_{new}.eval.json"))
        columns = {  # before DAPT the new domain has no expert: it is mixed with the cached prior
            "DEMix before": {**demix_before["top1"], new: demix_before["cached"][new]},
            "DEMix-DAPT top-1": after["top1"],
            "DEMix-DAPT cached": after["cached"],
            "Dense before": dense_before,
            "Dense-DAPT": dense_after,
        }
        rows = [[d + (" (new)" if d == new else "")] + [c.get(d) for c in columns.values()]
                for d in [new] + old]
        old_means = {name: geomean(c[d] for d in old) for name, c in columns.items()}
        rows.append(["*old domains, geometric mean*"] + list(old_means.values()))
        text += markdown(f"DAPT on {new}: test perplexity", ["domain"] + list(columns), rows) + "\n"
        data[new] = {name: {d: c.get(d) for d in [new] + old} for name, c in columns.items()}
        change = lambda a, b: f"{100 * (old_means[b] / old_means[a] - 1):+.2f}%"
        summary.append([new, columns["DEMix before"][new], columns["DEMix-DAPT top-1"][new],
                        columns["Dense before"][new], columns["Dense-DAPT"][new],
                        change("DEMix before", "DEMix-DAPT top-1"),
                        change("DEMix before", "DEMix-DAPT cached"),
                        change("Dense before", "Dense-DAPT")])
    header = ["new domain", "DEMix before (cached)", "DEMix-DAPT", "Dense before", "Dense-DAPT",
              "old domains, DEMix-DAPT top-1", "old domains, DEMix-DAPT cached",
              "old domains, Dense-DAPT"]
    text = markdown("Summary: new-domain perplexity, and change of the old domains' geometric "
                    "mean perplexity (forgetting)", header, summary) + "\n" + text
    width = 0.2
    for i, name in enumerate(["DEMix before", "DEMix-DAPT top-1", "Dense before", "Dense-DAPT"]):
        x = [j + i * width for j in range(len(new_domains))]
        axes[0].bar(x, [data[n][name][n] for n in new_domains], width, label=name)
        axes[1].bar(x, [geomean(data[n][name][d] for d in old) for n in new_domains], width,
                    label=name)
    for ax, title in zip(axes, ["new domain", "old domains (geometric mean)"]):
        ax.set_xticks([j + 1.5 * width for j in range(len(new_domains))], new_domains)
        ax.set_ylabel("test perplexity")
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    write_outputs(results, text, data, fig)


def removal(results, removed_domains):
    """Experiment 4: the removed domain (and the others) in the full, removed, left-out models."""
    full, roles = mixture_report(os.path.join(results, "full"))
    old = [d for d, role in roles.items() if role == "train"]
    text, data = "", {}
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, x in enumerate(removed_domains):
        removed, _ = mixture_report(os.path.join(results, f"removed_{x}"))
        loo, _ = mixture_report(os.path.join(results, f"leave_one_out_{x}"))
        columns = {}
        for label, report in [("full", full), (f"{x} removed", removed),
                              ("leave-one-out", loo)]:
            for variant in ["top1", "uniform", "cached"]:
                columns[f"{label} {variant}"] = report[variant]
        rows = [[d + (" (removed)" if d == x else "")] + [c.get(d) for c in columns.values()]
                for d in [x] + [d for d in old if d != x]]
        text += markdown(f"Removing the {x} expert: test perplexity", ["domain"] + list(columns),
                         rows) + "\n"
        data[x] = {name: {d: c.get(d) for d in old} for name, c in columns.items()}
        bars = {"full top-1": full["top1"][x], "full cached": full["cached"][x],
                "removed cached": removed["cached"][x], "leave-one-out cached": loo["cached"][x]}
        for j, (name, value) in enumerate(bars.items()):
            ax.bar(i + j * 0.2, value, 0.2, label=name if i == 0 else None, color=f"C{j}")
    ax.set_xticks([i + 0.3 for i in range(len(removed_domains))], removed_domains)
    ax.set_ylabel("test perplexity of the removed domain")
    ax.legend(fontsize=7)
    write_outputs(results, text, data, fig)


def tensor_shapes(checkpoint):
    """{name: shape} of every parameter file of a checkpoint, from the safetensors headers."""
    shapes = {}
    for root, _, files in os.walk(checkpoint):
        for f in files:
            if f.endswith(".safetensors") and "optimizer" not in root:
                with open(os.path.join(root, f), "rb") as fh:
                    header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
                shapes.update({k: v["shape"] for k, v in header.items() if k != "__metadata__"})
    return shapes


def parameter_counts(checkpoint, config):
    """(total, trainable) parameters, by the trainer's rules for the run's config."""
    import yaml
    c = yaml.safe_load(open(config))
    mode, lora = c["mode"]["blocks"] > 0, c["model"]["lora_rank"] > 0
    gates_only = mode and c["mode"]["stage"] == 2 and c["mode"]["train"] == "gates"
    total = trainable = 0
    for name, shape in tensor_shapes(checkpoint).items():
        n = math.prod(shape)
        total += n
        if mode:
            trainable += n * (".gate." in name if gates_only else name.startswith("mode."))
        elif lora:
            trainable += n * ("_lora." in name)
        elif c["train"]["init_from"]:
            trainable += n
    return total, trainable


def step_time(path, warmup=5):
    """Median seconds per step of a metrics.jsonl logged every step, after `warmup` steps."""
    steps = [json.loads(line) for line in open(path)]
    times = sorted(r["perf/step_s"] for r in steps if "perf/step_s" in r and r["step"] > warmup)
    return times[len(times) // 2], len(times)


def mode(results, names):
    rows, data = [], {}
    domains = ["python_docs", "manpages", "scripture"]
    for name in names:
        scores = {s["domain"]: s for s in json.load(open(os.path.join(results, f"{name}.eval.json")))
                  ["scores"] if s["split"] == "test"}
        checkpoint = open(os.path.join(results, f"{name}.checkpoint")).read().strip()
        total, trainable = parameter_counts(checkpoint, os.path.join(results, f"{name}.config.yaml"))
        data[name] = {"total_params": total, "trainable_params": trainable,
                      **{d: {"perplexity": scores[d]["perplexity"],
                             "accuracy": scores[d]["accuracy"]} for d in domains}}
        rows.append([name, f"{total / 1e6:.2f}M", f"{trainable / 1e6:.3f}M"] +
                    [v for d in domains for v in (scores[d]["perplexity"],
                                                  f"{100 * scores[d]['accuracy']:.1f}%")])
    header = ["method", "params", "trainable"] + [f"{d} {m}" for d in domains
                                                  for m in ("ppl", "acc")]
    text = markdown("MoDE: test perplexity and next-token accuracy (targets python_docs, "
                    "manpages; retention scripture)", header, rows)
    timing = []
    for placement in ("one_process", "data_parallel", "branches"):
        path = os.path.join(results, f"placement_{placement}.metrics.jsonl")
        if os.path.exists(path):
            median, n = step_time(path)
            data[f"step_s/{placement}"] = median
            timing.append([placement, f"{1000 * median:.0f}", n])
    if timing:
        text += "\n" + markdown("MoDE stage 2 step time, same global batch (16 sequences)",
                                ["placement", "median ms/step", "steps"], timing)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        for ax, metric in zip(axes, ("perplexity", "accuracy")):
            ax.bar([j + i * width for j in range(len(domains))],
                   [data[name][d][metric] for d in domains], width, label=name)
    for ax, metric in zip(axes, ("test perplexity", "next-token accuracy")):
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(domains))], domains)
        ax.set_ylabel(metric)
    axes[0].legend(fontsize=7)
    write_outputs(results, text, data, fig)


METHOD_LABELS = {"tiny": "DEMix", "tiny_dense": "DENSE", "tiny_dense_balanced": "DENSE (balanced)"}


def validation_losses(path):
    """(final, lowest) mean validation loss logged during training."""
    losses = [r["val/loss"] for r in map(json.loads, open(path)) if "val/loss" in r]
    return losses[-1], min(losses)


def crossing(budgets, ratios):
    """The budget (steps) where ratio - 1 changes sign, log-linear between two budgets."""
    for (s0, r0), (s1, r1) in zip(zip(budgets, ratios), zip(budgets[1:], ratios[1:])):
        if (r0 - 1) * (r1 - 1) < 0:
            t = (1 - r0) / (r1 - r0)
            return f"~{math.exp(math.log(s0) + t * (math.log(s1) - math.log(s0))):.0f} steps"
    return "no crossing"


def budget_sweep(results, names):
    """Training domains and novel domains at every budget (a STEPS/ directory of RESULTS_DIR)."""
    budgets = sorted(int(d) for d in os.listdir(results) if d.isdigit())
    data, rows_train, rows_novel, rows_val = {}, [], [], []
    for steps in budgets:
        at = os.path.join(results, str(steps))
        train_cols, novel_cols, novel = {}, {}, set()
        for name in names:
            label = METHOD_LABELS.get(name, name)
            if not os.path.exists(os.path.join(at, f"{name}.eval.json")):
                continue  # not trained at this budget: '-' in the tables
            plain = eval_report(os.path.join(at, f"{name}.eval.json"))
            mixed = os.path.join(at, f"{name}_mixture")
            if os.path.isdir(mixed):
                variants, roles = mixture_report(mixed)
                novel |= {d for d, role in roles.items() if role == "novel"}
                train_cols[f"{label} top-1"] = variants["top1"]
                train_cols[f"{label} cached"] = variants["cached"]
                for variant, col in variants.items():
                    if variant != "top1":
                        novel_cols[f"{label} {variant}"] = col
            else:
                train_cols[label] = novel_cols[label] = plain
            final, lowest = validation_losses(os.path.join(at, f"{name}.metrics.jsonl"))
            rows_val.append([steps, label, f"{final:.4f}", f"{lowest:.4f}"])
        trained = set.intersection(*(set(col) - novel for col in train_cols.values()))
        mean = lambda col, ds: geomean(col[d] for d in ds)
        data[steps] = {
            "tokens": steps * 2048,
            "train_domains": {c: mean(col, trained) for c, col in train_cols.items()},
            "novel_domains": {c: mean(col, novel) for c, col in novel_cols.items()},
            "novel_per_domain": {c: {d: col[d] for d in sorted(novel)}
                                 for c, col in novel_cols.items()},
        }
    train_header = list(data[budgets[0]]["train_domains"])
    novel_header = list(data[budgets[0]]["novel_domains"])
    tokens = lambda steps: f"{steps} ({steps * 2048 / 1e6:.1f}M)"
    rows_train = [[tokens(s)] + [data[s]["train_domains"].get(c) for c in train_header]
                  for s in budgets]
    rows_novel = [[tokens(s)] + [data[s]["novel_domains"].get(c) for c in novel_header]
                  for s in budgets]
    text = markdown("Training domains: geometric mean test perplexity (8 domains)",
                    ["steps (tokens)"] + train_header, rows_train) + "\n"
    text += markdown("Novel domains: geometric mean test perplexity (4 domains)",
                     ["steps (tokens)"] + novel_header, rows_novel) + "\n"
    text += markdown("Mean validation loss of the training domains during training "
                     "(final and lowest: final above lowest means overfitting)",
                     ["steps", "model", "final", "lowest"], rows_val) + "\n"
    for s in budgets:
        per = data[s]["novel_per_domain"]
        domains = sorted(next(iter(per.values())))
        text += markdown(f"Novel domains at {s} steps: test perplexity", ["method"] + domains,
                         [[c] + [col[d] for d in domains] for c, col in per.items()]) + "\n"
    dense = next((c for c in novel_header if c == "DENSE"), None)
    if dense:  # DEMix / DENSE at each budget, and where the ratio crosses 1 (log-linear between)
        ratios = []
        for c in novel_header:
            if c.startswith("DEMix"):
                r = [data[s]["novel_domains"][c] / data[s]["novel_domains"][dense] for s in budgets]
                ratios.append([f"novel, {c}"] + [f"{x:.3f}" for x in r] + [crossing(budgets, r)])
        for c in train_header:
            if c.startswith("DEMix"):
                r = [data[s]["train_domains"][c] / data[s]["train_domains"][dense] for s in budgets]
                ratios.append([f"training, {c}"] + [f"{x:.3f}" for x in r] + [crossing(budgets, r)])
        text += markdown("DEMix / DENSE geometric-mean perplexity (below 1: DEMix better)",
                         ["method"] + [f"{s} steps" for s in budgets] + ["crosses 1 at"],
                         ratios) + "\n"
    removal_report = os.path.join(results, "removal.md")  # removal.sh's output, with REMOVE
    if os.path.exists(removal_report):
        text += f"Removal at {budgets[-1]} steps, from {open(removal_report).read()}"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    x = [data[s]["tokens"] / 1e6 for s in budgets]
    for ax, key, title in ((axes[0], "novel_domains", "novel domains"),
                           (axes[1], "train_domains", "training domains")):
        for c in data[budgets[0]][key]:
            at = [i for i, s in enumerate(budgets) if c in data[s][key]]
            ax.plot([x[i] for i in at], [data[budgets[i]][key][c] for i in at], marker="o",
                    label=c)
        ax.set_title(f"{title}: geometric mean test perplexity")
    for c in novel_header:
        if dense and c.startswith("DEMix"):
            axes[2].plot(x, [data[s]["novel_domains"][c] / data[s]["novel_domains"][dense]
                             for s in budgets], marker="o", label=f"novel, {c}")
    for c in train_header:
        if "DENSE" in train_header and c.startswith("DEMix"):
            axes[2].plot(x, [data[s]["train_domains"][c] / data[s]["train_domains"]["DENSE"]
                             for s in budgets], marker="s", linestyle="--", label=f"train, {c}")
    axes[2].axhline(1.0, color="grey", linewidth=0.8)
    axes[2].set_title("DEMix / DENSE perplexity (below 1: DEMix better)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{v:.1f}" for v in x])
        ax.minorticks_off()
        ax.set_xlabel("training tokens (M)")
        ax.legend(fontsize=6)
    write_outputs(results, text, data, fig)


def routed_report(path):
    """{domain: test perplexity} of a `demix eval --router` report."""
    return {s["domain"]: s["perplexity"] for s in json.load(open(path))["scores"]}


def clusters(results, balance, ks):
    """c-BTM in small: labelled vs clustered DEMix vs DENSE, the k sweep, and the cost table."""
    labelled, roles = mixture_report(os.path.join(results, "labelled_mixture"))
    dense = eval_report(os.path.join(results, "dense.eval.json"))
    domains = list(roles)  # the 8 training domains, then the 4 novel ones
    columns_1 = {"DENSE": dense}
    columns_1.update({f"DEMix {v}": col for v, col in labelled.items()})
    for b in dict.fromkeys([balance, "documents"]):
        clustered, _ = mixture_report(os.path.join(results, f"clusters8_{b}_mixture"))
        columns_1.update({f"k8/{b} {v}": col for v, col in clustered.items() if v != "top1"})
    rows = [[d, roles[d]] + [col.get(d) for col in columns_1.values()] for d in domains]
    for role in ("train", "novel"):
        chosen = [d for d in domains if roles[d] == role]
        rows.append([f"*geometric mean, {role}*", ""] + [
            geomean(col[d] for d in chosen) if all(d in col for d in chosen) else None
            for col in columns_1.values()])
    text = markdown("1. test perplexity: DENSE, DEMix on labelled domains, DEMix on 8 clusters",
                    ["domain", "role"] + list(columns_1), rows)

    sweep, manifests = {}, {}
    for k in ks:
        manifests[k] = json.load(open(os.path.join(results, f"clusters{k}_{balance}.manifest.json")))
        for top in (1, 2):
            report = os.path.join(results, f"clusters{k}_{balance}_top{top}.json")
            scores = {s["domain"]: s["perplexity"] for s in json.load(open(report))["scores"]}
            for role in ("train", "novel"):
                chosen = [d for d in domains if roles[d] == role]
                sweep.setdefault(k, {})[f"{role} top{top}"] = geomean(scores[d] for d in chosen)
    header = ["k", "purity", "NMI", "train top1", "train top2", "novel top1", "novel top2"]
    rows = [[k, f"{manifests[k]['purity']:.3f}", f"{manifests[k]['normalized_mutual_information']:.3f}"]
            + [sweep[k][c] for c in header[3:]] for k in ks]
    text += "\n" + markdown(f"2. router-mixed test perplexity (geometric mean over domains) vs k, "
                            f"clusters balanced in {balance}", header, rows)

    report = json.load(open(os.path.join(results, "labelled_mixture", "mixture.json")))
    tokens = sum(r["tokens"] for r in report["domains"])
    cost_rows, cost = [], {}
    for variant in ("uniform", "updating", "cached_top2", "router_top1", "router_top2"):
        seconds = sum(r["seconds"][variant] for r in report["domains"])
        router = sum(r["router"].get(variant, {}).get("router_seconds", 0)
                     for r in report["domains"])
        cost[variant] = tokens / seconds
        cost_rows.append([variant, str(round(tokens / seconds)), None,
                          f"{100 * router / seconds:.2f}%" if variant.startswith("router") else "-"])
    for row in cost_rows:
        row[2] = f"{cost[row[0]] / cost['uniform']:.2f}x"
    text += "\n" + markdown(
        f"3. evaluation cost, DEMix with E = {len(report['experts'])} ({tokens} test tokens over "
        "all domains)", ["method", "tokens/s", "vs posterior (all E)", "router's share"], cost_rows)
    novel = [d for d in domains if roles[d] == "novel"]
    gaps = {v: geomean(labelled[v][d] for d in novel) / geomean(labelled["uniform"][d] for d in novel) - 1
            for v in ("updating", "cached", "cached_top2", "router_top1", "router_top2")}
    text += ("\nnovel domains, labelled DEMix, geometric-mean perplexity against all-expert "
             "uniform-prior mixing: " + ", ".join(f"{v} {100 * g:+.2f}%" for v, g in gaps.items())
             + "\n")

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    manifest = json.load(open(os.path.join(results, f"clusters8_{balance}.manifest.json")))
    bottom = [0] * len(manifest["clusters"])
    for label in manifest["labels"]:
        counts = [c["labels"].get(label, 0) for c in manifest["clusters"]]
        axes[0].bar([c["name"] for c in manifest["clusters"]], counts, bottom=bottom, label=label)
        bottom = [b + c for b, c in zip(bottom, counts)]
    for i, c in enumerate(manifest["clusters"]):  # each cluster's size in tokens, above its bar
        axes[0].annotate(f"{c['train_tokens'] / 1e3:.0f}k tok", (i, bottom[i]), ha="center",
                         va="bottom", fontsize=6)
    axes[0].set_title(f"k=8 clusters ({balance}-balanced) by source domain: purity "
                      f"{manifest['purity']:.2f}, NMI {manifest['normalized_mutual_information']:.2f}",
                      fontsize=9)
    axes[0].set_ylabel("training documents, by source domain")
    axes[0].tick_params(axis="x", rotation=45)
    axes[0].legend(fontsize=6)
    for column in header[3:]:
        axes[1].plot(ks, [sweep[k][column] for k in ks], marker="o", label=column)
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("clusters k (same total budget)")
    axes[1].set_ylabel("test perplexity (geometric mean)")
    axes[1].legend(fontsize=7)
    write_outputs(results, text, {"table1": columns_1, "sweep": sweep, "cost": cost}, fig)


def main():
    experiment, results, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
    if experiment == "clusters":
        return clusters(results, specs[0], [int(k) for k in specs[1:]])
    if experiment in ("dapt", "removal", "mode", "budget_sweep"):
        return {"dapt": dapt, "removal": removal, "mode": mode,
                "budget_sweep": budget_sweep}[experiment](results, specs)
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
            if os.path.isdir(os.path.join(results, name)):
                _, roles = mixture_report(os.path.join(results, name))
                novel |= {d for d, role in roles.items() if role == "novel"}
        table = {c: {d: v for d, v in col.items() if d in novel} for c, col in table.items()}
        table = {c: col for c, col in table.items() if col}
    domains = sorted({d for col in table.values() for d in col},
                     key=lambda d: min(list(col).index(d) for col in table.values() if d in col))
    rows = [[d] + [col.get(d) for col in table.values()] for d in domains]
    rows.append(["*geometric mean*"] + [
        geomean(col[d] for d in domains) if all(d in col for d in domains) else None
        for col in table.values()])
    text = markdown(f"{experiment.replace('_', ' ')}: test perplexity", ["domain"] + list(table),
                    rows)
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
    write_outputs(results, text, table, fig)


if __name__ == "__main__":
    main()
