#!/usr/bin/env bash
# Start the daemon on the shipped models and play (the README's quick start, via `make serve`).
# With a sound card: FluidSynth plays to it (the platform's sound server, or ALSA) beside the MIDI
# port, so the music is heard at once. With an ALSA sequencer: a virtual ALSA MIDI port. Without one
# (a server, a container), a JACK server with the dummy backend is started for the session and the
# daemon plays to a JACK virtual port; the performance is also recorded to performance.mid, and the
# startup report says how to listen to it. Extra arguments go to `e2m-live serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
E2M=.venv/bin/e2m-live
args=(serve --autoplay)
jack_pid=""
cleanup() { [ -n "$jack_pid" ] && kill "$jack_pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

sound_card=""
if [ "$(uname)" = Darwin ] || compgen -G "/dev/snd/pcmC*D*p" >/dev/null; then
  sound_card=yes
  echo "serve: sound card found; FluidSynth plays to it beside the MIDI port"
  args+=(--fluidsynth)
fi
if [ ! -e /dev/snd/seq ] && [ "$(uname)" != Darwin ] && command -v jackd >/dev/null; then
  if ! jack_lsp >/dev/null 2>&1; then
    echo "serve: no ALSA sequencer here; starting a JACK server (dummy backend) for this session"
    jackd -d dummy -r 48000 -p 256 >/tmp/e2m-jackd.log 2>&1 &
    jack_pid=$!
    for _ in $(seq 50); do jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  args+=(--midi-api jack)
  [ -z "$sound_card" ] && args+=(--record performance.mid)
fi
"$E2M" "${args[@]}" "$@"
