#!/usr/bin/env bash
# The GPU benchmarks of issues 17 and 18, in one call on a lent GPU machine
# (docs/benchmarks.md, "Training step on a GPU" and "Generation on a GPU"):
#   1. bench/train.py --gpu: the trainer's step against a diffusers-style
#      reference, SD 1.5 at 512 px and SDXL at 1024 px, bf16, batch 4;
#   2. bench/generate.py --gpu: SD 1.5-shaped pipeline, 512 px, 25 steps,
#      ours (LoRA fused) against diffusers' plain pipeline with and without
#      the LoRA;
#   3. the same for SDXL at 1024 px.
# About 5 minutes on an H200 (each part has its own time limit, and a part
# that fails does not stop the others). The machine has torch, transformers,
# peft and accelerate but not diffusers: the wheels in .whl/ (git-ignored;
# see docs/benchmarks.md for how they are fetched) are installed into $SITE
# first. Figures go to $OUT/*.json, everything printed to $OUT/gpu-bench.log.
#
#   bench/gpu.sh              on the GPU machine (the device tool sets $OUT)
#   bench/gpu.sh --cpu-smoke  here, on the CPU: the same steps on the tiny
#                             shapes with 1-2 iterations and no Django
#                             importable, so the GPU call cannot fail on an
#                             import or a typo. PYTHON, SITE and OUT may be set.
#   BENCH_PARTS=train,generate-sd1 bench/gpu.sh   only these parts
#   BENCH_COMPILE=1 bench/gpu.sh   adds train-compiled (SD 1.5 with compile_unet;
#                             BENCH_COMPILE_FAMILIES=sd1,sdxl for both)
set -u -o pipefail
cd "$(dirname "$0")/.."

SMOKE=0
if [ "${1:-}" = "--cpu-smoke" ]; then SMOKE=1; fi
PYTHON=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
if [ -z "${OUT:-}" ]; then OUT=$(mktemp -d /tmp/gpu-bench-out.XXXXXX); fi
mkdir -p "$OUT"
LOG=$OUT/gpu-bench.log
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

say() { echo "$@" | tee -a "$LOG"; }

