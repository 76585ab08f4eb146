#!/usr/bin/env python3
"""Joins `snipjit bench --json` lines with the peers' benchmark lines and prints markdown tables.

Usage:
    compare.py PATH [PATH ...] [--threads 1,2]

Each PATH is a JSON-lines file or a directory (searched recursively for *.jsonl, skipping
`tries/` attempt directories and `summary.jsonl`). Accepted lines:
  - the peers' raw lines (shared/bench: openvino.jsonl, onnxruntime.jsonl, c.jsonl, ...);
  - the peers' aggregated lines (summarize.py's summary.jsonl, reference-results.jsonl);
  - snipjit's lines (peer "snipjit"; keys workload, subgraph, kind, dims, shape, threads, isa,
    median_us, min_us, max_us, gbps, gflops, compilations, compile_us).

Lines are joined on (workload, shape, threads). snipjit's workload names and shapes are mapped
onto the peers' (`gelu_chain` -> `chain_add_mul_gelutanh_mul`, `bert_attention` -> `mha`;
a shape [4, 1024] -> `N4096`, [1, 128, 12, 64] -> `B1_S128_H12_D64`). When a key was measured
in several runs, the value is the median of the per-run medians. speedup = peer time / snipjit
time (> 1: snipjit is faster). Missing values print as "n/a".
"""
import argparse
import collections
import json
import math
import os
import re
import statistics
import sys

WORKLOAD_ALIASES = {
    "gelu_chain": "chain_add_mul_gelutanh_mul",
    "chain": "chain_add_mul_gelutanh_mul",
    "bert_attention": "mha",
    "sdpa": "mha",
    "floor": "call_floor_add16",
}
ATTENTION = {"mha"}
# run.sh's first-call study: `snipjit bench` processes whose --dim S list runs every S twice,
# so that each S has a never-seen first call and a seen one (`shape_seen`) in one process.
FIRST_CALL_STUDY = "mha_first_call"
ELTWISE_ORDER = ["silu", "chain_add_mul_gelutanh_mul", "softmax"]
NOT_A_WORKLOAD = ("compile_", "call_floor", "peak_fma", "membw_", "minilm", FIRST_CALL_STUDY)
# kinds / subgraph names snipjit may use for a whole-model line (vs. one line per subgraph)
WHOLE_MODEL = {"", "*", "all", "model", "graph", "total", "whole", "e2e", None}

RE_N = re.compile(r"^N\d+$")
RE_MHA = re.compile(r"^B(\d+)_S(\d+)_H(\d+)_D(\d+)$")


# ------------------------------------------------------------------ loading
def jsonl_files(path):
    if os.path.isfile(path):
        return [path]
    out = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != "tries")
        out += [os.path.join(root, f) for f in sorted(files)
                if f.endswith(".jsonl") and f != "summary.jsonl"]
    return out


def ints_in(v):
    """A shape given as a list (or list of per-input lists, first taken) or a string of ints."""
    if isinstance(v, list):
        if v and isinstance(v[0], list):
            v = v[0]
        if all(isinstance(x, int) for x in v):
            return v
        return None
    if isinstance(v, dict):
        return None
    if isinstance(v, str):
        nums = re.findall(r"\d+", v)
        return [int(x) for x in nums] if nums else None
    return None


def peer_shape(workload, shape, dims):
    """Maps a snipjit shape onto the peers' shape key; returns the raw text if it cannot."""
    if isinstance(shape, str) and (RE_N.match(shape) or RE_MHA.match(shape)):
        return shape
    if isinstance(shape, dict) and not dims:
        dims, shape = shape, None
    v = ints_in(shape) if shape is not None else None
    if workload in ATTENTION:
        if v is not None and len(v) == 4:
            return "B{}_S{}_H{}_D{}".format(*v)
        if isinstance(dims, dict) and "B" in dims and "S" in dims:
            return f"B{dims['B']}_S{dims['S']}_H12_D64"
    elif v is not None:
        return f"N{math.prod(v)}"
    return json.dumps(shape) if not isinstance(shape, str) else shape


