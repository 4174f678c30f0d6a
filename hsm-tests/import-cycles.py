#!/usr/bin/env python3
"""Lists the import edges between files of src/ and the circles among them.

    python3 hsm-tests/import-cycles.py            # circles only; exit 1 if any
    python3 hsm-tests/import-cycles.py --edges    # every edge, then the circles

An edge A -> B means that file A names an item of file B: in a `use` (crate::,
super::, self::, tufkey:: in the binary, or a child module of A's own module) or
written out in code (`super::pg::parse_url(..)`, `crate::keys::uri::redact(..)`).
`mod x;` declarations are not edges: a parent declaring its children is the tree,
not an import. A file's `#[cfg(test)] mod tests` counts as part of the file.

A circle is a set of files that reach each other through edges (a strongly
connected component of more than one file). The design wants none: the one-way
dependency line of docs/architecture.md holds file by file.

Deliberately small: it reads Rust as text (comments and string literals removed),
which is enough for this code base's import style. It knows the library (src/lib.rs),
the binary (src/main.rs and the modules it declares, src/cli/), which names the library
as `tufkey::`, and any crate nested in src/ with its own Cargo.toml (src/pcsc-sys), whose
`crate::` is its own.
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
LIB_NAME = "tufkey"
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def raw_string_starts(text, i):
    """Whether the `r` at `i` opens a raw string: `r"`, `r#"` or `br#"`, not `for"`."""
    before = text[max(0, i - 2) : i]
    if before.endswith("b"):
        before = before[:-1]
    return not before or not re.match(r"\w", before[-1])


def strip(text):
    """Removes comments, string and char literals (keeps line structure)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "r" and re.match(r'r#*"', text[i:]) and raw_string_starts(text, i):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            i = n if j < 0 else j + len(end)
            out.append('""')
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:]):
            i += len(re.match(r"'(\\.|[^\\'])'", text[i:]).group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def nested_crates():
    """Folders under src/ with their own Cargo.toml (src/pcsc-sys): other crates, whose
    `crate::` is their own and whose files are not modules of tufkey."""
    out = []
    for d, _, names in os.walk(ROOT):
        if "Cargo.toml" in names and os.path.abspath(d) != os.path.abspath(ROOT):
            out.append(os.path.relpath(d, ROOT).replace(os.sep, "/"))
    return out


def binary_modules():
    """The top-level modules src/main.rs declares (`mod cli;`): the binary's own files."""
    path = os.path.join(ROOT, "main.rs")
    if not os.path.exists(path):
        return set()
    text = strip(open(path, encoding="utf-8").read())
    return set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", text, re.M))


def module_of(rel, nested, bin_mods):
    """src-relative file -> (crate, module path as a tuple), or None for a nested crate's
    file outside its src/ (build.rs)."""
    crate = None
    for d in nested:
        if rel.startswith(d + "/"):
            if not rel.startswith(d + "/src/"):
                return None
            crate, rel = d, rel[len(d) + len("/src/") :]
    parts = rel[:-3].split("/")
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts in (["lib"], ["main"]):
        return (crate or ("bin" if parts == ["main"] else "lib")), ()
    if crate is None:
        crate = "bin" if parts[0] in bin_mods else "lib"
    return crate, tuple(parts)


def build_index():
    files = {}
    nested, bin_mods = nested_crates(), binary_modules()
    for d, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".rs"):
                rel = os.path.relpath(os.path.join(d, name), ROOT).replace(os.sep, "/")
                key = module_of(rel, nested, bin_mods)
                if key is not None:
                    files[key] = rel
    return files


def expand_use(body):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e] (as lists of segments)."""
    # Drop `as alias` before the spaces go: `yubikey as backend` must stay `yubikey`.
    body = re.sub(r"\s+as\s+" + IDENT, "", body)
    body = re.sub(r"\s+", "", body)

    def split_top(s):
        items, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                items.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            items.append(cur)
        return items

    def walk(s):
        m = re.match(r"^(.*?)::\{(.*)\}$", s)
        if m:
            prefix = m.group(1)
            return [prefix + ("::" + t if t else "") for item in split_top(m.group(2)) for t in walk(item)]
        return [s]

    out = []
    for item in split_top(body):
        if item.startswith("{") and item.endswith("}"):
            out += [p for i in split_top(item[1:-1]) for p in walk(i)]
        else:
            out += walk(item)
    return [p.split("::") for p in out if p]


def resolve(files, crate, here, segs):
    """The file a path's item lives in, or None (std, external crates, unknown)."""
    base_mod = here
    segs = list(segs)
    if segs[0] == "crate":
        target_crate, mod, segs = crate, (), segs[1:]
    elif segs[0] == LIB_NAME and crate == "bin":
        target_crate, mod, segs = "lib", (), segs[1:]
    elif segs[0] in ("super", "self"):
        target_crate, mod = crate, base_mod
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                mod = mod[:-1]
            segs = segs[1:]
    elif (crate, here + (segs[0],)) in files or any(
        k[0] == crate and k[1][: len(here) + 1] == here + (segs[0],) for k in files
    ):
        target_crate, mod = crate, here
    else:
        return None
    # Longest prefix of the remaining segments that is a module with a file.
    best = files.get((target_crate, mod))
    cur = mod
    for s in segs:
        cur = cur + (s,)
        if (target_crate, cur) in files:
            best = files[(target_crate, cur)]
        else:
            break
    return best


def inline_modules(text):
    """(name, start, end) of every `mod name { .. }` written inside a file."""
    out = []
    for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{", text):
        depth, i = 0, m.end() - 1
        while i < len(text):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        out.append((m.group(1), m.end(), i))
    return out


def edges_of(files, key, rel):
    crate, here = key
    text = strip(open(os.path.join(ROOT, rel), encoding="utf-8").read())
    found = set()
    blocks = inline_modules(text)

    def at(pos):
        """The module at a position: the file's, plus any inline `mod x { .. }` around it."""
        return here + tuple(name for name, start, end in blocks if start <= pos < end)

    # `use` statements, braces expanded.
    for m in re.finditer(r"\b(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", text):
        for segs in expand_use(m.group(1)):
            target = resolve(files, crate, at(m.start()), segs)
            if target:
                found.add(target)
    # Paths written out in code, from the crate, a parent or one of this module's
    # own child modules (`store::open(..)` in server/mod.rs).
    children = sorted({k[1][len(here)] for k in files if k[0] == crate and len(k[1]) > len(here) and k[1][: len(here)] == here})
    starts = "|".join(["crate", "super", "self", LIB_NAME] + children)
    for m in re.finditer(r"(?<![\w:])((?:" + starts + r")(?:::" + IDENT + r")+)", text):
        target = resolve(files, crate, at(m.start()), m.group(1).split("::"))
        if target:
            found.add(target)
    found.discard(rel)
    return found


def circles(graph):
    """Tarjan's strongly connected components of more than one node."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    files = build_index()
    graph = {rel: edges_of(files, key, rel) for key, rel in files.items()}
    if "--edges" in sys.argv:
        for a in sorted(graph):
            for b in sorted(graph[a]):
                print(f"src/{a} -> src/{b}")
    found = circles(graph)
    for comp in found:
        inner = [f"src/{a} -> src/{b}" for a in comp for b in sorted(graph[a]) if b in comp]
        print(f"circle of {len(comp)} files: " + ", ".join("src/" + c for c in comp))
        for e in inner:
            print(f"    {e}")
    edges = sum(len(v) for v in graph.values())
    print(f"{len(graph)} files, {edges} edges, {len(found)} circle(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
