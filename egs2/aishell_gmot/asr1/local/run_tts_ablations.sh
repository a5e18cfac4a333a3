#!/usr/bin/env bash
# The ablations and longer runs of docs/experiments.md, on the corpus that
# local/run_tts_experiment.sh built (run that first). Each job is one sweep of
# local/run_tts_experiment.sh over --seeds; the two queues run side by side, one CPU
# thread each. Finished runs are skipped, so the script can be run again after a stop.
#
#   local/run_tts_ablations.sh                 # both queues, seeds 0 1 2
#   local/run_tts_ablations.sh --queues b      # one queue only
#
# Jobs: "<system> [<model_conf grid>]" (conf/tts/train_asr_<system>.yaml), or
# "long <system> <epochs>": the system trained to <epochs> epochs (the baseline's
# convergence). A long run starts from the 8-epoch run's checkpoint when there is
# one: WarmupLR depends on the step count only and ESPnet reseeds every epoch
# (seed + epoch), so resuming at epoch 9 is the same run as training 16 epochs at once.
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
# queue b: the OT parts, and convergence
queue_b=(
  "gmot beta=0"                    # no L_gmot + L_align (fused CTC only)
  "long ctc 16"                    # the baseline to convergence
  "long gmot 16"
  "ot_cakt"                        # alpha 0, rho 0
  "tot_cakt"                       # alpha 0, rho 0.5
)

long_run() {  # <system> <epochs>
  local sys=$1 epochs=$2 k src dst
  for k in ${seeds}; do
    src=tts/exp/asr_sweep_tts_${sys}_seed${k}
    dst=tts/exp/asr_sweep_tts_${sys}_ep${epochs}_seed${k}
    if [ ! -e "${dst}" ] && [ -f "${src}/checkpoint.pth" ]; then
      log "${dst}: resuming from ${src} (its checkpoint and kept epochs)"
      mkdir -p "${dst}"
      cp -a "${src}/checkpoint.pth" "${src}"/*epoch.pth "${src}/tensorboard" "${dst}/"
      [ -f "${src}/train.log" ] && cp "${src}/train.log" "${dst}/train.before_resume.log"
    fi
  done
  local/run_tts_experiment.sh --prep false --parallel 1 --systems "${sys}" --seeds "${seeds}" \
    --tag "ep${epochs}" --asr_args "--max_epoch ${epochs}"
}

run_queue() {
  local job sys grid
  for job in "$@"; do
    read -r sys grid <<<"${job}"
    if [ "${sys}" = long ]; then
      # shellcheck disable=SC2086
      long_run ${grid} || die "long run '${job}' failed: see tts/exp/sweep_tts_*.log"
      continue
    fi
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
