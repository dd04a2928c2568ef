#!/usr/bin/env python3
"""The import graph of src/: which file uses which, resolved to the file that defines the item.

Usage: .ci/layers.py [--graph]

Exits 1, saying why, when two or more files of src/ import each other through any chain (a
cycle), or when a file uses one in a layer above its own (LAYERS below, bottom first; a file in
no listed layer is API, the top). With --graph it also prints each layer's files with the files
they use, the list that docs/design.md "Layers" shows.

How a path is resolved: `crate::a::b::C`, `super::C`, `self::C` and `use` trees are followed
module by module to the file that defines `C`. A `pub use` re-export is followed through, not
counted as a use: a facade `mod.rs` that re-exports its children does not depend on them, the
files that reach through it do. Code under `#[cfg(test)]` is left out: unit tests may look
anywhere.
"""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# Bottom first. A file is in the first layer one of whose prefixes it starts with.
LAYERS = [
    ("foundation", ["asymmetric_fence.rs", "error.rs", "state_lock.rs"]),
    ("driver", ["time/clock.rs", "time/timers.rs", "io/reactor.rs", "runtime/driver.rs"]),
    ("scheduler", ["runtime/park.rs", "runtime/job.rs", "runtime/scheduler.rs"]),
    ("runtime interface", [
        "runtime/task_count.rs",
        "runtime/shared.rs",
        "runtime/context.rs",
        "runtime/instrument.rs",
    ]),
    ("core", ["cancel/", "task/"]),
    ("API", [""]),
]


def layer_of(path):
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(path.startswith(p) for p in prefixes):
            return i
    return len(LAYERS) - 1


