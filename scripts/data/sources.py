"""Readers that turn unpacked Debian packages into raw source units.

Each package is unpacked by scripts/prepare_data.sh into its own directory,
``<root>/<package>/``, so every file is attributed to exactly one package.
A reader returns a list of ``Unit(key, raw)``: ``key`` is a stable, unique
sort key (package/path[#index]) and ``raw`` the still-marked-up text.  The
builder converts units lazily, so only the units that make it under the
per-domain size cap are ever converted.

Python 3 standard library only.
"""

import collections
import fnmatch
import gzip
import re
import struct

from text_clean import decode_bytes

Unit = collections.namedtuple("Unit", "key raw")


class SourceError(Exception):
    """Bad or missing input; the message names the path and what was expected."""


def package_dir(root, package):
    path = root / package
    if not path.is_dir():
        raise SourceError("%s: expected the unpacked package %s "
                          "(run scripts/prepare_data.sh)" % (path, package))
    return path


def find_files(root, package, pattern, exclude=()):
    """Regular files (not symlinks: those are aliases) matching a glob under
    the package directory, sorted by path; an empty match is an error."""
    base = package_dir(root, package)
    paths = []
    for path in base.glob(pattern):
        rel = path.relative_to(base).as_posix()
        if path.is_symlink() or not path.is_file():
            continue
        if any(fnmatch.fnmatchcase(rel, ex) for ex in exclude):
            continue
        paths.append((rel, path))
    if not paths:
        raise SourceError("%s: expected files matching %s" % (base, pattern))
    return sorted(paths)


def read_bytes(path):
    data = path.read_bytes()
    if path.suffix in (".gz", ".dz"):       # dictzip is gzip-compatible
        data = gzip.decompress(data)
    return data


def _batches(items, batch_bytes):
    """Group consecutive strings into batches of about ``batch_bytes``."""
    batch, size = [], 0
    for item in items:
        batch.append(item)
        size += len(item)
        if size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


# ---------------------------------------------------------------------------
# Readers.  Signature: reader(domain, root, stats) -> list[Unit]
# ---------------------------------------------------------------------------

def read_files(domain, root, stats):
    """One unit per file (gzip-compressed files are decompressed)."""
    units = []
    for package, pattern in domain.sources:
        for rel, path in find_files(root, package, pattern, domain.exclude):
            units.append(Unit("%s/%s" % (package, rel),
                              decode_bytes(read_bytes(path), stats)))
    return units


def read_fortunes(domain, root, stats):
    """fortune(6) files: entries are separated by lines holding only "%"."""
    units = []
    for package, pattern in domain.sources:
        for rel, path in find_files(root, package, pattern, domain.exclude):
            text = decode_bytes(read_bytes(path), stats)
            entries = re.split(r"^%[ \t]*$", text, flags=re.MULTILINE)
            for i, entry in enumerate(entries):
                if entry.strip():
                    units.append(Unit("%s/%s#%05d" % (package, rel, i), entry))
    return units


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _dictd_number(text):
    """dictd index numbers are big-endian base 64 with this alphabet."""
    value = 0
    for ch in text:
        value = value * 64 + _B64.index(ch)
    return value


def read_dictd_entries(index_path, dict_path):
    """Entries of a dictd database in file order.  The .index lines are
    ``headword<TAB>offset<TAB>length``; several headwords may point at the
    same entry, and the ``00-database-*`` entries are metadata."""
    spans = set()
    for line in index_path.read_text(encoding="utf-8", errors="replace").split("\n"):
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        if fields[0].startswith(("00-database", "00database")):
            continue
        spans.add((_dictd_number(fields[1]), _dictd_number(fields[2])))
    data = read_bytes(dict_path)
    return [data[off:off + length] for off, length in sorted(spans)]


def read_dictd(domain, root, stats):
    """Consecutive dictionary entries batched into ~batch_bytes units, so a
    document is a run of neighbouring entries rather than a single line."""
    units = []
    for package, pattern in domain.sources:
        for rel, index_path in find_files(root, package, pattern, domain.exclude):
            dict_path = index_path.with_name(index_path.name[:-len(".index")] + ".dict.dz")
            if not dict_path.is_file():
                raise SourceError("%s: expected the dictd data file next to %s"
                                  % (dict_path, index_path.name))
            entries = [decode_bytes(e, stats) for e in read_dictd_entries(index_path, dict_path)]
            for i, batch in enumerate(_batches(entries, domain.batch_bytes)):
                units.append(Unit("%s/%s#%05d" % (package, rel, i),
                                  "\n\n".join(e.strip("\n") for e in batch)))
    return units


def read_wordnet(domain, root, stats):
    """WordNet data.<pos> files: consecutive synset lines batched into units
    (converted line by line by the "wordnet" converter)."""
    units = []
    for package, pattern in domain.sources:
        for rel, path in find_files(root, package, pattern, domain.exclude):
            lines = decode_bytes(read_bytes(path), stats).split("\n")
            synsets = [l for l in lines if l and not l.startswith("  ")]
            for i, batch in enumerate(_batches(synsets, domain.batch_bytes)):
                units.append(Unit("%s/%s#%05d" % (package, rel, i), "\n".join(batch)))
    return units


