# shellcheck shell=bash
# The stage library of the egs2/*/asr1 recipes (what ESPnet's TEMPLATE asr.sh and
# icefall's shared/ scripts give their recipes). Sourced by each recipe's path.sh, after
# PYTHON is set. It defines functions only (and the Ctrl-C trap):
#
#   log MSG / die MSG          timestamped lines on stderr, as asr.sh; die exits 1
#   parse_options "$@"         --name value / --name=value for every variable already set
#                              (dashes read as underscores); --help prints the header
#   stage_on N                 true when N lies in --stage .. --stop_stage
#   is_true VALUE              true/false options, anything else is an error
#   inference_tag CONF MODEL   the decode dir name: <conf>_asr_model_<model> (asr.sh's)
#   resolve_ngpu auto|N        the GPU count: auto is 1 when nvidia-smi sees a GPU, else 0
#   run_jobs ...               split, run N jobs, wait, report a failing job's log, merge
#   run_training ... LOG -- CMD  launch training with a live progress view, wait, report
#   run_sweep ... -- ARGS      a model_conf grid x seeds through espnet_otreg.bin.sweep
#   format_sets, filter_sets   stages 3 and 4 (asr.sh's), the same in every recipe
#   aggregate_stats, upload_model_zoo   the stats merge of stage 10, stage 16's upload
#
# Every function takes what it needs as arguments and reads no variable of the
# calling script. Job backends (--cmd): "local" (background processes on this machine)
# and "slurm" (python -m espnet_otreg.bin.launch --cmd slurm); another one is one more
# case in _submit_job, the single place that starts a job.

_log_at() {  # names the first line outside this library (run.sh:<line>)
    local i=1
    while [ "${i}" -lt $((${#BASH_SOURCE[@]} - 1)) ] && [ "${BASH_SOURCE[$i]##*/}" = lib.sh ]; do
        i=$((i + 1))
    done
    local src=${BASH_SOURCE[$i]:-run.sh}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${src##*/}:${BASH_LINENO[$((i - 1))]}) $*" >&2
}
log() { _log_at "$@"; }
die() { _log_at "ERROR: $*"; exit 1; }

# Stopping run.sh (Ctrl-C, kill) stops its background jobs too; run it again to resume.
_kill_children() { local bg; bg=$(jobs -p); [ -z "${bg}" ] || kill ${bg} 2>/dev/null || true; }
trap '_kill_children; exit 130' INT TERM
trap '_kill_children' EXIT

usage() {  # the script's header comment, then its options with their defaults
    sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
    echo
    echo "Options (--name value; defaults as set in $0):"
    sed -n '/^# *-* *options/,/parse_options/p' "$0" | grep -E '^[a-z_][a-z0-9_]*=' \
        | sed -E 's/^([a-z0-9_]+)=/  --\1 /'
}

parse_options() {
    local _po_name _po_value
    while [ $# -gt 0 ]; do
        case "$1" in
            -h|--help) usage; exit 0 ;;
            --*=*) _po_name=${1%%=*}; _po_name=${_po_name#--}; _po_value=${1#*=}; shift ;;
            --*) _po_name=${1#--}
                 [ $# -ge 2 ] || die "option $1 needs a value"
                 _po_value=$2; shift 2 ;;
            *) die "unexpected argument: $1 (options are --name value; --help lists them)" ;;
        esac
        _po_name=${_po_name//-/_}
        [[ ${_po_name} =~ ^[a-z][a-z0-9_]*$ ]] || die "bad option name --${_po_name}"
        [ -n "${!_po_name+x}" ] || die "unknown option --${_po_name} (--help lists them)"
        printf -v "${_po_name}" '%s' "${_po_value}"
    done
}

stage_on() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ]; }

is_true() {
    case "$1" in
        true) return 0 ;;
        false) return 1 ;;
        *) die "expected true or false, got '$1'" ;;
    esac
}

resolve_ngpu() {  # "auto" -> 1 when nvidia-smi sees a GPU, else 0; a number stays
    case "$1" in
        auto) if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
                  echo 1; else echo 0; fi ;;
        ''|*[!0-9]*) die "--ngpu must be a number or auto, got '$1'" ;;
        *) echo "$1" ;;
    esac
}

