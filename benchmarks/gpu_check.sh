#!/usr/bin/env bash
# One prepared check of lstm_jax on an NVIDIA GPU machine, against torch, in one go.
#
#   benchmarks/gpu_check.sh [OUT_DIR]          # default: $OUT, else out/gpu_check
#   GPU_CHECK_SMOKE=1 benchmarks/gpu_check.sh /tmp/gpu_smoke   # tiny settings (CPU CI)
#   GPU_CHECK_IMPLS="custom_vjp wavefront"   # only these impls (default: every one)
#   GPU_CHECK_PRECISIONS="fp32 bf16"         # only these (default: fp32 default bf16)
#
# Needs python with jax (CUDA build), torch, flax, optax and pytest installed; no package
# registry (it installs nothing). Without a GPU visible to both JAX and torch it runs the
# same steps on the CPU and says so. Every step writes its log (and JSON) to OUT_DIR and
# the script goes on after a failed step; the exit status is 1 if any step failed.
#
#   environment.json     device, driver, library versions (nvidia-smi when present)
#   parity.log, .xml     the parity suite, JAX on its default device, precision pinned
#                        (parity_tests/conftest.py), torch's CPU LSTM as the reference
#   device_parity.json   torch on the same device (cuDNN) against every impl
#   jit_<impl>_<prec>.json / .log   the jit benchmark at seed/medium/long/large for every
#                        impl: fp32 (TF32 off), default precision (TF32 allowed), bf16
#   summary.txt          one line per step: ok / FAILED (exit status), seconds
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-out/gpu_check}}"
PY="${PYTHON:-python}"
SMOKE="${GPU_CHECK_SMOKE:-0}"
STEP_TIMEOUT="${GPU_CHECK_STEP_TIMEOUT:-1800}"
mkdir -p "$OUT_DIR"
: > "$OUT_DIR/summary.txt"
failed=0

step() {  # step NAME LOGFILE COMMAND...: run, time, record
  local name="$1" log="$2"
  shift 2
  local start=$SECONDS
  echo "[gpu_check] $name: $*" | tee -a "$OUT_DIR/summary.txt.log"
  timeout "$STEP_TIMEOUT" "$@" > "$OUT_DIR/$log" 2>&1
  local rc=$?
  local verdict="ok"
  if [ "$rc" -ne 0 ]; then verdict="FAILED (exit $rc)"; failed=1; fi
  printf '%-40s %s %ds\n' "$name" "$verdict" "$((SECONDS - start))" | tee -a "$OUT_DIR/summary.txt"
}

# 0. the machine
"$PY" - "$OUT_DIR/environment.json" <<'EOF'
import json, platform, subprocess, sys
info = {"python": platform.python_version(), "platform": platform.platform()}
try:
    import jax, jaxlib
    info |= {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
             "jax_backend": jax.default_backend(), "jax_devices": [str(d) for d in jax.devices()]}
except Exception as e:  # recorded: the steps below will fail and say why
    info["jax_error"] = repr(e)
try:
    import torch
    info |= {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
             "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
except Exception as e:
    info["torch_error"] = repr(e)
for lib in ("flax", "optax", "pytest"):
    try:
        info[lib] = __import__(lib).__version__
    except Exception as e:
        info[f"{lib}_error"] = repr(e)
try:
    info["nvidia_smi"] = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=30).stdout.strip()
except (OSError, subprocess.SubprocessError):
    info["nvidia_smi"] = None
gpu = info.get("cuda_available") and info.get("jax_backend") == "gpu"
info["device"] = "gpu" if gpu else "cpu"
open(sys.argv[1], "w").write(json.dumps(info, indent=1) + "\n")
print(json.dumps(info, indent=1))
EOF
DEVICE=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['device'])" "$OUT_DIR/environment.json" 2>/dev/null || echo cpu)
if [ "$DEVICE" != "gpu" ]; then
  echo "[gpu_check] no GPU visible to both JAX and torch: running every step on the CPU" \
    | tee -a "$OUT_DIR/summary.txt"
fi
echo "device: $DEVICE" >> "$OUT_DIR/summary.txt"

# 1. the parity suite, JAX on its default device (the GPU), precision pinned by the suite
if [ "$SMOKE" = "1" ]; then
  PARITY=(parity_tests/test_recurrence_impls.py -k "wavefront and L2-bi and f32 and remat0")
else
  PARITY=(parity_tests/)
fi
step "parity suite ($DEVICE)" parity.log \
  "$PY" -m pytest -q -n 0 -p no:cacheprovider --junitxml="$OUT_DIR/parity.xml" "${PARITY[@]}"

IMPLS="${GPU_CHECK_IMPLS:-$("$PY" -c "from lstm_jax.core.options import IMPLS; print(' '.join(IMPLS))")}"

# 2. both backends on the device
step "device parity (torch and JAX on $DEVICE)" device_parity.log \
  "$PY" benchmarks/device_parity.py --impls $IMPLS --out "$OUT_DIR/device_parity.json"

# 3. the jit benchmark for every impl, three precisions
if [ "$SMOKE" = "1" ]; then
  BENCH=(--smoke --no-cold-start --no-remat --no-lecture)
else
  BENCH=(--shapes seed medium long large --no-cold-start --repeats 7)
fi
for impl in $IMPLS; do
  for prec in ${GPU_CHECK_PRECISIONS:-fp32 default bf16}; do
    case "$prec" in
      fp32) extra=() ;;
      default) extra=(--tf32) ;;
      bf16) extra=(--compute-dtype bfloat16) ;;
    esac
    if [ "$impl" = "cudnn" ] && [ "$prec" = "bf16" ]; then
      continue  # jax.experimental.rnn supports float32 only
    fi
    step "jit benchmark $impl $prec" "jit_${impl}_${prec}.log" \
      "$PY" benchmarks/jit_benchmark.py --device "$DEVICE" --impl "$impl" "${BENCH[@]}" \
      "${extra[@]}" --out "$OUT_DIR/jit_${impl}_${prec}.json"
  done
done

echo "[gpu_check] done: $OUT_DIR/summary.txt"
cat "$OUT_DIR/summary.txt"
exit "$failed"
