"""The demix12 domain table: the single place that says which Debian
package text becomes which domain, how it is read and how it is cleaned.

Fields of a Domain:
  name        lowercase [a-z0-9_], used as the output directory name
  role        "train" (an expert is trained on it) or "novel" (held out)
  genre       one-line description
  packages    Debian binary packages (see Package) fetched for it
  reader      how raw units are read (sources.READERS)
  sources     (package, glob relative to the unpacked package) pairs
  converter   markup stripper (text_clean.CONVERTERS)
  unit        what one source unit / document is, in words
  exclude     globs (relative to the package dir) to leave out
  batch_bytes for entry-based sources: consecutive entries are batched into
              units of about this many raw bytes
  options     extra keyword arguments for the converter

Package.licence/evidence: for packages whose copyright file is not in the
machine-readable (DEP-5) format, the licence is given here and ``evidence``
is a phrase that must occur in that copyright file, so a changed licence
makes the build fail instead of silently mislabelling the data.
"""

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class Package:
    name: str
    licence: str = ""            # only when the copyright file is not DEP-5
    evidence: str = ""           # phrase proving ``licence`` (see above)


@dataclasses.dataclass(frozen=True)
class Domain:
    name: str
    role: str
    genre: str
    packages: tuple
    reader: str
    sources: tuple
    converter: str
    unit: str
    exclude: tuple = ()
    batch_bytes: int = 0
    options: tuple = ()          # (keyword, value) pairs for the converter


BIBLE = Package("bible-kjv-text", "public-domain (KJV text, Crown copyright expired)",
                "King James Version text of the Bible is expired")
FORTUNES = Package("fortunes", "BSD-3-clause", "This program falls under the BSD copyright")
GCIDE = Package("dict-gcide", "GPL-2+", "GCIDE is free software")
FOLDOC = Package("dict-foldoc", "GFDL-1.1+",
                 "GNU Free Documentation License, Version 1.1 or any later version")
PYDOC = Package("python3.11-doc", "PSF-2.0",
                "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2")
PYLIB = Package("libpython3.11-stdlib", "PSF-2.0",
                "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2")
PYMIN = Package("libpython3.11-minimal", "PSF-2.0",
                "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2")
GNU_STANDARDS = Package("gnu-standards", "GFDL-1.3+",
                        "GNU Free Documentation License, Version 1.3 or")
DEBIAN_FAQ = Package("debian-faq", "verbatim-copying permission (SPI)",
                     "Permission is granted to make and distribute verbatim copies")

DOMAINS = (
    # ---- training domains -------------------------------------------------
    Domain("scripture", "train", "scripture: the King James Bible (1611)",
           (BIBLE,), "bible", (("bible-kjv-text", "usr/lib/bible.data"),),
           "plain", "one chapter"),
    Domain("humour", "train", "humour: jokes, quotations and aphorisms (fortune cookies)",
           (FORTUNES,), "fortunes",
           (("fortunes", "usr/share/games/fortunes/*"),), "plain", "one fortune",
           # .dat are binary indexes; ascii-art is pictures, not text
           exclude=("*.dat", "*.u8", "usr/share/games/fortunes/ascii-art")),
    Domain("dictionary", "train", "general English dictionary (Webster 1913 based GCIDE)",
           (GCIDE,), "dictd", (("dict-gcide", "usr/share/dictd/gcide.index"),),
           "dictd", "run of consecutive dictionary entries (~3 KB)", batch_bytes=3000),
    Domain("python_docs", "train", "software documentation: the Python 3.11 manuals (reST)",
           (PYDOC,), "files",
           (("python3.11-doc", "usr/share/doc/python3.11/html/_sources/**/*.rst.txt"),),
           "rst", "one manual page (.rst)"),
    Domain("perl_docs", "train", "software documentation: the Perl 5.36 manuals (POD)",
           (Package("perl-doc"),), "files",
           (("perl-doc", "usr/share/perl/5.36.0/pod/*.pod"),), "pod", "one manual page (.pod)",
           # the table of contents and the Unicode property tables are not prose
           exclude=("*/perltoc.pod", "*/perluniprops.pod")),
    Domain("manpages", "train", "Unix reference manual pages (Linux man-pages project, roff)",
           (Package("manpages"), Package("manpages-dev")), "files",
           (("manpages", "usr/share/man/man*/*.gz"),
            ("manpages-dev", "usr/share/man/man*/*.gz")),
           "roff", "one man page"),
    Domain("python_code", "train", "source code: the Python 3.11 standard library",
           (PYLIB, PYMIN), "files",
           (("libpython3.11-stdlib", "usr/lib/python3.11/**/*.py"),
            ("libpython3.11-minimal", "usr/lib/python3.11/**/*.py")),
           "plain", "one module (.py)"),
    Domain("wordnet", "train", "lexical database: WordNet 3.0 synonym sets and glosses",
           (Package("wordnet-base"),), "wordnet",
           (("wordnet-base", "usr/share/wordnet/data.*"),), "wordnet",
           "run of consecutive synsets (~3 KB of glosses)", batch_bytes=7000),
    # ---- novel (held-out) domains -----------------------------------------
    Domain("glossary", "novel", "computing glossary: FOLDOC and the Jargon File",
           (FOLDOC, Package("dict-jargon")), "dictd",
           (("dict-foldoc", "usr/share/dictd/foldoc.index"),
            ("dict-jargon", "usr/share/dictd/jargon.index")),
           "dictd", "run of consecutive glossary entries (~3 KB)", batch_bytes=3000),
    Domain("git_docs", "novel", "software documentation: the Git manuals (HTML)",
           (Package("git-doc"),), "files",
           (("git-doc", "usr/share/doc/git-doc/**/*.html"),), "html", "one HTML page",
           options=(("skip_ids", ("footer", "footnotes", "toc")),)),
    Domain("gnu_manuals", "novel",
           "GNU manuals: GNU coding standards, maintainer guide, Bash reference (info)",
           (GNU_STANDARDS, Package("bash-doc")), "info",
           (("gnu-standards", "usr/share/info/*.info.gz"),
            ("bash-doc", "usr/share/info/bash.info.gz")),
           "info", "one info node"),
    # The Debian Reference alone has only ~0.5 MB of text; the Debian FAQ is
    # the same genre (user documentation, same DocBook HTML layout).
    Domain("debian_reference", "novel",
           "system administration guide: the Debian Reference and the Debian FAQ",
           (Package("debian-reference-en"), DEBIAN_FAQ), "files",
           (("debian-reference-en", "usr/share/debian-reference/*.en.html"),
            ("debian-faq", "usr/share/doc/debian/FAQ/*.en.html")), "html",
           "one HTML chapter",
           options=(("skip_classes", ("navheader", "navfooter", "toc")),)),
)


def _check_table():
    names = [d.name for d in DOMAINS]
    assert len(set(names)) == len(names), "duplicate domain name"
    for d in DOMAINS:
        assert re.fullmatch(r"[a-z0-9_]+", d.name), d.name
        assert d.role in ("train", "novel"), d.name
        declared = {p.name for p in d.packages}
        assert all(pkg in declared for pkg, _ in d.sources), d.name


_check_table()


def all_packages():
    """Every package any domain needs, sorted."""
    return sorted({p.name for d in DOMAINS for p in d.packages})


if __name__ == "__main__":
    print("\n".join(all_packages()))