inference_tag() {  # asr.sh: <decode config name>_asr_model_<model file without .pth>
    local conf model
    conf=$(basename "$1"); conf=${conf%.yaml}
    model=${2//\//_}; model=${model%.*}
    echo "${conf}_asr_model_${model}"
}

_job_path() { local p=$1; echo "${p//JOB/$2}"; }

_n_gpus() { local n; n=$(nvidia-smi -L 2>/dev/null | wc -l); [ "${n}" -gt 0 ] || n=1; echo "${n}"; }

# _submit_job BACKEND LOG GPU SLURM_OPTS NUM_NODES NGPU COMMAND...: start one job in
# the background ($! is its pid; its exit status is the job's). GPU: empty, the device
# to pin it to, or "train" for the training launch (run_training). The one place a new
# backend goes:
# - local: the command itself;
# - slurm: python -m espnet_otreg.bin.launch --cmd slurm, one `sbatch --wait` job per
#   split job (a GPU job asks for one GPU); training as one job of NUM_NODES nodes with
#   one srun task per GPU (NGPU a node; CPU: one task) and ESPnet's --dist_launcher
#   slurm. SLURM_OPTS go to every submission (partition, account, time, ...: see launch
#   --help). launch writes LOG itself (run.pl style); what sbatch says goes to LOG.submit.
_submit_job() {
    local backend=$1 job_log=$2 gpu=$3 slurm_opts_=$4 num_nodes_=$5 ngpu_=$6; shift 6
    case "${backend}" in
        local)
            if [ -n "${gpu}" ] && [ "${gpu}" != train ]; then
                CUDA_VISIBLE_DEVICES=${gpu} "$@" >"${job_log}" 2>&1 &
            else
                "$@" >"${job_log}" 2>&1 &
            fi
            ;;
        slurm)
            local -a how=(--nj 1)
            if [ "${gpu}" = train ]; then
                how=(--train --num_nodes "${num_nodes_}" --gpus "${ngpu_}")
            elif [ -n "${gpu}" ]; then
                how+=(--gpus 1)
            fi
            # shellcheck disable=SC2086
            "${PYTHON}" -m espnet_otreg.bin.launch --cmd slurm ${slurm_opts_} "${how[@]}" \
                --log "${job_log}" -- "$@" >"${job_log}.submit" 2>&1 &
            ;;
        *) die "--cmd ${backend}: unknown job backend (supported: local, slurm)" ;;
    esac
}

