#!/usr/bin/python3
"""Layering check: reads the #include "..." lines of the product's C sources and
fails on a forbidden arrow between folders or on an include cycle between modules.

Folders and what each may include (besides itself), from the README's Design:
    common   -> nothing of ours
    conf     -> common
    spool    -> common
    auth     -> conf, common
    upstream -> auth, conf, spool, common      (never proxy)
    proxy    -> upstream, auth, conf, spool, common
    cli      -> everything
A module is one .c/.h pair (upstream/up_pool.c + upstream/up_pool.h); module A
depends on B when a file of A includes B's header. A private header shared by the
parts of one folder (NAME_int.h, no .c of its own) is not a module: including it
counts as including what it includes. Any cycle of such
dependencies (A -> B -> A, or longer) is reported, inside a folder too.

Usage: layering.py [ROOT]        check the tree at ROOT (default: the repo)
       layering.py --self-test   show that a planted upward include and a planted
                                 cycle are caught (runs the check on a copy)
Exit 0 when clean, 1 with one line per problem."""

import os
import re
import shutil
import subprocess
import sys
import tempfile

FOLDERS = ("common", "conf", "spool", "auth", "upstream", "proxy", "cli")
ALLOWED = {
    "common": set(),
    "conf": {"common"},
    "spool": {"common"},
    "auth": {"conf", "common"},
    "upstream": {"auth", "conf", "spool", "common"},
    "proxy": {"upstream", "auth", "conf", "spool", "common"},
    "cli": set(FOLDERS),
}
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def sources(root):
    for folder in FOLDERS:
        d = os.path.join(root, folder)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith((".c", ".h")):
                yield folder, name


def module_of(folder, name):
    return "%s/%s" % (folder, os.path.splitext(name)[0])


def check(root):
    problems = []
    deps = {}  # module -> {module: "file:line" of the first include}
    for folder, name in sources(root):
        path = os.path.join(root, folder, name)
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        me = module_of(folder, name)
        deps.setdefault(me, {})
        for m in INCLUDE_RE.finditer(text):
            target = os.path.normpath(m.group(1))
            where = "%s/%s:%d" % (folder, name, text.count("\n", 0, m.start()) + 1)
            parts = target.split("/")
            if len(parts) != 2 or parts[0] not in FOLDERS:
                if len(parts) == 1 and os.path.exists(os.path.join(root, folder, target)):
                    parts = [folder, target]  # same-folder include without the prefix
                else:
                    continue  # not one of ours (tests/, generated, system)
            tfolder = parts[0]
            if tfolder != folder and tfolder not in ALLOWED[folder]:
                problems.append("%s: %s includes %s: %s may include only %s" % (
                    where, folder, target, folder,
                    ", ".join(sorted(ALLOWED[folder])) or "nothing of ours"))
            tmod = module_of(tfolder, parts[1])
            if tmod != me:
                deps[me].setdefault(tmod, where)
    problems += cycles(collapse_headers(root, deps))
    return problems


def collapse_headers(root, deps):
    """A header with no .c of its own (a folder's private header, like
    proxy/prx_int.h, shared by the parts of one module) is not a module: whoever
    includes it depends on what it includes."""
    def has_c(mod):
        return os.path.exists(os.path.join(root, mod + ".c"))

    out = {}
    for mod in deps:
        if not has_c(mod) and mod.endswith("_int"):
            continue
        seen, todo, edges = set(), list(deps[mod].items()), {}
        while todo:
            tmod, where = todo.pop()
            if tmod in seen:
                continue
            seen.add(tmod)
            if tmod.endswith("_int") and not has_c(tmod):
                todo += [(t, w) for t, w in deps.get(tmod, {}).items()]
            elif tmod != mod:
                edges.setdefault(tmod, where)
        out[mod] = edges
    return out


def cycles(deps):
    """One line per elementary cycle found by a depth-first search (each reported once)."""
    out, seen_cycles = [], set()
    color = {}

    def visit(node, stack):
        color[node] = 1
        stack.append(node)
        for nxt in sorted(deps.get(node, {})):
            if color.get(nxt) == 1:
                cyc = stack[stack.index(nxt):]
                key = frozenset(cyc)
                if key not in seen_cycles:
                    seen_cycles.add(key)
                    hops = ["%s (%s)" % (a, deps[a][b]) for a, b in zip(cyc, cyc[1:] + [cyc[0]])]
                    out.append("include cycle: " + " -> ".join(hops) + " -> " + cyc[0])
            elif color.get(nxt) is None:
                visit(nxt, stack)
        stack.pop()
        color[node] = 2

    for node in sorted(deps):
        if color.get(node) is None:
            visit(node, [])
    return out


def self_test(root):
    """The check must fail on each of three planted faults (whatever the tree's own
    state: the plain `layering` test judges that)."""
    ok = True
    plants = [
        ("upstream", '#include "proxy/prx_session.h"\n', "upstream includes proxy/prx_session.h"),
        ("common", '#include "conf/conf.h"\n', "common includes conf/conf.h"),
    ]
    for folder, line, expect in plants:
        with tempfile.TemporaryDirectory() as tmp:
            for f in FOLDERS:
                if os.path.isdir(os.path.join(root, f)):
                    shutil.copytree(os.path.join(root, f), os.path.join(tmp, f))
            victim = sorted(n for n in os.listdir(os.path.join(tmp, folder)) if n.endswith(".c"))[0]
            with open(os.path.join(tmp, folder, victim), "a") as fh:
                fh.write(line)
            r = subprocess.run([sys.executable, os.path.abspath(__file__), tmp],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if r.returncode != 1 or expect not in r.stdout:
                print("self-test: planted %r in %s/%s was not caught (exit %d):\n%s" % (
                    line.strip(), folder, victim, r.returncode, r.stdout))
                ok = False
            else:
                print("self-test: caught planted %s in %s/%s" % (line.strip(), folder, victim))
    # a cycle between two modules of one folder: a.h includes b.h, b.h includes a.h
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "upstream"))
        with open(os.path.join(tmp, "upstream", "up_a.h"), "w") as fh:
            fh.write('#include "upstream/up_b.h"\n')
        with open(os.path.join(tmp, "upstream", "up_b.c"), "w") as fh:
            fh.write('#include "upstream/up_a.h"\n')
        probs = check(tmp)
        if not any(p.startswith("include cycle: upstream/up_a") for p in probs):
            print("self-test: planted cycle up_a <-> up_b was not caught: %r" % probs)
            ok = False
        else:
            print("self-test: caught planted cycle upstream/up_a <-> upstream/up_b")
    return ok


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args = sys.argv[1:]
    if args and args[0] == "--self-test":
        sys.exit(0 if self_test(args[1] if len(args) > 1 else root) else 1)
    if args:
        root = args[0]
    problems = check(root)
    for p in problems:
        print(p)
    if problems:
        print("layering: %d problem(s)" % len(problems))
        sys.exit(1)
    n = sum(1 for _ in sources(root))
    print("layering: %d files, no forbidden include and no cycle" % n)


if __name__ == "__main__":
    main()
