#!/usr/bin/env bash
# The prepared check for a GPU machine that has PyTorch, transformers and Triton but not Ray, Optuna, datasets,
# TRL or flash-attn, and no network: the GPU tests, then bench_trainer.py at Qwen2.5-0.5B's and Qwen2.5-1.5B's
# shapes (random weights), in about 8 minutes, every result in one folder.
#
#   scripts/gpu_check.sh [RESULTS_DIR]              on the GPU machine (default folder: gpu_check_results)
#   scripts/gpu_check.sh --dry-run [RESULTS_DIR]    on a CPU: the same steps at tiny shapes (CI runs it)
#
# TRL's RewardTrainer, the baseline, needs trl and datasets, and the Liger contender liger-kernel: wheels in .whl/
# (trl, datasets, dill, multiprocess, liger-kernel; docs/development.md says how to fetch them) are installed to
# /tmp/site first where present; without them those contenders are skipped and named. A step that fails or runs
# out of its time is logged and the next one runs.
set -uo pipefail
cd "$(dirname "$0")/.."

dry_run=false
if [[ "${1:-}" == "--dry-run" ]]; then
    dry_run=true
    shift
fi
results="${1:-gpu_check_results}"
mkdir -p "$results"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python="${PYTHON:-python3}"

if compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

{
    date -u
    nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
    "$python" -c 'import sys, torch, transformers; print("python", sys.version.split()[0], "torch", torch.__version__,
"transformers", transformers.__version__, "cuda", torch.cuda.is_available())'
} >"$results/environment.txt" 2>&1

# Contenders measured at each shape; bench_trainer.py skips (and names) those with nothing to show on the device.
# The ones the headline needs first: a step that runs out of its time keeps what finished (each contender prints
# its line when it ends). rmsweep shares prompts by default on a CPU, not on a GPU: of "shared prompt" and "no
# shared prompt" (forced on, off) the one that equals the default is skipped.
contenders=("rmsweep" "TRL RewardTrainer" "rmsweep, FlexAttention packing"
            "rmsweep, FlexAttention packing, no shared prompt" "rmsweep, shared prompt" "rmsweep, no shared prompt" "rmsweep, bf16 weights" "rmsweep, Liger kernels"
            "rmsweep, fixed micro-batches" "plain PyTorch loop")
if $dry_run; then
    tests=(-k "gemma2 and shared_prompt and not flex")  # GPU tests skip on a CPU: one shared-prompt check
    bench=(--device cpu --preset micro --steps 2 --batch 8 --max-length 256 --validation-pairs 16)
    shapes=(micro)
    limits=(60 120 0)
else
    tests=(-k "gpu")
    bench=(--device cuda --steps 8 --batch 16 --micro-batch 4 --tokens-per-micro-batch 16384 --validation-pairs 64)
    shapes=(qwen2.5-0.5b qwen2.5-1.5b)
    # seconds: the GPU tests compile FlexAttention's kernels; loading a 1.5B model and TRL's setup took about a
    # minute per contender on 2026-11-30
    limits=(140 90 230)  # with the wheels' install, about 8 minutes in all
fi

# -v: a line per test as it ends, so a run stopped at its limit still shows which passed.
timeout "${limits[0]}" "$python" -m pytest --noconftest -p no:cacheprovider -v tests/test_packing.py \
    tests/test_train.py tests/test_modeling.py "${tests[@]}" >"$results/gpu_tests.log" 2>&1
echo "gpu tests: exit $?" | tee -a "$results/summary.txt"

for index in "${!shapes[@]}"; do
    shape="${shapes[$index]}"
    only=("${contenders[@]}")
    [[ "$shape" == "qwen2.5-0.5b" ]] && only=("rmsweep" "TRL RewardTrainer")
    timeout "${limits[$((index + 1))]}" "$python" scripts/bench_trainer.py "${bench[@]}" --preset "$shape" \
        --only "${only[@]}" >"$results/bench_$shape.log" 2>&1
    echo "bench $shape: exit $?; $(grep '^RESULT' "$results/bench_$shape.log" || echo 'no RESULT line')" \
        | tee -a "$results/summary.txt"
done
