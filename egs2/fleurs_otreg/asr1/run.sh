#!/usr/bin/env bash
# FLEURS multilingual ASR with a speech-LLM (Whisper encoder -> projector -> LLM),
# with and without OT regularisation (OTReg, arXiv 2508.08131).
#
#   ./run.sh                                   # all stages, default languages, OTReg
#   ./run.sh --asr_config conf/train_slm_base.yaml --stage 11   # baseline: base SLM
#   ./run.sh --asr_config conf/train_slm_ctc.yaml  --stage 11   # baseline: + CTC
#   ./run.sh --mini true                       # every stage on a tiny synthetic corpus (CPU),
#                                              # everything under mini/ (incl. mini/RESULTS.md)
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
#   12 decode every test set (--test_sets; batched, --inference_nj parallel jobs, GPU optional)
#   13 score: WER (CER over grapheme clusters for zh/ja/th/lo/my/km) per language, in-
#      and cross-domain, per test set; modality-gap report per test set; RESULTS.md
#      from everything under exp/
#   14 pack the model (ESPnet zip)
#   16 model-zoo folder + model card (exp/slm_<tag>/hf_<tag>); uploaded only with
#      --skip_upload_hf false --hf_repo <user>/<name> (token: $HF_TOKEN)
#
# Every stage can be run again: finished work is kept or resumed. Logs go to stderr.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh   # PYTHON, and the shared stage library (log, die, run_jobs, run_training)

# ----------------------------------------------------------------------------- options
# (every variable below can be set as --name value)
stage=1
stop_stage=16
mini=false            # true: tiny synthetic corpus + tiny models, CPU; all under mini/
cmd=local             # job backend of run_jobs / run_training: local or slurm
slurm_opts=           # --cmd slurm: sbatch options, e.g. "--partition gpu --time 1-00:00:00"
nj=4                  # parallel jobs for data stages and stats
inference_nj=4        # parallel decoding jobs (CPU); use 1 per GPU with --gpu_inference
ngpu=auto             # GPUs for training (auto: 1 if nvidia-smi sees one, else 0;
                      # >1: DistributedDataParallel on this node)
gpu_inference=false   # decode on GPU (one per job)
langs=default         # "default", "all" (102) or FLEURS codes: "en_us fr_fr cmn_hans_cn"
fleurs_dir=           # local FLEURS copy (FLEURS layout); empty: download from the Hub
fleurs_source=parquet # Hub route: parquet (refs/convert/parquet) or archive (tsv+tar.gz)
download_dir=downloads/fleurs
hf_cache_dir=         # huggingface_hub cache for the downloaded shards (default: HF_HOME)
cross_dir=            # Common Voice copy for the cross-domain test (see README.md)
covost_dir=           # CoVoST-2 tsv files (take their test split); optional
cross_name=test_covost2 # stage 1's name for the cross-domain set of --cross_dir/--covost_dir
test_sets=            # decoded, scored, in RESULTS.md (first: in-domain) and each given a
                      # modality-gap report; any number of data dirs under ${datadir}
                      # (empty: test, plus ${cross_name} when there is one)
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
phase1_tag=           # exp/slm_<phase1_tag>; default: the phase-1 config's name (one per
                      # seed when phase 1 is seeded too: --asr_args "--seed 1")
inference_asr_model=valid.acc.ave.pth
asr_tag=              # exp/slm_<asr_tag>; default: the config's name
asr_args=             # extra options for slm_train (as asr.sh's --asr_args; e.g. multi-node)
inference_args=       # extra arguments for slm_inference
batch_size=16         # decoding batch size
modality_gap=true     # stage 13: also the modality-gap report
modality_gap_args=    # e.g. "--ot_cost sqeuclidean": every model measured with one OT setting
english_normalizer=basic  # stage 13: basic, or whisper (Whisper's EnglishTextNormalizer for en_*)
datadir=data
dumpdir=dump
expdir=exp
results_md=           # stage 13 table (default: RESULTS.md; mini/RESULTS.md with --mini)
skip_upload_hf=true   # stage 16: false uploads the folder to --hf_repo
hf_repo=              # e.g. your-name/fleurs_otreg_slm (token: $HF_TOKEN only)
hf_public=false       # create the Hub repository public (default: private)

