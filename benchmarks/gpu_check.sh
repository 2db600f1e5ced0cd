#!/usr/bin/env bash
# lstm_jax on an NVIDIA GPU against torch, inside a time budget: one command.
#
#   bash benchmarks/gpu_check.sh --budget 480          # on the GPU machine: 8 minutes at most
#   bash benchmarks/gpu_check.sh --smoke --budget 60 --out /tmp/gpu_smoke   # CPU, tiny shapes
#   bash benchmarks/gpu_check.sh --budget 200 --steps parity    # a rerun of one step
#   bash benchmarks/gpu_check.sh --full OUT_DIR                  # the old, unbudgeted check
#
# Options:
#   --budget S   seconds of wall time for the whole run, compiles included (default 480)
#   --out DIR    where the results go (default: $OUT if set, else benchmarks/gpu/<UTC date>)
#   --smoke      tiny shapes and grids (automatic when JAX and torch do not both see a GPU)
#   --steps LIST comma-separated subset of parity,bench-fp32,bench-tf32,lecture (env always runs)
#   --plan       print each step's share of the budget in seconds and exit (with --smoke: the
#                smoke shares)
#   --full       the previous check: the whole parity suite, device parity over the full grid,
#                the jit benchmark for every impl x fp32/tf32/bf16 at every shape (no budget;
#                GPU_CHECK_IMPLS / GPU_CHECK_PRECISIONS narrow it, as before)
#
# The steps, in order of value; each runs in its own process, capped by `timeout` at the
# end of its share of the budget (shares are cumulative: time a step leaves unused goes to
# the next ones), and told an in-process deadline after which it starts no new case. An
# overrun therefore drops the last cases and steps, never what was written: every step
# writes its JSON as it goes.
#   1. env         environment.json: GPU, driver, CUDA, jax/jaxlib/flax/optax/torch versions
#   2. parity      parity.json + parity.log: benchmarks/device_parity.py, each impl against
#                  torch's module on the same device (cuDNN), TF32 off, float32 and bfloat16
#                  compute, forward and gradients; LSTM, and GRU/RNN where lstm_jax has them
#   3. bench-fp32  bench_fp32.json: benchmarks/jit_benchmark.py at medium and large for
#                  custom_vjp, hoisted, cudnn, wavefront, torch's cuDNN alongside, TF32 off
#   4. bench-tf32  bench_tf32.json: the same at default precision (TF32 allowed on both sides)
#   5. lecture     lecture.json: the lecture's training in both backends on the device
#   6. summary     summary.md (printed last): the tables from the files above
# The output folder holds exactly these 8 files (the device tool brings back at most 8):
# environment.json parity.json parity.log bench_fp32.json bench_tf32.json lecture.json
# summary.md gpu_check.log (every step's output, one after the other).
# The budget plan, its estimates and the command for the device tool: benchmarks/gpu/README.md.
#
# Needs python3 with jax (CUDA build), torch, flax and optax; installs nothing. PYTHON
# chooses the interpreter. Exit status: 1 if a step failed or a parity row failed, else 0.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 2
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# JAX would otherwise take 75 % of the GPU's memory at start, leaving torch (same process) the rest.
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
PY="${PYTHON:-$(command -v python3 || command -v python)}"

BUDGET=480
OUT_DIR=""
SMOKE="${GPU_CHECK_SMOKE:-0}"  # the old switch, kept: --smoke
FULL=0
PLAN=0
STEPS="parity,bench-fp32,bench-tf32,lecture"
while [ $# -gt 0 ]; do
  case "$1" in
    --budget) BUDGET="${2:-}"; shift $(($# > 1 ? 2 : 1)) ;;
    --out) OUT_DIR="${2:-}"; shift $(($# > 1 ? 2 : 1)) ;;
    --smoke) SMOKE=1; shift ;;
    --steps) STEPS="${2:-}"; shift $(($# > 1 ? 2 : 1)) ;;
    --full) FULL=1; shift ;;
    --plan) PLAN=1; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) OUT_DIR="$1"; shift ;;  # the old positional OUT_DIR
  esac
done
case "$BUDGET" in
  ''|*[!0-9]*) echo "gpu_check.sh: --budget expects whole seconds, got '$BUDGET'" >&2; exit 2 ;;
esac
for s in ${STEPS//,/ }; do
  case "$s" in
    parity|bench-fp32|bench-tf32|lecture) ;;
    *) echo "gpu_check.sh: --steps expects some of parity,bench-fp32,bench-tf32,lecture, got '$s'" >&2
       exit 2 ;;
  esac
done
T0=$(date +%s)
# Shares of the budget in per mille, cumulative end points (the plan: benchmarks/gpu/README.md).
# GPU: env 5 %, parity 30 %, bench-fp32 27 %, bench-tf32 22 %, lecture 8 %, summary 2 %,
# 6 % left as margin. Smoke (CPU, where every process spends seconds importing jax and
# torch; shares as the CPU seconds measured per step): env 3 %, parity 30 %, bench-fp32
# 24 %, bench-tf32 17 %, lecture 18 %, summary 3 %, 5 % margin.
declare -A SHARE_GPU=([env]=50 [parity]=300 [bench-fp32]=270 [bench-tf32]=220 [lecture]=80 [summary]=20)
declare -A SHARE_SMOKE=([env]=30 [parity]=300 [bench-fp32]=240 [bench-tf32]=170 [lecture]=180 [summary]=30)
ORDER=(env parity bench-fp32 bench-tf32 lecture summary)
cumulative=0
declare -A END_AT

