"""Markup -> plain text converters for the demix corpus builder.

One function per source format.  Each takes the source text (already decoded
to str) and an optional ``stats`` Counter, in which it records what it removed
so that the MANIFEST can say how much markup was stripped per domain.  The
converters aim for readable prose/code, not for a faithful rendering.

``normalise`` is applied to every converter's output; it is what guarantees
that a document can never contain the document separator (``\\n\\f\\n``).

Python 3 standard library only.
"""

import collections
import html
import html.parser
import re

__all__ = [
    "DOC_SEPARATOR", "decode_bytes", "normalise", "chunk_text",
    "roff_to_text", "pod_to_text", "rst_to_text", "info_to_text",
    "html_to_text", "dictd_to_text", "wordnet_to_text", "plain_to_text",
    "CONVERTERS", "new_stats",
]

# Documents in the output files are terminated by a line holding only a form
# feed.  normalise() removes every form feed, so this can never occur inside
# a document.
DOC_SEPARATOR = "\n\f\n"


def _count(stats, key, n=1):
    if stats is not None and n:
        stats[key] += n


# ---------------------------------------------------------------------------
# Decoding and normalisation
# ---------------------------------------------------------------------------

def decode_bytes(data, stats=None):
    """Decode UTF-8; fall back to Latin-1 (old man pages and pods use it)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        _count(stats, "latin1_decoded_units")
        return data.decode("latin-1")


_OVERSTRIKE = re.compile(r"[^\n]\x08")           # "x\bx" bold, "_\bx" underline
# C0/C1 controls except \t and \n; BOM.  \f is in here on purpose.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff]")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_MANY_BLANK_LINES = re.compile(r"\n{4,}")        # 3+ blank lines


def normalise(text, stats=None):
    """Canonical form of every document: \\n line ends, no control characters
    other than \\n and \\t (so no form feed), no trailing blanks, at most two
    consecutive blank lines, no leading/trailing whitespace."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u2028", "\n").replace("\u2029", "\n\n")
    text, n = _OVERSTRIKE.subn("", text)
    _count(stats, "overstrike_chars", n)
    text, n = _CONTROL.subn("", text)
    _count(stats, "control_chars", n)
    text = _TRAILING_SPACE.sub("", text)
    text = _MANY_BLANK_LINES.sub("\n\n\n", text)
    return text.strip()


def _pack(blocks, sep, max_bytes):
    """Greedily join consecutive blocks with ``sep`` into pieces of at most
    ``max_bytes``; a block that alone exceeds the limit is its own piece."""
    pieces, current, size = [], [], 0
    for block in blocks:
        block_size = len(block.encode("utf-8"))
        if current and size + len(sep) + block_size > max_bytes:
            pieces.append(sep.join(current))
            current, size = [], 0
        size += block_size + (len(sep) if current else 0)
        current.append(block)
    if current:
        pieces.append(sep.join(current))
    return pieces


def chunk_text(text, max_bytes):
    """Split a long document at paragraph (blank line) boundaries into pieces
    of at most ``max_bytes`` UTF-8 bytes, so eval splits are not dominated
    by a few huge files.  Boundaries before an unindented line are preferred
    (code then splits between top-level definitions and no piece starts
    with a line whose indentation would be lost to stripping); any blank
    line is used only for blocks that are still too long.  A single
    paragraph longer than the limit stays whole."""
    if len(text.encode("utf-8")) <= max_bytes:
        return [text]
    pieces = []
    for block in _pack(re.split(r"\n\n(?=\S)", text), "\n\n", max_bytes):
        if len(block.encode("utf-8")) > max_bytes:
            pieces.extend(_pack(block.split("\n\n"), "\n\n", max_bytes))
        else:
            pieces.append(block)
    return [p.strip() for p in pieces if p.strip()]


def plain_to_text(src, stats=None):
    """Plain text / source code: nothing to strip."""
    return src


# ---------------------------------------------------------------------------
# Line-oriented output helper for roff
# ---------------------------------------------------------------------------

class _Lines:
    """Collects output lines; filled text is joined into one line per
    paragraph, like a formatter with an infinitely wide page."""

    def __init__(self):
        self.lines = []
        self.words = []

    def fill(self, text):
        if text.strip():
            self.words.append(text.strip())
        else:
            self.paragraph()   # a blank input line is a paragraph break

    def line(self, text):
        self.flush()
        self.lines.append(text)

    def flush(self):
        if self.words:
            self.lines.append(" ".join(self.words))
            self.words = []

    def paragraph(self):
        self.flush()
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def text(self):
        self.flush()
        return "\n".join(self.lines)


