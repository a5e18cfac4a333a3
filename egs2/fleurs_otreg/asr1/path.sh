# Sourced by run.sh. Which Python: $PYTHON if set, else the active virtual environment,
# else the repository's .venv, else python3. Users normally `pip install -e .` the
# repository; when espnet_otreg is not importable, the repository root (three levels
# up) goes on PYTHONPATH so a plain checkout works too.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -n "${VIRTUAL_ENV:-}" ]; then
        PYTHON="${VIRTUAL_ENV}/bin/python"
    elif [ -x "${_root}/.venv/bin/python" ]; then
        PYTHON="${_root}/.venv/bin/python"
    else
        PYTHON=python3
    fi
fi
if ! "${PYTHON}" -c "import espnet_otreg" 2>/dev/null; then
    export PYTHONPATH="${_root}${PYTHONPATH:+:${PYTHONPATH}}"
fi
export PYTHON
export PYTHONIOENCODING=UTF-8
export PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
