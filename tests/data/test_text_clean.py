"""Unit tests for the corpus converters (scripts/data/text_clean.py) and the
few format readers in scripts/data/sources.py.

Run from the repository root with either of
    python3 -m unittest tests/data/test_text_clean.py
    python3 tests/data/test_text_clean.py
"""

import pathlib
import random
import sys
import tempfile
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "scripts" / "data"))

import build_corpus  # noqa: E402
import sources  # noqa: E402
import text_clean as tc  # noqa: E402


class NormaliseTest(unittest.TestCase):
    def test_line_ends_controls_blank_lines(self):
        src = "  Title\r\n\r\nb\x08bo\x08old u\x08_x\tend  \n\f\n\x1b[0m\x00a\n\n\n\n\n\nb\x85\n  "
        self.assertEqual(tc.normalise(src), "Title\n\nbold _x\tend\n\n[0ma\n\n\nb")

    def test_counts_removed_characters(self):
        stats = tc.new_stats()
        tc.normalise("a\fb\x07c", stats)
        self.assertEqual(stats["control_chars"], 2)

    def test_latin1_fallback(self):
        stats = tc.new_stats()
        self.assertEqual(tc.decode_bytes("caf\u00e9".encode("utf-8")), "caf\u00e9")
        self.assertEqual(tc.decode_bytes(b"caf\xe9", stats), "caf\u00e9")
        self.assertEqual(stats["latin1_decoded_units"], 1)


class SeparatorTest(unittest.TestCase):
    def test_separator_never_inside_a_document(self):
        rng = random.Random(7)
        alphabet = ["a", " ", "\n", "\f", "\r", "\t", "\x0b", "\u2028", "%"]
        docs = []
        for _ in range(300):
            raw = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))
            doc = tc.normalise(raw)
            if doc:
                docs.append(doc)
        self.assertGreater(len(docs), 100)
        for doc in docs:
            self.assertNotIn("\f", doc)
            self.assertNotIn(tc.DOC_SEPARATOR, doc)
            self.assertEqual(doc, doc.strip())

    def test_written_split_round_trips(self):
        docs = [tc.normalise(d) for d in ("one\n\ftwo", "x\n\f\ny", "\u00e9t\u00e9")]
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp) / "train.txt"
            meta = build_corpus.write_split(path, docs)
            data = path.read_bytes()
        self.assertEqual(meta["documents"], 3)
        self.assertEqual(meta["bytes"], len(data))
        self.assertEqual(data.decode("utf-8").split("\n\f\n"), docs + [""])
        self.assertEqual(docs[1], "x\n\ny")


class ChunkTest(unittest.TestCase):
    def test_short_text_is_one_chunk(self):
        self.assertEqual(tc.chunk_text("a\n\nb", 100), ["a\n\nb"])

    def test_prefers_unindented_boundaries(self):
        text = "def f():\n    x = 1\n\n    return x\n\ndef g():\n    pass"
        self.assertEqual(tc.chunk_text(text, 40),
                         ["def f():\n    x = 1\n\n    return x", "def g():\n    pass"])

    def test_falls_back_to_any_blank_line(self):
        text = "aaaa\n\n  bbbb\n\n  cccc"
        self.assertEqual(tc.chunk_text(text, 12), ["aaaa\n\n  bbbb", "cccc"])


