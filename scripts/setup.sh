#!/usr/bin/env bash
# Install everything e2m-live needs on a Debian machine (run as root, or with sudo for apt).
# Idempotent: a second run only checks. Creates ./.venv with the package installed editable.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium: the browser the web-surface tests drive through Playwright (never a downloaded one).
# libjemalloc2: the generation worker's allocator (e2m_live/live/allocator.py: glibc's heap fragments).
APT_PACKAGES=(jackd2 libfluidsynth3 fluid-soundfont-gm puredata-core chromium libjemalloc2)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.e2m-installed
want=$( (cat pyproject.toml scripts/setup.sh; echo "${E2M_EXTRAS:-}") | sha1sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, from the CPU build: a plain `torch` requirement would fetch a multi-GB CUDA wheel.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[${E2M_EXTRAS:-dev,train}]"
  echo "$want" > "$stamp"
fi
