#!/usr/bin/env bash
# AISHELL-1 Conformer-CTC with GM-OT distillation of a BERT teacher (arXiv 2505.13079).
#
# ESPnet's egs2 asr.sh stages, needing only pip-installed packages (no Kaldi, no ESPnet
# checkout; sox/sclite are used when present, with Python fallbacks):
#   1 data (download openslr 33 or --aishell_dir)   2 speed perturbation (train)
#   3 format audio (dump/raw)   4 filter   5 char token list   6 teacher features
#   10 collect stats   11 train   12 decode (CTC greedy, CTC beam)   13 score CER
#   14 pack   15 export a stock ESPnet CTC model   16 upload to Hugging Face (on request)
#
#   ./run.sh                                   # everything (GM-OT, conf/train_asr_gmot.yaml)
#   ./run.sh --asr_config conf/train_asr_ctc_conformer.yaml   # the CTC baseline
#   ./run.sh --stage 12 --stop_stage 13 --inference_nj 16     # decode + score again
#   ./run.sh --mini true                       # tiny synthetic corpus, CPU, a few minutes
#
# Every stage can be run again: finished work is detected and skipped (say so in the
# log); training resumes from its last checkpoint.
set -euo pipefail

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (run.sh:${BASH_LINENO[0]}) $*"; }
# Stopping this script stops its background jobs (training, parallel decoding) too;
# run it again to resume.
trap 'exit 130' INT TERM
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

# ----------------------------------------------------------------------------- options
stage=1
stop_stage=16
mini=false                # true: synthetic mini corpus + tiny configs, all under mini/
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
max_text_len=               # characters; empty: no limit
skip_bad_audio=false      # stage 3: false = stop on unreadable audio, true = skip and list

asr_config=conf/train_asr_gmot.yaml
asr_tag=                  # default: the config's file name
asr_args=                 # extra training options, e.g. "--max_epoch 10"
inference_configs="conf/decode_ctc_greedy.yaml conf/decode_ctc_beam.yaml"
inference_asr_model=valid.cer_ctc.ave.pth
inference_args=
score_backend=auto        # stage 13: auto (sclite if installed), sclite or python
check_export_utts=10      # stage 15: decode this many test utterances with stock ESPnet
hf_repo=                  # stage 16 runs only when set (token: $HF_TOKEN)

train_set=train
valid_set=dev
test_sets="dev test"

help_message="Usage: $0 [--option value] ...  (options: see the top of $0)"
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) echo "${help_message}"; exit 0 ;;
    --*)
      name="${1#--}"; name="${name//-/_}"
      if [ -z "${!name+x}" ]; then echo "$0: unknown option $1" >&2; exit 1; fi
      [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
      printf -v "${name}" '%s' "$2"; shift 2 ;;
    *) echo "$0: unexpected argument $1" >&2; exit 1 ;;
  esac
done

. ./path.sh

