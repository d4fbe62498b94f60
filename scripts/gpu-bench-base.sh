#!/usr/bin/env bash
# A request-grounding phase of the reproduction's base (make bench-base's next phase) on one GPU, several
# variants side by side: the runs a 2-core CPU would need hours for. Each is `train_bench_base` with
# --device cuda and worker processes drawing the items; model folders and logs land in OUT/<variant>/.
#
#   scripts/gpu-bench-base.sh BASE OUT [MINUTES [VARIANT...]] [-- train_bench_base options...]
#
# BASE: the grounding base (make bench-base's model, e.g. runs/bench-base/model); MINUTES: each variant's
# training time (default 6); VARIANTS (default: all three) share 16 CPU cores (WORKERS drawing processes each,
# default 12 / number of variants). Needs a CUDA torch and the package's core dependencies (pydantic, pillow,
# transformers). DEVICE=cpu with a small MINUTES checks the script on a machine without a GPU.
#   mix:    request:24,where:8,crop:16,low:24,old:8  (the tool-call grounding, region names kept in the mix)
#   req:    request:32,crop:16,low:24,old:8          (the first CPU request phase's plan, run longer)
#   mix-lr: the mix at half the learning rates       (the CPU phase lost reading and `where` as it learnt)
#   call:   call:16,request:8,where:8,crop:16,low:24,old:8  (the call in SFT's own context, see bench_views)
set -uo pipefail
BASE=${1:?base model folder}; OUT=${2:?output folder}; MINUTES=${3:-6}; shift $(( $# < 3 ? $# : 3 ))
VARIANTS=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do VARIANTS+=("$1"); shift; done
[ $# -gt 0 ] && shift  # the "--"
[ ${#VARIANTS[@]} -eq 0 ] && VARIANTS=(mix req mix-lr)
PY=${PYTHON:-python3}
WORKERS=${WORKERS:-$(( 12 / ${#VARIANTS[@]} ))}
COMMON=(--base "$BASE" --minutes "$MINUTES" --device "${DEVICE:-cuda}" --workers "$WORKERS" --threads 2
        --eval-every-min 2 --eval-n 200 --final-n 400 --old-eval-n 50 --decay-share 0.3 "$@")
LIMIT=$(( ${MINUTES%.*} * 60 + 150 ))  # training + evaluations; a stuck variant must not hold the others' results
mkdir -p "$OUT"

variant() {
  local name=$1 args
  case $name in
    mix) args=(--plan request:24,where:8,crop:16,low:24,old:8) ;;
    req) args=(--plan request:32,crop:16,low:24,old:8) ;;
    mix-lr) args=(--plan request:24,where:8,crop:16,low:24,old:8 --lm-lr 2.5e-4 --vision-lr 5e-5) ;;
    call) args=(--plan call:16,request:8,where:8,crop:16,low:24,old:8) ;;
    *) echo "unknown variant $name (mix, req, mix-lr, call)" >&2; return 2 ;;
  esac
  mkdir -p "$OUT/$name"
  timeout "$LIMIT" "$PY" -m awares_train.tiny.train_bench_base "${COMMON[@]}" "${args[@]}" \
    --out "$OUT/$name/model" --work "$OUT/$name/work" >"$OUT/$name/stdout.log" 2>&1
  echo "$name exit $?"
}

for v in "${VARIANTS[@]}"; do variant "$v" & done
wait