rm -rf "$SITE"
if ! "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" .whl/*.whl 2>&1 | tee -a "$LOG"; then
    say "could not install the wheels in .whl/ into $SITE"
    exit 1
fi
PYTHONPATH=$SITE
if [ "$SMOKE" = 1 ]; then
    # The GPU machine has no Django: make importing it fail here too.
    mkdir -p "$SITE/_no_django/django"
    echo 'raise ImportError("no Django on the GPU machine")' \
        >"$SITE/_no_django/django/__init__.py"
    PYTHONPATH=$PYTHONPATH:$SITE/_no_django${SMOKE_PYTHONPATH:+:$SMOKE_PYTHONPATH}
fi
export PYTHONPATH=$PYTHONPATH:$PWD

say "== gpu-bench $(date -u '+%Y-%m-%d %H:%M:%S UTC') smoke=$SMOKE out=$OUT"
if command -v nvidia-smi >/dev/null; then nvidia-smi -L 2>&1 | tee -a "$LOG"; fi
"$PYTHON" - <<'EOF' 2>&1 | tee -a "$LOG"
import importlib.metadata as m, sys
names = ("torch", "diffusers", "transformers", "peft", "accelerate",
         "huggingface_hub", "safetensors", "tokenizers", "numpy", "pillow")
found = []
for name in names:
    try:
        found.append(f"{name} {m.version(name)}")
    except m.PackageNotFoundError:
        found.append(f"{name} absent")
print(f"python {sys.version.split()[0]}; " + ", ".join(found))
import diffusers, transformers
print("diffusers from", diffusers.__file__, "| transformers from", transformers.__file__)
EOF

FAILED=""
# Which parts run: BENCH_PARTS (comma-separated names) or all but the opt-in
# train-compiled, which BENCH_COMPILE=1 adds.
PARTS=${BENCH_PARTS:-train,generate-sd1,generate-sdxl}
if [ "${BENCH_COMPILE:-0}" = 1 ]; then PARTS=$PARTS,train-compiled; fi
part() {  # part NAME SECONDS COMMAND...: run one benchmark under a time limit
    local name=$1 limit=$(($2 * SLOWER))
    shift 2
    case ",$PARTS," in *",$name,"*) ;; *) return 0 ;; esac
    say "== $name (limit ${limit} s): $*"
    local began=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=$?
    say "== $name: exit $rc after $((SECONDS - began)) s"
    if [ "$rc" != 0 ]; then FAILED="$FAILED $name"; fi
}

SLOWER=1  # the limits are for the H200; a shared CPU needs far longer
if [ "$SMOKE" = 1 ]; then
    SLOWER=8
    TRAIN=(--device cpu --tiny-shape --steps 1 --warmup 1 --batch-size 1)
    GEN=(--device cpu --tiny-shape --size 64 --steps 2 --images 1 --warmup 1)
    GEN_XL=("${GEN[@]}")
else
    TRAIN=(--steps 8 --warmup 2 --batch-size 4)
    GEN=(--images 6 --warmup 1)
    GEN_XL=(--images 3 --warmup 1)
fi
part train 210 "$PYTHON" bench/train.py --gpu "${TRAIN[@]}" --json "$OUT/train.json"
# Opt-in (about 2 more minutes per family): our step with compile_unet.
part train-compiled 240 "$PYTHON" bench/train.py --gpu "${TRAIN[@]}" \
    --families "${BENCH_COMPILE_FAMILIES:-sd1}" --warmup 3 \
    --variants ours-transformer,ours-transformer-compiled \
    --json "$OUT/train-compiled.json"
part generate-sd1 120 "$PYTHON" bench/generate.py --gpu --family sd1 --loras 1 \
    "${GEN[@]}" --json "$OUT/generate-sd1.json"
part generate-sdxl 180 "$PYTHON" bench/generate.py --gpu --family sdxl --loras 1 \
    --variants plain-lora,plain,fused "${GEN_XL[@]}" --json "$OUT/generate-sdxl.json"

# The tables of docs/benchmarks.md, filled from the JSON files.
OUT=$OUT "$PYTHON" - <<'TABLES' 2>&1 | tee "$OUT/tables.md" | tee -a "$LOG"
import json, os
from pathlib import Path

out = Path(os.environ["OUT"])


def load(name):
    path = out / name
    return json.loads(path.read_text()) if path.exists() else None


for train in (load("train.json"), load("train-compiled.json")):
    if not train:
        continue
    print(f"Training step, {train['device']}, {train['date']}, {train['versions']}")
    print("| shape | step | LoRA modules | trained params | s/step (median; min-max) "
          "| images/s | peak GPU memory | MFU | ours / reference |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in train["rows"]:
        if "error" in r:
            print(f"| {r['family']} | {r['variant']} | failed: {r['error'][:80]} |")
            continue
        peak = f"{r['peak_gpu_gib']:.1f} GiB" if r["peak_gpu_gib"] else "-"
        mfu = f"{100 * r['mfu']:.0f}%" if "mfu" in r else "-"
        ratio = r.get("ratio_to_reference")
        print(f"| {r['family']} {r['pixels']} px | {r['variant']} | {r['lora_modules']} "
              f"| {r['trainable_params'] / 1e6:.2f} M | {r['seconds_per_step']:.3f} "
              f"({r['seconds_min']:.3f}-{r['seconds_max']:.3f}) "
              f"| {r['images_per_second']:.1f} | {peak} | {mfu} "
              f"| {f'{ratio:.2f}x' if ratio else '-'} |")
for name in ("generate-sd1.json", "generate-sdxl.json"):
    gen = load(name)
    if not gen:
        continue
    print(f"\nGeneration {gen['family']}, {gen.get('card')}, {gen['size']} px, "
          f"{gen['steps']} {gen['scheduler']} steps, {gen['precision']}, "
          f"{gen['loras']} LoRA; build {gen['build_seconds']:.0f} s, "
          f"load {gen['load_seconds']:.0f} s; fused vs baseline max pixel "
          f"difference {gen.get('fused_vs_baseline_max_pixel_difference')} "
          f"(LoRA vs none: {gen.get('lora_vs_no_lora_max_pixel_difference')}); "
          f"stack change {gen.get('stack_change_seconds', 0):.3f} s; "
          f"peak {gen.get('peak_gpu_gib', 0):.1f} GiB")
    print("| way | s/image (median; min-max) | images/s "
          "| / baseline (medians) | / baseline (minimums) |")
    print("|---|---|---|---|---|")
    for r in gen["rows"]:
        print(f"| {r['variant']} | {r['seconds_per_image']:.3f} "
              f"({r['seconds_min']:.3f}-{r['seconds_max']:.3f}) "
              f"| {1 / r['seconds_per_image']:.2f} | {r['ratio_to_baseline']:.2f}x "
              f"| {r['ratio_of_minimums']:.2f}x |")
TABLES

say "== done in $SECONDS s; failed:${FAILED:- none}"
ls -la "$OUT" | tee -a "$LOG"
[ -z "$FAILED" ]