# ---------------------------------------------------------------------------
# roff (man pages)
# ---------------------------------------------------------------------------

_ROFF_SPECIAL = {
    "em": "\u2014", "en": "\u2013", "hy": "-", "mi": "-", "aq": "'", "dq": '"',
    "lq": "\u201c", "rq": "\u201d", "oq": "\u2018", "cq": "\u2019",
    "bu": "\u2022", "co": "\u00a9", "rg": "\u00ae", "tm": "\u2122",
    "mu": "\u00d7", "di": "\u00f7", "+-": "\u00b1", "<=": "\u2264",
    ">=": "\u2265", "!=": "\u2260", "->": "\u2192", "<-": "\u2190",
    "ti": "~", "ha": "^", "rs": "\\", "sl": "/", "ba": "|", "or": "|",
    "dg": "\u2020", "de": "\u00b0", "sc": "\u00a7", "ps": "\u00b6",
    "aa": "\u00b4", "ga": "`", "ua": "\u2191", "da": "\u2193", "Eu": "\u20ac",
    "Po": "\u00a3", "ct": "\u00a2", "12": "\u00bd", "14": "\u00bc",
    "34": "\u00be", "pl": "+", "eq": "=", "lB": "[", "rB": "]", "lC": "{",
    "rC": "}", "la": "\u27e8", "ra": "\u27e9", "bv": "|", "fo": "\u00ab",
    "fc": "\u00bb", "Fo": "\u00ab", "Fc": "\u00bb", "ss": "\u00df",
    "'e": "\u00e9", "`e": "\u00e8", ":u": "\u00fc", ":o": "\u00f6", ":a": "\u00e4",
}
# Predefined strings (\*x, \*(xx, \*[xx]) used by the man macros.
_ROFF_STRINGS = {"lq": "\u201c", "rq": "\u201d", "R": "\u00ae", "Tm": "\u2122"}
# Single-character escapes (\x) and what they print.
_ROFF_CHARS = {
    "-": "-", "e": "\\", "\\": "\\", "~": " ", " ": " ", "0": " ", "t": "\t",
    "'": "'", "`": "`", ".": ".", "&": "", "|": "", "^": "", "c": "",
    "%": "", ")": "", ":": "", ",": "", "/": "", "z": "", "a": "", "p": "",
    "{": "", "}": "",
}
_ROFF_ESCAPE = re.compile(r"""\\(?:
      \((?P<special>..)                              # \(xx
    | \[(?P<named>[^\]]*)\]                          # \[name]
    | \*(?:\((?P<str2>..)|\[(?P<strn>[^\]]*)\]|(?P<str1>.))   # strings
    | f(?:\(..|\[[^\]]*\]|.)                         # font change
    | s(?:[-+]?\(\d\d|\([-+]?\d\d|\[[^\]]*\]|[-+]?[0-3]?\d)   # size change
    | [nmgkFYV$](?:\(..|\[[^\]]*\]|.)               # registers, colours, args
    | [hvwlLDoXbxRSZNCHA]'[^']*'                    # escapes with '...' args
    | (?P<char>.)
)""", re.VERBOSE)
_ROFF_FONT_MACROS = {"B", "I", "SM", "SB"}                  # args joined by " "
_ROFF_ALT_MACROS = {"BR", "BI", "IB", "IR", "RB", "RI"}     # args joined by ""
_ROFF_PARA_MACROS = {"PP", "LP", "P", "sp", "HP", "SY", "bp"}
_ROFF_BREAK_MACROS = {"br", "RS", "RE", "in", "ti", "YS"}


def _roff_escape(m, stats):
    g = m.groupdict()
    if g["char"] is not None:
        return _ROFF_CHARS.get(g["char"], g["char"])
    _count(stats, "roff_escapes")
    name = g["special"] or g["named"]
    if name is not None:
        if re.fullmatch(r"u[0-9A-Fa-f]{4,6}", name):
            return chr(int(name[1:], 16))
        return _ROFF_SPECIAL.get(name, "")
    name = g["str2"] or g["strn"] or g["str1"]
    if name is not None:
        return _ROFF_STRINGS.get(name, "")
    return ""


