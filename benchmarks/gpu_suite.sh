#!/usr/bin/env bash
# Every GPU measurement of the fine-tuning work, end to end, on a bare GPU machine, from a small bundle.
#
#   bash benchmarks/gpu_suite.sh BUNDLE OUT [tiny]
#
# BUNDLE (a folder, written by `python benchmarks/gpu_bundle.py --shared ../shared`, which says how to carry it)
# holds: src/ and benchmarks/ (this checkout), minilm16/ (all-MiniLM-L6-v2 with fp16 weights: 45 MB instead of
# 90), data/<split>/**.csv.gz (ml-100k-splits, amazon-beauty-splits, gzipped), bench/score_recs.py (the official
# scorer) and wheels/ (what the GPU image lacks; installed into the work folder first where it lacks it).
# OUT gets summary.txt (one line per figure) and log.txt.
# `tiny` runs every step at toy size (a CPU check of the script itself); `cold` runs the encoding throughput,
# then the tuned encoder for new items (each query kind, batch 1024) through the default command and
# benchmarks/cold_tuned.py (the default model's weights chosen on validation for the tuned vectors); PY picks
# the python.
#
# Steps, in order of importance, each skipped when the time left (BUDGET_S, default 540 s; 900 s for tiny) is too short:
#   1. cold ml-100k: the default model `tokrec` with the frozen encoder, `tokrec finetune` on
#      cold/train.csv, the default model with the tuned encoder; NDCG@10 by the official scorer
#   2. the buy/not-buy classifier (benchmarks/deep_classifier.py) on CUDA in bf16
#   3. encoding throughput, tokrec vs sentence-transformers encode() on the same GPU and texts
#   4. warm ml-100k: as 1 on warm/ (the tuned encoder must not lower warm NDCG@10)
#   5. text-sasrec's warm fit (the README's warm command) on CUDA, timed
#   6. cold amazon-beauty: as 1
set -u
B=$(cd "$1" && pwd)
OUT=$2
MODE=${3:-full}
PY=${PY:-python3}
# the device gives a command 600 s; the CPU check of `tiny` needs about 620 s on a slow 2-core machine (2026-12-03)
if [ "$MODE" = tiny ]; then BUDGET_S=${BUDGET_S:-900}; else BUDGET_S=${BUDGET_S:-540}; fi
T0=$(date +%s)
mkdir -p "$OUT"
W=${WORK:-/tmp/gpu_suite}
rm -rf "$W" && mkdir -p "$W"
SITE=""
# what the GPU image lacks (benchmarks/gpu_bundle.py says which), where it lacks it
if [ -d "$B/wheels" ] && ! "$PY" -c 'import pydantic, optuna' 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$W/site" "$B"/wheels/*.whl >"$OUT/pip.txt" 2>&1 ||
    { echo "gpu_suite: installing $B/wheels failed (see $OUT/pip.txt)"; exit 1; }
  SITE=:$W/site