mini_dir=mini   # not an option: conf/mini/train_asr_gmot.yaml reads its teacher from here
if "${mini}"; then
  # Everything under ${mini_dir}: the corpus archives (served as file:// URLs, so
  # stage 1 exercises download, MD5 check and extraction), data, dump, exp.
  corpus="${mini_dir}/corpus"
  python local/make_mini_corpus.py --out "${corpus}" --teacher
  url_base="file://$(cd "${corpus}" && pwd)"
  md5sums="${corpus}/md5sums"
  download_dir="${mini_dir}/downloads"
  datadir="${mini_dir}/data"; dumpdir="${mini_dir}/dump"; expdir="${mini_dir}/exp"
  case "${asr_config}" in conf/mini/*) ;; *) asr_config="conf/mini/$(basename "${asr_config}")" ;; esac
  inference_configs="conf/mini/decode_ctc_greedy.yaml conf/mini/decode_ctc_beam.yaml"
  nj=2; inference_nj=2; ngpu=0; max_wav_duration=10
fi

if [ "${ngpu}" = auto ]; then
  ngpu=0
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then ngpu=1; fi
fi
[ -n "${asr_tag}" ] || asr_tag="$(basename "${asr_config}" .yaml)"
token_list="${datadir}/token_list/char/tokens.txt"
asr_stats_dir="${expdir}/asr_stats_raw_zh_char_sp"
asr_exp="${expdir}/asr_${asr_tag}"
train_sp="${train_set}_sp"

[ -f "${asr_config}" ] || { log "no such config: ${asr_config}"; exit 1; }
# GM-OT with cached teacher features needs stage 6 and an extra data key.
read -r model_name teacher_source < <(python -c '
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
print(c.get("model", "espnet"), (c.get("model_conf") or {}).get("teacher_source", "cache"))
' "${asr_config}")
use_teacher_cache=false
if [ "${model_name}" = gmot ] && [ "${teacher_source}" = cache ]; then use_teacher_cache=true; fi
log "config ${asr_config} (model ${model_name}, teacher cache ${use_teacher_cache}), exp ${asr_exp}, ngpu ${ngpu}"

# ------------------------------------------------------------------------------ stages
if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  log "Stage 1: AISHELL-1 -> ${datadir}/{train,dev,test}"
  python local/data.py --out "${datadir}" --download_dir "${download_dir}" \
    --url_base "${url_base}" ${aishell_dir:+--aishell_dir "${aishell_dir}"} \
    ${md5sums:+--md5sums "${md5sums}"}
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  log "Stage 2: speed perturbation ${speed_perturb_factors} -> ${datadir}/${train_sp}"
  python -m espnet_otreg.data.cli speed_perturb --src "${datadir}/${train_set}" \
    --dst "${datadir}/${train_sp}" --factors ${speed_perturb_factors}
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  log "Stage 3: format audio (${audio_format}, ${fs} Hz) -> ${dumpdir}/raw"
  for dset in $(echo "${train_sp}" "${valid_set}" ${test_sets} | tr ' ' '\n' | awk '!seen[$0]++'); do
    # As in asr.sh: training and validation data go to org/ and are filtered in stage 4.
    if [ "${dset}" = "${train_sp}" ] || [ "${dset}" = "${valid_set}" ]; then _suf=org/; else _suf=; fi
    python -m espnet_otreg.data.cli format --src "${datadir}/${dset}" \
      --dst "${dumpdir}/raw/${_suf}${dset}" --audio_format "${audio_format}" --fs "${fs}" \
      --nj "${nj}" $( "${skip_bad_audio}" && echo --skip_bad_audio )
  done
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  log "Stage 4: filter (${min_wav_duration}-${max_wav_duration} s, text, CTC length)"
  for dset in "${train_sp}" "${valid_set}"; do
    python -m espnet_otreg.data.cli filter --src "${dumpdir}/raw/org/${dset}" \
      --dst "${dumpdir}/raw/${dset}" --min_duration "${min_wav_duration}" \
      --max_duration "${max_wav_duration}" ${max_text_len:+--max_text_len "${max_text_len}"}
  done
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  if [ -f "${token_list}" ]; then
    log "Stage 5: ${token_list} exists ($(wc -l <"${token_list}") tokens), keeping it"
  else
    log "Stage 5: character token list -> ${token_list}"
    mkdir -p "$(dirname "${token_list}")"
    python -m espnet2.bin.tokenize_text --token_type char --field 2- \
      --input "${dumpdir}/raw/${train_sp}/text" --output "${token_list}" \
      --non_linguistic_symbols none --cleaner none --g2p none --write_vocabulary true \
      --add_symbol "<blank>:0" --add_symbol "<unk>:1" --add_symbol "<sos/eos>:-1"
    log "Stage 5: $(wc -l <"${token_list}") tokens"
  fi
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
  if "${use_teacher_cache}"; then
    log "Stage 6: teacher features (${asr_config}) -> ${dumpdir}/teacher"
    for dset in "${train_sp}" "${valid_set}"; do
      _out="${dumpdir}/teacher/${dset}"
      # dump_teacher itself skips a cache made by the same teacher and layer for the
      # same utterances, and redoes it when the config's teacher changed.
      python -m espnet_otreg.bin.dump_teacher --asr_config "${asr_config}" \
        --text "${dumpdir}/raw/${dset}/text" --output_dir "${_out}" \
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

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
  if [ -f "${asr_stats_dir}/train/feats_stats.npz" ]; then
    log "Stage 10: ${asr_stats_dir} exists, keeping it"
  else
    # No more jobs than utterances in either set (as asr.sh).
    _nj=$(printf '%s\n' "${nj}" $(wc -l <"${dumpdir}/raw/${train_sp}/wav.scp") \
      $(wc -l <"${dumpdir}/raw/${valid_set}/wav.scp") | sort -n | head -1)
    log "Stage 10: collect stats (${_nj} jobs) -> ${asr_stats_dir}"
    _logdir="${asr_stats_dir}/logdir"; mkdir -p "${_logdir}"
    python -m espnet_otreg.data.cli split --scp "${dumpdir}/raw/${train_sp}/wav.scp" \
      --out "${_logdir}/train.{}.scp" --nj "${_nj}"
    python -m espnet_otreg.data.cli split --scp "${dumpdir}/raw/${valid_set}/wav.scp" \
      --out "${_logdir}/valid.{}.scp" --nj "${_nj}"
    pids=()
    for n in $(seq "${_nj}"); do
      python -m espnet_otreg.bin.asr_train --collect_stats true --config "${asr_config}" \
        "${common_opts[@]}" "${train_data[@]}" "${valid_data[@]}" \
        --train_shape_file "${_logdir}/train.${n}.scp" --valid_shape_file "${_logdir}/valid.${n}.scp" \
        --output_dir "${_logdir}/stats.${n}" --ngpu 0 ${asr_args} \
        >"${_logdir}/stats.${n}.log" 2>&1 &
      pids+=($!)
    done
    for n in $(seq "${_nj}"); do
      wait "${pids[$((n - 1))]}" || { log "collect stats job ${n} failed:"; tail -20 "${_logdir}/stats.${n}.log"; exit 1; }
      log "  job ${n}/${_nj} done"
    done
    python -m espnet2.bin.aggregate_stats_dirs --output_dir "${asr_stats_dir}" \
      $(for n in $(seq "${_nj}"); do echo --input_dir "${_logdir}/stats.${n}"; done)
    # asr.sh appends the vocabulary size to the text shapes.
    for d in train valid; do
      awk -v N="$(wc -l <"${token_list}")" '{ print $0 "," N }' \
        "${asr_stats_dir}/${d}/text_shape" >"${asr_stats_dir}/${d}/text_shape.char"
    done
  fi
fi

if [ ${stage} -le 11 ] && [ ${stop_stage} -ge 11 ]; then
  log "Stage 11: train ${asr_exp} (ngpu ${ngpu}, nodes ${num_nodes}; log ${asr_exp}/train.log)"
  teacher_data=()
  if "${use_teacher_cache}"; then
    teacher_data=(--train_data_path_and_name_and_type "${dumpdir}/teacher/${train_sp}/feats.scp,teacher_feats,kaldi_ark"
      --valid_data_path_and_name_and_type "${dumpdir}/teacher/${valid_set}/feats.scp,teacher_feats,kaldi_ark")
  fi
  dist_opts=(--multiprocessing_distributed true)
  if [ "${num_nodes}" -gt 1 ]; then
    # ESPnet's own multi-node mode: one process per GPU on each node.
    dist_opts+=(--dist_world_size "${num_nodes}" --dist_rank "${node_rank}"
      --dist_master_addr "${master_addr}" --dist_master_port "${master_port}")
  fi
  mkdir -p "${asr_exp}"
  python -m espnet_otreg.bin.asr_train --config "${asr_config}" "${common_opts[@]}" \
    "${train_data[@]}" "${valid_data[@]}" "${teacher_data[@]}" \
    --train_shape_file "${asr_stats_dir}/train/speech_shape" \
    --train_shape_file "${asr_stats_dir}/train/text_shape.char" \
    --valid_shape_file "${asr_stats_dir}/valid/speech_shape" \
    --valid_shape_file "${asr_stats_dir}/valid/text_shape.char" \
    --normalize global_mvn --normalize_conf stats_file="${asr_stats_dir}/train/feats_stats.npz" \
    --resume true --fold_length 80000 --fold_length 150 --output_dir "${asr_exp}" \
    --ngpu "${ngpu}" "${dist_opts[@]}" ${asr_args} >>"${asr_exp}/train.log" 2>&1 &
  train_pid=$!
  # Progress: ESPnet's per-epoch summaries from the log while training runs.
  tail -n 0 -f --pid "${train_pid}" "${asr_exp}/train.log" \
    | grep --line-buffered -E "epoch results|Traceback|Error" \
    | sed -u -E 's/.* ([0-9]+epoch) results: .*\[valid\] (.*)/  \1 valid: \2/; s/^(.{160}).*/\1/' &
  wait "${train_pid}" || { log "training failed:"; tail -30 "${asr_exp}/train.log"; exit 1; }
  [ -f "${asr_exp}/${inference_asr_model}" ] || { log "no ${asr_exp}/${inference_asr_model} after training"; exit 1; }
