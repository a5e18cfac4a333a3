#!/usr/bin/env bash
# AISHELL-1 Conformer-CTC with GM-OT distillation of a BERT teacher (arXiv 2505.13079).
#
# ESPnet's egs2 asr.sh stages, needing only pip-installed packages (no Kaldi, no ESPnet
# checkout; sox/sclite are used when present, with Python fallbacks):
#   1 data (download openslr 33 or --aishell_dir)   2 speed perturbation (train)
#   3 format audio (dump/raw)   4 filter   5 char token list   6 teacher features
#   10 collect stats   11 train   12 decode (CTC greedy, CTC beam)   13 score CER
#   14 pack: the GM-OT model and its stock-ESPnet CTC export (one zip each)
#   15 check: the export zip decodes through Speech2Text.from_pretrained, no espnet_otreg
#   16 model-zoo folder + model card; upload with --skip_upload_hf false --hf_repo
#
#   ./run.sh                                   # everything (GM-OT, conf/train_asr_gmot.yaml)
#   ./run.sh --asr_config conf/train_asr_ctc_conformer.yaml   # the CTC baseline
#   ./run.sh --stage 12 --stop_stage 13 --inference_nj 16     # decode + score again
#   ./run.sh --mini true                       # tiny synthetic corpus, CPU, all under mini/
#
# Every stage can be run again: finished work is detected and skipped (the log says so);
# training resumes from its last checkpoint. Logs go to stderr.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh   # PYTHON, and the shared stage library (log, die, run_jobs, run_training)

# ----------------------------------------------------------------------------- options
stage=1
stop_stage=16
mini=false                # true: synthetic mini corpus + tiny configs, all under mini/
cmd=local                 # job backend of run_jobs / run_training: local or slurm
slurm_opts=               # --cmd slurm: sbatch options, e.g. "--partition gpu --time 1-00:00:00"
nj=8                      # parallel jobs for data preparation and collect-stats
inference_nj=8            # parallel decoding jobs
ngpu=auto                 # GPUs for training (auto: 1 if nvidia-smi sees one, else 0)
gpu_inference=false       # decode on GPU (one job per GPU, round robin)
num_nodes=1               # multi-node training: run this script on every node with
node_rank=0               #   --num_nodes K --node_rank r --master_addr A --master_port P
master_addr=
master_port=29500

aishell_dir=              # an extracted copy (the dir holding data_aishell/); else download
download_dir=downloads
url_base=https://www.openslr.org/resources/33
md5sums=                  # file of "<md5>  <archive>" overriding the published MD5s

datadir=data
dumpdir=dump
expdir=exp
speed_perturb_factors="0.9 1.0 1.1"
audio_format=flac
fs=16000
min_wav_duration=0.1
max_wav_duration=20
max_text_len=0            # characters; 0: no limit
skip_bad_audio=false      # stage 3: false = stop on unreadable audio, true = skip and list

asr_config=conf/train_asr_gmot.yaml
asr_tag=                  # default: the config's file name
asr_args=                 # extra training options, e.g. "--max_epoch 10"
inference_config="conf/decode_ctc_greedy.yaml conf/decode_ctc_beam.yaml"  # one or more
inference_asr_model=valid.cer_ctc.ave.pth
inference_args=
test_sets="dev test"      # decoded and scored sets
score_backend=auto        # stage 13: auto (sclite if installed), sclite or python
results_md=               # stage 13 table (default: RESULTS.md; mini/RESULTS.md with --mini)
check_export_utts=10      # stage 15: decode this many test utterances from the export zip
skip_upload_hf=true       # stage 16: false uploads the folder to --hf_repo
hf_repo=                  # <user>/<name> (token: $HF_TOKEN only)
hf_public=false           # create the Hub repository public (default: private)