sweep=                    # model_conf grid "k=v1,v2 k2=..." over --sweep_seeds (stages 11-13)
sweep_seeds=0
sweep_jobs=1               # sweep runs at a time (each on its own --ngpu GPUs)
parse_options "$@"

mini_dir=mini   # not an option: conf/mini/*.yaml read their tiny models from here
if is_true "${mini}"; then
    # A tiny corpus in the FLEURS layout with a Common-Voice-layout cross-domain set,
    # tiny models built offline in stage 5, CPU only. Everything under ${mini_dir}/
    # (corpus, data, dump, exp, RESULTS.md): the committed RESULTS.md is never touched.
    fleurs_dir=${mini_dir}/downloads/fleurs
    cross_dir=${mini_dir}/downloads/fleurs/common_voice
    datadir=${mini_dir}/data; dumpdir=${mini_dir}/dump; expdir=${mini_dir}/exp
    langs="en_us de_de"
    phase1_config=conf/mini/train_slm_phase1.yaml
    [[ "${asr_config}" = conf/mini/* ]] || asr_config=conf/mini/$(basename "${asr_config}")
    inference_config=conf/mini/decode_slm.yaml
    ngpu=0; gpu_inference=false; audio_format=wav
    nj=$(( nj > 2 ? 2 : nj )); inference_nj=$(( inference_nj > 2 ? 2 : inference_nj ))
fi
ngpu=$(resolve_ngpu "${ngpu}")
_results_md=RESULTS.md; dataset_name=FLEURS; hf_dataset=google/fleurs
if is_true "${mini}"; then
    _results_md="${mini_dir}/RESULTS.md"; dataset_name="FLEURS mini (synthetic)"; hf_dataset=
fi
results_md=${results_md:-${_results_md}}

train_set=train
valid_set=dev
if [ -z "${test_sets}" ]; then
    test_sets=test
    if [ -n "${cross_dir}" ] || [ -f "${datadir}/${cross_name}/wav.scp" ]; then
        test_sets="${test_sets} ${cross_name}"
    fi
fi
[ -n "${phase1_tag}" ] || phase1_tag=$(basename "${phase1_config}" .yaml)
[ -n "${asr_tag}" ] || asr_tag=$(basename "${asr_config}" .yaml)
phase1_exp=${expdir}/slm_${phase1_tag}
asr_exp=${expdir}/slm_${asr_tag}
inference_tag=$(inference_tag "${inference_config}" "${inference_asr_model}")
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

# ------------------------------------------------------------------------------ stages
if stage_on 1; then
    log "Stage 1: data preparation (langs: ${langs}) -> ${datadir}"
    if is_true "${mini}"; then
        "${PYTHON}" local/make_mini_corpus.py "${fleurs_dir}"
    fi
    "${PYTHON}" local/data_prep.py --langs "${langs}" --fleurs_dir "${fleurs_dir}" \
        --download_dir "${download_dir}" --fleurs_source "${fleurs_source}" \
        ${hf_cache_dir:+--hf_cache_dir "${hf_cache_dir}"} --data_dir "${datadir}" \
        --transcript "${transcript}" --on_error "${on_error}" \
        --cross_dir "${cross_dir}" --covost_dir "${covost_dir}" --cross_name "${cross_name}"
fi

if stage_on 2; then
    log "Stage 2: speed perturbation is not used in this recipe (the paper trains without it); nothing to do"
fi

if stage_on 3; then
    format_sets --datadir "${datadir}" --dumpdir "${data_feats}" --fs "${fs}" \
        --audio_format "${audio_format}" --nj "${nj}" --skip_bad_audio "${skip_bad_audio}" \
        --train_sets "${train_set} ${valid_set}" --test_sets "${test_sets}"
fi

if stage_on 4; then
    # No CTC length check (--frame_samples 0): the speech-LLM decodes autoregressively.
    filter_sets --dumpdir "${data_feats}" --sets "${train_set} ${valid_set}" --fs "${fs}" \
        --min_wav_duration "${min_wav_duration}" --max_wav_duration "${max_wav_duration}" \
        --max_text_len "${max_text_len}" --frame_samples 0
fi

if stage_on 5; then
    if is_true "${mini}"; then
        log "Stage 5: build the tiny LLM (tokenizer trained on the mini transcripts) and tiny Whisper"
        "${PYTHON}" local/build_mini_models.py --text "${data_feats}/${train_set}/text" \
            --out_dir "${expdir}/mini_models"
    fi
    log "Stage 5: tokenizer: the LLM's own (from ${phase1_config}); checking the transcripts"
    "${PYTHON}" local/check_tokenizer.py --config "${phase1_config}" \
        --data_dirs "${data_feats}/${train_set}" "${data_feats}/${valid_set}" \
        --out "${data_feats}/${train_set}/token_stats.md"
fi

if stage_on 10; then
    need_slm slm_train
    logdir=${stats_dir}/logdir
    log "Stage 10: collect stats (up to ${nj} jobs) -> ${stats_dir}"
    # shellcheck disable=SC2046
    run_jobs --cmd "${cmd}" --slurm_opts "${slurm_opts}" --nj "${nj}" --name "collect stats" \
        --split "${data_feats}/${train_set}/wav.scp" "${logdir}/${train_set}.JOB.scp" \
        --split "${data_feats}/${valid_set}/wav.scp" "${logdir}/${valid_set}.JOB.scp" \
        --log "${logdir}/stats.JOB.log" -- \
        "${PYTHON}" -m espnet_otreg.bin.slm_train --collect_stats true --config "${phase1_config}" \
            --ngpu 0 --num_workers 0 \
            $(data_args train "${data_feats}/${train_set}") $(data_args valid "${data_feats}/${valid_set}") \
            --train_shape_file "${logdir}/${train_set}.JOB.scp" \
            --valid_shape_file "${logdir}/${valid_set}.JOB.scp" \
            --output_dir "${logdir}/stats.JOB"
    aggregate_stats "${logdir}" "${RUN_JOBS_NJ}" "${stats_dir}"
fi

train_one() {  # $1: config, $2: exp dir, $3...: extra args
    local config=$1 dir=$2; shift 2
    log "training ${dir} with ${config} (log: ${dir}/train.log; interrupted runs resume)"
    # shellcheck disable=SC2046,SC2086
    run_training --cmd "${cmd}" --slurm_opts "${slurm_opts}" --ngpu "${ngpu}" "${dir}/train.log" -- \
        "${PYTHON}" -m espnet_otreg.bin.slm_train --config "${config}" --ngpu "${ngpu}" \
        $( [ "${ngpu}" -gt 1 ] && echo --multiprocessing_distributed true ) \
        $(data_args train "${data_feats}/${train_set}") $(data_args valid "${data_feats}/${valid_set}") \
        --train_shape_file "${stats_dir}/train/speech_shape" \
        --valid_shape_file "${stats_dir}/valid/speech_shape" \
        --resume true --output_dir "${dir}" "$@" ${asr_args}
}

if [ -n "${sweep}" ] && stage_on 11; then
  run_sweep --config "${asr_config}" --expdir "${expdir}" --results_md "${results_md}" \
    --grid "${sweep}" --seeds "${sweep_seeds}" --jobs "${sweep_jobs}" --ngpu "${ngpu}" \
    --stop_stage "${stop_stage}" --sets "${test_sets}" -- "$@"
  exit 0
fi

if stage_on 11; then
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

if stage_on 12; then
    need_slm slm_inference
    model=${asr_exp}/${inference_asr_model}
    [ -e "${model}" ] || die "no model ${model} (train first: stage 11); have: $(ls "${asr_exp}"/*.pth 2>/dev/null | tr '\n' ' ')"
    _ngpu=0; is_true "${gpu_inference}" && _ngpu=1
    for dset in ${test_sets}; do
        dir=${asr_exp}/${inference_tag}/${dset}
        logdir=${dir}/logdir
        log "Stage 12: decoding ${dset} (up to ${inference_nj} jobs) -> ${dir}/text"
        # A finished job (its output covers its keys) is not run again.
        # shellcheck disable=SC2086
        run_jobs --cmd "${cmd}" --slurm_opts "${slurm_opts}" --nj "${inference_nj}" --gpu "${gpu_inference}" --name "decode ${dset}" \
            --split "${data_feats}/${dset}/wav.scp" "${logdir}/keys.JOB.scp" \
            --log "${logdir}/decode.JOB.log" --skip_done "${logdir}/output.JOB/text" \
            --merge "${logdir}/output.JOB/text" "${dir}/text" -- \
            "${PYTHON}" -m espnet_otreg.bin.slm_inference --slm_train_config "${asr_exp}/config.yaml" \
                --slm_model_file "${model}" --config "${inference_config}" \
                --data_path_and_name_and_type "${data_feats}/${dset}/wav.scp,speech,sound" \
                --data_path_and_name_and_type "${data_feats}/${dset}/utt2lang,lang,text" \
                --key_file "${logdir}/keys.JOB.scp" --batch_size "${batch_size}" --ngpu "${_ngpu}" \
                --output_dir "${logdir}/output.JOB" ${inference_args}
    done
fi

if stage_on 13; then
    for dset in ${test_sets}; do
        dir=${asr_exp}/${inference_tag}/${dset}
        [ -f "${dir}/text" ] || die "no hypotheses ${dir}/text (decode first: stage 12)"
        log "Stage 13: scoring ${dset}"
        "${PYTHON}" local/score.py --data_dir "${data_feats}/${dset}" --hyp "${dir}/text" \
            --out_dir "${dir}/score" --english_normalizer "${english_normalizer}" >&2
        if is_true "${modality_gap}"; then
            need_slm modality_gap
            log "Stage 13: modality gap on ${dset} -> ${asr_exp}/modality_gap/${dset}"
            "${PYTHON}" -m espnet_otreg.bin.modality_gap --slm_train_config "${asr_exp}/config.yaml" \
                --slm_model_file "${asr_exp}/${inference_asr_model}" --data_dir "${data_feats}/${dset}" \
                --output_dir "${asr_exp}/modality_gap/${dset}" ${modality_gap_args} \
                > "${asr_exp}/modality_gap_${dset}.log" 2>&1 \
                || { tail -5 "${asr_exp}/modality_gap_${dset}.log" >&2; die "modality gap failed: see ${asr_exp}/modality_gap_${dset}.log"; }
        fi
    done
    log "Stage 13: RESULTS.md from ${expdir}/ -> ${results_md}"
    suffix=""; is_true "${mini}" && suffix="(mini synthetic corpus, tiny models: a CI check, not FLEURS)"
    "${PYTHON}" local/make_results.py --exp_dir "${expdir}" --out "${results_md}" \
        --test_sets ${test_sets} --title_suffix "${suffix}" \
        --dataset_name "${dataset_name}" --dataset_id "${hf_dataset}" >&2
fi

packed=${asr_exp}/$(basename "${asr_exp}")_packed.zip
if stage_on 14; then
    log "Stage 14: pack ${asr_exp} -> ${packed}"
    "${PYTHON}" local/pack.py --exp_dir "${asr_exp}" --model "${inference_asr_model}" \
        --results "${results_md}" --out "${packed}" >&2
fi

hf_dir=${asr_exp}/hf_${asr_tag}
if stage_on 16; then
    log "Stage 16: model-zoo folder + model card -> ${hf_dir}"
    base_models=$("${PYTHON}" -c 'import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
print(" ".join(m for m in ((c.get("encoder_conf") or {}).get("model_name_or_path"),
                          (c.get("llm_conf") or {}).get("model_name_or_path"))
               if m and not m.startswith(("/", ".", "mini/", "exp/"))))' "${asr_config}")
    # shellcheck disable=SC2086
    "${PYTHON}" -m espnet_otreg.recipe.zoo prepare --packed "${packed}" --out "${hf_dir}" \
        --results "${results_md}" --repo "${hf_repo:-<user>/<name>}" --kind slm \
        --language $(echo "${langs}" | tr ' ' '\n' | sed 's/_.*//' | sort -u | grep -v '^default$\|^all$' | tr '\n' ' ') \
        --dataset ${hf_dataset} --license apache-2.0 --base_model ${base_models} \
        --model_name "FLEURS speech-LLM (${asr_tag}, espnet-otreg)" \
        --description "A speech-LLM (Whisper encoder, projector, LLM with LoRA) trained on FLEURS with the ESPnet recipe egs2/fleurs_otreg/asr1 of espnet-otreg (config ${asr_config}; OTReg: arXiv 2508.08131). The frozen base models are named (and pinned by revision) in the config." >&2
    upload_model_zoo "${skip_upload_hf}" "${hf_dir}" "${hf_repo}" "${hf_public}"
fi

log "Successfully finished stages ${stage}-${stop_stage}"