fi

model_tag="${inference_asr_model%.pth}"
if [ ${stage} -le 12 ] && [ ${stop_stage} -ge 12 ]; then
  for conf in ${inference_configs}; do
    for dset in ${test_sets}; do
      _dir="${asr_exp}/$(basename "${conf}" .yaml)_asr_model_${model_tag}/${dset}"
      if [ -f "${_dir}/text" ]; then log "Stage 12: ${_dir}/text exists, keeping it"; continue; fi
      _logdir="${_dir}/logdir"; mkdir -p "${_logdir}"
      _nj=$(printf '%s\n' "${inference_nj}" $(wc -l <"${dumpdir}/raw/${dset}/wav.scp") | sort -n | head -1)
      log "Stage 12: decode ${dset} with ${conf} (${_nj} jobs) -> ${_dir}"
      python -m espnet_otreg.data.cli split --scp "${dumpdir}/raw/${dset}/wav.scp" \
        --out "${_logdir}/keys.{}.scp" --nj "${_nj}"
      ngpu_job=0; "${gpu_inference}" && ngpu_job=1
      pids=()
      for n in $(seq "${_nj}"); do
        ( if "${gpu_inference}"; then
            export CUDA_VISIBLE_DEVICES=$(( (n - 1) % $(nvidia-smi -L | wc -l) ))
          fi
          python -m espnet_otreg.bin.asr_inference --batch_size 1 --ngpu "${ngpu_job}" \
            --data_path_and_name_and_type "${dumpdir}/raw/${dset}/wav.scp,speech,sound" \
            --key_file "${_logdir}/keys.${n}.scp" --asr_train_config "${asr_exp}/config.yaml" \
            --asr_model_file "${asr_exp}/${inference_asr_model}" \
            --output_dir "${_logdir}/output.${n}" --config "${conf}" ${inference_args}
        ) >"${_logdir}/asr_inference.${n}.log" 2>&1 &
        pids+=($!)
      done
      for n in $(seq "${_nj}"); do
        wait "${pids[$((n - 1))]}" || { log "decoding job ${n} failed:"; tail -20 "${_logdir}/asr_inference.${n}.log"; exit 1; }
        log "  job ${n}/${_nj} done"
      done
      for f in token token_int score text; do
        python -m espnet_otreg.data.cli merge --out "${_dir}/${f}" \
          --parts $(for n in $(seq "${_nj}"); do echo "${_logdir}/output.${n}/1best_recog/${f}"; done) >/dev/null
      done
      log "  ${_dir}/text: $(wc -l <"${_dir}/text") hypotheses"
    done
  done