train_set=train
valid_set=dev
sweep=                    # model_conf grid "k=v1,v2 k2=..." over --sweep_seeds (stages 11-13)
sweep_seeds=0
sweep_jobs=1               # sweep runs at a time (each on its own --ngpu GPUs)
parse_options "$@"

mini_dir=mini   # not an option: conf/mini/train_asr_gmot.yaml reads its teacher from here
if is_true "${mini}"; then
  # Everything under ${mini_dir}: the corpus archives (served as file:// URLs, so
  # stage 1 exercises download, MD5 check and extraction), data, dump, exp, RESULTS.md.
  corpus="${mini_dir}/corpus"
  "${PYTHON}" local/make_mini_corpus.py --out "${corpus}" --teacher
  url_base="file://$(cd "${corpus}" && pwd)"
  md5sums="${corpus}/md5sums"
  download_dir="${mini_dir}/downloads"
  datadir="${mini_dir}/data"; dumpdir="${mini_dir}/dump"; expdir="${mini_dir}/exp"
  case "${asr_config}" in conf/mini/*) ;; *) asr_config="conf/mini/$(basename "${asr_config}")" ;; esac
  inference_config=$(for c in ${inference_config}; do echo "conf/mini/$(basename "${c}")"; done)
  nj=$(( nj > 2 ? 2 : nj )); inference_nj=$(( inference_nj > 2 ? 2 : inference_nj ))
  ngpu=0; max_wav_duration=10
fi
dataset_name=AISHELL-1; hf_dataset=aishell; _results_md=RESULTS.md
if is_true "${mini}"; then
  _results_md="${mini_dir}/RESULTS.md"; dataset_name="AISHELL-1 mini (synthetic)"; hf_dataset=
fi
results_md=${results_md:-${_results_md}}

ngpu=$(resolve_ngpu "${ngpu}")
[ -n "${asr_tag}" ] || asr_tag="$(basename "${asr_config}" .yaml)"
token_list="${datadir}/token_list/char/tokens.txt"
asr_stats_dir="${expdir}/asr_stats_raw_zh_char_sp"
asr_exp="${expdir}/asr_${asr_tag}"
train_sp="${train_set}_sp"

[ -f "${asr_config}" ] || die "no such config: ${asr_config}"
# GM-OT with cached teacher features needs stage 6 and an extra data key.
read -r model_name teacher_source < <("${PYTHON}" -c '
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
print(c.get("model", "espnet"), (c.get("model_conf") or {}).get("teacher_source", "cache"))
' "${asr_config}")
use_teacher_cache=false
if [ "${model_name}" = gmot ] && [ "${teacher_source}" = cache ]; then use_teacher_cache=true; fi
log "config ${asr_config} (model ${model_name}, teacher cache ${use_teacher_cache}), exp ${asr_exp}, ngpu ${ngpu}"

# ------------------------------------------------------------------------------ stages
if stage_on 1; then
  log "Stage 1: AISHELL-1 -> ${datadir}/{train,dev,test}"
  "${PYTHON}" local/data.py --out "${datadir}" --download_dir "${download_dir}" \
    --url_base "${url_base}" ${aishell_dir:+--aishell_dir "${aishell_dir}"} \
    ${md5sums:+--md5sums "${md5sums}"}
fi

if stage_on 2; then
  log "Stage 2: speed perturbation ${speed_perturb_factors} -> ${datadir}/${train_sp}"
  "${PYTHON}" -m espnet_otreg.data.cli speed_perturb --src "${datadir}/${train_set}" \
    --dst "${datadir}/${train_sp}" --factors ${speed_perturb_factors}
fi

if stage_on 3; then
  format_sets --datadir "${datadir}" --dumpdir "${dumpdir}/raw" --fs "${fs}" \
    --audio_format "${audio_format}" --nj "${nj}" --skip_bad_audio "${skip_bad_audio}" \
    --train_sets "${train_sp} ${valid_set}" --test_sets "${test_sets}"
fi

if stage_on 4; then
  filter_sets --dumpdir "${dumpdir}/raw" --sets "${train_sp} ${valid_set}" --fs "${fs}" \
    --min_wav_duration "${min_wav_duration}" --max_wav_duration "${max_wav_duration}" \
    --max_text_len "${max_text_len}" --frame_samples 640  # CTC check: 4x subsampling, 10 ms hop
fi

if stage_on 5; then
  if [ -f "${token_list}" ]; then
    log "Stage 5: ${token_list} exists ($(wc -l <"${token_list}") tokens), keeping it"
  else
    log "Stage 5: character token list -> ${token_list}"
    mkdir -p "$(dirname "${token_list}")"
    "${PYTHON}" -m espnet2.bin.tokenize_text --token_type char --field 2- \
      --input "${dumpdir}/raw/${train_sp}/text" --output "${token_list}" \
      --non_linguistic_symbols none --cleaner none --g2p none --write_vocabulary true \
      --add_symbol "<blank>:0" --add_symbol "<unk>:1" --add_symbol "<sos/eos>:-1"
    log "Stage 5: $(wc -l <"${token_list}") tokens"
  fi
fi

if stage_on 6; then
  if "${use_teacher_cache}"; then
    log "Stage 6: teacher features (${asr_config}) -> ${dumpdir}/teacher"
    for dset in "${train_sp}" "${valid_set}"; do
      # dump_teacher itself skips a cache made by the same teacher and layer for the
      # same utterances, and redoes it when the config's teacher changed.
      "${PYTHON}" -m espnet_otreg.bin.dump_teacher --asr_config "${asr_config}" \
        --text "${dumpdir}/raw/${dset}/text" --output_dir "${dumpdir}/teacher/${dset}" \
        --ngpu "$([ "${ngpu}" -gt 0 ] && echo 1 || echo 0)"
    done
  else
    log "Stage 6: skipped (${asr_config} needs no cached teacher features)"
  fi
fi

# Data options shared by collect-stats and training (asr.sh's, for char tokens).
common_opts=(--use_preprocessor true --token_type char --token_list "${token_list}"
  --bpemodel none --non_linguistic_symbols none --cleaner none --g2p none
  --frontend_conf fs="${fs}")
train_data=(--train_data_path_and_name_and_type "${dumpdir}/raw/${train_sp}/wav.scp,speech,sound"
  --train_data_path_and_name_and_type "${dumpdir}/raw/${train_sp}/text,text,text")
valid_data=(--valid_data_path_and_name_and_type "${dumpdir}/raw/${valid_set}/wav.scp,speech,sound"
  --valid_data_path_and_name_and_type "${dumpdir}/raw/${valid_set}/text,text,text")

if stage_on 10; then
  if [ -f "${asr_stats_dir}/train/feats_stats.npz" ]; then
    log "Stage 10: ${asr_stats_dir} exists, keeping it"
  else
    log "Stage 10: collect stats (up to ${nj} jobs) -> ${asr_stats_dir}"
    _logdir="${asr_stats_dir}/logdir"
    run_jobs --cmd "${cmd}" --slurm_opts "${slurm_opts}" --nj "${nj}" --name "collect stats" \
      --split "${dumpdir}/raw/${train_sp}/wav.scp" "${_logdir}/train.JOB.scp" \
      --split "${dumpdir}/raw/${valid_set}/wav.scp" "${_logdir}/valid.JOB.scp" \
      --log "${_logdir}/stats.JOB.log" -- \
      "${PYTHON}" -m espnet_otreg.bin.asr_train --collect_stats true --config "${asr_config}" \
        "${common_opts[@]}" "${train_data[@]}" "${valid_data[@]}" \
        --train_shape_file "${_logdir}/train.JOB.scp" --valid_shape_file "${_logdir}/valid.JOB.scp" \
        --output_dir "${_logdir}/stats.JOB" --ngpu 0 ${asr_args}
    aggregate_stats "${_logdir}" "${RUN_JOBS_NJ}" "${asr_stats_dir}"
    # asr.sh appends the vocabulary size to the text shapes.
    for d in train valid; do
      awk -v N="$(wc -l <"${token_list}")" '{ print $0 "," N }' \
        "${asr_stats_dir}/${d}/text_shape" >"${asr_stats_dir}/${d}/text_shape.char"
    done
  fi
fi

if [ -n "${sweep}" ] && stage_on 11; then
  run_sweep --config "${asr_config}" --expdir "${expdir}" --results_md "${results_md}" \
    --grid "${sweep}" --seeds "${sweep_seeds}" --jobs "${sweep_jobs}" --ngpu "${ngpu}" \
    --stop_stage "${stop_stage}" --sets "${test_sets}" -- "$@"
  exit 0
fi

if stage_on 11; then
  log "Stage 11: train ${asr_exp} (ngpu ${ngpu}, nodes ${num_nodes}; log ${asr_exp}/train.log)"
  teacher_data=()
  if "${use_teacher_cache}"; then
    for dset in "${train_sp}" "${valid_set}"; do  # a stale cache: say so before training
      "${PYTHON}" -m espnet_otreg.data.cli check_keys --scp "${dumpdir}/teacher/${dset}/feats.scp" \
        --reference "${dumpdir}/raw/${dset}/text" --what "teacher features of ${asr_config}" \
        --rebuild "rebuild it with stage 6: ./run.sh --stage 6 --stop_stage 6 (same options)" >&2 \
        || die "the teacher cache does not cover ${dset}: run stage 6 again"
    done
    teacher_data=(--train_data_path_and_name_and_type "${dumpdir}/teacher/${train_sp}/feats.scp,teacher_feats,kaldi_ark"
      --valid_data_path_and_name_and_type "${dumpdir}/teacher/${valid_set}/feats.scp,teacher_feats,kaldi_ark")
  fi
  dist_opts=(--multiprocessing_distributed true)
  if [ "${num_nodes}" -gt 1 ]; then
    # ESPnet's own multi-node mode: one process per GPU on each node.
    dist_opts+=(--dist_world_size "${num_nodes}" --dist_rank "${node_rank}"
      --dist_master_addr "${master_addr}" --dist_master_port "${master_port}")
  fi
  run_training --cmd "${cmd}" --slurm_opts "${slurm_opts}" --num_nodes "${num_nodes}" \
    --ngpu "${ngpu}" "${asr_exp}/train.log" -- \
    "${PYTHON}" -m espnet_otreg.bin.asr_train --config "${asr_config}" "${common_opts[@]}" \
    "${train_data[@]}" "${valid_data[@]}" "${teacher_data[@]}" \
    --train_shape_file "${asr_stats_dir}/train/speech_shape" \
    --train_shape_file "${asr_stats_dir}/train/text_shape.char" \
    --valid_shape_file "${asr_stats_dir}/valid/speech_shape" \
    --valid_shape_file "${asr_stats_dir}/valid/text_shape.char" \
    --normalize global_mvn --normalize_conf stats_file="${asr_stats_dir}/train/feats_stats.npz" \
    --resume true --fold_length 80000 --fold_length 150 --output_dir "${asr_exp}" \
    --ngpu "${ngpu}" "${dist_opts[@]}" ${asr_args}
  [ -f "${asr_exp}/${inference_asr_model}" ] || die "no ${asr_exp}/${inference_asr_model} after training"
fi

if stage_on 12; then
  _ngpu=0; is_true "${gpu_inference}" && _ngpu=1
  for conf in ${inference_config}; do
    for dset in ${test_sets}; do
      _dir="${asr_exp}/$(inference_tag "${conf}" "${inference_asr_model}")/${dset}"
      if [ -f "${_dir}/text" ]; then log "Stage 12: ${_dir}/text exists, keeping it"; continue; fi
      log "Stage 12: decode ${dset} with ${conf} -> ${_dir}"
      _logdir="${_dir}/logdir"
      run_jobs --cmd "${cmd}" --slurm_opts "${slurm_opts}" --nj "${inference_nj}" --gpu "${gpu_inference}" --name "decode ${dset}" \
        --split "${dumpdir}/raw/${dset}/wav.scp" "${_logdir}/keys.JOB.scp" \
        --log "${_logdir}/asr_inference.JOB.log" \
        --merge "${_logdir}/output.JOB/1best_recog/token" "${_dir}/token" \
        --merge "${_logdir}/output.JOB/1best_recog/token_int" "${_dir}/token_int" \
        --merge "${_logdir}/output.JOB/1best_recog/score" "${_dir}/score" \
        --merge "${_logdir}/output.JOB/1best_recog/text" "${_dir}/text" -- \
        "${PYTHON}" -m espnet_otreg.bin.asr_inference --batch_size 1 --ngpu "${_ngpu}" \
          --data_path_and_name_and_type "${dumpdir}/raw/${dset}/wav.scp,speech,sound" \
          --key_file "${_logdir}/keys.JOB.scp" --asr_train_config "${asr_exp}/config.yaml" \
          --asr_model_file "${asr_exp}/${inference_asr_model}" \
          --output_dir "${_logdir}/output.JOB" --config "${conf}" ${inference_args}
      log "  ${_dir}/text: $(wc -l <"${_dir}/text") hypotheses"
    done
  done
fi

if stage_on 13; then
  log "Stage 13: score CER (sclite if installed, else Python with sclite's weights)"
  for conf in ${inference_config}; do
    for dset in ${test_sets}; do
      _dir="${asr_exp}/$(inference_tag "${conf}" "${inference_asr_model}")/${dset}"
      [ -f "${_dir}/text" ] || die "no hypotheses ${_dir}/text (decode first: stage 12)"
      "${PYTHON}" -m espnet_otreg.data.cli score --ref "${dumpdir}/raw/${dset}/text" \
        --hyp "${_dir}/text" --utt2spk "${dumpdir}/raw/${dset}/utt2spk" --out "${_dir}/score_cer" \
        --backend "${score_backend}"
    done
  done
  "${PYTHON}" local/make_results.py --expdir "${expdir}" --out "${asr_exp}/RESULTS.md" \
    --only "${asr_exp}" --dataset_name "${dataset_name}" --dataset_id "${hf_dataset}" >&2
  sed -n '/^|system|/,/^$/p' "${asr_exp}/RESULTS.md" >&2
  "${PYTHON}" local/make_results.py --expdir "${expdir}" --out "${results_md}" \
    --dataset_name "${dataset_name}" --dataset_id "${hf_dataset}" >&2
fi

model_tag="${inference_asr_model%.pth}"
packed_model="${asr_exp}/asr_model_${model_tag}.zip"        # GM-OT (needs espnet_otreg)
export_dir="${asr_exp}/export_ctc"
packed_export="${asr_exp}/asr_model_${model_tag}_export_ctc.zip"  # plain Conformer-CTC
if stage_on 14; then
  log "Stage 14: pack ${asr_exp} -> ${packed_model}"
  _opts=()
  [ -f "${asr_stats_dir}/train/feats_stats.npz" ] && _opts+=(--option "${asr_stats_dir}/train/feats_stats.npz")
  [ -d "${asr_exp}/images" ] && _opts+=(--option "${asr_exp}/images")
  [ -f "${asr_exp}/RESULTS.md" ] && _opts+=(--option "${asr_exp}/RESULTS.md")
  "${PYTHON}" -m espnet2.bin.pack asr --asr_train_config "${asr_exp}/config.yaml" \
    --asr_model_file "${asr_exp}/${inference_asr_model}" "${_opts[@]}" --outpath "${packed_model}" \
    >"${asr_exp}/pack.log" 2>&1 || { tail -20 "${asr_exp}/pack.log" >&2; die "packing failed: see ${asr_exp}/pack.log"; }
  log "Stage 14: export a stock ESPnet CTC model -> ${export_dir}, packed -> ${packed_export}"
  "${PYTHON}" -m espnet_otreg.bin.export_ctc --asr_train_config "${asr_exp}/config.yaml" \
    --asr_model_file "${asr_exp}/${inference_asr_model}" --output_dir "${export_dir}"
  _opts=()
  [ -f "${asr_exp}/RESULTS.md" ] && _opts+=(--option "${asr_exp}/RESULTS.md")
  _stats=$("${PYTHON}" -c 'import sys, yaml
print(((yaml.safe_load(open(sys.argv[1])) or {}).get("normalize_conf") or {}).get("stats_file", ""))' \
    "${export_dir}/config.yaml")
  [ -z "${_stats}" ] || [ ! -f "${_stats}" ] || _opts+=(--option "${_stats}")
  "${PYTHON}" -m espnet2.bin.pack asr --asr_train_config "${export_dir}/config.yaml" \
    --asr_model_file "${export_dir}/model.pth" "${_opts[@]}" --outpath "${packed_export}" \
    >"${export_dir}/pack.log" 2>&1 || { tail -20 "${export_dir}/pack.log" >&2; die "packing failed: see ${export_dir}/pack.log"; }
  log "Stage 14: packed ${packed_model} and ${packed_export}"
fi

if stage_on 15; then
  if [ "${check_export_utts}" -gt 0 ]; then
    # What users do: Speech2Text.from_pretrained(<zip>), stock ESPnet only (espnet_otreg
    # blocked from importing); the hypotheses must equal ours from stage 12.
    _conf=$(echo ${inference_config} | awk '{print $1}')
    _ref="${asr_exp}/$(inference_tag "${_conf}" "${inference_asr_model}")/test/text"
    _chk="${export_dir}/check"
    log "Stage 15: decode ${check_export_utts} test utterances from ${packed_export} with stock ESPnet"
    "${PYTHON}" local/decode_zoo.py --model "${packed_export}" --wav_scp "${dumpdir}/raw/test/wav.scp" \
      --keys "${check_export_utts}" --config "${_conf}" --out "${_chk}/text" \
      --cachedir "${_chk}/zoo_cache" >"${_chk}.log" 2>&1 \
      || { tail -20 "${_chk}.log" >&2; die "stock decoding of ${packed_export} failed: see ${_chk}.log"; }
    "${PYTHON}" local/compare_hyps.py "${_chk}/text" "${_ref}" >&2
  else
    log "Stage 15: skipped (--check_export_utts 0)"
  fi
fi

hf_dir="${asr_exp}/hf_${asr_tag}"
if stage_on 16; then
  log "Stage 16: model-zoo folder + model card -> ${hf_dir}"
  "${PYTHON}" -m espnet_otreg.recipe.zoo prepare --packed "${packed_export}" --out "${hf_dir}" \
    --extra "${packed_model}" --results "${asr_exp}/RESULTS.md" --repo "${hf_repo:-<user>/<name>}" \
    --language zh --dataset ${hf_dataset} --license apache-2.0 \
    --model_name "AISHELL-1 Conformer-CTC (${asr_tag}, espnet-otreg)" \
    --description "A Conformer-CTC model trained on AISHELL-1 with the ESPnet recipe egs2/aishell_gmot/asr1 of espnet-otreg (config ${asr_config}; GM-OT: arXiv 2505.13079). The root of this repository is a plain ESPnet CTC model: it needs only espnet and espnet_model_zoo." >&2
  upload_model_zoo "${skip_upload_hf}" "${hf_dir}" "${hf_repo}" "${hf_public}"
fi

log "Successfully finished stages ${stage}-${stop_stage}"
