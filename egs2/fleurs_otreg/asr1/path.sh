# shellcheck shell=bash
# Sourced by run.sh (the same file in every recipe of this repository). Sets PYTHON and
# sources the shared stage library (espnet_otreg/recipe/lib.sh: options, log/die,
# run_jobs, run_training).
#
# Which Python: $PYTHON if set, else the active virtual environment, else the
# repository's .venv, else `python` on PATH. Users normally `pip install -e .` the
# repository; when espnet_otreg is not importable, the repository root (three levels
# up) goes on PYTHONPATH so a plain checkout works too.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -n "${VIRTUAL_ENV:-}" ]; then
        PYTHON="${VIRTUAL_ENV}/bin/python"
    elif [ -x "${_root}/.venv/bin/python" ]; then
        PYTHON="${_root}/.venv/bin/python"
    else
        PYTHON=$(command -v python || command -v python3)
    fi
fi
if ! _lib=$("${PYTHON}" -c "import espnet_otreg.recipe as r; print(r.LIB_SH)" 2>/dev/null); then
    export PYTHONPATH="${_root}${PYTHONPATH:+:${PYTHONPATH}}"
    _lib=$("${PYTHON}" -c "import espnet_otreg.recipe as r; print(r.LIB_SH)") || {
        echo "path.sh: ${PYTHON} cannot import espnet_otreg (pip install -e the repository)" >&2
        return 1
    }
fi
export PYTHON
export LC_ALL=C.UTF-8
export PYTHONIOENCODING=UTF-8
export PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# shellcheck source=/dev/null
. "${_lib}"
unset _root _lib
