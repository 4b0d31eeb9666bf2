"""Checks a `demix export hf` directory with Hugging Face transformers, independently of the C++ code.

  hf_export_check.py EXPORT LOGPROBS.json   the exported GPT-2 and its tokenizer reproduce the
                                            C++ token ids and per-token log-probs (to 1e-4)
  hf_export_check.py --merged EXPORT CHECKPOINT PRIOR.json
                                            the exported weights equal the prior-weighted average
                                            of the checkpoint's expert files
"""
import json
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, GPT2LMHeadModel


def check_logprobs(export, logprobs_json):
    report = json.load(open(logprobs_json))
    windows = report["windows"]
    inputs = torch.tensor([w["inputs"] for w in windows], dtype=torch.long)
    targets = torch.tensor([w["targets"] for w in windows], dtype=torch.long)
    expected = torch.tensor([w["logprobs"] for w in windows], dtype=torch.float64)

    tokenizer = AutoTokenizer.from_pretrained(export)
    text = open(report["text"], encoding="utf-8").read()
    # documents split and ended as `demix data` and `demix eval --text` do
    docs = text.split("\n\f\n")
    if docs[-1] == "":
        docs.pop()
    ids = []
    for doc in docs:
        ids += tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ours = torch.cat([inputs.reshape(-1), targets[-1, -1:]]).tolist()
    assert ids[: len(ours)] == ours, "the exported tokenizer encodes the text differently"

    model = GPT2LMHeadModel.from_pretrained(export).eval()
    vocab = model.config.vocab_size
    for name in ("bos_token_id", "eos_token_id"):
        token_id = getattr(model.config, name)
        assert token_id is not None and 0 <= token_id < vocab, f"config.json {name}={token_id}"
        assert token_id == getattr(tokenizer, name), f"config.json {name} is not the tokenizer's"
    with torch.no_grad():
        logits = model(inputs).logits.double()
    got = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    diff = (got - expected).abs().max().item()
    print(f"{inputs.numel()} tokens in {len(windows)} windows: max |log p diff| = {diff:.2e}")
    assert diff < 1e-4, f"log-probs differ by {diff}"


def check_merged(export, checkpoint, prior_json):
    prior = json.load(open(prior_json))
    meta = json.load(open(f"{checkpoint}/meta.json"))
    weights = dict(zip(prior["experts"], prior["prior"]))
    total = sum(weights[d] for d in meta["experts"])
    exported = load_file(f"{export}/model.safetensors")
    names = {"fc1.weight": "mlp.c_fc.weight", "fc1.bias": "mlp.c_fc.bias",
             "fc2.weight": "mlp.c_proj.weight", "fc2.bias": "mlp.c_proj.bias"}
    average = {}
    for domain in meta["experts"]:
        for name, value in load_file(f"{checkpoint}/experts/{domain}.safetensors").items():
            layer, part = name.split(".")[1], name.split(".ff.")[1]
            key = f"transformer.h.{layer}.{names[part]}"
            value = value.double().t() if part.endswith("weight") else value.double()
            average[key] = average.get(key, 0) + weights[domain] / total * value
    assert average, "the checkpoint has no experts"
    for key, value in average.items():
        diff = (exported[key].double() - value).abs().max().item()
        assert diff < 1e-6, f"{key}: differs from the prior-weighted average by {diff}"
    print(f"{len(average)} merged FF tensors equal the prior-weighted average")


if __name__ == "__main__":
    if sys.argv[1] == "--merged":
        check_merged(*sys.argv[2:5])
    else:
        check_logprobs(*sys.argv[1:3])
