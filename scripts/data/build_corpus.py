#!/usr/bin/env python3
"""Build the demix12 multi-domain corpus from unpacked Debian packages.

    build_corpus.py --root data/.cache/root --out data/demix12
    build_corpus.py --check data/demix12        # exit 0 iff complete
    build_corpus.py --list-packages             # packages to download

--root holds one directory per unpacked package plus PACKAGES.tsv
("package<TAB>version" lines, written by scripts/prepare_data.sh from the
.deb files).  Output goes to OUT.tmp and is renamed to OUT only when
complete.  See data/README.md for the output format.

Pipeline per domain (all steps deterministic):
  1. read raw units (sources.py), sort them by their stable key;
  2. shuffle with random.Random(SEED) and convert units in that order
     (text_clean.py), cutting long texts into <= MAX_DOC_BYTES documents at
     paragraph boundaries, dropping empty/tiny and duplicate documents, until
     the domain holds CAP_BYTES of text;
  3. shuffle the documents with random.Random(zlib.crc32(name)) and split:
     valid and test get eval_count(n) documents each, train the rest.

Python 3 standard library only.
"""

import argparse
import hashlib
import json
import multiprocessing
import os
import pathlib
import random
import re
import shutil
import sys
import zlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from domains import DOMAINS, all_packages            # noqa: E402
from sources import READERS, SourceError, package_dir   # noqa: E402
import text_clean                                    # noqa: E402

CORPUS = "demix12"
SEED = 1234                  # subsampling seed (split seeds derive from names)
CAP_BYTES = 3_000_000        # text per domain, UTF-8 bytes, separators excluded
MAX_DOC_BYTES = 8192         # longer texts are cut at paragraph boundaries
MIN_DOC_CHARS = 16           # shorter documents are noise (stubs, lone headings)
EVAL_FRACTION = 0.05         # of documents, for each of valid and test
MIN_EVAL_DOCS = 20           # ... but at least this many when n >= 200
SPLITS = ("train", "valid", "test")


def eval_count(n_docs):
    """Documents in each of valid and test: 5% (rounded half up), at least 20
    when the domain has >= 200 documents, at least 1 when it has >= 3."""
    k = int(n_docs * EVAL_FRACTION + 0.5)
    if n_docs >= 200:
        k = max(k, MIN_EVAL_DOCS)
    elif n_docs >= 3:
        k = max(k, 1)
    return k


def split_seed(name):
    return zlib.crc32(name.encode("utf-8"))