_ROFF_COMMENT = re.compile(r'(?<!\\)((?:\\\\)*)\\".*')   # \" up to end of line


def _roff_inline(text, stats=None):
    """Resolve roff escapes in a piece of text (comments already removed)."""
    return _ROFF_ESCAPE.sub(lambda m: _roff_escape(m, stats), text)


def _roff_args(rest):
    """Split macro arguments: blanks separate, "double quotes" group, ""
    inside quotes is a literal quote, and an escape (e.g. "\ ") never
    separates.  Escapes are resolved later, per argument."""
    args, i, n = [], 0, len(rest)
    while i < n:
        if rest[i] in " \t":
            i += 1
            continue
        quoted = rest[i] == '"'
        j, buf = i + 1 if quoted else i, []
        while j < n:
            if rest[j] == "\\":
                buf.append(rest[j:j + 2])
                j += 2
            elif quoted and rest.startswith('""', j):
                buf.append('"')
                j += 2
            elif quoted and rest[j] == '"':
                j += 1
                break
            elif not quoted and rest[j] in " \t":
                break
            else:
                buf.append(rest[j])
                j += 1
        args.append("".join(buf))
        i = j
    return args


def _ends_macro_definition(line):
    return line.strip() == ".."


def _ends_conditional_block(line):
    return "\\}" in line


def _roff_logical_lines(src):
    """Join lines ending in an unescaped backslash (roff line continuation)."""
    out, pending = [], ""
    for line in src.split("\n"):
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending += line[:-1]
        else:
            out.append(pending + line)
            pending = ""
    if pending:
        out.append(pending)
    return out


def _tbl_separator(options_line):
    m = re.search(r"tab\s*\((.)\)", options_line)
    return m.group(1) if m else "\t"


def roff_to_text(src, stats=None):
    """man(7) roff -> text.  Font/size escapes and layout requests are
    dropped, headings and list tags get their own lines, filled text is
    joined into one line per paragraph, .nf/.EX blocks keep their lines,
    tbl tables keep their data rows.  A page that is only a ``.so`` link
    becomes empty."""
    out = _Lines()
    fill = True
    line_next = False          # .TP/.SH without args: next text is its own line
    skip_until = None          # end marker of a skipped block (.de, .if \{)
    table = None               # None, "format" or "data" inside .TS/.TE
    tab = "\t"

    def emit(text):
        nonlocal line_next
        if line_next:
            out.line(text.strip())
            line_next = False
        elif fill:
            out.fill(text)
        else:
            out.line(text)

    for line in _roff_logical_lines(src):
        if skip_until is not None:
            _count(stats, "roff_skipped_lines")
            if skip_until(line):
                skip_until = None
            continue
        if table == "format":
            _count(stats, "roff_table_format_lines")
            if ";" in line and tab == "\t":
                tab = _tbl_separator(line)
            if line.rstrip().endswith("."):
                table = "data"
            continue
        if line.startswith((".\\\"", "'\\\"", "\\\"")) or line.strip() in (".", "'"):
            _count(stats, "roff_comment_lines")
            continue
        line = _ROFF_COMMENT.sub(r"\1", line)
        if not line.startswith((".", "'")):
            if table == "data":
                if line.strip() in ("_", "=", "T{", "T}"):
                    continue
                line = line.replace("T{", "").replace("T}", "").replace(tab, "\t")
                out.line(_roff_inline(line, stats))
            else:
                emit(_roff_inline(line, stats))
            continue

        parts = line[1:].lstrip().split(None, 1)
        name = parts[0] if parts else ""
        args = [_roff_inline(a, stats) for a in _roff_args(parts[1])] if len(parts) > 1 else []
        _count(stats, "roff_requests")
        if name in ("SH", "SS"):
            out.paragraph()
            if args:
                out.line(" ".join(args))
                out.paragraph()
            else:
                line_next = True
        elif name in ("TP", "TQ"):          # tagged paragraph; TQ: extra tag
            if name == "TP":
                out.paragraph()
            else:
                out.flush()
            line_next = True
        elif name == "IP":
            out.paragraph()
            tag = args[0].strip() if args else ""
            if len(tag) <= 3:
                out.fill(tag)               # bullet or number: starts the paragraph
            else:
                out.line(tag)
        elif name in _ROFF_FONT_MACROS:
            if args:
                emit(" ".join(args))
        elif name in _ROFF_ALT_MACROS:
            if args:
                emit("".join(args))
        elif name in ("UR", "MT"):
            pass                            # URL itself dropped, link text kept
        elif name in ("UE", "ME"):
            if args:
                emit("".join(args))
        elif name in _ROFF_PARA_MACROS:
            out.paragraph()
        elif name in _ROFF_BREAK_MACROS:
            out.flush()
        elif name in ("nf", "EX", "Vb"):
            out.flush()
            fill = False
        elif name in ("fi", "EE", "Ve"):
            out.flush()
            fill = True
        elif name == "TS":
            out.paragraph()
            table, tab = "format", "\t"
        elif name == "T&":
            table = "format"
        elif name == "TE":
            out.paragraph()
            table = None
        elif name == "de":
            skip_until = _ends_macro_definition
        elif name in ("if", "ie", "el") and "\\{" in line:
            skip_until = _ends_conditional_block
        else:
            # TH, so, ad, nh, PD, ft, ne, ds, nr, conditionals, ...: layout only
            _count(stats, "roff_dropped_requests")
    return out.text()


