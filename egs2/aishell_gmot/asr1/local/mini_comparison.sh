#!/usr/bin/env bash
# `make demo`: the mini recipe's comparison of the four systems on the synthetic corpus
# (CPU): GM-OT through every stage (1-16), then the Conformer-CTC baseline, OT-CAKT and
# TOT-CAKT (GM-OT's alpha = 0 special cases) trained on the same data and features
# (stages 6-13, CTC greedy decoding of the test set), and the RESULTS.md table with all four.
# Everything is under mini/; extra options go to every run.sh call.
#
#   local/mini_comparison.sh [--inference_nj 1 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
# One decoding job per set: on 2 cores a second job mostly adds a second ESPnet start-up.
./run.sh --mini true --inference_nj 1 "$@"
for system in train_asr_ctc_conformer train_asr_ot_cakt train_asr_tot_cakt; do
  ./run.sh --mini true --asr_config "conf/mini/${system}.yaml" --stage 6 --stop_stage 13 \
    --inference_config conf/decode_ctc_greedy.yaml --test_sets test --inference_nj 1 "$@"
done
echo
echo "mini/RESULTS.md (synthetic mini corpus: a pipeline check, not AISHELL-1 numbers):"
sed -n '/^|system|config|/,/^$/p' mini/RESULTS.md
echo "mini comparison: $(( $(date +%s) - start )) s"
