#!/usr/bin/env bash
# The GPU benchmarks of issues #19 and #20 in one call of the device tool, on a machine with no network:
#
#   run(command="bash benchmarks/device/session.sh", carry=[".whl", ".device"], timeout_s=570)
#
# after `bash benchmarks/device/fetch_wheels.sh` here. It records the machine, installs .whl/ beside the
# image's torch, builds one random-weight model of --shape qwen2.5-0.5b with .device/tokenizer, then runs
# gpu_throughput.py and train_overhead.py --part gpu, each under its own timeout so the whole ends within
# BUDGET_S (525 s). Everything lands in $OUT, at most the 8 files the tool returns:
#   session.log  this script's lines, the install      environment.txt  nvidia-smi, versions, pip check
#   image-freeze.txt  the image's packages (refresh image.txt from it)
#   gpu_throughput.{log,json}  train_overhead.{log,json}  summary.md  the tables both printed, and the exit codes
#
#   SMOKE=1 bash benchmarks/device/session.sh
# runs the same on a CPU machine in a few minutes: device cpu, fp32, the tiny shape, few items, OUT a
# temporary folder unless set. Overrides: PY (the interpreter holding torch), WHEELS (default .whl), SHAPE,
# BUDGET_S, TRAIN_S (the seconds kept for train_overhead: 220, smoke 500), GT_ARGS and TO_ARGS (more
# arguments for gpu_throughput.py and train_overhead.py).
set -uo pipefail
cd "$(dirname "$0")/../.."
start=$SECONDS
if [ "${SMOKE:-0}" = 1 ]; then
  device=cpu dtype=float32 shape=${SHAPE:-tiny} budget=${BUDGET_S:-900} gt_side_s=150 to_side_s=150
  gt_sized=(--items 8 --max-new-tokens 8 --batch-size 4)
else
  # each gpu_throughput side (ea-hf, lm-hf) up to 100 s, each of train_overhead's five up to 110 s
  device=cuda dtype=bfloat16 shape=${SHAPE:-qwen2.5-0.5b} budget=${BUDGET_S:-525} gt_side_s=100 to_side_s=110
  gt_sized=()
fi
OUT=${OUT:-$(mktemp -d /tmp/device-session.XXXXXX)}
PY=${PY:-python3}
wheels=${WHEELS:-.whl}
work=$(mktemp -d /tmp/ea-device.XXXXXX)
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
tee_pid=$!
say() { echo "[session $((SECONDS - start)) s] $*"; }
left() { echo $((budget - (SECONDS - start))); }
# the summary, also after a failed step: the markdown blocks the benchmarks print for docs/performance.md,
# and how each part ended
declare -A status
summarize() {
  {
    echo "# GPU benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $((SECONDS - start)) s"
    echo
    echo "Device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
                    || echo "$device (no nvidia-smi)")"
    echo "Versions: $(grep -E '^(torch|transformers|trl|lm_eval|accelerate|peft|datasets) ' "$OUT/environment.txt" \
                      | tr '\n' ',' | sed 's/,$//; s/,/, /g')"
    echo "Model: random weights, $shape shape, $dtype, tokenizer .device/tokenizer"
    for name in gpu_throughput train_overhead; do
      echo; echo "## $name: ${status[$name]:-not run}"; echo
      [ -f "$OUT/$name.log" ] \
        && awk '/^### /{on=1} on&&/^$/&&table{on=0; table=0; print ""} on{print; if(/^\|/)table=1}' "$OUT/$name.log"
      [ -f "$OUT/$name.json" ] && echo "(all measurements: $name.json)" || echo "(no $name.json)"
      if [ -f "$OUT/$name.log" ] && [ "${status[$name]:-}" != "exit 0" ]; then
        echo; echo '```'; tail -n 15 "$OUT/$name.log"; echo '```'
      fi
    done
  } > "$OUT/summary.md"
  cat "$OUT/summary.md"
  say "done; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
}
# waits for tee, so that session.log is whole before the tool collects $OUT
finish() { summarize; rm -rf "$work"; exec >&- 2>&-; wait "$tee_pid"; }
trap finish EXIT
say "OUT=$OUT, device $device, shape $shape, budget $budget s, work $work"

