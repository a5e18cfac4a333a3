#!/usr/bin/env bash
# The ablations of docs/experiments.md on the corpus that local/run_tts_experiment.sh
# built (run that first): each line below is one sweep of local/run_tts_experiment.sh
# (system, model_conf grid), over --seeds; two queues run side by side, one CPU thread
# each, and finished runs are skipped, so the script can be run again after a stop.
#
#   local/run_tts_ablations.sh                 # both queues, seeds 0 1 2
#   local/run_tts_ablations.sh --queues a      # one queue only
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh

seeds="0 1 2"
queues="a b"
parse_options "$@"

# queue a: the fused branch (the part suspected of teacher forcing)
queue_a=(
  "gmot lambda_=0"                 # no fused CTC at all
  "gmot fusion_source=acoustic"    # fused input without teacher features
  "gmot share_fused_ctc=false"     # fused CTC through its own head
)
# queue b: the OT parts
queue_b=(
  "gmot beta=0"                    # no L_gmot + L_align (fused CTC only)
  "ot_cakt"                        # alpha 0, rho 0
  "tot_cakt"                       # alpha 0, rho 0.5
)

run_queue() {
  local job sys grid
  for job in "$@"; do
    read -r sys grid <<<"${job}"
    local/run_tts_experiment.sh --prep false --parallel 1 --systems "${sys}" \
      --seeds "${seeds}" ${grid:+--grid "${grid}"} \
      || die "sweep '${job}' failed: see tts/exp/sweep_tts_*.log"
  done
}

pids=()
for q in ${queues}; do
  case "${q}" in
    a) run_queue "${queue_a[@]}" & ;;
    b) run_queue "${queue_b[@]}" & ;;
    *) die "unknown queue ${q} (a or b)" ;;
  esac
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "${pid}"; done
log "done: tts/RESULTS.md, tts/exp/sweep_tts_*/sweep.md"