class RoffTest(unittest.TestCase):
    def test_man_page(self):
        src = "\n".join([
            '.\\" Copyright comment',
            '.TH LS 1 2023-01-01 "GNU" "User Commands"',
            ".SH NAME",
            "ls \\- list directory contents",
            ".SH SYNOPSIS",
            ".B ls",
            "[\\fIOPTION\\fR]... [\\fIFILE\\fR]...",
            ".SH DESCRIPTION",
            "List information about the FILEs",
            "(the current directory by default).",
            ".PP",
            "See",
            ".BR dir (1)",
            "and \\(lqmore\\(rq.",
            ".TP",
            ".BR \\-a \", \" \\-\\-all",
            "do not ignore entries starting with .",
            ".IP \\(bu 2",
            "a bullet",
            ".nf",
            "  keep   this",
            "  layout",
            ".fi",
            ".SS Tables",
            ".TS",
            "tab(:);",
            "l l.",
            "name:value",
            "_",
            ".TE",
        ])
        expected = "\n".join([
            "NAME",
            "",
            "ls - list directory contents",
            "",
            "SYNOPSIS",
            "",
            "ls [OPTION]... [FILE]...",
            "",
            "DESCRIPTION",
            "",
            "List information about the FILEs (the current directory by default).",
            "",
            "See dir(1) and \u201cmore\u201d.",
            "",
            "-a, --all",
            "do not ignore entries starting with .",
            "",
            "\u2022 a bullet",
            "  keep   this",
            "  layout",
            "",
            "Tables",
            "",
            "name\tvalue",
            "",
        ])
        self.assertEqual(tc.roff_to_text(src), expected)

    def test_so_link_page_is_empty_and_stats_counted(self):
        stats = tc.new_stats()
        self.assertEqual(tc.normalise(tc.roff_to_text(".so man3/other.3\n", stats)), "")
        self.assertEqual(stats["roff_dropped_requests"], 1)

    def test_line_continuation_and_macro_definition(self):
        src = '.de XX\n.B junk\n..\n.BI "int f(int " a \\\n", int " b );'
        self.assertEqual(tc.roff_to_text(src), "int f(int a, int b);")


class PodTest(unittest.TestCase):
    def test_pod(self):
        src = "\n".join([
            "package Foo;",
            "",
            "=head1 NAME",
            "",
            "Foo - does B<things> with C<< $a <=> $b >>",
            "",
            "=head2 Links",
            "",
            "See L<perlfunc/open>, L<the docs|perlpod> and L</SEE ALSO>;",
            "E<lt>tagE<gt> Z<>X<index>done.",
            "",
            "    verbatim C<not> expanded",
            "",
            "=over 4",
            "",
            "=item *",
            "",
            "First I<point>.",
            "",
            "=item B<-v>",
            "",
            "Verbose.",
            "",
            "=back",
            "",
            "=begin html",
            "",
            "<p>skipped</p>",
            "",
            "=end html",
            "",
            "=cut",
            "",
            "sub code { 1 }",
        ])
        expected = "\n\n".join([
            "NAME",
            "Foo - does things with $a <=> $b",
            "Links",
            'See "open" in perlfunc, the docs and SEE ALSO;\n<tag> done.',
            "    verbatim C<not> expanded",
            "* First point.",
            "-v",
            "Verbose.",
        ])
        self.assertEqual(tc.pod_to_text(src), expected)


class RstTest(unittest.TestCase):
    def test_rst(self):
        src = "\n".join([
            ":mod:`difflib` --- Helpers",
            "=========================",
            "",
            ".. module:: difflib",
            "   :synopsis: Helpers for computing deltas.",
            "",
            ".. Markup comment that spans",
            "   two lines.",
            "",
            "This *module* uses **bold**, ``literal *x*``, :func:`os.path.join`,",
            ":meth:`~a.b.c`, :ref:`the guide <guide-label>` and `Python <https://python.org>`_.",
            "",
            ".. function:: f(a, \\",
            "              b=1)",
            "   :noindex:",
            "",
            "   Does things::",
            "",
            "      f(*args)",
            "",
            "   .. versionadded:: 3.2",
            "",
            ".. toctree::",
            "   :maxdepth: 2",
            "",
            "   intro",
            "",
            "+---+---+",
            "| a | b |",
            "+---+---+",
        ])
        expected = "\n".join([
            "difflib --- Helpers",
            "",
            "This module uses bold, literal *x*, os.path.join,",
            "c, the guide and Python.",
            "",
            "f(a, b=1)",
            "",
            "   Does things:",
            "",
            "      f(*args)",
            "",
            "   New in version 3.2.",
            "",
            "| a | b |",
        ])
        self.assertEqual(tc.rst_to_text(src), expected)


class InfoTest(unittest.TestCase):
    def test_info_node(self):
        src = "\n".join([
            "File: standards.info,  Node: Using Extensions,  Next: Standard C,  Up: Design",
            "",
            "3.3 Using Non-standard Features",
            "===============================",
            "",
            "Many GNU facilities (*note Compatibility::) exist.  *Note Standard",
            "C: Std C. explains more.",
            "",
            "* Menu:",
            "",
            "* Child::            A child node.",
            "* Other::            Another.",
            "",
            "Trailing text.",
        ])
        expected = "\n".join([
            "",
            "3.3 Using Non-standard Features",
            "",
            "Many GNU facilities (Compatibility) exist.  See Standard C explains more.",
            "",
            "Trailing text.",
        ])
        self.assertEqual(tc.info_to_text(src), expected)