# ---------------------------------------------------------------------------
# POD (Perl documentation)
# ---------------------------------------------------------------------------

_POD_CODE_OPEN = re.compile(r"([A-Z])<(?:(<+)\s+)?")
_POD_ENTITIES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/"}


def _pod_entity(name):
    if name in _POD_ENTITIES:
        return _POD_ENTITIES[name]
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", name):
        return chr(int(name, 16))
    if name.isdigit():
        return chr(int(name))
    return html.unescape("&%s;" % name) if name.isalnum() else name


def _pod_link(inner):
    """L<text|target> -> text; L<page/"section"> -> "section" in page."""
    if "|" in inner:
        return inner.split("|", 1)[0]
    if re.match(r"\w+:[^:\s]\S*$", inner):          # URL
        return inner
    page, sep, section = inner.partition("/")
    section = section.strip('"')
    if sep and page:
        return '"%s" in %s' % (section, page)
    return section if sep else page.strip('"')


def _pod_code(letter, inner):
    if letter in "XZ":
        return ""
    if letter == "E":
        return _pod_entity(inner)
    if letter == "L":
        return _pod_link(inner)
    return inner                                     # B I C F S: just the text


def _pod_parse(text, i, closer, stats):
    """Expand formatting codes from text[i:] up to the regex ``closer``
    (None = end of text).  Returns (expanded, index after closer)."""
    buf = []
    while i < len(text):
        if closer is not None:
            m = closer.match(text, i)
            if m:
                return "".join(buf), m.end()
        m = _POD_CODE_OPEN.match(text, i)
        if m:
            _count(stats, "pod_format_codes")
            if m.group(2):      # C<< ... >>: closed by whitespace + same count
                inner_closer = re.compile(r"\s+%s" % (">" * (len(m.group(2)) + 1)))
            else:
                inner_closer = re.compile(">")
            inner, i = _pod_parse(text, m.end(), inner_closer, stats)
            buf.append(_pod_code(m.group(1), inner))
            continue
        buf.append(text[i])
        i += 1
    return "".join(buf), i


def _pod_inline(text, stats=None):
    return _pod_parse(text, 0, None, stats)[0]


def pod_to_text(src, stats=None):
    """POD -> text.  Headings and =item labels become lines, =over/=back/
    =encoding/=cut etc. are dropped, =begin/=end and =for blocks are skipped,
    verbatim (indented) paragraphs are kept as they are, formatting codes
    are replaced by their text."""
    out = []
    in_pod = False
    skip_region = None           # format name of an open =begin block
    bullet = ""                  # pending "=item *" label for next paragraph
    for para in re.split(r"\n[ \t]*\n", src):
        para = para.strip("\n")
        if not para.strip():
            continue
        if para.startswith("="):
            in_pod = True
            m = re.match(r"=(\w*)\s*(.*)", para, re.DOTALL)
            command, arg = m.group(1), m.group(2).strip()
            _count(stats, "pod_commands")
            if skip_region is not None:
                if command == "end":
                    skip_region = None
                continue
            if command == "cut":
                in_pod = False
            elif command == "begin":
                skip_region = arg
            elif command.startswith("head"):
                out.append(_pod_inline(arg, stats))
            elif command == "item":
                label = _pod_inline(arg, stats)
                if label in ("", "*", "o", "-"):
                    bullet = "* "
                elif re.fullmatch(r"\d+\.?", label):
                    bullet = label.rstrip(".") + ". "
                else:
                    out.append(label)
            # =over =back =pod =encoding =for: no text of their own
            continue
        if not in_pod or skip_region is not None:
            _count(stats, "pod_skipped_paragraphs")
            continue
        if para[0] in " \t":
            out.append(bullet + para)                            # verbatim
        else:
            out.append(bullet + _pod_inline(para, stats))
        bullet = ""
    return "\n\n".join(out)


