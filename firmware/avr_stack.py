#!/usr/bin/env python3
"""Worst-case stack depth of an AVR program, from its final ELF.

avr-gcc 5 has no -fcallgraph-info, and with LTO the per-file -fstack-usage
figures describe code that no longer exists, so this reads the linked
program itself (`avr-objdump -d`):

- a function's frame: every `push` in it (an upper bound: a push popped
  before the next is counted too), the frame it allocates (`sbiw r28, N`,
  or `subi r28, lo` / `sbci r29, hi`, after `in r28, 0x3d`), and 2 bytes for
  each `rcall .+0` used to reserve space;
- its calls: `call`/`rcall` to a function (2 bytes of return address each),
  `jmp`/`rjmp` into another function (a tail call, no return address);
- indirect calls (`icall`/`eicall`: LMIC's job callbacks, Print's virtual
  write): taken to reach any function no code calls directly, entry points
  excepted; that set holds every callback, so the bound stays an upper one;
- the worst case is the deepest path from `main` plus the deepest interrupt
  handler (`__vector_N`, entered with a 2-byte return address; AVR handlers
  do not nest unless they re-enable interrupts, which the Arduino core's
  and SoftwareSerial's do not).

Recursion (call cycles, most of them only through the indirect-call rule
above) is counted once around: every function of the cycle on the path.

Usage: avr_stack.py program.elf  →  prints `worst-case stack: N bytes` and
the deepest path.
"""

import re
import subprocess
import sys

FUNC = re.compile(r"^([0-9a-f]+) <(.+)>:$")
INSN = re.compile(r"^\s*([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*(\S+)\s*(.*)$")
TARGET = re.compile(r"<([^>+]+)(\+0x[0-9a-f]+)?>")
ENTRIES = ("main", "__vectors", "__ctors_end", "__init", "__bad_interrupt", "__do_global_ctors",
           "__do_copy_data", "__do_clear_bss", "_exit", "__stop_program", "exit")


def disassemble(elf):
    out = subprocess.run(["avr-objdump", "-d", elf], check=True, capture_output=True, text=True).stdout
    funcs, order, cur = {}, [], None
    for line in out.splitlines():
        m = FUNC.match(line)
        if m:
            cur = m.group(2)
            funcs[cur] = []
            order.append(cur)
            continue
        m = INSN.match(line)
        if m and cur:
            funcs[cur].append((m.group(2), m.group(3)))
    return funcs


def analyse(funcs):
    frame, calls, tails, indirect = {}, {}, {}, set()
    for name, insns in funcs.items():
        pushes, alloc, rcall0 = 0, 0, 0
        cs, ts = set(), set()
        in_sp = False
        for i, (op, args) in enumerate(insns):
            if op == "push":
                pushes += 1
            elif op == "in" and args.startswith("r28, 0x3d"):
                in_sp = True
            elif in_sp and op == "sbiw" and args.startswith("r28,"):
                alloc = max(alloc, int(args.split(",")[1].split(";")[0], 0))
            elif in_sp and op == "subi" and args.startswith("r28,"):
                lo = int(args.split(",")[1].split(";")[0], 0)
                hi = 0
                if i + 1 < len(insns) and insns[i + 1][0] == "sbci" and insns[i + 1][1].startswith("r29,"):
                    hi = int(insns[i + 1][1].split(",")[1].split(";")[0], 0)
                n = (hi << 8 | lo) & 0xFFFF
                if n < 0x8000:  # `subi r28, -N` in an epilogue frees N: not a frame
                    alloc = max(alloc, n)
            elif op == "rcall" and args.startswith(".+0"):
                rcall0 += 1
            elif op in ("call", "rcall"):
                t = TARGET.search(args)
                if t and t.group(1) in funcs and t.group(1) != name:
                    cs.add(t.group(1))
            elif op in ("jmp", "rjmp"):
                t = TARGET.search(args)
                if t and t.group(1) in funcs and t.group(1) != name and t.group(2) is None:
                    ts.add(t.group(1))
            elif op in ("icall", "eicall"):
                indirect.add(name)
        frame[name] = pushes + alloc + 2 * rcall0
        calls[name], tails[name] = cs, ts
    called = set().union(*calls.values(), *tails.values())
    vectors = {f for f in funcs if f.startswith("__vector_")}
    targets = {f for f in funcs if f not in called and f not in vectors and f not in ENTRIES}
    for f in indirect:
        calls[f] = calls[f] | targets
    return frame, calls, tails, vectors


def sccs(nodes, succ):
    """Tarjan's strongly connected components, in a deterministic order."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(succ(v)):
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
            out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def worst_paths(frame, calls, tails):
    """Deepest stack from each function. Recursion (a cycle of calls) is
    counted once around: every function of the cycle, and a return address
    for each call inside it, as if each were entered once on the path."""
    sys.setrecursionlimit(10000)
    comps = sccs(frame.keys(), lambda f: calls[f] | tails[f])
    comp_of = {f: i for i, c in enumerate(comps) for f in c}
    depth, path = {}, {}
    cycles = [c for c in comps if len(c) > 1]
    # Tarjan emits components callees first: each one's successors are done.
    for i, comp in enumerate(comps):
        members = set(comp)
        own = sum(frame[f] for f in comp) + 2 * (len(comp) - 1)
        best, best_path = 0, []
        for f in comp:
            for succ, cost in [(c, 2) for c in sorted(calls[f])] + [(t, 0) for t in sorted(tails[f])]:
                if succ in members:
                    continue
                j = comp_of[succ]
                if cost + depth[j] > best:
                    best, best_path = cost + depth[j], path[j]
        depth[i] = own + best
        name = comp[0] if len(comp) == 1 else "{" + ", ".join(comp) + "}"
        path[i] = [name] + best_path
    return {f: (depth[comp_of[f]], path[comp_of[f]]) for f in frame}, cycles


def main():
    funcs = disassemble(sys.argv[1])
    frame, calls, tails, vectors = analyse(funcs)
    worst, cycles = worst_paths(frame, calls, tails)
    main_depth, main_path = worst["main"]
    isr = max((worst[v] for v in sorted(vectors)), default=(0, []))
    total = main_depth + isr[0] + (2 if isr[1] else 0)
    print(f"worst-case stack: {total} bytes (main {main_depth}, deepest interrupt {isr[0] + 2 if isr[1] else 0})")
    print("deepest path from main: " + " > ".join(main_path))
    if isr[1]:
        print("deepest interrupt: " + " > ".join(isr[1]))
    if cycles:
        print("recursion (each cycle counted once around): " + "; ".join(", ".join(c) for c in cycles))


if __name__ == "__main__":
    main()
