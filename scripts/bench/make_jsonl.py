#!/usr/bin/env python3
"""Synthetic JSON-lines corpus for benchmarking `demix data`, built from the bundled corpus.

    make_jsonl.py --bytes N --out FILE [--seed S] [--text-out FILE [--text-out-bytes M]]
                  [--stats FILE.json] [--corpus data/demix12] [--ensure-ascii]

Writes one JSON object a line, {"text": ..., "meta": {"domain": ...}}, until the texts hold at least
N bytes of UTF-8. The documents are those of data/demix12 (all 12 domains, all three splits, split at
"\\n\\f\\n", exact duplicates dropped), each pass over them in a fresh seeded order. The first pass
writes every document as it is; pass k >= 1 starts each one with the line "copy k of doc i\\n", so no
two texts are equal (the encoder drops exact duplicates) and the domain mix stays the corpus's: every
full pass holds each document once, and the last, partial pass is a random sample.

FILE is compressed by the `zstd` CLI when it ends in .zst and by gzip when it ends in .gz; otherwise it
is plain. Output is streamed, so any N works; the same seed gives the same bytes. --text-out writes
the same texts as plain text, each followed by "\\n", for `spm_encode` (which encodes line by line);
--text-out-bytes stops it after the first document that reaches M bytes. The documents' order does
not depend on N, so a smaller N with the same seed writes a prefix of a larger one. --stats writes
the counts (documents, text_bytes, text bytes per domain) as JSON. Non-ASCII text is written as
UTF-8 unless --ensure-ascii, which writes \\uXXXX escapes instead.
"""
import argparse
import gzip
import json
import os
import pathlib
import random
import subprocess
import sys
import time

SEPARATOR = b"\n\f\n"
SPLITS = ("train", "valid", "test")
FLUSH_BYTES = 1 << 20


def load_documents(corpus):
    """(domain, text) for every distinct non-empty document, in domain, split and file order."""
    seen, documents = set(), []
    for domain_dir in sorted(p for p in corpus.iterdir() if p.is_dir()):
        for split in SPLITS:
            for text in (domain_dir / f"{split}.txt").read_bytes().split(SEPARATOR):
                if text and text not in seen:
                    seen.add(text)
                    documents.append((domain_dir.name, text))
    return documents


class Sink:
    """A binary file, optionally compressed: .zst through the zstd CLI, .gz through gzip."""

    def __init__(self, path):
        self.path, self.process = path, None
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        if path.endswith(".zst"):
            self.file = open(path, "wb")
            self.process = subprocess.Popen(["zstd", "-q", "-3", "-T1", "-c"],
                                            stdin=subprocess.PIPE, stdout=self.file)
            self.stream = self.process.stdin
        elif path.endswith(".gz"):
            self.file = open(path, "wb")
            self.stream = gzip.GzipFile(filename="", mode="wb", compresslevel=1, fileobj=self.file,
                                        mtime=0)
        else:
            self.file = self.stream = open(path, "wb")

    def close(self):
        self.stream.close()
        if self.process is not None and self.process.wait() != 0:
            sys.exit(f"{self.path}: zstd exited with status {self.process.returncode}")
        self.file.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bytes", type=int, required=True, help="document text bytes to write, at least")
    parser.add_argument("--out", required=True, help="FILE.jsonl, FILE.jsonl.zst or FILE.jsonl.gz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text-out", help="also write the texts here, each followed by a newline")
    parser.add_argument("--text-out-bytes", type=int, help="stop --text-out after this many bytes")
    parser.add_argument("--corpus", default=str(pathlib.Path(__file__).resolve().parents[2] /
                                                "data" / "demix12"))
    parser.add_argument("--stats", help="write counts (documents, text_bytes, per domain) as JSON here")
    parser.add_argument("--ensure-ascii", action="store_true", help="escape non-ASCII as \\uXXXX")
    args = parser.parse_args()
    start = time.monotonic()

    documents = load_documents(pathlib.Path(args.corpus))
    if not documents:
        sys.exit(f"{args.corpus}: no documents")
    # JSON escaping is per character, so json.dumps(prefix + text) is the two escaped bodies joined:
    # escape each document once and reuse it in every pass.
    lines = []
    for domain, text in documents:
        body = json.dumps(text.decode("utf-8"), ensure_ascii=args.ensure_ascii)[1:-1]
        tail = '", "meta": {"domain": ' + json.dumps(domain) + "}}\n"
        lines.append((body.encode("utf-8"), tail.encode("utf-8")))

    sink = Sink(args.out)
    text_sink = open(args.text_out, "wb") if args.text_out else None
    text_limit = args.text_out_bytes if args.text_out_bytes is not None else float("inf")
    written = text_written = count = 0
    domain_bytes = {}
    chunk, text_chunk, chunk_bytes = [], [], 0
    copy = 0
    while written < args.bytes:
        order = list(range(len(documents)))
        random.Random(f"{args.seed}/{copy}").shuffle(order)
        for i in order:
            if written >= args.bytes:
                break
            domain, text = documents[i]
            body, tail = lines[i]
            if copy:
                prefix = b"copy %d of doc %d\n" % (copy, i)
                escaped = prefix[:-1] + b"\\n"
            else:
                prefix = escaped = b""
            line = b'{"text": "' + escaped + body + tail
            chunk.append(line)
            chunk_bytes += len(line)
            written += len(prefix) + len(text)
            domain_bytes[domain] = domain_bytes.get(domain, 0) + len(prefix) + len(text)
            count += 1
            if text_sink is not None and text_written < text_limit:
                text_chunk += (prefix, text, b"\n")
                text_written += len(prefix) + len(text) + 1
            if chunk_bytes >= FLUSH_BYTES:
                sink.stream.write(b"".join(chunk))
                if text_chunk:
                    text_sink.write(b"".join(text_chunk))
                chunk, text_chunk, chunk_bytes = [], [], 0
        copy += 1
    sink.stream.write(b"".join(chunk))
    sink.close()
    if text_sink is not None:
        text_sink.write(b"".join(text_chunk))
        text_sink.close()
    seconds = time.monotonic() - start
    if args.stats:
        stats = {"out": args.out, "seed": args.seed, "documents": count, "text_bytes": written,
                 "passes": copy, "corpus_documents": len(documents),
                 "domain_text_bytes": dict(sorted(domain_bytes.items())), "seconds": seconds}
        pathlib.Path(args.stats).write_text(json.dumps(stats, indent=2) + "\n")
    print(f"{args.out}: {count} documents, {written} text bytes ({copy} passes over "
          f"{len(documents)} documents) in {seconds:.1f} s, {written / 1e6 / seconds:.0f} MB/s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