# ---------------------------------------------------------------------------
# reStructuredText (Sphinx sources)
# ---------------------------------------------------------------------------

_RST_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:.-]+)::(?:\s+(.*))?$")
_RST_COMMENT = re.compile(r"^(\s*)\.\.(?:\s|$)")
_RST_ADORNMENT = re.compile(r"^\s*([=\-~^\"'`#*+:.<>_])\1{2,}\s*$")
_RST_TABLE_BORDER = re.compile(r"^\s*(?:\+[-=+]+\+|=+(?: +=+)+)\s*$")
_RST_OPTION = re.compile(r"^\s+:[\w-]+:(?:\s.*)?$")
# Directives whose argument (an object signature or a title) is kept as a line.
_RST_SIGNATURE = {
    "function", "class", "method", "attribute", "data", "exception",
    "decorator", "decoratormethod", "classmethod", "staticmethod", "property",
    "describe", "object", "cmdoption", "option", "envvar", "opcode",
    "pdbcommand", "coroutinefunction", "coroutinemethod", "abstractmethod",
    "awaitablefunction", "awaitablemethod", "c:function", "c:macro",
    "c:type", "c:member", "c:var", "c:struct", "c:union", "c:enum",
    "c:enumerator", "cfunction", "cmacro", "ctype", "cmember", "cvar",
    "rubric", "topic",
}
_RST_VERSION = {"versionadded": "New in version {0}.",
                "versionchanged": "Changed in version {0}.",
                "deprecated": "Deprecated since version {0}.",
                "deprecated-removed": "Deprecated since version {0}, "
                                      "will be removed in version {1}."}
# Directives whose body is code: kept verbatim.
_RST_LITERAL = {"code-block", "sourcecode", "code", "doctest", "testcode",
                "testoutput", "parsed-literal", "productionlist"}
# Directives whose body is not prose at all.
_RST_DROP_BODY = {"toctree", "index", "testsetup", "testcleanup", "raw",
                  "image", "figure", "include", "literalinclude", "csv-table",
                  "tabularcolumns", "highlight", "module", "currentmodule",
                  "moduleauthor", "sectionauthor", "program", "audit-event",
                  "audit-event-table", "only", "availability"}
_RST_INLINE = re.compile(r"""
      :[\w.+-]+(?::[\w.+-]+)*:`(?P<role>[^`]+)`     # :role:`text`
    | ``(?P<literal>.+?)``                          # ``literal``
    | `(?P<ref>[^`]+)`_{0,2}                         # `text <url>`_ / `text`
""", re.VERBOSE | re.DOTALL)
_RST_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", re.DOTALL)
_RST_EMPHASIS = re.compile(r"(?<![\w*\\])\*(?=[^\s*])(.+?)(?<=[^\s*\\])\*(?![\w*])",
                           re.DOTALL)
_RST_FOOTNOTE_REF = re.compile(r"\s?\[(?:#[\w-]*|\d+|\*)\]_")
_RST_LINK_TARGET = re.compile(r"^(.*?)\s*<[^<>]*>$", re.DOTALL)


def _rst_role_text(text):
    m = _RST_LINK_TARGET.match(text)
    if m and m.group(1):
        return m.group(1)
    text = text.lstrip("!")
    if text.startswith("~"):                # :meth:`~a.b.c` displays as c
        text = text[1:].rsplit(".", 1)[-1]
    return text


def _rst_plain(text, stats):
    text, n1 = _RST_STRONG.subn(r"\1", text)
    text, n2 = _RST_EMPHASIS.subn(r"\1", text)
    text, n3 = _RST_FOOTNOTE_REF.subn("", text)
    _count(stats, "rst_inline_markup", n1 + n2 + n3)
    return re.sub(r"\\([*`|_\\])", r"\1", text)


