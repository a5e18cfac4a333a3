# shellcheck shell=bash
# Environment for run.sh. Users normally `pip install -e .` the repository (or
# `pip install espnet-otreg`); from a source checkout without that, put the repository
# root on PYTHONPATH so `python -m espnet_otreg...` works.
if ! python -c "import espnet_otreg" 2>/dev/null; then
  _root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
  export PYTHONPATH="${_root}${PYTHONPATH:+:${PYTHONPATH}}"
  python -c "import espnet_otreg" || { echo "path.sh: cannot import espnet_otreg" >&2; return 1; }
fi
export LC_ALL=C.UTF-8
export PYTHONIOENCODING=UTF-8
export PYTHONUNBUFFERED=1
