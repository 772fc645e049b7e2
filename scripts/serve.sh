#!/usr/bin/env bash
# Start the daemon on the shipped models and play (the README's quick start, via `make serve`).
# With an ALSA sequencer: a virtual ALSA MIDI port. Without one (a server, a container), a JACK server
# with the dummy backend is started for the session and the daemon plays to a JACK virtual port;
# the performance is also recorded to performance.mid so it can be checked. Extra arguments go to
# `e2m-live serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
E2M=.venv/bin/e2m-live
args=(serve --autoplay)
jack_pid=""
cleanup() { [ -n "$jack_pid" ] && kill "$jack_pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

if [ ! -e /dev/snd/seq ] && command -v jackd >/dev/null; then
  if ! jack_lsp >/dev/null 2>&1; then
    echo "serve: no ALSA sequencer here; starting a JACK server (dummy backend) for this session"
    jackd -d dummy -r 48000 -p 256 >/tmp/e2m-jackd.log 2>&1 &
    jack_pid=$!
    for _ in $(seq 50); do jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  args+=(--midi-api jack --record performance.mid)
fi
"$E2M" "${args[@]}" "$@"