def normalize(r):
    """Returns the line with the join fields filled in, or None if it is not a measurement."""
    if not isinstance(r, dict) or "median_us" not in r or "workload" not in r:
        return None
    r = dict(r)
    r["peer"] = r.get("peer", "")
    r["variant"] = r.get("variant") or ""
    r["shape_mode"] = r.get("shape_mode") or ""
    r["threads"] = int(r.get("threads") or 0)
    if r["peer"] == "snipjit":
        wl = WORKLOAD_ALIASES.get(r["workload"], r["workload"])
        r["workload"] = wl
        r["shape"] = peer_shape(wl, r.get("shape"), r.get("dims"))
        r["variant"] = str(r.get("isa") or "")
    return r


def load(paths):
    rows = []
    for p in paths:
        files = jsonl_files(p)
        if not files:
            print(f"compare.py: no .jsonl files in {p}", file=sys.stderr)
        for f in files:
            with open(f) as fh:
                for n, line in enumerate(fh, 1):
                    line = line.strip()
                    if not line.startswith("{"):
                        continue
                    try:
                        r = normalize(json.loads(line))
                    except json.JSONDecodeError as e:
                        print(f"compare.py: {f}:{n}: skipped, not JSON ({e})", file=sys.stderr)
                        continue
                    if r is not None:
                        r["_src"] = f
                        rows.append(r)
    return rows


def pick_snipjit(rows):
    """One snipjit line per (file, key): the whole-model line if there is one, else the
    slowest subgraph line (a lower bound of the model time), marked as partial."""
    groups = collections.defaultdict(list)
    out = []
    for r in rows:
        if r["peer"] != "snipjit":
            out.append(r)
            continue
        groups[(r["_src"], r["workload"], r["shape"], r["threads"], r["variant"])].append(r)
    for rs in groups.values():
        whole = [r for r in rs if r.get("subgraph") in WHOLE_MODEL or r.get("kind") in WHOLE_MODEL - {None, ""}]
        if whole:
            out.append(whole[-1])
        elif len(rs) == 1:
            out.append(rs[0])
        else:
            r = dict(max(rs, key=lambda x: x["median_us"]))
            r["_partial"] = len(rs)
            out.append(r)
    return out


def aggregate(rows):
    """key -> aggregated row (median over runs of the per-run medians)."""
    g = collections.defaultdict(list)
    for r in rows:
        g[(r["peer"], r["variant"], r["shape_mode"], r["workload"], r["shape"], r["threads"])].append(r)
    agg = {}
    for k, rs in g.items():
        # an already aggregated line (summarize.py) counts as its `runs` runs
        meds = [r["median_us"] for r in rs]
        m = statistics.median(meds)
        a = {"median_us": m, "min_us": min(r.get("min_us", r["median_us"]) for r in rs),
             "runs": sum(int(r.get("runs", 1)) for r in rs),
             "partial": max((r.get("_partial", 0) for r in rs), default=0)}
        for unit in ("gbps", "gflops"):
            if rs[0].get(unit):
                work = rs[0][unit] * rs[0]["median_us"]  # bytes or flops, times 1e-3
                a[unit] = work / m
        for extra in ("compile_us", "first_compile_us", "compilations", "first_call_us", "fresh_inputs_us",
                      "idle_inputs_us"):
            vals = [r[extra] for r in rs if isinstance(r.get(extra), (int, float))]
            if vals:
                a[extra] = statistics.median(vals)
        # the smallest over the runs: one run whose workers sat out shows
        shares = [r["worker_cpu_share"] for r in rs if isinstance(r.get("worker_cpu_share"), (int, float))]
        if shares:
            a["worker_cpu_share"] = min(shares)
        agg[k] = a
    return agg