def _rst_inline(text, stats=None):
    """Roles, literals, references and emphasis -> their text; literal
    contents are protected from the emphasis rules."""
    out, last = [], 0
    for m in _RST_INLINE.finditer(text):
        out.append(_rst_plain(text[last:m.start()], stats))
        if m.group("role") is not None:
            _count(stats, "rst_roles")
            out.append(_rst_role_text(m.group("role")))
        elif m.group("literal") is not None:
            _count(stats, "rst_inline_markup")
            out.append(m.group("literal"))
        else:
            _count(stats, "rst_inline_markup")
            out.append(_rst_role_text(m.group("ref")))
        last = m.end()
    out.append(_rst_plain(text[last:], stats))
    return "".join(out)


def _indent(line):
    return len(line) - len(line.lstrip(" \t"))


def _rst_directive_text(name, arg, stats):
    """The line a directive contributes to the text, or None."""
    if name in _RST_SIGNATURE and arg:
        return _rst_inline(arg, stats)
    if name in _RST_VERSION:
        template = _RST_VERSION[name]
        n_versions = template.count("{")
        words = arg.split(None, n_versions)
        versions = (words + ["?"] * n_versions)[:n_versions]
        rest = words[n_versions] if len(words) > n_versions else ""
        return (template.format(*versions) + " " + _rst_inline(rest, stats)).rstrip()
    return None


def rst_to_text(src, stats=None):
    """Light reST -> text: directive lines and comments dropped (object
    signatures and version notes kept as plain lines), bodies of non-prose
    directives skipped, title adornments and table borders dropped, roles
    and inline markup reduced to their text, literal blocks kept verbatim.
    Inline markup is resolved per paragraph since roles may wrap lines."""
    out = []
    para = []                  # lines of the current ordinary paragraph

    def emit(line=None):
        if para:
            out.append(_rst_inline("\n".join(para), stats))
            para.clear()
        if line is not None:
            out.append(line)

    # Indented-block state after a directive, comment or "::" paragraph:
    #   "skip"      drop the block (comments, toctree, index, ...)
    #   "literal"   keep it verbatim (code)
    #   "directive" first lines: more arguments (no blank line yet) and
    #               :option: lines; then the body, which is ordinary text
    block, block_indent, keep_args = None, 0, False
    for line in src.split("\n"):
        stripped = line.strip()
        if block is not None and (not stripped or _indent(line) > block_indent):
            if block == "skip":
                _count(stats, "rst_skipped_lines")
                continue
            if block == "literal":
                emit(line)
                continue
            if _RST_OPTION.match(line):
                _count(stats, "rst_directive_options")
                continue
            if stripped:                     # continued directive arguments
                if keep_args and out and out[-1].endswith("\\"):
                    out[-1] = out[-1][:-1].rstrip() + " " + _rst_inline(stripped, stats)
                elif keep_args:              # one more signature
                    emit(" " * block_indent + _rst_inline(stripped, stats))
                continue
            block = None                     # blank line: the body is prose
        elif block is not None:
            block = None                     # dedent ends the block
        m = _RST_DIRECTIVE.match(line)
        if m:
            _count(stats, "rst_directives")
            emit()
            name = m.group(2)
            name = name[3:] if name.startswith("py:") else name
            block_indent = len(m.group(1))
            if name in _RST_DROP_BODY:
                block = "skip"
                continue
            text = _rst_directive_text(name, m.group(3) or "", stats)
            if text is not None:
                emit(m.group(1) + text)
            block = "literal" if name in _RST_LITERAL else "directive"
            keep_args = name in _RST_SIGNATURE
            continue
        m = _RST_COMMENT.match(line)
        if m:                                # comment, target or substitution
            _count(stats, "rst_comments")
            emit()
            block, block_indent = "skip", len(m.group(1))
            continue
        if _RST_ADORNMENT.match(line) or _RST_TABLE_BORDER.match(line):
            _count(stats, "rst_adornment_lines")
            continue
        if not stripped:
            emit(line)
        elif stripped.endswith("::"):        # "Example::" introduces a literal block
            if stripped != "::":
                para.append(line.rstrip()[:-3] if stripped.endswith(" ::")
                            else line.rstrip()[:-1])
            emit()
            block, block_indent = "literal", _indent(line)
        else:
            para.append(line)
    emit()
    return "\n".join(out)


# ---------------------------------------------------------------------------
# GNU info (compiled texinfo)
# ---------------------------------------------------------------------------