def builder_fingerprint():
    """sha256 over the builder's own sources (this directory's *.py), so a
    corpus built by other code (e.g. an older domain table) counts as stale."""
    h = hashlib.sha256()
    for path in sorted(pathlib.Path(__file__).resolve().parent.glob("*.py")):
        h.update(path.name.encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


# ---------------------------------------------------------------------------
# Package metadata
# ---------------------------------------------------------------------------

def read_versions(root):
    path = root / "PACKAGES.tsv"
    if not path.is_file():
        raise SourceError("%s: expected the package/version list written by "
                          "scripts/prepare_data.sh" % path)
    versions = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            name, version = line.split("\t")[:2]
            versions[name] = version
    return versions


def _dep5_licence(text):
    """License of the ``Files: *`` paragraph of a DEP-5 copyright file."""
    for para in re.split(r"\n\s*\n", text):
        if re.search(r"^Files:\s*\*\s*$", para, re.MULTILINE):
            m = re.search(r"^License:[ \t]*(\S.*)$", para, re.MULTILINE)
            if m:
                return m.group(1).strip()
    return ""


def package_licence(root, package):
    # A package whose doc directory is a symlink (manpages-dev -> manpages)
    # shares the copyright file of the package it points to, which Debian
    # policy requires to be a dependency; it must be unpacked too.
    doc = package_dir(root, package.name) / "usr/share/doc" / package.name
    holder = package.name
    if doc.is_symlink():
        holder = os.readlink(doc).rstrip("/").rsplit("/", 1)[-1]
    path = package_dir(root, holder) / "usr/share/doc" / holder / "copyright"
    if not path.is_file():
        raise SourceError("%s: expected the copyright file of %s" % (path, package.name))
    text = path.read_text(encoding="utf-8", errors="replace")
    if package.licence:
        flat = " ".join(text.split()).casefold()
        if " ".join(package.evidence.split()).casefold() not in flat:
            raise SourceError("%s: expected the phrase %r backing licence %s"
                              % (path, package.evidence, package.licence))
        return package.licence
    if text.startswith("Format:"):
        licence = _dep5_licence(text)
        if licence:
            return licence
    raise SourceError("%s: expected a DEP-5 'Files: *' licence (or a licence "
                      "in the domain table)" % path)


# ---------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------

def select_documents(domain, units, stats):
    """Steps 1-2 of the pipeline: sorted, seeded-shuffled, converted, capped."""
    convert = text_clean.CONVERTERS[domain.converter]
    options = dict(domain.options)
    units = sorted(units, key=lambda u: u.key)
    if len({u.key for u in units}) != len(units):
        raise SourceError("domain %s: unit keys are not unique" % domain.name)
    random.Random(SEED).shuffle(units)
    docs, seen, total = [], set(), 0
    for unit in units:
        stats["units_converted"] += 1
        text = text_clean.normalise(convert(unit.raw, stats, **options), stats)
        for piece in text_clean.chunk_text(text, MAX_DOC_BYTES):
            if len(piece) < MIN_DOC_CHARS:
                stats["short_documents_dropped"] += 1
                continue
            digest = hashlib.sha1(piece.encode("utf-8")).digest()
            if digest in seen:
                stats["duplicate_documents_dropped"] += 1
                continue
            seen.add(digest)
            docs.append(piece)
            total += len(piece.encode("utf-8"))
            if total >= CAP_BYTES:
                return docs
    return docs


def split_documents(name, docs):
    docs = list(docs)
    random.Random(split_seed(name)).shuffle(docs)
    k = eval_count(len(docs))
    return {"valid": docs[:k], "test": docs[k:2 * k], "train": docs[2 * k:]}


def write_split(path, docs):
    data = "".join(doc + text_clean.DOC_SEPARATOR for doc in docs).encode("utf-8")
    path.write_bytes(data)
    return {"bytes": len(data), "documents": len(docs),
            "sha256": hashlib.sha256(data).hexdigest()}


def build_domain(args):
    """Build one domain into out_dir/<name>/ and return its manifest entry."""
    name, root, out_dir = args
    domain = next(d for d in DOMAINS if d.name == name)
    versions = read_versions(root)
    packages = []
    for p in domain.packages:
        if p.name not in versions:
            raise SourceError("%s: expected a version for package %s"
                              % (root / "PACKAGES.tsv", p.name))
        packages.append({"name": p.name, "version": versions[p.name],
                         "licence": package_licence(root, p)})
    stats = text_clean.new_stats()
    units = READERS[domain.reader](domain, root, stats)
    stats["units_total"] = len(units)
    docs = select_documents(domain, units, stats)
    if not docs:
        raise SourceError("domain %s: no documents produced from %s"
                          % (name, ", ".join(p["name"] for p in packages)))
    (out_dir / name).mkdir(parents=True)
    splits = split_documents(name, docs)
    licences = []
    for p in packages:
        if p["licence"] not in licences:
            licences.append(p["licence"])
    return {
        "name": name,
        "role": domain.role,
        "genre": domain.genre,
        "packages": packages,
        "licence": " AND ".join(licences),
        "unit": domain.unit,
        "converter": domain.converter,
        "stripped": dict(sorted(stats.items())),
        "splits": {s: write_split(out_dir / name / ("%s.txt" % s), splits[s])
                   for s in SPLITS},
    }


# ---------------------------------------------------------------------------
# Whole corpus
# ---------------------------------------------------------------------------

def build(root, out, jobs):
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    tasks = [(d.name, root, tmp) for d in DOMAINS]
    try:
        if jobs > 1:
            with multiprocessing.Pool(jobs) as pool:
                entries = pool.map(build_domain, tasks, chunksize=1)
        else:
            entries = [build_domain(t) for t in tasks]
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)     # leave nothing half-written
        raise
    manifest = {
        "corpus": CORPUS,
        "seed": SEED,
        "builder_sha256": builder_fingerprint(),
        "split_seed": "zlib.crc32(domain name)",
        "cap_bytes": CAP_BYTES,
        "max_document_bytes": MAX_DOC_BYTES,
        "document_separator": "\\n\\f\\n",
        "domains": entries,
    }
    (tmp / "MANIFEST.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    # Swap into place only now that everything is written.
    old = out.with_name(out.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    if old.exists():
        shutil.rmtree(old)
    return manifest


def check(out):
    """True iff OUT/MANIFEST.json exists, was written by this builder, and
    every split file it lists is present with the recorded size."""
    try:
        manifest = json.loads((out / "MANIFEST.json").read_text(encoding="utf-8"))
        if manifest.get("builder_sha256") != builder_fingerprint():
            return False
        for d in manifest["domains"]:
            for split, meta in d["splits"].items():
                path = out / d["name"] / ("%s.txt" % split)
                if not path.is_file() or path.stat().st_size != meta["bytes"]:
                    return False
        return bool(manifest["domains"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def print_summary(manifest):
    print("%-18s %-6s %12s %7s %10s %6s %10s %6s" % (
        "domain", "role", "train_bytes", "docs", "valid", "docs", "test", "docs"))
    for d in manifest["domains"]:
        s = d["splits"]
        print("%-18s %-6s %12d %7d %10d %6d %10d %6d" % (
            d["name"], d["role"], s["train"]["bytes"], s["train"]["documents"],
            s["valid"]["bytes"], s["valid"]["documents"],
            s["test"]["bytes"], s["test"]["documents"]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=pathlib.Path, help="unpacked packages")
    ap.add_argument("--out", type=pathlib.Path, help="output directory")
    ap.add_argument("--jobs", type=int, default=min(2, multiprocessing.cpu_count()))
    ap.add_argument("--check", type=pathlib.Path, metavar="OUT",
                    help="exit 0 iff OUT holds a complete corpus")
    ap.add_argument("--list-packages", action="store_true",
                    help="print the Debian packages the corpus needs")
    args = ap.parse_args(argv)
    if args.list_packages:
        print("\n".join(all_packages()))
        return 0
    if args.check:
        return 0 if check(args.check) else 1
    if not args.root or not args.out:
        ap.error("--root and --out are required")
    if not args.root.is_dir():
        print("error: %s: expected a directory of unpacked packages "
              "(run scripts/prepare_data.sh)" % args.root, file=sys.stderr)
        return 1
    try:
        manifest = build(args.root, args.out, max(1, args.jobs))
    except SourceError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:            # unreadable input, full disk, ...
        print("error: %s: %s" % (e.filename, e.strerror), file=sys.stderr)
        return 1
    print_summary(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