# ------------------------------------------------------------------ formatting
def fmt_us(v):
    if v is None:
        return "n/a"
    if v >= 10000:
        return f"{v / 1000:.1f} ms"
    if v >= 1000:
        return f"{v / 1000:.2f} ms"
    if v >= 10:
        return f"{v:.1f} us"
    return f"{v:.2f} us"


def cell(a, unit):
    if a is None:
        return "n/a"
    s = fmt_us(a["median_us"])
    if unit in a:
        s += f", {a[unit]:.1f} {'GB/s' if unit == 'gbps' else 'GFLOP/s'}"
    if a.get("partial"):
        s += f" (slowest of {a['partial']} subgraphs)"
    return s


def speedup(peer, mine):
    if peer is None or mine is None or mine["median_us"] <= 0:
        return "n/a"
    return f"{peer['median_us'] / mine['median_us']:.2f}x"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def shape_sort(s):
    m = RE_MHA.match(s)
    if m:
        return (0, int(m.group(1)), int(m.group(2)), 0)
    nums = [int(x) for x in re.findall(r"\d+", s)]
    return (1, math.prod(nums) if nums else 0, 0, 0) if nums else (2, 0, 0, 0)


# ------------------------------------------------------------------ report
class Report:
    def __init__(self, agg, threads, study=()):
        self.agg = agg
        self.study = list(study)
        self.threads = threads
        self.isas = sorted({k[1] for k in agg if k[0] == "snipjit"}) or [""]
        self.lines = []

    def get(self, peer, variant, modes, wl, shape, th):
        for m in modes:
            a = self.agg.get((peer, variant, m, wl, shape, th))
            if a is not None:
                return a
        return None

    def mine(self, isa, wl, shape, th):
        return self.get("snipjit", isa, ("", "static", "dynamic"), wl, shape, th)

    def p(self, s=""):
        self.lines.append(s)

    def isa_title(self, isa):
        return f" (snipjit isa {isa})" if isa else ""

    def limits(self):
        rows = []
        for th in self.threads:
            pk = [a for k, a in self.agg.items() if k[3] == "peak_fma" and k[5] == th and "gflops" in a]
            best = max((a["gflops"] for a in pk), default=None)
            bw = {}
            for kern in ("copy", "triad"):
                for lvl in ("L2", "DRAM"):
                    hit = [a for k, a in self.agg.items()
                           if k[3] == f"membw_{kern}" and k[4].startswith(lvl + "_") and k[5] == th]
                    bw[(kern, lvl)] = f"{hit[0]['gbps']:.1f}" if hit else "n/a"
            if best is None and all(v == "n/a" for v in bw.values()):
                continue
            rows.append([th, f"{best:.1f}" if best else "n/a", bw[("copy", "L2")], bw[("copy", "DRAM")],
                         bw[("triad", "L2")], bw[("triad", "DRAM")]])
        if rows:
            self.p("### Machine limits (C probes)\n")
            self.p(table(["threads", "peak FP32 FMA GFLOP/s", "copy L2 GB/s", "copy DRAM GB/s",
                          "triad L2 GB/s", "triad DRAM GB/s"], rows))
            self.p()

    def workload(self, wl, unit, static_title):
        shapes = sorted({k[4] for k in self.agg if k[3] == wl}, key=shape_sort)
        peers = [("openvino", "snippets_on", ("static", ""), "OpenVINO snippets on"),
                 ("onnxruntime", "", ("static", ""), "onnxruntime")]
        for isa in self.isas:
            for th in self.threads:
                if not any(k[3] == wl and k[5] == th for k in self.agg):
                    continue
                rows = []
                share = th > 1 and any("worker_cpu_share" in (self.mine(isa, wl, s, th) or {})
                                       for s in shapes)
                for s in shapes:
                    me = self.mine(isa, wl, s, th)
                    row = [s, cell(me, unit)]
                    for peer, var, modes, _ in peers:
                        a = self.get(peer, var, modes, wl, s, th)
                        row += [cell(a, unit), speedup(a, me)]
                    if share:
                        v = (me or {}).get("worker_cpu_share")
                        row.append("n/a" if v is None else f"{v:.2f}")
                    rows.append(row)
                self.p(f"### {wl}, threads={th}{static_title}{self.isa_title(isa)}\n")
                if share:
                    self.p("snipjit workers' CPU share: the smallest over the runs of the worker "
                           "threads' CPU time / (wall time x workers) during the timed calls "
                           "(near 1: they took part; near 0: they stayed parked; S = 16 runs on "
                           "the calling thread alone).\n")
                hdr = ["shape", "snipjit"]
                for _, _, _, name in peers:
                    hdr += [name, f"speedup vs {name.split()[0]}"]
                if share:
                    hdr.append("snipjit workers' CPU share")
                self.p(table(hdr, rows))
                self.p()

    def mha_dynamic(self):
        shapes = sorted({k[4] for k in self.agg if k[3] == "mha" and k[2] in ("dynamic", "dynamic_cycle")},
                        key=shape_sort)
        if not shapes:
            return
        cols = [("openvino", "snippets_on", "dynamic", "OV on, dynamic S"),
                ("openvino", "snippets_on", "dynamic_cycle", "OV on, S changes every call"),
                ("onnxruntime", "", "dynamic", "ORT, dynamic S")]
        for isa in self.isas:
            for th in self.threads:
                rows = []
                for s in shapes:
                    me = self.mine(isa, "mha", s, th)
                    row = [s, cell(me, "gflops")]
                    for peer, var, mode, _ in cols:
                        a = self.get(peer, var, (mode,), "mha", s, th)
                        row += [cell(a, "gflops"), speedup(a, me)]
                    rows.append(row)
                self.p(f"### mha against the peers' dynamic-S models, threads={th}{self.isa_title(isa)}\n")
                hdr = ["shape", "snipjit"]
                for *_, name in cols:
                    hdr += [name, "speedup"]
                self.p(table(hdr, rows))
                self.p()

    def first_calls(self):
        """First call at a shape the process has not run yet, against the repeated call."""
        shapes = sorted({k[4] for k in self.agg if k[3] == "mha"}, key=shape_sort)
        for isa in self.isas:
            for th in self.threads:
                rows = []
                for s in shapes:
                    me = self.mine(isa, "mha", s, th)
                    ov = self.get("openvino", "snippets_on", ("dynamic",), "mha", s, th)
                    if not any(a is not None and "first_call_us" in a for a in (me, ov)):
                        continue
                    row = [s]
                    for i, a in enumerate((me, ov)):
                        if a is None or "first_call_us" not in a:
                            row += ["n/a"] * (7 if i == 0 else 3)
                            continue
                        f, m = a["first_call_us"], a["median_us"]
                        row += [fmt_us(f), fmt_us(m), f"{f - m:+.1f} us"]
                        if i == 0:
                            for key in ("fresh_inputs_us", "idle_inputs_us"):
                                fr = a.get(key)
                                row += ["n/a"] * 2 if fr is None else [fmt_us(fr), f"{f - fr:+.1f} us"]
                    rows.append(row)
                if not rows:
                    continue
                self.p(f"### mha: first call at a new S, threads={th}{self.isa_title(isa)}\n")
                self.p("snipjit: `first_call_us` of its model line (into bound outputs unless run with "
                       "--fresh-outputs) against its median; OpenVINO: the dynamic-S model's first call "
                       "after binding the new inputs against its median at that S. \"fresh inputs\": "
                       "snipjit's median of 5 further calls at that S, each on inputs rewritten just "
                       "before (as the first call's were just written), so that the difference leaves out "
                       "the inputs' cache state (not what entering an S after other work costs, which a "
                       "seen S pays too: see the never-seen against seen table). \"after idle\": the "
                       "same, on rewritten inputs and bound outputs, each call after as much busy work on the calling thread as the input "
                       "preparation before the first call took (2-100 ms), so that the pool's "
                       "workers have parked as before a first call (with one thread it "
                       "equals \"fresh inputs\" up to noise). Single samples: compare over several "
                       "runs.\n")
                self.p(table(["shape", "snipjit first", "snipjit repeated", "snipjit extra",
                              "snipjit fresh inputs", "extra vs fresh inputs",
                              "snipjit after idle", "extra vs after idle",
                              "OpenVINO first", "OpenVINO repeated", "OpenVINO extra"], rows))
                self.p()

    def first_call_study(self):
        """Never-seen against seen first calls, from run.sh's first-call study."""
        groups = collections.defaultdict(lambda: ([], []))
        for r in self.study:
            if not all(isinstance(r.get(k), (int, float)) for k in ("first_call_us", "fresh_inputs_us")):
                continue
            if not isinstance(r.get("shape_seen"), bool):
                continue
            key = (r["variant"], r["threads"], r["shape"])
            groups[key][int(r["shape_seen"])].append(r["first_call_us"] - r["fresh_inputs_us"])
        if not groups:
            return
        for isa in sorted({k[0] for k in groups}):
            for th in self.threads:
                rows = []
                for key in sorted((k for k in groups if k[0] == isa and k[1] == th),
                                  key=lambda k: shape_sort(k[2])):
                    new, seen = groups[key]
                    if not new or not seen:
                        continue
                    # the k-th never-seen and the k-th seen line come from the same process
                    pairs = [a - b for a, b in zip(new, seen)]
                    q = lambda v: f"{statistics.median(v):+.1f} us"
                    rows.append([key[2], len(pairs), q(new), q(seen), q(pairs)])
                if not rows:
                    continue
                self.p(f"### mha: first call at a never-seen S against a seen one, threads={th}"
                       f"{self.isa_title(isa)}\n")
                self.p("run.sh's first-call study: `snipjit bench` processes that run each S twice "
                       "(`--dim S=16,32,64,128,16,32,64,128`, with `MALLOC_MMAP_THRESHOLD_=131072` so that "
                       "both passes get their inputs from fresh mappings), so that each S has, in one process, a "
                       "first call at a never-seen S and one at a seen S (`shape_seen`), both entered "
                       "after the previous S's timing and input preparation. Medians over the "
                       "processes of `first_call_us - fresh_inputs_us`; the last column is the "
                       "median of never-seen minus seen within each process: what a shape never "
                       "seen costs beyond re-entering one.\n")
                self.p(table(["shape", "processes", "never-seen: first - fresh inputs",
                              "seen: first - fresh inputs", "never-seen - seen"], rows))
                self.p()

    def compile_times(self):
        rows = []
        ov = sorted({(k[3], k[4]) for k in self.agg if k[0] == "openvino" and k[3].startswith("compile_")},
                    key=lambda x: (x[0], shape_sort(x[1])))
        for isa in self.isas:
            for cwl, shape in ov:
                on = self.get("openvino", "snippets_on", ("",), cwl, shape, 1)
                off = self.get("openvino", "snippets_off", ("",), cwl, shape, 1)
                wl = cwl[len("compile_"):]
                base = "mha" if wl.startswith("mha") else wl
                mine = [a for k, a in self.agg.items()
                        if k[0] == "snipjit" and k[1] == isa and k[3] == base and "compile_us" in a]
                exact = next((a for th in [1] + self.threads
                              if (a := self.mine(isa, base, shape, th)) is not None and "compile_us" in a), None)
                if exact is not None:
                    sj = f"{fmt_us(exact['compile_us'])} ({exact.get('compilations', 'n/a')} compilations)"
                    if "first_compile_us" in exact:
                        sj += f", first in the process {fmt_us(exact['first_compile_us'])}"
                elif mine:
                    cs = [a["compile_us"] for a in mine]
                    n = max(a.get("compilations", 0) for a in mine)
                    sj = f"{fmt_us(min(cs))} .. {fmt_us(max(cs))} over {len(mine)} shapes ({n} compilations max)"
                    fs = [a["first_compile_us"] for a in mine if "first_compile_us" in a]
                    if fs:
                        sj += f"; first in the process {fmt_us(min(fs))} .. {fmt_us(max(fs))}"
                else:
                    sj = "n/a"
                rows.append([wl, shape, fmt_us(on and on["median_us"]), fmt_us(off and off["median_us"]), sj])
            if rows:
                self.p(f"### Compile time{self.isa_title(isa)}\n")
                self.p("OpenVINO: compile_model wall time, 1-thread config, median of 5 after one discarded. "
                       "snipjit: `compile_us` of its bench lines, likewise the median of 5 compiles after a "
                       "first one, which is shown too (it also pays the process's first use of the "
                       "compiler's code and memory); for a shape-agnostic kernel, other shapes should need "
                       "no new compilation.\n")
                self.p(table(["workload", "shape", "OpenVINO snippets on", "OpenVINO snippets off", "snipjit"], rows))
                self.p()
            rows = []

    def call_floor(self):
        rows = []
        for isa in self.isas:
            for th in self.threads:
                me = self.mine(isa, "call_floor_add16", "N16", th)
                ov = self.get("openvino", "snippets_on", ("",), "call_floor_add16", "N16", th)
                ort = self.get("onnxruntime", "", ("",), "call_floor_add16", "N16", th)
                if me is None and ov is None and ort is None:
                    continue
                rows.append([isa or "-", th, fmt_us(me and me["median_us"]), fmt_us(ov and ov["median_us"]),
                             fmt_us(ort and ort["median_us"])])
        if rows:
            self.p("### Per-call floor: 16-element Add, median per call\n")
            self.p("The Python peers' floor includes the Python call overhead; snipjit's is whatever "
                   "its bench loop measures (see docs/benchmarks.md).\n")
            self.p(table(["snipjit isa", "threads", "snipjit", "OpenVINO", "onnxruntime"], rows))
            self.p()

    def render(self):
        runs = collections.Counter()
        for (peer, *_), a in self.agg.items():
            runs[peer] = max(runs[peer], a["runs"])
        self.p("Peers and the most runs aggregated per key: "
               + ", ".join(f"{p} ({n})" for p, n in sorted(runs.items())) + "\n")
        if "snipjit" not in runs:
            self.p("snipjit: no lines found (not yet measured); its columns print n/a.\n")
        self.limits()
        wls = {k[3] for k in self.agg if not k[3].startswith(NOT_A_WORKLOAD)}
        order = [w for w in ELTWISE_ORDER if w in wls] + sorted(wls - set(ELTWISE_ORDER) - ATTENTION)
        for wl in order:
            self.workload(wl, "gbps", " (GB/s = bytes read + written / time)")
        if "mha" in wls:
            self.workload("mha", "gflops", ", static shapes (GFLOP/s = 4*B*H*S*S*D / time)")
            self.mha_dynamic()
            self.first_calls()
        self.first_call_study()
        self.compile_times()
        self.call_floor()
        return "\n".join(self.lines)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", help="JSON-lines files or result directories")
    ap.add_argument("--threads", default="1,2", help="thread counts to tabulate (default 1,2)")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",") if t]
    loaded = load(args.paths)
    study = [r for r in loaded if r["peer"] == "snipjit" and r["workload"] == FIRST_CALL_STUDY
             and r.get("subgraph") in WHOLE_MODEL]
    rows = pick_snipjit(loaded)
    if not rows:
        print("compare.py: no measurements found", file=sys.stderr)
        return 1
    print(Report(aggregate(rows), threads, study).render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