_INFO_HEADER = re.compile(r"^File: [^,\n]+,\s+Node: .*\n?")
_INFO_XREF = re.compile(r"\*([Nn])ote\s+([^:]+?):(?::|\s+[^.,]*[.,])", re.DOTALL)
_INFO_UNDERLINE = re.compile(r"^([=*\-.])\1{2,}$")


def info_to_text(node, stats=None):
    """One info node -> text.  The ``File: ... Node: ...`` navigation header,
    menus and heading underlines are dropped; cross references
    ``*note Label: Node.`` become ``Label`` (``*Note`` becomes ``See Label``)."""
    node, n = _INFO_HEADER.subn("", node.lstrip("\n"), count=1)
    _count(stats, "info_headers", n)

    def xref(m):
        label = " ".join(m.group(2).split())
        return ("See " if m.group(1) == "N" else "") + label

    node, n = _INFO_XREF.subn(xref, node)
    _count(stats, "info_xrefs", n)
    out, in_menu = [], False
    for line in node.split("\n"):
        if line.startswith("* Menu:"):
            in_menu = True
        if in_menu:
            # a menu runs to the end of its block of "* entry" lines
            if line and not line.startswith(("* ", " ")):
                in_menu = False
            else:
                _count(stats, "info_menu_lines")
                continue
        if _INFO_UNDERLINE.match(line):
            _count(stats, "info_underlines")
            continue
        out.append(line)
    return "\n".join(out)


# ---------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------

_HTML_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input",
              "link", "meta", "param", "source", "track", "wbr"}
_HTML_PARAGRAPH = {"p", "div", "pre", "table", "blockquote", "ul", "ol",
                   "dl", "h1", "h2", "h3", "h4", "h5", "h6", "section",
                   "article", "header", "footer", "figure", "hr", "address"}
_HTML_LINE = {"br", "tr", "li", "dt", "dd", "caption"}
_HTML_ALWAYS_SKIP = {"script", "style", "head", "noscript", "template"}


class _HtmlText(html.parser.HTMLParser):
    def __init__(self, skip_classes, skip_ids, stats):
        super().__init__(convert_charrefs=True)
        self.skip_classes = frozenset(skip_classes)
        self.skip_ids = frozenset(skip_ids)
        self.stats = stats
        self.parts = []
        self.pending_breaks = 0
        self.skip_depth = 0          # >0 while inside a skipped element
        self.pre_depth = 0
        self.row_has_text = False    # True: a cell separator precedes the next cell
        self.item_closed = False     # just after </li>: next <li> on the next line

    # -- output ---------------------------------------------------------
    def _break(self, n):
        if self.parts and self.parts[-1] == "* " and not self.pending_breaks:
            return                   # <li><p>text: keep the text on the bullet line
        self.pending_breaks = max(self.pending_breaks, n)

    def _write(self, text):
        if self.pending_breaks:
            if self.parts:
                self.parts.append("\n" * self.pending_breaks)
            self.pending_breaks = 0
            text = text.lstrip(" ") if not self.pre_depth else text
        elif self.parts and self.parts[-1].endswith((" ", "\n")) and not self.pre_depth:
            text = text.lstrip(" ")
        if text:
            self.parts.append(text)
            self.row_has_text = True
            self.item_closed = False

    # -- parser callbacks -----------------------------------------------
    def _skipped(self, tag, attrs):
        if tag in _HTML_ALWAYS_SKIP:
            return True
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        return (attrs.get("id") in self.skip_ids
                or any(c in self.skip_classes for c in classes))

    def handle_starttag(self, tag, attrs):
        _count(self.stats, "html_tags")
        void = tag in _HTML_VOID
        if self.skip_depth:
            if not void:
                self.skip_depth += 1
            return
        if not void and self._skipped(tag, attrs):
            _count(self.stats, "html_skipped_elements")
            self.skip_depth = 1
            return
        if tag == "pre":
            self.pre_depth += 1
        if tag in _HTML_PARAGRAPH:
            self._break(2)
        elif tag in _HTML_LINE:
            self._break(1)
        if tag == "tr":
            self.row_has_text = False
        elif tag in ("td", "th"):
            if self.row_has_text:
                self._write(" | ")
        elif tag == "li":
            if self.item_closed:     # "</p></li><li>": items are not paragraphs
                self.pending_breaks = 1
            self._write("* ")

    def handle_endtag(self, tag):
        if tag in _HTML_VOID:
            return
        if self.skip_depth:
            self.skip_depth -= 1
            return
        if tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
        if tag in _HTML_PARAGRAPH:
            self._break(2)
        elif tag in _HTML_LINE:
            self._break(1)
        self.item_closed = tag == "li"

    def handle_startendtag(self, tag, attrs):
        # XHTML <a id="x"/>: no content; only line breaks matter.
        _count(self.stats, "html_tags")
        if not self.skip_depth and tag in ("br", "hr"):
            self._break(1 if tag == "br" else 2)

    def handle_data(self, data):
        if self.skip_depth:
            return
        if not self.pre_depth:
            data = re.sub(r"\s+", " ", data)
            if data == " " and (not self.parts or self.pending_breaks):
                return
        self._write(data)

    def text(self):
        return "".join(self.parts)


