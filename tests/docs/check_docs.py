"""Checks that what the Markdown documentation tells a user to run does run.

usage: check_docs.py commands   every ```sh / ```bash block of README.md, data/README.md and
                                docs/*.md, line by line: a `build/demix` command names existing
                                subcommands and options (asked of the binary's --help), its --set
                                keys exist and its --config loads; the configs, scripts and
                                programs named exist; `ctest -R` names a registered test; a config
                                key quoted in the text exists. Every relative link and image
                                resolves (anchors included), every page of docs/ is on the
                                README's map, every image of docs/images is shown, and the README
                                stays within its line budget.
       check_docs.py tour       the README's five-minute tour, run command by command as written
                                in a fresh clone of the committed tree, after training a small
                                runs/tiny there; every command must succeed and the clone's
                                `git status` must stay clean (the tour writes under runs/ only)

Run from the repository root; DEMIX_BIN names the binary (default build/demix).
"""

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

DEMIX = os.path.abspath(os.environ.get("DEMIX_BIN", "build/demix"))
README_MAX_LINES = 200
PAGES = ["README.md", "data/README.md"] + sorted(glob.glob("docs/*.md"))

# The small runs/tiny the tour starts from: the demo's config, shrunk so that training, DAPT and
# every evaluation of the tour take a short while on two cores. The evaluation settings are stored
# in the run's config.yaml, which `demix eval` reads.
TOUR_TRAINING = [
    "train", "--config", "configs/tiny.yaml",
    "--set", "model.n_layer=1", "--set", "model.d_model=16", "--set", "model.n_head=2",
    "--set", "model.seq_len=32",
    "--set", "train.steps=20", "--set", "optim.warmup_steps=2", "--set", "train.eval_every=0",
    "--set", "train.eval_tokens=512", "--set", "eval.max_tokens=1024",
    "--set", "eval.mix_max_tokens=512", "--set", "eval.prior_blocks=4",
]  # fmt: skip


class Problems:
    """Collects every problem found, each with the page and line it comes from."""

    def __init__(self):
        self.items = []

    def add(self, where, message):
        self.items.append(f"{where}: {message}")


# ---------------------------------------------------------------------------------------------
# Markdown


def shell_blocks(path):
    """(first line number, [lines]) of every ```sh / ```bash fence of a Markdown file."""
    blocks, current, start = [], None, 0
    for number, line in enumerate(open(path, encoding="utf-8"), 1):
        fence = re.match(r"\s*```(\w*)", line)
        if fence and current is None:
            current, start = ([] if fence.group(1) in ("sh", "bash") else "other"), number + 1
        elif fence:
            if current != "other":
                blocks.append((start, current))
            current = None
        elif current is not None and current != "other":
            current.append(line.rstrip("\n"))
    return blocks


def prose_lines(path):
    """(line number, line) of a Markdown file outside code fences."""
    in_fence = False
    for number, line in enumerate(open(path, encoding="utf-8"), 1):
        if re.match(r"\s*```", line):
            in_fence = not in_fence
        elif not in_fence:
            yield number, line


def heading_anchors(path):
    """GitHub's anchors of a Markdown file's headings (and "", which needs no heading)."""
    anchors = {""}
    for _, line in prose_lines(path):
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            text = heading.group(1).strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def check_links(problems):
    linked = {}  # resolved path -> the pages that link it
    for page in PAGES:
        for number, line in prose_lines(page):
            text = re.sub(r"`[^`]*`", "", line)  # code is not a link
            for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
                if re.match(r"[a-z]+:", target):  # https:, mailto:
                    continue
                path, _, anchor = target.partition("#")
                resolved = page  # an anchor of the page itself
                if path:
                    resolved = os.path.normpath(os.path.join(os.path.dirname(page), path))
                linked.setdefault(resolved, set()).add(page)
                where = f"{page}:{number}"
                if not os.path.exists(resolved):
                    problems.add(where, f"link {target}: {resolved} does not exist")
                elif resolved.endswith(".md") and anchor not in heading_anchors(resolved):
                    problems.add(where, f"link {target}: no heading #{anchor} in {resolved}")
    for page in sorted(glob.glob("docs/*.md")):
        if "README.md" not in linked.get(page, ()):
            problems.add("README.md", f"the map of docs/ does not link {page}")
    for image in sorted(glob.glob("docs/images/*")):
        if image not in linked:
            problems.add(image, "shown on no page")
    lines = sum(1 for _ in open("README.md", encoding="utf-8"))
    if lines > README_MAX_LINES:
        problems.add("README.md", f"{lines} lines, more than {README_MAX_LINES}")


# ---------------------------------------------------------------------------------------------
# The command line, as the binary describes it


