#!/usr/bin/env bash
# FLEURS multilingual ASR with a speech-LLM (Whisper encoder -> projector -> LLM),
# with and without OT regularisation (OTReg, arXiv 2508.08131).
#
#   ./run.sh                                   # all stages, default languages, OTReg
#   ./run.sh --asr_config conf/train_slm_base.yaml --stage 11   # baseline: base SLM
#   ./run.sh --asr_config conf/train_slm_ctc.yaml  --stage 11   # baseline: + CTC
#   ./run.sh --mini true                       # every stage on a tiny synthetic corpus (CPU)
#
# Stages (ESPnet's numbers):
#   1  data: FLEURS -> data/{train,dev,test} (+ data/test_covost2 with --cross_dir)
#   2  speed perturbation: not used (the paper trains without it)
#   3  format audio -> dump/raw/<set> (16 kHz, every file checked)
#   4  filter train/dev by duration and transcript length (counts reported)
#   5  tokenizer: the LLM's own; check every transcript tokenises, report lengths
#   10 collect stats (shapes) with the phase-1 config
#   11 train: phase 1 (CE, projector only; shared by all systems), then phase 2 with
#      --asr_config (base / + CTC / + OTReg), initialised from phase 1
#   12 decode every test set (batched, --inference_nj parallel jobs, GPU optional)
#   13 score: WER (CER for zh/ja/th/lo/my/km) per language, in- and cross-domain;
#      modality-gap report; RESULTS.md from everything under exp/
#   14 pack the model (ESPnet zip)
#   16 upload to Hugging Face (only with --skip_upload_hf false and --hf_repo)
set -euo pipefail
# Ctrl-C or kill also stops the background collect-stats and decoding jobs.
trap 'trap - INT TERM; _bg=$(jobs -p); [ -z "${_bg}" ] || kill ${_bg} 2>/dev/null; exit 130' INT TERM

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (run.sh:${BASH_LINENO[0]}) $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---- options (every variable below can be set as --name value) -------------------
stage=1
stop_stage=100
mini=false            # true: tiny synthetic corpus + tiny models, CPU, a few minutes
nj=4                  # parallel jobs for data stages and stats
inference_nj=4        # parallel decoding jobs (CPU); use 1 per GPU with --gpu_inference
ngpu=1                # GPUs for training (>1: DistributedDataParallel on this node)
gpu_inference=false   # decode on GPU (one per job)
langs=default         # "default", "all" (102) or FLEURS codes: "en_us fr_fr cmn_hans_cn"
fleurs_dir=           # local FLEURS copy (FLEURS layout); empty: download from the Hub
fleurs_source=parquet # Hub route: parquet (refs/convert/parquet) or archive (tsv+tar.gz)
download_dir=downloads/fleurs
hf_cache_dir=         # huggingface_hub cache for the downloaded shards (default: HF_HOME)
cross_dir=            # Common Voice copy for the cross-domain test (see README.md)
covost_dir=           # CoVoST-2 tsv files (take their test split); optional
cross_name=test_covost2
transcript=raw        # raw (cased, punctuated) or normalized FLEURS transcripts
on_error=raise        # bad utterance in the source data: raise, or skip (and list it)
skip_bad_audio=false  # stage 3: unreadable audio stops the stage unless true
audio_format=flac
fs=16000
min_wav_duration=0.1
max_wav_duration=30   # Whisper's window
max_text_len=0        # characters, 0 = no limit
phase1_config=conf/train_slm_phase1.yaml
asr_config=conf/train_slm_otreg.yaml   # phase 2: picks the system
inference_config=conf/decode_slm.yaml
phase1_model=valid.acc.ave.pth        # phase-1 checkpoint phase 2 starts from
inference_model=valid.acc.ave.pth
asr_tag=              # exp/slm_<asr_tag>; default: the config's name
train_args=           # extra arguments for slm_train (e.g. multi-node settings)
inference_args=       # extra arguments for slm_inference
batch_size=16         # decoding batch size
modality_gap=true     # stage 13: also the modality-gap report
expdir=exp
dumpdir=dump
skip_upload_hf=true
hf_repo=              # e.g. your-name/fleurs_otreg_slm (token: HF_TOKEN env only)

