#!/usr/bin/env bash
# The GPU check of a training machine, in one go, in under five minutes.
#
#   training/gpu_check.sh [REPORT.json]        (default: gpu_check.json)
#
# Runs `perceptlab bench train --device cuda --json` under `timeout 300`
# on the first visible GPU (pick another with CUDA_VISIBLE_DEVICES):
#
#   throughput  training steps with each loss (mse, nlpd, msssim) in bfloat16
#               autocast, eager and under torch.compile (a failed compile is
#               skipped with its reason), in samples/s against the CPU measured
#               in the same process; every loss value must stay finite and the
#               losses float32
#   torchrun    `torchrun --standalone --nproc-per-node 1 -m perceptlab.cli train`
#               of a tiny config on a library of generated clips; it must finish
#   nccl        an NCCL process group under torchrun: all-reduce and a
#               DistributedDataParallel step
#   oom         a real CUDA out-of-memory error in a real run (the whole library
#               as one batch, with this process holding the rest of the GPU):
#               exit 1, one clear "oom" error, no traceback, last.pt kept
#
# The readable progress and the summary table go to stderr, the JSON report
# to REPORT.json. Exit status: 0 every check passed; 1 a check failed (see
# the table or "checks" in the report); 2 no CUDA device; 124 it ran past
# 300 s (the check budgets itself 270 s, so this means something hung).
#
# Then, under `timeout 150` of its own, `python -m perceptlab.analysis.matrix_gpu_check`:
# every matrix engine (mse, nlpd, msssim and the baselines; the dense engine,
# the rows of whole clips and centre excerpts, the k-NN graph, and a
# `torchrun ... matrix --knn 3 --device cuda` run over NCCL) on CUDA
# against the CPU, its report in REPORT.matrix.json. A failure there makes
# the exit status 1 when the training check passed.
set -u
report="${1:-gpu_check.json}"
if command -v perceptlab >/dev/null 2>&1; then
    cmd=(perceptlab)
else
    cmd=("${PYTHON:-python3}" -m perceptlab.cli)
fi
timeout --kill-after=15 300 "${cmd[@]}" bench train --device cuda --json > "$report"
status=$?
case $status in
    0) echo "gpu_check: every check passed; report in $report" >&2 ;;
    124|137) echo "gpu_check: stopped after 300 s; $report is incomplete" >&2 ;;
    *) echo "gpu_check: exit status $status; report in $report" >&2 ;;
esac
mreport="${report%.json}.matrix.json"
timeout --kill-after=15 150 "${PYTHON:-python3}" -m perceptlab.analysis.matrix_gpu_check --json "$mreport"
mstatus=$?
case $mstatus in
    0) echo "gpu_check: every matrix engine agrees on CUDA; report in $mreport" >&2 ;;
    *) echo "gpu_check: matrix check exit status $mstatus; report in $mreport" >&2
       [ $status -eq 0 ] && status=1 ;;
esac
exit $status