class HtmlTest(unittest.TestCase):
    def test_html(self):
        src = (
            "<html><head><title>T</title><style>p {}</style></head><body>"
            "<div class='navheader'>Prev | Next</div>"
            "<h1>Chapter&nbsp;1</h1>\n  <p>Some   <b>bold</b>\n text &amp; more.</p>"
            "<ul><li><p>one</p></li><li>two</li></ul>"
            "<pre>  x = 1\n  y = 2</pre>"
            "<table><tr><td><img src='tip.png'/></td><td>Tip</td></tr>"
            "<tr><th>a</th><th>b</th></tr></table>"
            "<script>var x;</script><div id='footer'>Last updated</div>"
            "line<br/>break</body></html>"
        )
        expected = "\n".join([
            "Chapter 1",                # &nbsp; is whitespace too
            "",
            "Some bold text & more.",
            "",
            "* one",
            "* two",
            "",
            "  x = 1",
            "  y = 2",
            "",
            "Tip",
            "a | b",
            "",
            "line",
            "break",
        ])
        out = tc.html_to_text(src, skip_classes=("navheader",), skip_ids=("footer",))
        self.assertEqual(tc.normalise(out), expected)


class DictdTest(unittest.TestCase):
    def test_gcide_entry(self):
        src = "\n".join([
            'Ferment \\Fer*ment"\\, v. t. [L. fermentare. See {Ferment}, n.]',
            "   To cause ferment in; to {set in",
            "   motion}.",
            "   [1913 Webster]",
            "",
            "         Ye vigorous swains!  --Pope.",
            "   [1913 Webster]",
        ])
        expected = "\n".join([
            "Ferment, v. t. [L. fermentare. See Ferment, n.]",
            "   To cause ferment in; to set in motion.",
            "",
            "         Ye vigorous swains!  --Pope.",
        ])
        stats = tc.new_stats()
        self.assertEqual(tc.dictd_to_text(src, stats), expected)
        self.assertEqual((stats["dict_source_tags"], stats["dict_crossrefs"],
                          stats["dict_pronunciations"]), (2, 2, 1))

    def test_index_numbers(self):
        self.assertEqual(sources._dictd_number("Fz"), 5 * 64 + 51)
        self.assertEqual(sources._dictd_number("A"), 0)


class WordnetTest(unittest.TestCase):
    def test_synsets(self):
        src = "\n".join([
            "  1 This software and database is being provided  ",
            "00001740 29 v 04 breathe 0 take_a_breath 0 respire 0 suspire 3 001 "
            "* 00005041 v 0000 02 + 02 00 | draw air into, and expel out of, the lungs  ",
            "00002098 00 s 01 able(a) 0 000 | having the necessary means  ",
        ])
        expected = ("breathe, take a breath, respire, suspire (verb): draw air into, "
                    "and expel out of, the lungs\n"
                    "able (adjective): having the necessary means")
        self.assertEqual(tc.wordnet_to_text(src), expected)


class BibleLzwTest(unittest.TestCase):
    def test_compress_stream(self):
        # "ABABABA" compresses to codes 65 66 257 259 (259 is the KwKwK case),
        # written as 9-bit codes, least significant bit first.
        codes = [65, 66, 257, 259]
        value = sum(code << (9 * k) for k, code in enumerate(codes))
        stream = value.to_bytes(5, "little")
        self.assertEqual(sources.lzw_decompress(stream), b"ABABABA")


class SplitRuleTest(unittest.TestCase):
    def test_eval_count(self):
        self.assertEqual(build_corpus.eval_count(2), 0)
        self.assertEqual(build_corpus.eval_count(60), 3)
        self.assertEqual(build_corpus.eval_count(199), 10)
        self.assertEqual(build_corpus.eval_count(200), 20)
        self.assertEqual(build_corpus.eval_count(1000), 50)


if __name__ == "__main__":
    unittest.main()
