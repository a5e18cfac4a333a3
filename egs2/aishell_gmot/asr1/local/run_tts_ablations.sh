#!/usr/bin/env bash
# The ablations and longer runs of docs/experiments.md, on the corpus that
# local/run_tts_experiment.sh built (run that first). Each job is one sweep of
# local/run_tts_experiment.sh over --seeds; the two queues run side by side, one CPU
# thread each. Finished runs are skipped, so the script can be run again after a stop.
#
#   local/run_tts_ablations.sh                 # the first round (queues a and b), seeds 0 1 2
#   local/run_tts_ablations.sh --queues "c d"  # the second round
#   local/run_tts_ablations.sh --queues "e f"  # the third: 40 epochs
#   local/run_tts_ablations.sh --queues b      # one queue only
#   local/run_tts_ablations.sh --jobs "gmot rho=0; long ctc 24"   # own jobs, one queue
#
# Jobs: "<system> [<model_conf grid>]" (conf/tts/train_asr_<system>.yaml), or
# "long <system> <epochs>": the system trained to <epochs> epochs (the baseline's
# convergence). A long run starts from the checkpoint of the longest shorter run of the
# same system and seed (the 8-epoch run, or an earlier "long" one) when there is one:
# WarmupLR depends on the step count only and ESPnet reseeds every epoch (seed + epoch),
# so resuming at epoch 9 is the same run as training 16 epochs at once.
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh

seeds="0 1 2"
queues="a b"
jobs=          # "job; job; ...": run these (one queue) instead of --queues
asr_args=      # more training options for every run (toy sizes in tests)
test_sets="dev test"
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
# queues c and d (second round): the prior alone, the fused CTC without any coupling,
# and the baseline further towards convergence (24, then 32 epochs)
queue_c=(
  "ot_cakt"                        # (completes its seeds)
  "long ctc 24"
  "gmot rho=0"                     # GM-OT without the temporal prior
  "long ctc 32"
)
queue_d=(
  "tot_cakt"
  "long gmot 24"
  "gmot fusion_source=none"        # the extra CTC on LayerNorm(H_A): no coupling at all
  "long gmot 32"
)
# queues e and f: the baseline had not converged at 32 epochs
queue_e=("long ctc 40")
queue_f=("long gmot 40")

shorter_run() {  # <system> <epochs> <seed>: the longest finished shorter run, if any
  local sys=$1 epochs=$2 k=$3 best= best_ep=0 d ep
  for d in tts/exp/asr_sweep_tts_${sys}_seed${k} tts/exp/asr_sweep_tts_${sys}_ep*_seed${k}; do
    [ -f "${d}/checkpoint.pth" ] || continue
    ep=$(sed -n 's/^max_epoch: *//p' "${d}/config.yaml")
    if [ -n "${ep}" ] && [ "${ep}" -lt "${epochs}" ] && [ "${ep}" -gt "${best_ep}" ]; then
      best=${d}; best_ep=${ep}
    fi
  done
  echo "${best}"
}

earlier_logs() {  # <run dir>: its training logs, oldest first
  local d=$1 n
  [ -f "${d}/train.before_resume.log" ] && cat "${d}/train.before_resume.log"
  for n in $(ls "${d}" | sed -n 's/^train\.\([0-9]*\)\.log$/\1/p' | sort -rn); do
    cat "${d}/train.${n}.log"
  done
  [ -f "${d}/train.log" ] && cat "${d}/train.log"
  return 0
}

long_run() {  # <system> <epochs>
  local sys=$1 epochs=$2 k src dst
  for k in ${seeds}; do
    src=$(shorter_run "${sys}" "${epochs}" "${k}")
    dst=tts/exp/asr_sweep_tts_${sys}_ep${epochs}_seed${k}
    if [ ! -e "${dst}" ] && [ -n "${src}" ]; then
      log "${dst}: resuming from ${src} (its checkpoint and kept epochs)"
      mkdir -p "${dst}"
      cp -a "${src}/checkpoint.pth" "${src}"/*epoch.pth "${src}/tensorboard" "${dst}/"
      # the earlier epochs' log lines, for the validation curves: the source's own
      # earlier epochs, the logs run.sh rotated on a rerun (train.<n>.log, older for
      # larger n), then its train.log
      earlier_logs "${src}" > "${dst}/train.before_resume.log"
    fi
  done
  local/run_tts_experiment.sh --prep false --parallel 1 --systems "${sys}" --seeds "${seeds}" \
    --test_sets "${test_sets}" --tag "ep${epochs}" --asr_args "${asr_args} --max_epoch ${epochs}"
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
      --seeds "${seeds}" --test_sets "${test_sets}" ${grid:+--grid "${grid}"} \
      ${asr_args:+--asr_args "${asr_args}"} || die "sweep '${job}' failed: see tts/exp/sweep_tts_*.log"
  done
}

if [ -n "${jobs}" ]; then
  IFS=';' read -ra own <<<"${jobs}"
  own=("${own[@]# }")
  run_queue "${own[@]}"
  log "done: tts/RESULTS.md, tts/exp/sweep_tts_*/sweep.md"
  exit 0
fi
pids=()
for q in ${queues}; do
  case "${q}" in
    a) run_queue "${queue_a[@]}" & ;;
    b) run_queue "${queue_b[@]}" & ;;
    c) run_queue "${queue_c[@]}" & ;;
    d) run_queue "${queue_d[@]}" & ;;
    e) run_queue "${queue_e[@]}" & ;;
    f) run_queue "${queue_f[@]}" & ;;
    *) die "unknown queue ${q} (a to f)" ;;
  esac
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "${pid}"; done
log "done: tts/RESULTS.md, tts/exp/sweep_tts_*/sweep.md"