ITEM = re.compile(
    r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:(?:async|unsafe|const|extern\s+\"C\")\s+)*"
    r"(?:fn|struct|enum|trait|type|const|static|union|mod|macro_rules!)\s+(\w+)",
    re.M,
)
USE = re.compile(r"(?<![\w:])(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);")
INLINE = re.compile(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)")


def strip_comments_and_strings(text):
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == '"' or text.startswith('r"', i) or text.startswith('r#"', i):
            if c == "r":
                hashes = text[i + 1 : text.index('"', i)]
                end = '"' + hashes
                j = text.find(end, i + 2 + len(hashes))
                i = n if j < 0 else j + len(end)
            else:
                j = i + 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                i = j + 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i : i + 4]):
            i += len(re.match(r"'(\\.[^']*|[^\\'])'", text[i:]).group(0))
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def strip_cfg_test(text):
    """Removes every item carrying `#[cfg(test)]`, braces matched."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]", text)
        if not m:
            return text
        j = m.end()
        while j < len(text) and text[j] not in "{;":
            j += 1
        if j < len(text) and text[j] == "{":
            depth = 0
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
        text = text[: m.start()] + text[j + 1 :]


def expand_use_tree(tree):
    """`a::{b, c::{d as e, self}}` -> [(["a","b"], "b"), (["a","c","d"], "e"), (["a","c"], "c")]."""
    tree = re.sub(r"\s+", " ", tree)
    tree = re.sub(r"\s*(::|[{},])\s*", r"\1", tree).strip()
    results = []

    def walk(prefix, s):
        parts, depth, cur = [], 0, ""  # s split at its top-level commas
        for ch in s:
            depth += {"{": 1, "}": -1}.get(ch, 0)
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        for p in parts:
            if "{" in p:
                head, rest = p.split("{", 1)
                walk(prefix + [x for x in head.split("::") if x], rest[:-1])
                continue
            path, _, alias = p.partition(" as ")
            alias = alias or None
            segs = [x for x in path.split("::") if x]
            if segs == ["self"]:
                results.append((prefix, alias or (prefix[-1] if prefix else "self")))
            elif segs:
                results.append((prefix + segs, alias or segs[-1]))

    walk([], tree)
    return results


class Crate:
    def __init__(self, src):
        self.files = {}  # module path tuple -> relative file path
        self.text = {}
        for root, _, names in os.walk(src):
            for name in names:
                if not name.endswith(".rs"):
                    continue
                rel = os.path.relpath(os.path.join(root, name), src)
                parts = rel[:-3].split(os.sep)
                if parts[-1] in ("mod", "lib"):
                    parts = parts[:-1]
                if parts and parts[-1].endswith("_tests"):
                    continue  # a unit-test file pulled in by #[path] under #[cfg(test)]
                self.files[tuple(parts)] = rel
                with open(os.path.join(root, name)) as f:
                    raw = f.read()
                self.text[tuple(parts)] = strip_cfg_test(strip_comments_and_strings(raw))
        self.items = {m: set(ITEM.findall(t)) for m, t in self.text.items()}
        self.aliases = {}
        self.globs = {}
        self.uses = {}
        for m, t in self.text.items():
            al, gl, us = {}, [], []
            for vis, tree in USE.findall(t):
                for path, alias in expand_use_tree(tree):
                    absolute = self.absolute(m, path)
                    if absolute is None:
                        continue
                    if alias == "*":
                        gl.append(absolute[:-1])
                    else:
                        al[alias] = absolute
                    if not vis:
                        us.append(absolute)
            body = USE.sub("", t)
            for p in INLINE.findall(body):
                absolute = self.absolute(m, p.split("::"))
                if absolute is not None:
                    us.append(absolute)
            self.aliases[m], self.globs[m], self.uses[m] = al, gl, us

    def absolute(self, module, segs):
        if not segs:
            return None
        if segs[0] == "crate":
            return list(segs[1:])
        if segs[0] in ("super", "self"):
            base = list(module)
            while segs and segs[0] in ("super", "self"):
                if segs[0] == "super":
                    base = base[:-1]
                segs = segs[1:]
            return base + list(segs)
        if tuple(module + (segs[0],)) in self.files:  # a child module named without self::
            return list(module) + list(segs)
        return None  # an external crate or std

    def resolve(self, path, depth=0):
        """The module whose file defines `path`, or None."""
        if depth > 20:
            return None
        module = ()
        if path and path[-1] == "*":
            path = path[:-1]  # a glob uses the module it opens
        for i, seg in enumerate(path):
            child = module + (seg,)
            if child in self.files:
                module = child
                continue
            if seg in self.items.get(module, ()):
                return module
            if seg in self.aliases.get(module, {}):
                return self.resolve(self.aliases[module][seg] + list(path[i + 1 :]), depth + 1)
            for g in self.globs.get(module, []):
                found = self.resolve(g + [seg] + list(path[i + 1 :]), depth + 1)
                if found is not None:
                    return found
            return None
        return module

    def graph(self):
        edges = {}
        for m in self.files:
            targets = set()
            for p in self.uses[m]:
                t = self.resolve(p)
                if t is not None and t != m and t != ():
                    targets.add(t)
            edges[m] = targets
        return edges


def strongly_connected(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    crate = Crate(SRC)
    edges = crate.graph()
    name = lambda m: crate.files[m]
    cycles = [c for c in strongly_connected(edges) if len(c) > 1]
    upward = [
        (name(v), name(w))
        for v in edges
        for w in edges[v]
        if layer_of(name(w)) > layer_of(name(v))
    ]
    if "--graph" in sys.argv:
        for i, (layer, _) in enumerate(LAYERS):
            print(f"{layer}:")
            for v in sorted(edges, key=name):
                if layer_of(name(v)) == i:
                    uses = ", ".join(sorted(name(w) for w in edges[v]))
                    print(f"    {name(v)}" + (f" -> {uses}" if uses else ""))
    for c in cycles:
        print("cycle:", " <-> ".join(sorted(name(m) for m in c)))
        for m in sorted(c):
            inside = sorted(name(w) for w in edges[m] if w in c)
            print(f"    {name(m)} uses {', '.join(inside)}")
    for v, w in sorted(upward):
        print(f"upward: {v} ({LAYERS[layer_of(v)][0]}) uses {w} ({LAYERS[layer_of(w)][0]})")
    if cycles or upward:
        print(f"{len(cycles)} import cycle(s), {len(upward)} upward use(s) among the files of src/")
        return 1
    print(f"no import cycle and no upward use among the {len(edges)} files of src/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