plan_deadlines() {  # END_AT[step] = T0 + budget * (sum of shares up to the step)
  local -n share="$1"
  cumulative=0
  for s in "${ORDER[@]}"; do
    cumulative=$((cumulative + share[$s]))
    END_AT[$s]=$((T0 + BUDGET * cumulative / 1000))
  done
}
if [ "$SMOKE" = 1 ]; then plan_deadlines SHARE_SMOKE; else plan_deadlines SHARE_GPU; fi
if [ "$PLAN" = 1 ]; then
  previous=$T0
  for s in "${ORDER[@]}"; do
    printf '%-11s %4d s  (ends at %4d s)\n' "$s" $((END_AT[$s] - previous)) $((END_AT[$s] - T0))
    previous=${END_AT[$s]}
  done
  printf '%-11s %4d s\n' margin $((T0 + BUDGET - previous))
  exit 0
fi

OUT_DIR="${OUT_DIR:-${OUT:-benchmarks/gpu/$(date -u +%Y-%m-%d)}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
LOG="$OUT_DIR/gpu_check.log"
STEPS_TSV="$SCRATCH/steps.tsv"
: > "$LOG"
: > "$STEPS_TSV"
failed=0

say() { echo "[gpu_check] $*" | tee -a "$LOG"; }

if [ "$FULL" = 1 ]; then
  # The previous check, unbudgeted: every step writes its own log beside its JSON.
  "$PY" benchmarks/gpu_check.py env "$OUT_DIR/environment.json" >> "$LOG" 2>&1
  DEVICE=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['device'])" \
    "$OUT_DIR/environment.json" 2>/dev/null || echo cpu)
  IMPLS="${GPU_CHECK_IMPLS:-scan custom_vjp hoisted cudnn wavefront}"
  full_step() {  # full_step LOG COMMAND...
    local log="$1"; shift
    say "$*"
    if ! "$@" > "$OUT_DIR/$log" 2>&1; then failed=1; say "FAILED: see $log"; fi
  }
  full_step parity_suite.log "$PY" -m pytest -q -n 0 -m "slow or not slow" -p no:cacheprovider \
    --junitxml="$OUT_DIR/parity_suite.xml" parity_tests/
  full_step device_parity.log "$PY" benchmarks/device_parity.py --grid full --impls $IMPLS \
    --out "$OUT_DIR/parity.json" --log "$OUT_DIR/parity.log"
  for impl in $IMPLS; do
    for prec in ${GPU_CHECK_PRECISIONS:-fp32 default bf16}; do
      case "$prec" in
        fp32) extra=() ;;
        default) extra=(--tf32) ;;
        bf16) extra=(--compute-dtype bfloat16) ;;
        *) echo "unknown precision $prec" >&2; exit 2 ;;
      esac
      [ "$impl" = cudnn ] && [ "$prec" = bf16 ] && continue  # cuDNN's path is float32 only
      full_step "jit_${impl}_${prec}.log" "$PY" benchmarks/jit_benchmark.py --device "$DEVICE" \
        --impl "$impl" --shapes seed medium long large --no-cold-start --repeats 7 \
        "${extra[@]}" --out "$OUT_DIR/jit_${impl}_${prec}.json"
    done
  done
  "$PY" benchmarks/gpu_check.py summary "$OUT_DIR"
  exit "$failed"
fi

selected() { [ "$1" = env ] || [ "$1" = summary ] || [[ ",$STEPS," == *",$1,"* ]]; }

# run_step NAME NOTE COMMAND... : runs until END_AT[NAME] at most; DEADLINE (seconds, for
# the in-process --deadline) is exported as the cap less a reserve for writing the results.
run_step() {
  local name="$1" note="$2"
  shift 2
  local now cap start rc result cpu
  local TIMEFORMAT='%U %S'
  now=$(date +%s)
  cap=$((END_AT[$name] - now))
  if [ "$name" = env ] && [ "$cap" -lt 15 ]; then cap=15; fi  # the later steps need it
  if ! selected "$name"; then
    printf '%s\tnot selected\t0\t-\t-\t%s\n' "$name" "--steps $STEPS" >> "$STEPS_TSV"
    return
  fi
  if [ "$cap" -lt 3 ]; then
    printf '%s\tskipped\t0\t-\t%s\tno time left in the budget\n' "$name" "$cap" >> "$STEPS_TSV"
    say "$name: skipped, no time left in the budget"
    return
  fi
  say "$name (cap ${cap} s): $*"
  start=$(date +%s)
  { echo; echo "===== $name: $*"; } >> "$LOG"
  { time timeout -k 5 "$cap" "$@" >> "$LOG" 2>&1; } 2> "$SCRATCH/cpu"
  rc=$?
  cpu=$(awk '{printf "%.0f", $1 + $2}' "$SCRATCH/cpu" 2>/dev/null)
  case "$rc" in
    0) result="ok" ;;
    124|137) result="timed out"; failed=1 ;;
    *) result="FAILED (exit $rc)"; failed=1 ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$result" "$(($(date +%s) - start))" "$cpu" \
    "$cap" "$note" >> "$STEPS_TSV"
  say "$name: $result in $(($(date +%s) - start)) s"
}