fi

if [ ${stage} -le 13 ] && [ ${stop_stage} -ge 13 ]; then
  log "Stage 13: score CER (sclite if installed, else Python with sclite's weights)"
  for conf in ${inference_configs}; do
    for dset in ${test_sets}; do
      _dir="${asr_exp}/$(basename "${conf}" .yaml)_asr_model_${model_tag}/${dset}"
      python -m espnet_otreg.data.cli score --ref "${dumpdir}/raw/${dset}/text" \
        --hyp "${_dir}/text" --utt2spk "${dumpdir}/raw/${dset}/utt2spk" --out "${_dir}/score_cer" \
        --backend "${score_backend}"
    done
  done
  python local/make_results.py --expdir "${expdir}" --out "${asr_exp}/RESULTS.md" --only "${asr_exp}"
  sed -n '/^|system|/,/^$/p' "${asr_exp}/RESULTS.md"
  python local/make_results.py --expdir "${expdir}" --out "$("${mini}" && echo "${mini_dir}/RESULTS.md" || echo RESULTS.md)"
fi

packed_model="${asr_exp}/asr_model_${model_tag}.zip"
if [ ${stage} -le 14 ] && [ ${stop_stage} -ge 14 ]; then
  log "Stage 14: pack -> ${packed_model}"
  _opts=()
  [ -f "${asr_stats_dir}/train/feats_stats.npz" ] && _opts+=(--option "${asr_stats_dir}/train/feats_stats.npz")
  [ -d "${asr_exp}/images" ] && _opts+=(--option "${asr_exp}/images")
  python -m espnet2.bin.pack asr --asr_train_config "${asr_exp}/config.yaml" \
    --asr_model_file "${asr_exp}/${inference_asr_model}" --option "${asr_exp}/RESULTS.md" \
    "${_opts[@]}" --outpath "${packed_model}"