class Cli:
    """Subcommands and options of `demix`, parsed from CLI11's --help output."""

    def __init__(self):
        self.cache, self.loaded = {}, {}
        reference = run_demix(["config", "--reference"])
        self.config_keys = set(re.findall(r"^\| `([a-z_]+\.[a-z_0-9]+)` \|", reference, re.M))
        if not self.config_keys:
            sys.exit("`demix config --reference` lists no keys")

    def config_error(self, config, overrides):
        """Why `demix config --config CONFIG --set ...` fails, or None when it loads."""
        key = (config,) + tuple(overrides)
        if key not in self.loaded:
            sets = [word for override in overrides for word in ("--set", override)]
            result = subprocess.run([DEMIX, "config", "--config", config] + sets,
                                    capture_output=True, text=True)
            self.loaded[key] = result.stderr.strip() if result.returncode != 0 else None
        return self.loaded[key]

    def help(self, path):
        """({option name: takes a value}, {subcommand names}) of `demix PATH... --help`."""
        key = tuple(path)
        if key not in self.cache:
            text = run_demix(list(path) + ["--help"])
            options, subcommands, section = {}, set(), None
            for line in text.splitlines():
                header = re.match(r"([A-Za-z]+):\s*$", line)
                if header:
                    section = header.group(1).lower()
                    continue
                column = line[:32].strip() if len(line) > 32 else line.strip()
                words = column.split()
                if not words:
                    continue
                if section == "options" and words[0].startswith("-"):
                    takes_value = len(words) > 1 and re.match(r"[A-Z]+\b", words[1]) is not None
                    for name in words[0].split(","):
                        options[name] = takes_value
                elif section == "subcommands":
                    subcommands.add(words[0])
            self.cache[key] = (options, subcommands)
        return self.cache[key]


def run_demix(args):
    result = subprocess.run([DEMIX] + args, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"`demix {' '.join(args)}` failed: {result.stderr.strip()}")
    return result.stdout


# ---------------------------------------------------------------------------------------------
# Commands


def logical_lines(lines, start):
    """(line number, command) with backslash continuations joined and blank lines dropped."""
    pending, first = "", start
    for offset, line in enumerate(lines):
        if not pending:
            first = start + offset
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        command = (pending + line).strip()
        pending = ""
        if command and not command.startswith("#"):
            yield first, command


def simple_commands(command):
    """The words of each simple command of a shell line (split at |, &&, ||, ;)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    current = []
    for word in lexer:
        if word in ("|", "||", "&&", ";", "&"):
            yield current
            current = []
        else:
            current.append(word)
    yield current


def expand_braces(word):
    brace = re.search(r"\{([^{}]*,[^{}]*)\}", word)
    if not brace:
        return [word]
    return [
        expanded
        for part in brace.group(1).split(",")
        for expanded in expand_braces(word[: brace.start()] + part + word[brace.end() :])
    ]


def check_repo_paths(words, where, problems):
    """Configs, scripts and tests named anywhere in a command must exist."""
    for word in words:
        value = word.split("=", 1)[1] if word.startswith("--") and "=" in word else word
        if re.match(r"(configs|scripts|tests)/", value) and "$" not in value:
            for path in expand_braces(value):
                if not os.path.exists(path):
                    problems.add(where, f"{path} does not exist")


def check_program(words, where, problems, cli, registered_tests):
    while words and re.match(r"[A-Za-z_][A-Za-z_0-9]*=", words[0]):  # VAR=value prefixes
        words = words[1:]
    if not words:
        return
    program = words[0]
    if program.startswith(".venv/bin/") and not os.path.exists(program):
        problems.add(where, f"{program} does not exist")
    if program in ("bash", "sh") or re.search(r"(^|/)python3?$", program):
        scripts = [w for w in words[1:] if not w.startswith("-")]
        if scripts and "-m" not in words and "-c" not in words and not os.path.exists(scripts[0]):
            problems.add(where, f"{scripts[0]} does not exist")
    if program == "ctest" and "-R" in words and registered_tests is not None:
        pattern = words[words.index("-R") + 1]
        if not any(re.search(pattern, name) for name in registered_tests):
            problems.add(where, f"ctest -R {pattern}: no registered test matches")
    for i, word in enumerate(words):
        if word.endswith("build/demix"):
            check_demix(words[i + 1 :], where, problems, cli)
            break


def check_demix(args, where, problems, cli):
    path = []
    options, subcommands = cli.help(path)
    while args and args[0] in subcommands:
        path.append(args.pop(0))
        options, subcommands = cli.help(path)
    name = " ".join(["demix"] + path)
    if not path or subcommands:  # every command with subcommands requires one
        got = args[0] if args else "(nothing)"
        expected = ", ".join(sorted(subcommands))
        problems.add(where, f"`{name} {got}`: no such subcommand (expected one of {expected})")
        return
    config, overrides = None, []
    while args:
        word = args.pop(0)
        if word == "--" and path == ["launch"]:
            return check_demix(args, where, problems, cli)
        if not word.startswith("-") or re.match(r"-\d", word):
            continue  # a positional argument or a value
        option, has_value, value = word.partition("=")
        if not option.startswith("--") and len(option) > 2:  # -n4
            option, has_value, value = option[:2], True, option[2:]
        if option not in options:
            problems.add(where, f"`{name}` has no option {option}")
            continue
        if options[option] and not has_value:
            if not args:
                problems.add(where, f"`{name} {option}` needs a value")
                return
            value = args.pop(0)
        if option == "--set":
            overrides.append(value)
            if value.split("=", 1)[0] not in cli.config_keys:
                problems.add(where, f"--set {value}: no config key {value.split('=', 1)[0]}")
        elif option in ("-c", "--config"):
            config = value
    if config is not None and os.path.exists(config):  # a missing one: check_repo_paths
        error = cli.config_error(config, overrides)
        if error:
            problems.add(where, f"{config} with {overrides} does not load: {error}")


def registered_ctest_names():
    build = os.path.dirname(DEMIX)
    result = subprocess.run(["ctest", "--test-dir", build, "-N"], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    return re.findall(r"Test\s+#\d+: (\S+)", result.stdout)


SECTIONS = "model|data|tokenizer|optim|train|eval|dist|adapt|mode"
FILE_SUFFIXES = {"md", "json", "jsonl", "yaml", "cpp", "h", "py", "sh", "png", "csv", "txt", "bin",
                 "safetensors"}


def check_prose_keys(problems, cli):
    """A config key quoted in the text (`train.steps`, `model.ff: dense`) must exist."""
    for page in PAGES:
        for number, line in prose_lines(page):
            for code in re.findall(r"`([^`]+)`", line):
                key = re.match(rf"({SECTIONS})\.([a-z_0-9]+)(?=$|[:= ])", code)
                if key and key.group(2) not in FILE_SUFFIXES and key[0] not in cli.config_keys:
                    problems.add(f"{page}:{number}", f"`{code}`: no config key {key.group(0)}")


def check_commands(problems):
    cli = Cli()
    tests = registered_ctest_names()
    check_prose_keys(problems, cli)
    count = 0
    for page in PAGES:
        for start, lines in shell_blocks(page):
            for number, command in logical_lines(lines, start):
                where = f"{page}:{number}"
                try:
                    commands = list(simple_commands(command))
                except ValueError as e:
                    problems.add(where, f"cannot parse `{command}`: {e}")
                    continue
                for words in commands:
                    check_repo_paths(words, where, problems)
                    check_program(words, where, problems, cli, tests)
                count += 1
    return count


# ---------------------------------------------------------------------------------------------
# The tour


def tour_block():
    """The commands of the README's first shell block after the five-minute-tour heading."""
    tour = re.compile(r"#+ A five-minute tour")
    headings = [n for n, line in prose_lines("README.md") if tour.match(line)]
    if not headings:
        sys.exit("README.md: no five-minute tour heading")
    blocks = [block for block in shell_blocks("README.md") if block[0] > headings[0]]
    if not blocks:
        sys.exit("README.md: the five-minute tour has no shell block")
    first_line, lines = blocks[0]
    return [command for _, command in logical_lines(lines, first_line)]