in_process_deadline() {  # seconds a step's process may start cases: its cap less 5 % and 2 s
  local name="$1" now cap
  now=$(date +%s)
  cap=$((END_AT[$name] - now))
  echo $((cap - cap / 20 - 2))
}

# 1. the machine
run_step env "" "$PY" benchmarks/gpu_check.py env "$OUT_DIR/environment.json"
DEVICE=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['device'])" \
  "$OUT_DIR/environment.json" 2>/dev/null || echo cpu)
if [ "$DEVICE" != gpu ] && [ "$SMOKE" = 0 ]; then
  say "no GPU visible to both JAX and torch: the smoke settings, on the CPU"
  SMOKE=1
fi
if [ "$SMOKE" = 1 ]; then
  plan_deadlines SHARE_SMOKE
  PARITY_ARGS=(--grid smoke --compile-workers 1)
  BENCH_ARGS=(--smoke --repeats 2 --min-sample 0 --no-memory)
  CASES_FP32=("tiny L1")
  CASES_TF32=("tiny L1")
  BENCH_IMPLS=(custom_vjp wavefront)
  BENCH_NOTE="smoke on $DEVICE: tiny shapes, custom_vjp and wavefront (hoisted, cudnn: GPU runs)"
  LECTURE_EPOCHS=10
  if [ "$DEVICE" = gpu ]; then BENCH_IMPLS=(custom_vjp hoisted cudnn wavefront); fi
else
  PARITY_ARGS=(--grid compact --compile-workers 4)
  BENCH_ARGS=(--repeats 5 --min-sample 0.02)
  # in order of value; the plan (benchmarks/gpu/README.md) expects the last fp32 case to
  # be the one a slow compile drops
  CASES_FP32=("medium L1" "medium L2" "large L1" "large L2" "medium L1 bi")
  CASES_TF32=("medium L1" "medium L2" "large L1" "large L2")
  BENCH_IMPLS=(custom_vjp hoisted cudnn wavefront)
  BENCH_NOTE="medium, large; 4 impls"
  LECTURE_EPOCHS=100
fi
say "device: $DEVICE; smoke: $SMOKE; budget ${BUDGET} s; out: $OUT_DIR"

# 2. parity on the device
run_step parity "$DEVICE, compile workers ${PARITY_ARGS[3]}" \
  "$PY" benchmarks/device_parity.py "${PARITY_ARGS[@]}" --deadline "$(in_process_deadline parity)" \
  --out "$OUT_DIR/parity.json" --log "$OUT_DIR/parity.log"

# 3, 4. the jit benchmark, TF32 off, then default precision (TF32 allowed)
for prec in fp32 tf32; do
  extra=(--cases "${CASES_FP32[@]}")
  impls=("${BENCH_IMPLS[@]}")
  note="$BENCH_NOTE"
  if [ "$prec" = tf32 ]; then
    extra=(--tf32 --cases "${CASES_TF32[@]}")
    if [ "$DEVICE" != gpu ]; then  # TF32 is a GPU mode: on the CPU the run equals fp32's
      impls=(custom_vjp)
      note="smoke on $DEVICE: custom_vjp only (without a GPU, TF32 changes nothing)"
    fi
  fi
  run_step "bench-$prec" "$note" \
    "$PY" benchmarks/jit_benchmark.py --device "$DEVICE" "${BENCH_ARGS[@]}" \
    --impls "${impls[@]}" --no-lecture --no-cold-start --no-remat --no-chart "${extra[@]}" \
    --deadline "$(in_process_deadline "bench-$prec")" --out "$OUT_DIR/bench_$prec.json"
done

# 5. the lecture's training, both backends on the device
run_step lecture "$LECTURE_EPOCHS epochs" \
  "$PY" benchmarks/gpu_check.py lecture "$OUT_DIR/lecture.json" --epochs "$LECTURE_EPOCHS"

# 6. the summary, printed last
rm -f "$OUT_DIR"/*.tmp
"$PY" benchmarks/gpu_check.py summary "$OUT_DIR" --steps "$STEPS_TSV" --budget "$BUDGET" \
  --elapsed "$(($(date +%s) - T0))" > "$SCRATCH/summary.out" 2>&1 || failed=1
cat "$SCRATCH/summary.out" >> "$LOG"
if grep -q '"ok": false' "$OUT_DIR/parity.json" 2>/dev/null; then failed=1; fi
say "done in $(($(date +%s) - T0)) s (budget $BUDGET s): $OUT_DIR"
cat "$SCRATCH/summary.out"
exit "$failed"
