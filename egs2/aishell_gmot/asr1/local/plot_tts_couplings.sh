#!/usr/bin/env bash
# Coupling plots of docs/experiments.md: gamma* of one dev utterance (an unseen voice)
# under the seed-0 model of every GM-OT-type system of the experiment, copied to
# <out>/<system>.png (the CTC baseline has no coupling).
#
#   local/plot_tts_couplings.sh [--utt BAC009S0008W0001] [--out ../../../docs/images/experiments]
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh

utt=BAC009S0008W0001
out=../../../docs/images/experiments
seed=0
parse_options "$@"

mkdir -p "${out}"
for d in tts/exp/asr_sweep_tts_*_seed${seed}; do
  name=$(basename "${d}"); name=${name#asr_sweep_}; name=${name%_seed${seed}}
  [ -f "${d}/valid.cer_ctc.ave.pth" ] || continue
  grep -q "^model: gmot" "${d}/config.yaml" || continue
  [ -f "${out}/${name}.png" ] && continue   # plotted before
  "${PYTHON}" -m espnet_otreg.bin.plot_coupling --asr_train_config "${d}/config.yaml" \
    --asr_model_file "${d}/valid.cer_ctc.ave.pth" \
    --data_path_and_name_and_type tts/dump/raw/dev/wav.scp,speech,sound \
    --data_path_and_name_and_type tts/dump/raw/dev/text,text,text \
    --data_path_and_name_and_type tts/dump/teacher/dev/feats.scp,teacher_feats,kaldi_ark \
    --utt_ids "${utt}" --output_dir "${d}/coupling" >&2
  cp "${d}/coupling/${utt}.png" "${out}/${name}.png"
  log "${out}/${name}.png"
done