# run_jobs [options] -- COMMAND...
#   Runs COMMAND as --nj parallel jobs and waits for them; "JOB" in COMMAND and in the
#   path patterns below becomes the job number 1..N.
#   --cmd local|slurm      job backend
#   --slurm_opts OPTS      --cmd slurm: sbatch options for every job
#   --nj N                 number of jobs (at most the lines of each --split input)
#   --split SCP PATTERN    split SCP's lines into PATTERN (e.g. dir/keys.JOB.scp) first
#   --log PATTERN          each job's log (required)
#   --merge PATTERN DEST   afterwards, merge the jobs' key-value files into DEST
#   --gpu true|false       pin job n to GPU (n-1) mod (GPUs nvidia-smi lists)
#   --skip_done PATTERN    do not rerun a job whose PATTERN file has as many lines as
#                          its part of the first --split input (finished before)
#   --name TEXT            what the jobs are, for the log
#   A failing job stops the recipe with the tail of its log. Afterwards RUN_JOBS_NJ holds
#   the number of jobs (--nj, or fewer).
run_jobs() {
    local cmd_=local slurm_opts_= nj_=1 log_= gpu_=false done_= name_=jobs
    local -a split_src=() split_pat=() merge_pat=() merge_dst=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --cmd) cmd_=$2; shift 2 ;;
            --slurm_opts) slurm_opts_=$2; shift 2 ;;
            --nj) nj_=$2; shift 2 ;;
            --split) split_src+=("$2"); split_pat+=("$3"); shift 3 ;;
            --log) log_=$2; shift 2 ;;
            --merge) merge_pat+=("$2"); merge_dst+=("$3"); shift 3 ;;
            --gpu) gpu_=$2; shift 2 ;;
            --skip_done) done_=$2; shift 2 ;;
            --name) name_=$2; shift 2 ;;
            --) shift; break ;;
            *) die "run_jobs: unknown option $1" ;;
        esac
    done
    [ $# -gt 0 ] || die "run_jobs: no command given"
    [ -n "${log_}" ] || die "run_jobs: --log PATTERN is required"
    local i n j
    for i in "${!split_src[@]}"; do
        [ -s "${split_src[$i]}" ] || die "${name_}: ${split_src[$i]} is missing or empty"
        n=$(wc -l <"${split_src[$i]}")
        [ "${n}" -ge "${nj_}" ] || nj_=${n}
    done
    RUN_JOBS_NJ=${nj_}
    for i in "${!split_src[@]}"; do
        mkdir -p "$(dirname "${split_pat[$i]}")"
        "${PYTHON}" -m espnet_otreg.data.cli split --scp "${split_src[$i]}" \
            --out "$(_job_path "${split_pat[$i]}" '{}')" --nj "${nj_}" >/dev/null \
            || die "${name_}: cannot split ${split_src[$i]}"
    done
    local n_gpus=0 gpu= job_log a
    is_true "${gpu_}" && n_gpus=$(_n_gpus)
    local -a pids=() jobs_=() argv
    for j in $(seq "${nj_}"); do
        if [ -n "${done_}" ] && [ ${#split_pat[@]} -gt 0 ]; then
            local out_f keys_f
            out_f=$(_job_path "${done_}" "${j}"); keys_f=$(_job_path "${split_pat[0]}" "${j}")
            if [ -f "${out_f}" ] && [ "$(wc -l <"${out_f}")" -eq "$(wc -l <"${keys_f}")" ]; then
                continue
            fi
        fi
        argv=()
        for a in "$@"; do argv+=("${a//JOB/${j}}"); done
        job_log=$(_job_path "${log_}" "${j}")
        mkdir -p "$(dirname "${job_log}")"
        gpu=; [ "${n_gpus}" -eq 0 ] || gpu=$(( (j - 1) % n_gpus ))
        _submit_job "${cmd_}" "${job_log}" "${gpu}" "${slurm_opts_}" 1 0 "${argv[@]}"
        pids+=($!); jobs_+=("${j}")
    done
    log "${name_}: ${#pids[@]} jobs running (${cmd_}), logs ${log_}"
    local -a failed=()
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || failed+=("${jobs_[$i]}")
    done
    if [ ${#failed[@]} -gt 0 ]; then
        job_log=$(_job_path "${log_}" "${failed[0]}")
        log "${name_}: ${#failed[@]} of ${#pids[@]} jobs failed (jobs ${failed[*]}); the end of ${job_log}:"
        tail -n 20 "${job_log}" >&2
        die "${name_} failed: see ${job_log}"
    fi
    local -a parts
    for i in "${!merge_pat[@]}"; do
        parts=()
        for j in $(seq "${nj_}"); do parts+=("$(_job_path "${merge_pat[$i]}" "${j}")"); done
        "${PYTHON}" -m espnet_otreg.data.cli merge --out "${merge_dst[$i]}" --parts "${parts[@]}" \
            >/dev/null || die "${name_}: cannot merge ${merge_pat[$i]} into ${merge_dst[$i]}"
    done
    log "${name_}: ${nj_} jobs done"
}

# format_sets --datadir D --dumpdir R --fs F --audio_format A --nj N --skip_bad_audio B
#             --train_sets "S ..." --test_sets "T ..."
#   Stage 3 (asr.sh's): every set of D read, checked, resampled and written under R:
#   training and validation sets to R/org/<set> (stage 4 filters them), test sets to
#   R/<set> (never filtered: a dropped test utterance would flatter the error rate).
format_sets() {
    local datadir_= dumpdir_= fs_=16000 format_=flac nj_=1 skip_=false train_= test_= dset
    while [ $# -gt 0 ]; do
        case "$1" in
            --datadir) datadir_=$2; shift 2 ;;
            --dumpdir) dumpdir_=$2; shift 2 ;;
            --fs) fs_=$2; shift 2 ;;
            --audio_format) format_=$2; shift 2 ;;
            --nj) nj_=$2; shift 2 ;;
            --skip_bad_audio) skip_=$2; shift 2 ;;
            --train_sets) train_=$2; shift 2 ;;
            --test_sets) test_=$2; shift 2 ;;
            *) die "format_sets: unknown option $1" ;;
        esac
    done
    is_true "${skip_}" || :  # a value other than true/false stops here
    for dset in ${train_}; do _format_set "${datadir_}/${dset}" "${dumpdir_}/org/${dset}"; done
    for dset in ${test_}; do
        case " ${train_} " in *" ${dset} "*) continue ;; esac
        _format_set "${datadir_}/${dset}" "${dumpdir_}/${dset}"
    done
}

_format_set() {  # uses format_sets' options
    log "Stage 3: format audio (${format_}, ${fs_} Hz): $1 -> $2"
    "${PYTHON}" -m espnet_otreg.data.cli format --src "$1" --dst "$2" \
        --audio_format "${format_}" --fs "${fs_}" --nj "${nj_}" --skip_bad_audio "${skip_}" >&2 \
        || die "formatting $1 failed (see above)"
}