fi

export_dir="${asr_exp}/export_ctc"
if [ ${stage} -le 15 ] && [ ${stop_stage} -ge 15 ]; then
  log "Stage 15: export a stock ESPnet CTC model -> ${export_dir}"
  python -m espnet_otreg.bin.export_ctc --asr_train_config "${asr_exp}/config.yaml" \
    --asr_model_file "${asr_exp}/${inference_asr_model}" --output_dir "${export_dir}"
  if [ "${check_export_utts}" -gt 0 ]; then
    # The export must decode with stock ESPnet alone, exactly like our model did.
    _conf=$(echo ${inference_configs} | awk '{print $1}')
    _ref="${asr_exp}/$(basename "${_conf}" .yaml)_asr_model_${model_tag}/test/text"
    _chk="${export_dir}/check"; mkdir -p "${_chk}"
    head -n "${check_export_utts}" "${dumpdir}/raw/test/wav.scp" >"${_chk}/keys.scp"
    python -m espnet2.bin.asr_inference --batch_size 1 --ngpu 0 \
      --data_path_and_name_and_type "${dumpdir}/raw/test/wav.scp,speech,sound" \
      --key_file "${_chk}/keys.scp" --asr_train_config "${export_dir}/config.yaml" \
      --asr_model_file "${export_dir}/model.pth" --output_dir "${_chk}/output" \
      --config "${_conf}" >"${_chk}/asr_inference.log" 2>&1 \
      || { log "stock decoding of the export failed:"; tail -20 "${_chk}/asr_inference.log"; exit 1; }
    python local/compare_hyps.py "${_chk}/output/1best_recog/text" "${_ref}"
  fi
fi

if [ ${stage} -le 16 ] && [ ${stop_stage} -ge 16 ]; then
  if [ -n "${hf_repo}" ]; then
    log "Stage 16: upload ${packed_model} and ${export_dir} to https://huggingface.co/${hf_repo}"
    python local/upload_hf.py --repo "${hf_repo}" --packed_model "${packed_model}" \
      --export_dir "${export_dir}" --results "${asr_exp}/RESULTS.md"
  else
    log "Stage 16: skipped (upload only on request: --hf_repo <user/name>, token in \$HF_TOKEN)"
  fi
fi

log "Successfully finished stages ${stage}-${stop_stage}"