fi
# TOKENIZERS_PARALLELISM stays unset, as in a user's shell: the Rust tokenizer splits each batch over the host's
# cores (the H200 host has 16; the 2026-11-30 run had it off, which left tokenizing on one core)
export PYTHONPATH=$B/src$SITE${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export TOKREC_CACHE_DIR=$W/cache
SUM=$OUT/summary.txt
LOG=$OUT/log.txt
say() { echo "$*" | tee -a "$SUM" >>"$LOG"; }
left() { echo $((BUDGET_S - ($(date +%s) - T0))); }
TK=("$PY" -c 'import sys; from tokrec.cli.main import main; sys.exit(main(sys.argv[1:]))')
# run NAME SECONDS cmd...: logs, times, and kills at SECONDS (or the time left, whichever is less)
run() {
  local name=$1 limit=$2; shift 2
  local l; l=$(left)
  if [ "$l" -lt 20 ]; then say "SKIP $name (time left ${l}s)"; return 1; fi
  [ "$limit" -gt "$l" ] && limit=$l
  echo "=== $name ($(date -u +%T), limit ${limit}s): $*" >>"$LOG"
  local s; s=$(date +%s.%N)
  timeout "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  local e; e=$(python3 -c "print(round($(date +%s.%N)-$s,1))")
  say "$name: rc=$rc wall=${e}s"
  return $rc
}
score() {  # score RECS TEST TRAIN [CANDIDATES] -> the scorer's JSON line
  local extra=()
  [ -n "${4:-}" ] && extra=(--candidates "$4")
  "$PY" "$B/bench/score_recs.py" "$1" "$2" "$3" "${extra[@]}" | tail -1
}

say "gpu_suite $MODE $(date -u +%FT%TZ) python $("$PY" -c 'import sys; print(sys.version.split()[0])')"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")' 2>&1 | tee -a "$SUM" >>"$LOG"
nproc | sed 's/^/cpus /' | tee -a "$SUM" >>"$LOG"

for f in $(cd "$B/data" && find . -name '*.csv.gz'); do
  mkdir -p "$W/data/$(dirname "$f")"
  gunzip -c "$B/data/$f" >"$W/data/${f%.gz}"
done
# the fp32 base encoder from the fp16 copy (the frozen baseline and the start of fine-tuning)
"$PY" - "$B/minilm16" "$W/minilm" <<'EOF' >>"$LOG" 2>&1
import shutil, sys
import torch
from safetensors.torch import load_file, save_file
src, dst = sys.argv[1], sys.argv[2]
shutil.copytree(src, dst)
w = load_file(f"{src}/model.safetensors")
save_file({k: v.float().contiguous() for k, v in w.items()}, f"{dst}/model.safetensors", metadata={"format": "pt"})
EOF
BASE=$W/minilm

if [ "$MODE" = tiny ]; then
  FT=(--epochs 1 --max-steps-per-epoch 2 --batch-size 32 --threads 2)
  CLF=(max_pairs=200 epochs=1 batch_size=16 threads=2)
  ENC=(--synthetic 300 --batch-size 64 --threads 2)
  SAS='{"attributes": false, "epochs": 1, "patience": 1, "refit_seeds": 1, "threads": 2}'
  CLF_S=400  # the CPU scores the re-ranked lists' pairs through the cross-encoder slowly
  DEV=cpu
else
  FT=(--epochs 5 --batch-size 128 --max-seconds 100)
  CLF=(max_pairs=60000 negatives=3 epochs=2 batch_size=64 lora=false lr=3e-5 dtype=bfloat16 threads=8)
  ENC=(--synthetic 20000 --batch-size 512 --threads 8)
  SAS='{"attributes": false, "dtype": "bfloat16"}'
  CLF_S=150
  DEV=cuda
fi

# ---- `cold` mode: the tuned encoder for new items, each query kind of `tokrec finetune` (COLD_QUERIES, default
# "any recent"), batch 1024 (ml-100k's catalog is small: a step encodes nearly every item whatever the batch), up to
# 5 epochs with early stopping; then the default model's weights re-chosen on validation by cold_tuned.py
if [ "$MODE" = cold ]; then
  # first the encoding throughput (the 2x target; a minute), with the encoder's windowed GPU path
  if run "encode bf16" 90 "$PY" "$B/benchmarks/encode_speed.py" --device "$DEV" --model "$BASE" --dtype bf16 "${ENC[@]}"; then
    grep -E "texts/s|ratio|cosine|^[0-9]+ texts" "$LOG" | tail -6 | sed "s/^/encode bf16: /" | tee -a "$SUM" >/dev/null
  fi
  if run "encode prefetch off/on" 60 "$PY" "$B/benchmarks/encode_speed.py" --prefetch --device "$DEV" --model "$BASE" \
      --dtype bf16 --repeat 3 "${ENC[@]}"; then
    grep -E "^background|^tokenizing" "$LOG" | tail -3 | sed "s/^/encode prefetch: /" | tee -a "$SUM" >/dev/null
  fi
  S=$W/data/ml-100k-splits
  for q in ${COLD_QUERIES:-any recent}; do
    run "ml100k-cold finetune (query $q)" 150 "${TK[@]}" finetune --items "$S/items.csv" --interactions "$S/cold/train.csv" \
      --model-path "$BASE" --output "$W/tuned-cold-$q" --device cuda --epochs 5 --batch-size 1024 --lr 1e-4 \
      --query "$q" --max-seconds 100 &&
      say "finetune result ($q): $(grep '^{' "$LOG" | tail -1)"
    # the default command: its tuner validates on the items the encoder was fine-tuned without (blind to them)
    if run "cold recommend ($q)" 120 "${TK[@]}" recommend --items "$S/items.csv" --interactions "$S/cold/train.csv" \
        --candidates "$S/cold/candidates.csv" --k 100 --model-path "$W/tuned-cold-$q" --output "$W/cold-$q.csv"; then
      say "cold recommend ($q) score: $(score "$W/cold-$q.csv" "$S/cold/test.csv" "$S/cold/train.csv" "$S/cold/candidates.csv")"
    fi
    run "cold_tuned ($q)" 120 "$PY" "$B/benchmarks/cold_tuned.py" --encoder "$W/tuned-cold-$q" --splits "$S" \
      --scorer "$B/bench/score_recs.py" --out "$W/ct-$q"
    grep -E "^chosen" "$LOG" | tail -1 | sed "s/^/cold_tuned ($q): /" | tee -a "$SUM" >/dev/null
  done
  say "done in $(($(date +%s) - T0))s"
  exit 0
fi

# ---- 1, 4, 6: the default model with the frozen and the behaviour-tuned encoder --------------------------
frozen_vs_tuned() {  # NAME DATA SPLIT FT_LIMIT
  local name=$1 d=$W/data/$2 split=$3 ftl=$4
  local cand=() candf="" last=(--hold-out-last)  # warm: the tuner's leave-last-out validation stays blind
  if [ -f "$d/$split/candidates.csv" ]; then cand=(--candidates "$d/$split/candidates.csv"); candf=$d/$split/candidates.csv; last=(); fi
  if run "$name frozen recommend" 150 "${TK[@]}" recommend --items "$d/items.csv" --interactions "$d/$split/train.csv" \
      "${cand[@]}" --k 100 --model-path "$BASE" --output "$W/$name-frozen.csv"; then
    say "$name frozen score: $(score "$W/$name-frozen.csv" "$d/$split/test.csv" "$d/$split/train.csv" "$candf")"
  fi
  if run "$name finetune" "$ftl" "${TK[@]}" finetune --items "$d/items.csv" --interactions "$d/$split/train.csv" \
      --model-path "$BASE" --output "$W/tuned-$name" --device "$DEV" "${last[@]}" "${FT[@]}"; then
    say "$name finetune result: $(grep '^{' "$LOG" | tail -1)"
    if run "$name tuned recommend" 150 "${TK[@]}" recommend --items "$d/items.csv" --interactions "$d/$split/train.csv" \
        "${cand[@]}" --k 100 --model-path "$W/tuned-$name" --output "$W/$name-tuned.csv"; then
      say "$name tuned score: $(score "$W/$name-tuned.csv" "$d/$split/test.csv" "$d/$split/train.csv" "$candf")"
    fi
    cp "$W/tuned-$name/tokrec_finetune.json" "$OUT/finetune-$name.json"
  fi
}

frozen_vs_tuned ml100k-cold ml-100k-splits cold 200

# ---- 2: the classifier --------------------------------------------------------------------------------------
if run "classifier" "$CLF_S" "$PY" "$B/benchmarks/deep_classifier.py" --splits "$W/data/ml-100k-splits" \
    --scorer "$B/bench/score_recs.py" --model-path "$BASE" --out "$W/dc" \
    --set model="$BASE" device="$DEV" progress=false "${CLF[@]}"; then
  grep -E "^ROC-AUC|^chosen|^validation NDCG|^training pairs" "$LOG" | tail -5 | sed 's/^/classifier: /' | tee -a "$SUM" >/dev/null
fi

# ---- 4: warm ------------------------------------------------------------------------------------------------
frozen_vs_tuned ml100k-warm ml-100k-splits warm 150

# ---- 3: encoding throughput ---------------------------------------------------------------------------------
for dt in bf16 fp16; do
  if run "encode $dt" 90 "$PY" "$B/benchmarks/encode_speed.py" --device "$DEV" --model "$BASE" --dtype "$dt" "${ENC[@]}"; then
    grep -E "texts/s|ratio|cosine|^[0-9]+ texts" "$LOG" | tail -6 | sed "s/^/encode $dt: /" | tee -a "$SUM" >/dev/null
  fi
done

# ---- 5: text-sasrec warm fit on the GPU ---------------------------------------------------------------------
S=$W/data/ml-100k-splits
if run "text-sasrec warm" 240 "${TK[@]}" recommend --model text-sasrec --config "$SAS" --model-path "$BASE" \
    --items "$S/items.csv" --interactions "$S/warm/train.csv" --k 100 --output "$W/seq.csv"; then
  say "text-sasrec warm score: $(score "$W/seq.csv" "$S/warm/test.csv" "$S/warm/train.csv")"
fi

# ---- 6: amazon-beauty cold ----------------------------------------------------------------------------------
[ "$MODE" = tiny ] || frozen_vs_tuned beauty-cold amazon-beauty-splits cold 150

say "done in $(($(date +%s) - T0))s"
