#!/usr/bin/env python3
"""GFLOP/s of the MHA workload against the sequence length S, as an SVG.

Usage: scripts/bench/plot_mha.py RESULTS_DIR [--out FILE.svg] [--batch 1]

RESULTS_DIR is a directory written by scripts/bench/run.sh (run_<k>/<peer>.jsonl). The
plot has one line per (peer, threads): snipjit's whole-model run of examples/mha.sg
(`"subgraph":"model"`) and OpenVINO with Snippets on (`"variant":"snippets_on"`,
static shapes), each point the median over the runs of the per-run median time,
converted to GFLOP/s with the attention flops (4 B H S^2 D). Dashed lines: the FMA peak
the C probe measured (`peak_fma`), per thread count. No third-party packages: the SVG is
written by hand, so the script runs with any Python 3.
"""
import argparse
import glob
import json
import math
import os
import re
import statistics
import sys

H, D = 12, 64
COLORS = {("snipjit", 1): "#1f77b4", ("snipjit", 2): "#17becf",
          ("openvino", 1): "#d62728", ("openvino", 2): "#ff9896"}


def records(results_dir):
    for path in sorted(glob.glob(os.path.join(results_dir, "run_*", "*.jsonl"))):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue


def shape_bs(shape):
    m = re.match(r"B(\d+)_S(\d+)_", shape or "")
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


def collect(results_dir, batch):
    times = {}  # (peer, threads) -> S -> [median_us per run]
    peaks = {}  # threads -> [GFLOP/s]
    for r in records(results_dir):
        if r.get("workload") == "peak_fma" and r.get("gflops"):
            peaks.setdefault(r["threads"], []).append(r["gflops"])
            continue
        if r.get("workload") != "mha":
            continue
        b, s = shape_bs(r.get("shape"))
        if b != batch:
            continue
        peer = r.get("peer")
        if peer == "snipjit" and r.get("subgraph") != "model":
            continue
        if peer == "openvino" and (r.get("variant") != "snippets_on"
                                   or r.get("shape_mode", "static") != "static"):
            continue
        if peer not in ("snipjit", "openvino"):
            continue
        times.setdefault((peer, r["threads"]), {}).setdefault(s, []).append(r["median_us"])
    series = {}
    for key, by_s in times.items():
        pts = []
        for s, ts in sorted(by_s.items()):
            us = statistics.median(ts)
            flops = 4.0 * batch * H * s * s * D
            pts.append((s, flops / (us * 1e3)))
        series[key] = pts
    return series, {t: statistics.median(v) for t, v in peaks.items()}


def svg(series, peaks, batch):
    w, h, ml, mr, mt, mb = 760, 460, 70, 200, 40, 60
    xs = sorted({s for pts in series.values() for s, _ in pts})
    if not xs:
        raise SystemExit("plot_mha.py: no MHA records for B=%d in the results" % batch)
    ymax = max([g for pts in series.values() for _, g in pts] + list(peaks.values()) + [1])
    ymax = math.ceil(ymax / 50.0) * 50
    lx0, lx1 = math.log2(xs[0]), math.log2(xs[-1]) if xs[-1] > xs[0] else math.log2(xs[0]) + 1

    def px(s):
        return ml + (math.log2(s) - lx0) / (lx1 - lx0) * (w - ml - mr)

    def py(g):
        return mt + (1 - g / ymax) * (h - mt - mb)

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="12">' % (w, h),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="22" font-size="15">BERT attention (B=%d, H=%d, D=%d, f32): '
           'GFLOP/s against S</text>' % (ml, batch, H, D)]
    for i in range(0, int(ymax) + 1, 50):
        y = py(i)
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (ml, w - mr, y, y))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%d</text>' % (ml - 6, y + 4, i))
    for s in xs:
        x = px(s)
        out.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/>' % (x, x, mt, h - mb))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>' % (x, h - mb + 18, s))
    out.append('<text x="%d" y="%d" text-anchor="middle">S (log scale)</text>'
               % ((ml + w - mr) / 2, h - 15))
    out.append('<text x="18" y="%d" transform="rotate(-90 18 %d)" text-anchor="middle">'
               'GFLOP/s</text>' % ((mt + h - mb) / 2, (mt + h - mb) / 2))
    legend_y = mt + 10
    for t, g in sorted(peaks.items()):
        y = py(g)
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#888" '
                   'stroke-dasharray="5,4"/>' % (ml, w - mr, y, y))
        out.append('<text x="%d" y="%.1f" fill="#555">FMA peak, %d thread%s (%.0f)</text>'
                   % (w - mr + 6, y + 4, t, "" if t == 1 else "s", g))
    for (peer, t), pts in sorted(series.items()):
        color = COLORS.get((peer, t), "#333")
        path = " ".join("%s%.1f,%.1f" % ("M" if i == 0 else "L", px(s), py(g))
                        for i, (s, g) in enumerate(pts))
        dash = "" if t == 1 else ' stroke-dasharray="8,3"'
        out.append('<path d="%s" fill="none" stroke="%s" stroke-width="2"%s/>' % (path, color, dash))
        for s, g in pts:
            out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (px(s), py(g), color))
        name = "snipjit" if peer == "snipjit" else "OpenVINO (Snippets on)"
        lx = w - mr + 6
        ly = legend_y + 90 + 18 * len([k for k in sorted(series) if k < (peer, t)])
        out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/>'
                   % (lx, lx + 22, ly - 4, ly - 4, color, dash))
        out.append('<text x="%d" y="%d">%s, %d thr.</text>' % (lx + 28, ly, name, t))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results_dir")
    ap.add_argument("--out", default="docs/mha_gflops.svg")
    ap.add_argument("--batch", type=int, default=1)
    a = ap.parse_args(argv)
    series, peaks = collect(a.results_dir, a.batch)
    text = svg(series, peaks, a.batch)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, a.out)
    for (peer, t), pts in sorted(series.items()):
        print("%-9s t%d  " % (peer, t) + "  ".join("S=%d:%.1f" % (s, g) for s, g in pts))
    print("wrote", a.out)


if __name__ == "__main__":
    main(sys.argv[1:])