while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h) sed -n '2,24p' "$0"; exit 0 ;;
        --*=*) name="${1%%=*}"; name="${name#--}"; value="${1#*=}"; shift ;;
        --*) name="${1#--}"; [ $# -ge 2 ] || die "option --${name} needs a value"; value="$2"; shift 2 ;;
        *) die "unexpected argument: $1 (options are --name value)" ;;
    esac
    name="${name//-/_}"
    declare -p "${name}" >/dev/null 2>&1 || die "unknown option --${name}"
    printf -v "${name}" '%s' "${value}"
done

cd "$(dirname "$0")"
. ./path.sh

if [ "${mini}" = true ]; then
    # A tiny corpus in the FLEURS layout with a Common-Voice-layout cross-domain set,
    # tiny models built offline in stage 5, CPU only.
    fleurs_dir=downloads/mini
    cross_dir=downloads/mini/common_voice
    langs="en_us de_de"
    phase1_config=conf/mini/train_slm_phase1.yaml
    [[ "${asr_config}" = conf/mini/* ]] || asr_config=conf/mini/$(basename "${asr_config}")
    inference_config=conf/mini/decode_slm.yaml
    ngpu=0; gpu_inference=false; audio_format=wav
    nj=$(( nj > 2 ? 2 : nj )); inference_nj=$(( inference_nj > 2 ? 2 : inference_nj ))
fi

train_set=train
valid_set=dev
test_sets=test
if [ -n "${cross_dir}" ] || [ -f "data/${cross_name}/wav.scp" ]; then
    test_sets="${test_sets} ${cross_name}"
fi
phase1_tag=$(basename "${phase1_config}" .yaml)
[ -n "${asr_tag}" ] || asr_tag=$(basename "${asr_config}" .yaml)
phase1_exp=${expdir}/slm_${phase1_tag}
asr_exp=${expdir}/slm_${asr_tag}
inference_tag=decode_$(basename "${inference_config}" .yaml)_$(basename "${inference_model}" .pth)
stats_dir=${expdir}/slm_stats
data_feats=${dumpdir}/raw

need_slm() {  # fail early and clearly when an entry point of the SLM is absent (broken install)
    "${PYTHON}" -c "import importlib.util as u, sys; sys.exit(u.find_spec('espnet_otreg.bin.$1') is None)" \
        || die "entry point espnet_otreg.bin.$1 is missing: this stage needs the OTReg speech-LLM (pip install -e the repository)"
}

# Data options shared by collect-stats and training: speech, transcript, language.
data_args() {  # $1: train|valid, $2: data dir
    echo "--$1_data_path_and_name_and_type $2/wav.scp,speech,sound" \
         "--$1_data_path_and_name_and_type $2/text,text,text" \
         "--$1_data_path_and_name_and_type $2/utt2lang,lang,text"
}

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    log "Stage 1: data preparation (langs: ${langs})"
    if [ "${mini}" = true ]; then
        "${PYTHON}" local/make_mini_corpus.py "${fleurs_dir}"
    fi
    "${PYTHON}" local/data_prep.py --langs "${langs}" --fleurs_dir "${fleurs_dir}" \
        --download_dir "${download_dir}" --fleurs_source "${fleurs_source}" \
        ${hf_cache_dir:+--hf_cache_dir "${hf_cache_dir}"} --data_dir data \
        --transcript "${transcript}" --on_error "${on_error}" \
        --cross_dir "${cross_dir}" --covost_dir "${covost_dir}" --cross_name "${cross_name}"
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    log "Stage 2: speed perturbation is not used in this recipe (the paper trains without it); nothing to do"
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
    for dset in ${train_set} ${valid_set} ${test_sets}; do
        log "Stage 3: format audio: data/${dset} -> ${data_feats}/org/${dset}"
        "${PYTHON}" local/format_data.py --step format --src "data/${dset}" \
            --dst "${data_feats}/org/${dset}" --fs "${fs}" --audio_format "${audio_format}" \
            --nj "${nj}" --skip_bad_audio "${skip_bad_audio}"
    done
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    for dset in ${train_set} ${valid_set}; do
        log "Stage 4: filter ${data_feats}/org/${dset} -> ${data_feats}/${dset}"
        "${PYTHON}" local/format_data.py --step filter --src "${data_feats}/org/${dset}" \
            --dst "${data_feats}/${dset}" --fs "${fs}" --min_wav_duration "${min_wav_duration}" \
            --max_wav_duration "${max_wav_duration}" --max_text_len "${max_text_len}"
    done
    for dset in ${test_sets}; do
        log "Stage 4: ${dset} is a test set: copied unfiltered"
        rm -rf "${data_feats:?}/${dset}"
        cp -r "${data_feats}/org/${dset}" "${data_feats}/${dset}"
    done
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    if [ "${mini}" = true ]; then
        log "Stage 5: build the tiny LLM (tokenizer trained on the mini transcripts) and tiny Whisper"
        "${PYTHON}" local/build_mini_models.py --text "${data_feats}/${train_set}/text" \
            --out_dir "${expdir}/mini_models"
    fi
    log "Stage 5: tokenizer: the LLM's own (from ${phase1_config}); checking the transcripts"
    "${PYTHON}" local/check_tokenizer.py --config "${phase1_config}" \
        --data_dirs "${data_feats}/${train_set}" "${data_feats}/${valid_set}" \
        --out "${data_feats}/${train_set}/token_stats.md"
fi

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
    need_slm slm_train
    logdir=${stats_dir}/logdir
    mkdir -p "${logdir}"
    # One key list per job, as ESPnet's asr.sh; the jobs run in the background. No more
    # jobs than utterances in either set (every job needs both).
    _nj=${nj}
    for dset in ${train_set} ${valid_set}; do
        n_utt=$(wc -l < "${data_feats}/${dset}/wav.scp"); _nj=$(( n_utt < _nj ? n_utt : _nj ))
    done
    log "Stage 10: collect stats (${_nj} jobs) -> ${stats_dir}"
    for dset in ${train_set} ${valid_set}; do
        "${PYTHON}" -c "import sys; from espnet_otreg.data.datadir import split_scp
split_scp(sys.argv[1], [f'{sys.argv[2]}/{sys.argv[3]}.{i}.scp' for i in range(1, int(sys.argv[4]) + 1)])" \
            "${data_feats}/${dset}/wav.scp" "${logdir}" "${dset}" "${_nj}"
    done
    pids=()
    for n in $(seq "${_nj}"); do
        "${PYTHON}" -m espnet_otreg.bin.slm_train --collect_stats true --config "${phase1_config}" \
            --ngpu 0 --num_workers 0 \
            $(data_args train "${data_feats}/${train_set}") $(data_args valid "${data_feats}/${valid_set}") \
            --train_shape_file "${logdir}/${train_set}.${n}.scp" \
            --valid_shape_file "${logdir}/${valid_set}.${n}.scp" \
            --output_dir "${logdir}/stats.${n}" > "${logdir}/stats.${n}.log" 2>&1 &
        pids+=($!)
    done
    failed=0
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { failed=1; log "collect-stats job $((i + 1)) failed: see ${logdir}/stats.$((i + 1)).log"; tail -5 "${logdir}/stats.$((i + 1)).log" >&2; }
    done
    [ ${failed} -eq 0 ] || die "stage 10 failed"
    inputs=()
    for n in $(seq "${_nj}"); do inputs+=(--input_dir "${logdir}/stats.${n}"); done
    "${PYTHON}" -m espnet2.bin.aggregate_stats_dirs "${inputs[@]}" --output_dir "${stats_dir}" \
        > "${logdir}/aggregate.log" 2>&1 || die "aggregating stats failed: see ${logdir}/aggregate.log"
fi

train_one() {  # $1: config, $2: exp dir, $3...: extra args
    local config=$1 dir=$2; shift 2
    mkdir -p "${dir}"
    if [ -e "${dir}/train.log" ]; then  # a rerun resumes; keep the earlier log
        n=1; while [ -e "${dir}/train.${n}.log" ]; do n=$((n + 1)); done
        mv "${dir}/train.log" "${dir}/train.${n}.log"
    fi
    log "training ${dir} with ${config} (log: ${dir}/train.log; interrupted runs resume)"
    # shellcheck disable=SC2086
    "${PYTHON}" -m espnet_otreg.bin.slm_train --config "${config}" --ngpu "${ngpu}" \
        $( [ "${ngpu}" -gt 1 ] && echo --multiprocessing_distributed true ) \
        $(data_args train "${data_feats}/${train_set}") $(data_args valid "${data_feats}/${valid_set}") \
        --train_shape_file "${stats_dir}/train/speech_shape" \
        --valid_shape_file "${stats_dir}/valid/speech_shape" \
        --resume true --output_dir "${dir}" "$@" ${train_args} > "${dir}/train.log" 2>&1 \
        || { tail -20 "${dir}/train.log" >&2; die "training ${dir} failed: see ${dir}/train.log"; }
}

if [ ${stage} -le 11 ] && [ ${stop_stage} -ge 11 ]; then
    need_slm slm_train
    if [ -e "${phase1_exp}/${phase1_model}" ]; then
        log "Stage 11: phase 1 done (${phase1_exp}/${phase1_model} exists); shared by every system"
    else
        log "Stage 11: phase 1 (CE, projector only) -> ${phase1_exp}"
        train_one "${phase1_config}" "${phase1_exp}"
        [ -e "${phase1_exp}/${phase1_model}" ] || die "phase 1 finished without ${phase1_exp}/${phase1_model}: $(ls "${phase1_exp}"/*.pth 2>/dev/null | tr '\n' ' ')"
    fi
    log "Stage 11: phase 2 (${asr_config}) from ${phase1_exp}/${phase1_model} -> ${asr_exp}"
    train_one "${asr_config}" "${asr_exp}" --init_param "${phase1_exp}/${phase1_model}"
fi

if [ ${stage} -le 12 ] && [ ${stop_stage} -ge 12 ]; then
    need_slm slm_inference
    model=${asr_exp}/${inference_model}
    [ -e "${model}" ] || die "no model ${model} (train first: stage 11); have: $(ls "${asr_exp}"/*.pth 2>/dev/null | tr '\n' ' ')"
    _ngpu=0; [ "${gpu_inference}" = true ] && _ngpu=1
    # The decoding config (beam_size, max_new_tokens, ...) as slm_inference options.
    decode_opts=$("${PYTHON}" -c "import sys, yaml
conf = yaml.safe_load(open(sys.argv[1])) or {}
print(' '.join(f'--{k} {v}' for k, v in conf.items()))" "${inference_config}")
    for dset in ${test_sets}; do
        dir=${asr_exp}/${inference_tag}/${dset}
        logdir=${dir}/logdir
        mkdir -p "${logdir}"
        log "Stage 12: decoding ${dset} (${inference_nj} jobs) -> ${dir}/text"
        "${PYTHON}" -c "import sys; from espnet_otreg.data.datadir import split_scp
split_scp(sys.argv[1], [f'{sys.argv[2]}/keys.{i}.scp' for i in range(1, int(sys.argv[3]) + 1)])" \
            "${data_feats}/${dset}/wav.scp" "${logdir}" "${inference_nj}"
        pids=(); jobs_=()
        for n in $(seq "${inference_nj}"); do
            [ -s "${logdir}/keys.${n}.scp" ] || continue
            jobs_+=("${n}")
            # A finished job (its output covers its keys) is not run again.
            if [ -f "${logdir}/output.${n}/text" ] && \
               [ "$(wc -l < "${logdir}/output.${n}/text")" -eq "$(wc -l < "${logdir}/keys.${n}.scp")" ]; then
                continue
            fi
            # GPU decoding: job n uses GPU (n-1) mod (the GPUs nvidia-smi lists).
            gpu_env=()
            if [ "${_ngpu}" -ne 0 ]; then
                _n_gpus=$(nvidia-smi -L 2>/dev/null | wc -l); [ "${_n_gpus}" -gt 0 ] || _n_gpus=1
                gpu_env=(env CUDA_VISIBLE_DEVICES=$(( (n - 1) % _n_gpus )))
            fi
            # shellcheck disable=SC2086
            "${gpu_env[@]}" "${PYTHON}" -m espnet_otreg.bin.slm_inference --slm_train_config "${asr_exp}/config.yaml" \
                --slm_model_file "${model}" ${decode_opts} \
                --data_path_and_name_and_type "${data_feats}/${dset}/wav.scp,speech,sound" \
                --data_path_and_name_and_type "${data_feats}/${dset}/utt2lang,lang,text" \
                --key_file "${logdir}/keys.${n}.scp" --batch_size "${batch_size}" --ngpu "${_ngpu}" \
                --output_dir "${logdir}/output.${n}" ${inference_args} > "${logdir}/decode.${n}.log" 2>&1 &
            pids+=($!)
        done
        failed=0
        for pid in "${pids[@]}"; do wait "${pid}" || failed=1; done
        [ ${failed} -eq 0 ] || die "decoding ${dset} failed: see ${logdir}/decode.*.log"
        parts=(); for n in "${jobs_[@]}"; do parts+=("${logdir}/output.${n}/text"); done
        "${PYTHON}" -c "import sys; from espnet_otreg.data.datadir import merge_kv; merge_kv(sys.argv[1], sys.argv[2:])" \
            "${dir}/text" "${parts[@]}"
    done
fi

if [ ${stage} -le 13 ] && [ ${stop_stage} -ge 13 ]; then
    for dset in ${test_sets}; do
        dir=${asr_exp}/${inference_tag}/${dset}
        [ -f "${dir}/text" ] || die "no hypotheses ${dir}/text (decode first: stage 12)"
        log "Stage 13: scoring ${dset}"
        "${PYTHON}" local/score.py --data_dir "${data_feats}/${dset}" --hyp "${dir}/text" --out_dir "${dir}/score"
        if [ "${modality_gap}" = true ]; then
            need_slm modality_gap
            log "Stage 13: modality gap on ${dset} -> ${asr_exp}/modality_gap/${dset}"
            "${PYTHON}" -m espnet_otreg.bin.modality_gap --slm_train_config "${asr_exp}/config.yaml" \
                --slm_model_file "${asr_exp}/${inference_model}" --data_dir "${data_feats}/${dset}" \
                --output_dir "${asr_exp}/modality_gap/${dset}" > "${asr_exp}/modality_gap_${dset}.log" 2>&1 \
                || { tail -5 "${asr_exp}/modality_gap_${dset}.log" >&2; die "modality gap failed: see ${asr_exp}/modality_gap_${dset}.log"; }
        fi
    done
    log "Stage 13: RESULTS.md from ${expdir}/"
    suffix=""; [ "${mini}" = false ] || suffix="(mini synthetic corpus, tiny models: a CI check, not FLEURS)"
    "${PYTHON}" local/make_results.py --exp_dir "${expdir}" --out RESULTS.md \
        --cross_name "${cross_name}" --title_suffix "${suffix}"
fi

packed=${asr_exp}/$(basename "${asr_exp}")_packed.zip
if [ ${stage} -le 14 ] && [ ${stop_stage} -ge 14 ]; then
    log "Stage 14: pack ${asr_exp} -> ${packed}"
    "${PYTHON}" local/pack.py --exp_dir "${asr_exp}" --model "${inference_model}" \
        --results RESULTS.md --out "${packed}"
fi

if [ ${stage} -le 16 ] && [ ${stop_stage} -ge 16 ]; then
    if [ "${skip_upload_hf}" = true ]; then
        log "Stage 16: upload skipped (--skip_upload_hf true)"
    else
        [ -n "${hf_repo}" ] || die "stage 16 needs --hf_repo <user>/<name>"
        log "Stage 16: upload ${packed} to https://huggingface.co/${hf_repo} (token from HF_TOKEN)"
        "${PYTHON}" local/upload_hf.py --packed "${packed}" --repo "${hf_repo}"
    fi
fi

log "Successfully finished stages ${stage}-${stop_stage}"