def read_info(domain, root, stats):
    """GNU info files: one unit per node.  Nodes are separated by \\x1f; only
    chunks that start with a ``File: ... Node:`` header are nodes (the
    preamble and the tag table are not)."""
    units = []
    for package, pattern in domain.sources:
        for rel, path in find_files(root, package, pattern, domain.exclude):
            text = decode_bytes(read_bytes(path), stats)
            for i, chunk in enumerate(text.split("\x1f")):
                chunk = chunk.lstrip("\n")
                if chunk.startswith("File:") and "Node:" in chunk.split("\n", 1)[0]:
                    units.append(Unit("%s/%s#%04d" % (package, rel, i), chunk))
    return units


# --- bible-kjv-text ---------------------------------------------------------
#
# /usr/lib/bible.data is the Bible Retrieval System's "EC02" format: the text
# is cut into fixed-size windows (64 KiB) and each window is compressed
# separately with Unix compress(1) LZW so that any verse can be reached
# without decompressing everything.  Layout (big-endian):
#   0x00  magic "EC02" + description, NUL padded
#   0x54  uint32 window size
#   0x58  uint32 number of windows N
#   0x5c  uint32 offsets[N + 1]: start of each window's code stream; the
#         last entry is the file size.  A compress(1) header (1f 9d flags)
#         precedes the first window.

_BIBLE_MAGIC = b"EC02"
_LZW_CLEAR = 256


def lzw_decompress(data, max_bits=16):
    """Decompress one compress(1) code stream (block mode, no header).

    compress(1) writes codes LSB-first in groups of ``n_bits`` bytes (8 codes);
    when the code width grows, or after a CLEAR code, the rest of the current
    group is padding.  That is why codes are read a group at a time here.
    """
    max_max_code = 1 << max_bits
    table = [bytes([i]) for i in range(256)] + [b""]     # 256 = CLEAR
    out = bytearray()
    n_bits, max_code = 9, (1 << 9) - 1
    pos, codes, ci = 0, [], 0
    clear, prev = False, None
    while True:
        if clear or ci >= len(codes) or len(table) > max_code:
            if clear:
                n_bits, max_code, clear = 9, (1 << 9) - 1, False
            elif len(table) > max_code:
                n_bits += 1
                max_code = max_max_code if n_bits == max_bits else (1 << n_bits) - 1
            group = data[pos:pos + n_bits]
            pos += n_bits
            if not group:
                break
            value = int.from_bytes(group, "little")
            mask = (1 << n_bits) - 1
            codes = [(value >> (k * n_bits)) & mask
                     for k in range(len(group) * 8 // n_bits)]
            ci = 0
            if not codes:
                break
        code = codes[ci]
        ci += 1
        if code == _LZW_CLEAR:
            del table[257:]
            clear, prev = True, None
            continue
        if prev is None:
            entry = table[code]
        elif code < len(table):
            entry = table[code]
            if len(table) < max_max_code:
                table.append(table[prev] + entry[:1])
        elif code == len(table):                 # the KwKwK case
            entry = table[prev] + table[prev][:1]
            if len(table) < max_max_code:
                table.append(entry)
        else:
            raise ValueError("corrupt LZW stream (code %d)" % code)
        out += entry
        prev = code
    return bytes(out)


def read_bible_data(path):
    """Full text of a Bible Retrieval System data file."""
    data = path.read_bytes()
    if not data.startswith(_BIBLE_MAGIC) or len(data) < 0x5c:
        raise SourceError("%s: expected a bible-kjv 'EC02' compressed data file" % path)
    window, count = struct.unpack(">II", data[0x54:0x5c])
    offsets = struct.unpack(">%dI" % (count + 1), data[0x5c:0x5c + 4 * (count + 1)])
    if offsets[-1] != len(data):
        raise SourceError("%s: window table does not match the file size" % path)
    parts = []
    for k in range(count):
        text = lzw_decompress(data[offsets[k]:offsets[k + 1]])
        if k < count - 1 and len(text) != window:
            raise SourceError("%s: window %d decompressed to %d bytes, expected %d"
                              % (path, k, len(text), window))
        parts.append(text)
    return b"".join(parts)


_VERSE = re.compile(r"^([1-3]?[A-Z][A-Za-z]*)(\d+):(\d+) ")


def read_bible(domain, root, stats):
    """One unit per chapter; verse lines keep their "Ge1:1" references."""
    units, chapter, key = [], [], None
    books = {}
    for package, pattern in domain.sources:
        for rel, path in find_files(root, package, pattern, domain.exclude):
            for line in decode_bytes(read_bible_data(path), stats).split("\n"):
                m = _VERSE.match(line)
                if not m:
                    continue                     # title line
                book = books.setdefault(m.group(1), len(books))
                this = "%s/%s#%02d-%03d" % (package, rel, book, int(m.group(2)))
                if this != key and chapter:
                    units.append(Unit(key, "\n".join(chapter)))
                    chapter = []
                key = this
                chapter.append(line)
    if chapter:
        units.append(Unit(key, "\n".join(chapter)))
    return units


READERS = {
    "files": read_files,
    "fortunes": read_fortunes,
    "dictd": read_dictd,
    "wordnet": read_wordnet,
    "info": read_info,
    "bible": read_bible,
}