# filter_sets --dumpdir R --sets "S ..." --min_wav_duration A --max_wav_duration B
#             --max_text_len N --frame_samples F --fs FS
#   Stage 4: R/org/<set> -> R/<set> without the utterances outside A..B seconds, with an
#   empty or (N > 0) longer transcript, or (F > 0) too short for CTC at F samples per
#   encoder frame; each removed one listed in R/<set>/removed, counts in filter_counts.json.
filter_sets() {
    local dumpdir_= sets_= min_=0.1 max_=20 len_=0 frames_=0 fs_=16000 dset
    while [ $# -gt 0 ]; do
        case "$1" in
            --dumpdir) dumpdir_=$2; shift 2 ;;
            --sets) sets_=$2; shift 2 ;;
            --min_wav_duration) min_=$2; shift 2 ;;
            --max_wav_duration) max_=$2; shift 2 ;;
            --max_text_len) len_=$2; shift 2 ;;
            --frame_samples) frames_=$2; shift 2 ;;
            --fs) fs_=$2; shift 2 ;;
            *) die "filter_sets: unknown option $1" ;;
        esac
    done
    for dset in ${sets_}; do
        log "Stage 4: filter ${dumpdir_}/org/${dset} -> ${dumpdir_}/${dset} (${min_}-${max_} s)"
        "${PYTHON}" -m espnet_otreg.data.cli filter --src "${dumpdir_}/org/${dset}" \
            --dst "${dumpdir_}/${dset}" --min_duration "${min_}" --max_duration "${max_}" \
            --max_text_len "${len_:-0}" --frame_samples "${frames_}" --fs "${fs_}" >&2 \
            || die "filtering ${dset} failed (see above)"
    done
}

# aggregate_stats LOGDIR NJ OUT_DIR
#   ESPnet's aggregate_stats_dirs over the collect-stats jobs LOGDIR/stats.1..NJ into
#   OUT_DIR (its log: LOGDIR/aggregate.log); stops the recipe naming the log on failure.
aggregate_stats() {
    local logdir_=$1 nj_=$2 out_=$3 n
    local -a inputs=()
    for n in $(seq "${nj_}"); do inputs+=(--input_dir "${logdir_}/stats.${n}"); done
    "${PYTHON}" -m espnet2.bin.aggregate_stats_dirs "${inputs[@]}" --output_dir "${out_}" \
        >"${logdir_}/aggregate.log" 2>&1 || die "aggregating stats failed: see ${logdir_}/aggregate.log"
}

# upload_model_zoo SKIP DIR REPO PUBLIC
#   Stage 16's upload of the model-zoo folder DIR to the Hub repository REPO (token from
#   $HF_TOKEN only; private unless PUBLIC is true); SKIP true says how to do it instead.
upload_model_zoo() {
    local skip_=$1 dir_=$2 repo_=$3 public_=$4
    if is_true "${skip_}"; then
        log "Stage 16: skipped (upload skipped: --skip_upload_hf true; set --skip_upload_hf false --hf_repo <user>/<name>, token in \$HF_TOKEN)"
        return 0
    fi
    [ -n "${repo_}" ] || die "stage 16 needs --hf_repo <user>/<name>"
    log "Stage 16: upload ${dir_} to https://huggingface.co/${repo_} (token from \$HF_TOKEN)"
    "${PYTHON}" -m espnet_otreg.recipe.zoo upload --dir "${dir_}" --repo "${repo_}" \
        $(is_true "${public_}" && echo --public)
}

