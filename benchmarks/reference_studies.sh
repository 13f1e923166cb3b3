#!/usr/bin/env bash
# Reruns reference studies on this checkout's commit and writes each report, with its data, into
# OUT (default reports/). Run it from a clean clone (reports record `git dirty`; a report written
# over a tracked file would make the next study's runs dirty, so give another OUT there), with
# nothing else running. Then, still quiet: `harness time STUDY --from OUT/STUDY` per report.
#
#   benchmarks/reference_studies.sh [OUT [STUDY ...]]     (default: every study, in this order)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-reports}
shift || true
studies=("$@")
if [ ${#studies[@]} -eq 0 ]; then
  studies=(float-order quickstart dense-vs-memory bucket-bits expansion-bits ffn-activation
           learning-rate weighting-temperature matched-baselines efficient-attention knob-grid
           multi-objective tune-lr-temperature efficient-attention-long scaling
           fair-dense-vs-memory)
fi
mkdir -p "$out"
for study in "${studies[@]}"; do
  start=$(date +%s)
  harness ablate "ablations/$study.yaml" --quiet
  # a tune-then-compare study reports each comparison budget under its own name
  case "$study" in
    fair-dense-vs-memory) names=("$study-flops" "$study-seconds") ;;
    *) names=("$study") ;;
  esac
  for name in "${names[@]}"; do
    harness report "$name" --out "$out/$name" --no-log
  done
  printf '%s\t%s s\t%s\n' "$study" "$(( $(date +%s) - start ))" "$(git rev-parse HEAD)" \
    >> "$out/wall_times.tsv"
done
