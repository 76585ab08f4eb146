#!/usr/bin/env bash
# Reproduces the snipjit-vs-peers benchmark in one run: builds the release CLI, measures the
# peers (machine limits in C, OpenVINO with Snippets on/off, onnxruntime) and `snipjit bench`
# on the same workloads, then prints the comparison tables (scripts/bench/compare.py).
#
# Usage: scripts/bench/run.sh [eltwise|mha|all] [options]
#   --runs K         repeat every measurement group K times (default 2; tables use the median)
#   --start K        number the runs from K (default 1): adds runs to an existing --out DIR
#   --out DIR        results directory (default /work/bench-results/<timestamp>; keep it
#                    outside the repository)
#   --no-build       do not run cargo build (use the existing target/release/snipjit)
#   --no-peers       skip the C probes and the Python peers
#   --no-snipjit     skip `snipjit bench`
#   --quick          smoke test: fewer shapes and shorter timing (ANCHOR_QUICK=1)
# Environment:
#   PYTHON           Python with shared/bench/requirements.txt installed (default /work/venv/bin/python)
#   PEER_BENCH_DIR   the peer scripts (default: <repo>/../shared/bench)
#   ANCHOR_MAX_S     largest MHA sequence length, for the peers and snipjit (default 2048)
#   SNIPJIT_ISAS     ISAs passed to `snipjit bench --isa` (default "auto"; e.g. "avx512 avx2")
#   MAX_FOREIGN      before a group, wait while other processes use more than this many cores
#                    (3-second probe); re-run the group if they used more than this on average
#                    while it ran (default 0.3; see loadmon.py: the load average cannot tell the
#                    benchmark's own threads from other work, so it is only logged)
#   WAIT_MAX_S       wait at most this long before measuring anyway (default 600)
#   TRIES            attempts per group before keeping the quietest one (3)
#
# Layout of DIR: run_<k>/<peer>.jsonl (accepted measurements, one JSON line each; readable by
# compare.py and by shared/bench/summarize.py), tries/ (every attempt with its log and load
# record), load.log (uptime before/after every attempt), groups.jsonl (which attempt was kept
# and how busy the machine was), compare.md (the tables).
set -u -o pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$REPO/scripts/bench"
GROUP=all RUNS=2 START=1 OUT="" BUILD=1 PEERS=1 SNIPJIT=1
while [ $# -gt 0 ]; do
  case "$1" in
    eltwise|mha|all) GROUP="$1" ;;
    --runs) RUNS="$2"; shift ;;
    --start) START="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --no-build) BUILD=0 ;;
    --no-peers) PEERS=0 ;;
    --no-snipjit) SNIPJIT=0 ;;
    --quick) export ANCHOR_QUICK=1 ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

PY="${PYTHON:-/work/venv/bin/python}"
[ -x "$PY" ] || PY=python3
PEER_DIR="${PEER_BENCH_DIR:-$REPO/../shared/bench}"
OUT="${OUT:-/work/bench-results/$(date +%Y%m%d_%H%M%S)}"
WAIT_MAX_S="${WAIT_MAX_S:-600}" MAX_FOREIGN="${MAX_FOREIGN:-0.3}"
TRIES="${TRIES:-3}"
SNIPJIT_ISAS="${SNIPJIT_ISAS:-auto}"
BIN="$REPO/target/release/snipjit"
mkdir -p "$OUT/tries" "$OUT/build"
OUT="$(cd "$OUT" && pwd)"
echo "results in $OUT" >&2

# ------------------------------------------------------------------ machine description
{
  echo "date: $(date -Is)"
  echo "repo: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null) $(git -C "$REPO" status --porcelain 2>/dev/null | wc -l) uncommitted paths"
  lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|L1d|L2|L3)'
  echo "avx512: $(grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  grep MemTotal /proc/meminfo
  uname -r
  "$PY" -c 'import openvino, onnxruntime, numpy; print("openvino", openvino.__version__, "onnxruntime", onnxruntime.__version__, "numpy", numpy.__version__)' 2>&1
} > "$OUT/machine.txt"

# ------------------------------------------------------------------ group runner
above() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }

wait_quiet() {  # waits while other processes keep more than MAX_FOREIGN cores busy
  local waited=0 f
  while :; do
    f="$("$PY" "$HERE/loadmon.py" --probe 3)"
    above "$f" "$MAX_FOREIGN" || break
    if [ "$waited" -ge "$WAIT_MAX_S" ]; then
      echo "  still busy (${f} cores used by others) after ${waited}s: measuring anyway" >&2
      break
    fi
    [ "$waited" -eq 0 ] && echo "  other processes use ${f} cores: waiting (at most ${WAIT_MAX_S}s)" >&2
    sleep 12
    waited=$((waited + 15))
  done
}