# 1. the machine and the image, before anything is installed
{
  nvidia-smi || echo "nvidia-smi: not available"
  echo; "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "at", sys.executable)
seen = torch.cuda.is_available()
print("CUDA", torch.version.cuda, "seen by torch:", seen, seen and torch.cuda.get_device_name(0))'
} > "$OUT/environment.txt" 2>&1
"$PY" -m pip list --format=freeze > "$OUT/image-freeze.txt" 2>&1

# 2. the wheels beside the image's packages (--target ignores what is installed, hence --no-deps: the
# closure was checked by check_closure.py), then eval-anything itself from this working tree
# named site-packages: dill (datasets' hashing) pickles modules from any other folder by value, and TRL's
# and our dataset maps then fail on pyarrow's types (PicklingError: MonthDayNano)
site=$work/site-packages
say "installing $(ls "$wheels"/*.whl 2>/dev/null | wc -l) wheels from $wheels into $site"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheels"/*.whl \
  || { say "FAILED: the wheels did not install; nothing else can run"; exit 1; }
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir \
    --target "$work/ea/site-packages" . \
  || say "eval-anything did not install as a package: it runs from the working tree (PYTHONPATH), unversioned"
export PYTHONPATH=$PWD:$site:$work/ea/site-packages TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
{
  echo; echo "== after installing .whl (PYTHONPATH=$PYTHONPATH)"
  "$PY" -c 'from importlib import metadata
for name in ("eval-anything", "torch", "transformers", "tokenizers", "huggingface_hub", "accelerate", "peft",
             "trl", "datasets", "lm_eval", "pyarrow", "pandas", "pydantic", "vllm"):
    try:
        print(name, metadata.version(name))
    except metadata.PackageNotFoundError:
        print(name, "not installed")'
  echo; echo "== pip check"; "$PY" -m pip check
} >> "$OUT/environment.txt" 2>&1
say "installed: $(grep -E '^(transformers|trl|lm_eval) ' "$OUT/environment.txt" | tr '\n' ' ')"

# 3. the model every side loads
model=$work/model
"$PY" benchmarks/random_model.py --shape "$shape" --out "$model" --tokenizer .device/tokenizer --dtype "$dtype" \
  || { say "FAILED: random_model.py"; exit 1; }
say "model built"

# 4. the two benchmarks, each killed at its share of what is left (the summary keeps 20 s)
part() {  # part NAME SECONDS COMMAND...: runs COMMAND, its output in $OUT/NAME.log, rc in status[NAME]
  local name=$1 seconds=$2; shift 2
  if ((seconds < 30)); then say "$name: skipped, only $seconds s left"; status[$name]=skipped; return; fi
  say "$name: up to $seconds s: $*"
  PYTHONUNBUFFERED=1 timeout --kill-after=10 "$seconds" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  status[$name]=$([ $rc = 124 ] && echo "timed out after $seconds s" || echo "exit $rc")
  say "$name: ${status[$name]}"
}
train_share=${TRAIN_S:-$([ "$device" = cuda ] && echo 220 || echo 500)}
part gpu_throughput $(( $(left) - 20 - train_share < 240 ? $(left) - 20 - train_share : 240 )) \
  "$PY" benchmarks/gpu_throughput.py --model "$model" --device "$device" --json "$OUT/gpu_throughput.json" \
  --side-timeout-s "$gt_side_s" "${gt_sized[@]}" ${GT_ARGS:-}
train_s=$(( $(left) - 20 ))  # its own --budget ends it 15 s before the timeout, so its table is printed
part train_overhead $train_s \
  "$PY" benchmarks/train_overhead.py --part gpu --device "$device" --model "$model" \
  --json "$OUT/train_overhead.json" --side-timeout "$to_side_s" --budget $(( train_s - 15 )) ${TO_ARGS:-}
