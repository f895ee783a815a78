#!/usr/bin/env bash
# The GPU checks in one run, from the repository root on a machine with a CUDA device: versions, the CUDA tests
# (tests/cuda: Triton kernels, fused vs naive, mixed precision, bitwise resume) and the GDAS step benchmark on the
# device. Every stage has a time limit and runs whatever happened before it (no `set -e`): < 5 min in all.
# Logs go to $OUT (default /tmp/cuda_out). dnas runs from this checkout (PYTHONPATH); wheels in .whl/ (packages the
# machine lacks: jsonargparse, docstring_parser, typeshed_client, mnist1d) are installed into $SITE first.
# Usage: bash benchmarks/cuda_checks.sh   (PYTHON=python3, OUT=/tmp/cuda_out, SITE=/tmp/site by default)
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/cuda_out}
SITE=${SITE:-/tmp/site}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if compgen -G ".whl/*.whl" >/dev/null; then
  timeout 20 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    .whl/*.whl
  export PYTHONPATH=$SITE:$PYTHONPATH
fi

echo "== versions"
{
  date -u
  timeout 20 "$PYTHON" -c 'import sys, torch, pytorch_lightning as pl, dnas
print("python", sys.version.split()[0], "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| lightning", pl.__version__, "| dnas from", dnas.__file__)
for name in ("triton", "jsonargparse"):
    try:
        module = __import__(name); print(name, module.__version__, "from", module.__file__)
    except ImportError:
        print(name, "not installed")
print("cuda available:", torch.cuda.is_available(),
      "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "no device")'
  timeout 10 nvidia-smi -L
} 2>&1 | tee "$OUT/versions.txt"

echo "== tests/cuda"
timeout -k 5 180 "$PYTHON" -m pytest tests/cuda -v -rfEsxP -p no:cacheprovider -n 0 --timeout 120 -o addopts="" \
  --import-mode=importlib 2>&1 | tee "$OUT/cuda_tests.log"
echo "pytest exit status: ${PIPESTATUS[0]} (124: stage time limit), ${SECONDS} s so far" | tee -a "$OUT/cuda_tests.log"

echo "== benchmarks/gdas_step.py --device cuda"
timeout -k 5 50 "$PYTHON" benchmarks/gdas_step.py --device cuda --repeats 10 2>&1 | tee "$OUT/gdas_step_cuda.txt"
echo "benchmark exit status: ${PIPESTATUS[0]} (124: stage time limit), ${SECONDS} s in all" | tee -a "$OUT/gdas_step_cuda.txt"

echo "== summary"
cat "$OUT/versions.txt"
# the numbers the tests print (kernel errors, fused-naive gaps, α errors), then pytest's verdicts
grep -E '^(weighted_|MixedOp|DartsSupernet|(darts|pcdarts|sddarts|fbnet|darts-2nd) [0-9])' "$OUT/cuda_tests.log" \
  | sort -u > "$OUT/cuda_numbers.txt"
cat "$OUT/cuda_numbers.txt"
grep -E '^(FAILED|ERROR|SKIPPED|XFAIL)|^=+ .*[0-9]+ (passed|failed|skipped|errors?)|pytest exit' "$OUT/cuda_tests.log"
cat "$OUT/gdas_step_cuda.txt"