def run_in(clone, command, timeout=900):
    print(f"$ {command}", flush=True)
    try:
        result = subprocess.run(["bash", "-c", command], cwd=clone, capture_output=True,
                                text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        sys.exit(f"tour: `{command}` ran longer than {timeout} s")
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        sys.exit(f"tour: `{command}` exited {result.returncode}:\n" + "\n".join(output[-20:]))
    return result.stdout


def make_clone(root, clone):
    """A clone of the committed tree with the build, the venv and the corpus linked in."""
    subprocess.run(["git", "clone", "-q", "--shared", root, clone], check=True)
    os.makedirs(os.path.join(clone, "build"))
    os.symlink(DEMIX, os.path.join(clone, "build", "demix"))
    os.symlink(os.path.realpath(os.path.join(root, ".venv")), os.path.join(clone, ".venv"))
    for entry in os.listdir(os.path.join(root, "data")):  # the corpus and its token files
        link = os.path.join(clone, "data", entry)
        if not os.path.exists(link):
            os.symlink(os.path.realpath(os.path.join(root, "data", entry)), link)


def run_tour():
    commands = tour_block()
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                          check=True).stdout.strip()
    work = tempfile.mkdtemp(prefix="demix_docs_tour.")
    try:
        clone = os.path.join(work, "demix")
        make_clone(root, clone)
        run_in(clone, shlex.join(["build/demix"] + TOUR_TRAINING) + " >/dev/null")
        for command in commands:
            run_in(clone, command)
        status = run_in(clone, "git status --porcelain --untracked-files=all")
        if status.strip():
            sys.exit("tour: the clone's git status is not clean afterwards:\n" + status)
        print(f"tour: {len(commands)} commands ran, git status clean")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "commands"
    if mode == "tour":
        return run_tour()
    if mode != "commands":
        sys.exit(__doc__)
    problems = Problems()
    check_links(problems)
    count = check_commands(problems)
    if problems.items:
        problems.items.append(f"{len(problems.items)} problems in the documentation")
        sys.exit("\n".join(problems.items))
    print(f"{count} commands on {len(PAGES)} pages checked, links resolve")


if __name__ == "__main__":
    main()