# run_group RUN NAME CMD...: runs CMD with ANCHOR_OUT set to a fresh attempt directory, under
# loadmon; keeps the first attempt during which other processes stayed below MAX_FOREIGN cores
# (or the quietest of TRIES attempts) and appends its *.jsonl files to $OUT/RUN/.
run_group() {
  local run="$1" name="$2"; shift 2
  local k best="" best_foreign=""
  for k in $(seq 1 "$TRIES"); do
    wait_quiet
    local dir="$OUT/tries/$run/$name.$k"
    mkdir -p "$dir"
    echo "[$(date +%T)] $run $name try $k: before: $(uptime)" >> "$OUT/load.log"
    echo "[$(date +%T)] $run $name (try $k)" >&2
    ANCHOR_OUT="$dir" "$PY" "$HERE/loadmon.py" --json "$dir/load.json" -- "$@" \
      > "$dir/stdout.log" 2> "$dir/stderr.log"
    local rc=$?
    echo "[$(date +%T)] $run $name try $k: after:  $(uptime); exit $rc; $(tail -c 300 "$dir/load.json")" >> "$OUT/load.log"
    if [ "$rc" -ne 0 ]; then
      echo "  $name failed (exit $rc), see $dir/stderr.log:" >&2
      tail -n 5 "$dir/stderr.log" >&2
      continue
    fi
    local foreign lb
    foreign="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["foreign_cpu_mean"])' "$dir/load.json")"
    lb="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["loadavg_before"][0])' "$dir/load.json")"
    echo "  foreign cpu ${foreign} cores, load before ${lb}" >&2
    grep '^FAILED' "$dir/stderr.log" >&2
    if [ -z "$best" ] || above "$best_foreign" "$foreign"; then best="$dir" best_foreign="$foreign"; fi
    if ! above "$foreign" "$MAX_FOREIGN"; then break; fi
    echo "  busy machine (${foreign} > ${MAX_FOREIGN} cores used by others): measuring again" >&2
  done
  if [ -z "$best" ]; then
    echo "  $name: every attempt failed; nothing kept" >&2
    return 1
  fi
  local noisy=false
  above "$best_foreign" "$MAX_FOREIGN" && noisy=true
  mkdir -p "$OUT/$run"
  local f
  for f in "$best"/*.jsonl; do
    [ -e "$f" ] && cat "$f" >> "$OUT/$run/$(basename "$f")"
  done
  echo "{\"run\":\"$run\",\"group\":\"$name\",\"kept\":\"${best#"$OUT"/}\",\"noisy\":$noisy,\"load\":$(cat "$best/load.json")}" >> "$OUT/groups.jsonl"
}

# ------------------------------------------------------------------ peers
peers() {
  local run="$1"
  gcc -O2 -mavx512f -mfma -fopenmp "$PEER_DIR/peak_flops.c" -o "$OUT/build/peak_flops" || return 1
  gcc -O3 -march=native -fopenmp -fno-tree-loop-distribute-patterns "$PEER_DIR/membw.c" -o "$OUT/build/membw" || return 1
  cd "$PEER_DIR" || return 1
  run_group "$run" c bash -c "'$OUT/build/peak_flops' 9 > \"\$ANCHOR_OUT/c.jsonl\" && '$OUT/build/membw' 7 >> \"\$ANCHOR_OUT/c.jsonl\""
  run_group "$run" ov_base "$PY" ov_bench.py floor compile
  run_group "$run" ort_base "$PY" ort_bench.py floor
  if [ "$GROUP" != mha ]; then
    run_group "$run" ov_eltwise "$PY" ov_bench.py eltwise
    run_group "$run" ort_eltwise "$PY" ort_bench.py eltwise
  fi
  if [ "$GROUP" != eltwise ]; then
    run_group "$run" ov_mha "$PY" ov_bench.py mha mha_dyn
    run_group "$run" ort_mha "$PY" ort_bench.py mha mha_dyn
  fi
  cd "$REPO" || return 1
}

# ------------------------------------------------------------------ snipjit
# The same shapes as shared/bench/common.py: eltwise_shape(n) = [n/1024, 1024] for
# n in 4Ki, 64Ki, 1Mi, 16Mi, 64Mi, i.e. the N of examples/{silu,gelu_chain}.sg is n/1024;
# MHA [B, S, 12, 64] with B=1, S in 16..2048 and B=8, S=128.
ELT_N="4,64,1024,16384,65536"
MHA_S="16,32,64,128,256,384,512,1024,2048"
# The first-call study: processes that run each of these S twice (never-seen, then seen).
FC_S="16,32,64,128" FC_PROCS=5
if [ "${ANCHOR_QUICK:-0}" = 1 ]; then ELT_N="4,64,1024" MHA_S="16,128" FC_S="16,128" FC_PROCS=2; fi
if [ -n "${ANCHOR_MAX_S:-}" ]; then  # the peers' knob for the largest MHA S, honoured here too
  MHA_S="$(echo "$MHA_S" | tr ',' '\n' | awk -v m="$ANCHOR_MAX_S" '$1 <= m' | paste -sd, -)"
  FC_S="$(echo "$FC_S" | tr ',' '\n' | awk -v m="$ANCHOR_MAX_S" '$1 <= m' | paste -sd, -)"
fi

snipjit_script() {  # writes the bench commands for the selected group as a script
  local wl_flag=0 isa isa_args th
  "$BIN" bench --help 2>/dev/null | grep -q -- '--workload' && wl_flag=1
  wl() { [ "$wl_flag" = 1 ] && printf -- '--workload %s' "$1"; }
  cat <<'HEAD'
#!/usr/bin/env bash
# generated by scripts/bench/run.sh: one `snipjit bench` per line; a failing command is
# reported on stderr (FAILED: ...) and the others still run
set -u
b() {
  echo "+ $*" >&2
  if "$@" > "$ANCHOR_OUT/last.out"; then :; else echo "FAILED (exit $?): $*" >&2; fi
  cat "$ANCHOR_OUT/last.out" >> "$ANCHOR_OUT/snipjit.raw"
  grep '^{' "$ANCHOR_OUT/last.out" >> "$ANCHOR_OUT/snipjit.jsonl" || true
}
HEAD
  for isa in $SNIPJIT_ISAS; do
    isa_args=""
    [ "$isa" != auto ] && isa_args="--isa $isa"
    for th in 1 2; do
      echo "b '$BIN' bench '$OUT/build/call_floor_add16.sg' --threads $th $isa_args --json $(wl call_floor_add16)"
      if [ "$GROUP" != mha ]; then
        echo "b '$BIN' bench '$REPO/examples/silu.sg' --dim N=$ELT_N --threads $th $isa_args --json $(wl silu)"
        echo "b '$BIN' bench '$REPO/examples/gelu_chain.sg' --dim N=$ELT_N --threads $th $isa_args --json $(wl chain_add_mul_gelutanh_mul)"
      fi
      if [ "$GROUP" != eltwise ]; then
        echo "b '$BIN' bench '$REPO/examples/mha.sg' --dim B=1 --dim S=$MHA_S --threads $th $isa_args --json $(wl mha)"
        echo "b '$BIN' bench '$REPO/examples/mha.sg' --dim B=8 --dim S=128 --threads $th $isa_args --json $(wl mha)"
        # never-seen against seen first calls (compare.py's first-call study table); a
        # fixed mmap threshold makes glibc map every large input afresh in both passes
        # (by default it serves the second pass's from recycled heap memory)
        if [ -n "$FC_S" ] && [ "$wl_flag" = 1 ]; then
          for _ in $(seq "$FC_PROCS"); do
            echo "b env MALLOC_MMAP_THRESHOLD_=131072 '$BIN' bench '$REPO/examples/mha.sg' --dim B=1 --dim S=$FC_S,$FC_S --threads $th $isa_args --json --target-ms 50 $(wl mha_first_call)"
          done
        fi
      fi
    done
  done
}

snipjit() {
  local run="$1"
  # the per-call floor model: the same 16-element Add as the peers' call_floor_add16
  printf 'graph call_floor_add16(x: f32[16]) {\n  y: f32[16] = Add(x, x)\n  return y\n}\n' \
    > "$OUT/build/call_floor_add16.sg"
  snipjit_script > "$OUT/build/snipjit_bench.sh"
  run_group "$run" snipjit bash "$OUT/build/snipjit_bench.sh"
}

HAVE_SNIPJIT=0
if [ "$SNIPJIT" = 1 ]; then
  if [ "$BUILD" = 1 ]; then
    echo "building snipjit (release)" >&2
    (cd "$REPO" && cargo build --release -p snipjit-cli) || { echo "run.sh: cargo build failed" >&2; exit 1; }
  fi
  if "$BIN" bench --help > /dev/null 2>&1; then
    HAVE_SNIPJIT=1
  else
    echo "run.sh: '$BIN bench --help' failed: this snipjit has no bench command yet;" \
      "skipping the snipjit measurements (peers only)" >&2
  fi
fi

for r in $(seq "$START" $((START + RUNS - 1))); do
  [ "$PEERS" = 1 ] && peers "run_$r"
  [ "$HAVE_SNIPJIT" = 1 ] && snipjit "run_$r"
done

"$PY" "$HERE/compare.py" "$OUT" | tee "$OUT/compare.md"
echo "results in $OUT; tables in $OUT/compare.md" >&2
