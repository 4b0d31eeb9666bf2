"""The build's layering, checked: src/ and include/demix/ against the graph CMake declares.

CMakeLists.txt declares each folder's library and the folders it may use (demix_layer) and
writes that graph to <build>/layers.json. This fails when
  - a file of folder A includes a header of folder B that A may not use (directly or through
    the folders it uses): an include that points upward or sideways;
  - a folder of src/ or include/demix/ is not a layer, or a layer has no folder;
  - the graph drawn in docs/architecture.md differs from CMake's.
Usage: check_layers.py <build>/layers.json  (run from the repository root)
"""

import json
import pathlib
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"demix/([a-z_]+)/', re.M)
# In docs/architecture.md, between the markers: "layer  -> dep, dep" per line.
DOC_BLOCK = re.compile(r"<!-- layers -->\s*```\n(.*?)```", re.S)


def closure(graph, layer):
    seen, todo = set(), list(graph[layer])
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(graph[dep])
    return seen


def main(layers_json):
    declared = json.loads(pathlib.Path(layers_json).read_text())
    cli = declared.pop("cli")
    assert cli == "everything", f"{layers_json}: expected cli: everything"
    graph = {name: list(deps) for name, deps in declared.items()}
    errors = []

    folders = {p.name for p in pathlib.Path("src").iterdir() if p.is_dir()} - {"cli"}
    folders |= {p.name for p in pathlib.Path("include/demix").iterdir() if p.is_dir()}
    for name in sorted(folders - graph.keys()):
        errors.append(f"src/{name} or include/demix/{name}: a folder that is not a CMake layer")
    for name in sorted(graph.keys() - folders):
        errors.append(f"layer {name}: no folder src/{name}")

    for name in sorted(graph):
        allowed = closure(graph, name) | {name}
        files = [p for root in (f"src/{name}", f"include/demix/{name}")
                 for p in sorted(pathlib.Path(root).rglob("*")) if p.is_file()]
        for path in files:
            text = path.read_text(errors="replace")
            for match in INCLUDE.finditer(text):
                used = match.group(1)
                if used not in allowed:
                    line = text.count("\n", 0, match.start()) + 1
                    errors.append(f"{path}:{line}: {name}/ may not include {used}/ "
                                  f"(it may use: {', '.join(sorted(allowed - {name})) or 'nothing'})")

    doc = pathlib.Path("docs/architecture.md").read_text()
    block = DOC_BLOCK.search(doc)
    if not block:
        errors.append("docs/architecture.md: no '<!-- layers -->' graph block")
    else:
        drawn = {}
        for line in block.group(1).splitlines():
            if line.strip():
                name, _, deps = line.partition("->")
                drawn[name.strip()] = [d.strip() for d in deps.split(",") if d.strip()]
        want = {name: sorted(deps) for name, deps in graph.items()}
        got = {name: sorted(deps) for name, deps in drawn.items()}
        if got != want:
            for name in sorted(want.keys() | got.keys()):
                if want.get(name) != got.get(name):
                    errors.append(f"docs/architecture.md: {name} -> {got.get(name)}, "
                                  f"CMake: {want.get(name)}")

    for e in errors:
        print(e)
    print(f"{len(graph)} layers, {'FAIL' if errors else 'ok'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