# run_training [--cmd local|slurm] [--slurm_opts OPTS] [--num_nodes N] [--ngpu G] LOG -- COMMAND...
#   Starts COMMAND (ESPnet's trainer) with its output in LOG, shows ESPnet's per-epoch
#   summary lines (and errors) while it runs, waits, and stops the recipe with the end
#   of LOG when it fails. An earlier LOG (a resumed run) is kept as LOG's name with .N.
#   --num_nodes and --ngpu (GPUs a node) size the --cmd slurm allocation.
run_training() {
    local cmd_=local slurm_opts_= num_nodes_=1 ngpu_=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --cmd) cmd_=$2; shift 2 ;;
            --slurm_opts) slurm_opts_=$2; shift 2 ;;
            --num_nodes) num_nodes_=$2; shift 2 ;;
            --ngpu) ngpu_=$2; shift 2 ;;
            --*) die "run_training: unknown option $1" ;;
            *) break ;;
        esac
    done
    local log_file=$1; shift
    [ "$1" = -- ] && shift
    mkdir -p "$(dirname "${log_file}")"
    if [ -e "${log_file}" ]; then
        local k=1 base=${log_file%.log}
        while [ -e "${base}.${k}.log" ]; do k=$((k + 1)); done
        mv "${log_file}" "${base}.${k}.log"
    fi
    # The log exists before the progress view opens it (no "cannot open" race).
    : >"${log_file}"
    _submit_job "${cmd_}" "${log_file}" train "${slurm_opts_}" "${num_nodes_}" "${ngpu_}" "$@"
    local pid=$!
    _progress_view "${log_file}" "${pid}" &
    local view=$! rc=0
    wait "${pid}" || rc=$?
    wait "${view}" 2>/dev/null || true
    if [ "${rc}" -ne 0 ]; then
        tail -n 30 "${log_file}" >&2
        die "training failed (exit ${rc}): see ${log_file}"
    fi
}

_progress_view() {  # $1: log, $2: pid to follow; prints ESPnet's epoch summaries
    tail -n +1 -F --pid="$2" "$1" 2>/dev/null \
        | grep --line-buffered -E "epoch results|^Traceback|^[A-Za-z_.]*(Error|Exception)\b" \
        | sed -u -E 's/.* ([0-9]+epoch) results: .*\[valid\] (.*)/  \1 valid: \2/; s/^(.{160}).*/\1/' >&2 \
        || true
}

# run_sweep --config C --expdir E --results_md R --grid "k=v1,v2 k2=..." --seeds "0 1 2"
#           [--jobs N] [--ngpu G] [--stop_stage S] [--sets "dev test"] -- ARGS...
#   Instead of one training run, python -m espnet_otreg.bin.sweep trains every setting x
#   seed through this run.sh again (stages 11 to min(13, S)), with ARGS (run.sh's own
#   command line) minus the options the sweep sets itself, and writes mean and sd per
#   setting into R and one plot per key. N runs at a time, each on its own G GPUs.
run_sweep() {
    local config= expdir_= results= grid_= seeds_=0 jobs_=1 ngpu_=0 stop_=13 sets_="dev test"
    while [ $# -gt 0 ]; do
        case "$1" in
            --config) config=$2; shift 2 ;;
            --expdir) expdir_=$2; shift 2 ;;
            --results_md) results=$2; shift 2 ;;
            --grid) grid_=$2; shift 2 ;;
            --seeds) seeds_=$2; shift 2 ;;
            --jobs) jobs_=$2; shift 2 ;;
            --ngpu) ngpu_=$2; shift 2 ;;
            --stop_stage) stop_=$2; shift 2 ;;
            --sets) sets_=$2; shift 2 ;;
            --) shift; break ;;
            *) die "run_sweep: unknown option $1" ;;
        esac
    done
    [ -n "${config}" ] && [ -n "${expdir_}" ] || die "run_sweep: --config and --expdir are required"
    local passed=() skip=0 a
    for a in "$@"; do  # drop the options the sweep sets itself
        if [ "${skip}" = 1 ]; then skip=0; continue; fi
        case "${a}" in
            --stage|--stop_stage|--sweep|--sweep_seeds|--sweep_jobs|--asr_config|--asr_tag) skip=1 ;;
            --stage=*|--stop_stage=*|--sweep=*|--sweep_seeds=*|--sweep_jobs=*|--asr_config=*|--asr_tag=*) ;;
            *) passed+=("${a}") ;;
        esac
    done
    local grid=() g run_args_=
    for g in ${grid_}; do grid+=(--grid "${g}"); done
    [ "${#passed[@]}" -eq 0 ] || run_args_=$(printf '%q ' "${passed[@]}")
    local last=$(( stop_ < 13 ? stop_ : 13 ))
    log "sweep ${grid_} x seeds ${seeds_}: stages 11-${last} per run (${config})"
    # shellcheck disable=SC2086
    "${PYTHON}" -m espnet_otreg.bin.sweep --recipe_dir . --config "${config}" "${grid[@]}" \
        --seeds ${seeds_} --stages "11-${last}" --expdir "${expdir_}" --sets ${sets_} \
        --results_md "${results}" --run_args "${run_args_}" \
        --jobs "${jobs_}" --gpus_per_job "${ngpu_}" \
        || die "sweep failed: rerun the same command to resume it"
}