def html_to_text(src, stats=None, skip_classes=(), skip_ids=()):
    """HTML -> text with html.parser.  script/style/head are dropped, as are
    elements whose class or id is listed (navigation bars, footers, tables of
    contents).  Block elements become paragraph breaks, list items get a
    "* " bullet, table cells are separated by " | ", <pre> keeps its layout."""
    parser = _HtmlText(skip_classes, skip_ids, stats)
    parser.feed(src)
    parser.close()
    return parser.text()


# ---------------------------------------------------------------------------
# dictd databases (GCIDE, FOLDOC, Jargon File)
# ---------------------------------------------------------------------------

_DICT_SOURCE_TAG = re.compile(r"\n?^[ \t]*\[[^\]\n]{1,60}\][ \t]*$", re.MULTILINE)
_DICT_PRONUNCIATION = re.compile(r"^(\S[^\\\n]*?) \\[^\\\n]+\\", re.MULTILINE)
_DICT_CROSSREF = re.compile(r"\{([^{}]*)\}")


def dictd_to_text(entry, stats=None):
    """One dictd entry -> text.  Cross-reference braces ``{word}`` become
    ``word``, lines that only name the source (``[1913 Webster]``) are
    dropped, and GCIDE's ``\\Pro*nun"ci*a`tion\\`` after a headword is
    dropped."""
    entry, n = _DICT_SOURCE_TAG.subn("", entry)
    _count(stats, "dict_source_tags", n)
    entry, n = _DICT_PRONUNCIATION.subn(r"\1", entry)
    _count(stats, "dict_pronunciations", n)
    entry, n = _DICT_CROSSREF.subn(lambda m: " ".join(m.group(1).split()), entry)
    _count(stats, "dict_crossrefs", n)
    return entry


# ---------------------------------------------------------------------------
# WordNet data.* lines
# ---------------------------------------------------------------------------

_WORDNET_POS = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective",
                "r": "adverb"}


def _wordnet_synset(line, stats):
    if line.startswith("  ") or "|" not in line:
        _count(stats, "wordnet_header_lines")
        return None
    fields, gloss = line.split("|", 1)
    fields = fields.split()
    pos = _WORDNET_POS.get(fields[2], fields[2])
    n_words = int(fields[3], 16)
    words = []
    for k in range(n_words):
        word = fields[4 + 2 * k]
        word = re.sub(r"\([a-z]+\)$", "", word)     # adjective marker, e.g. (a)
        words.append(word.replace("_", " "))
    _count(stats, "wordnet_pointer_fields", len(fields) - 4 - 2 * n_words)
    return "%s (%s): %s" % (", ".join(words), pos, gloss.strip())


def wordnet_to_text(src, stats=None):
    """Synset lines of a WordNet ``data.<pos>`` file -> one ``words (pos):
    gloss`` line each.  Offsets, lexicographer ids and pointers are dropped,
    as are the licence header lines (they start with two spaces)."""
    out = []
    for line in src.split("\n"):
        if line.strip():
            synset = _wordnet_synset(line, stats)
            if synset is not None:
                out.append(synset)
    return "\n".join(out)


# Converter registry used by the domain table.
CONVERTERS = {
    "plain": plain_to_text,
    "roff": roff_to_text,
    "pod": pod_to_text,
    "rst": rst_to_text,
    "info": info_to_text,
    "html": html_to_text,
    "dictd": dictd_to_text,
    "wordnet": wordnet_to_text,
}


def new_stats():
    return collections.Counter()
