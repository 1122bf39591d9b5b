#!/usr/bin/env bash
# Regenerate the English speech samples committed under test-models/speech/ (only needed to
# change them: the files are committed, CI never runs this). They are synthesised with
# espeak-ng (voice en-us, 150 words a minute) and converted with sox; `sox -D` (no dither)
# makes the output byte-reproducible for a given espeak-ng and sox version (made with
# Debian 12's espeak-ng 1.51 and sox 14.4.2). Installs espeak-ng and sox with apt-get when
# they are missing.
#
#   scripts/make-speech.sh [OUT_DIR]      (default: test-models/speech)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
OUT=${1:-$ROOT/test-models/speech}
log() { echo "[make-speech] $*" >&2; }

apt_install make-speech -- espeak-ng sox

mkdir -p "$OUT"
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT

# speak NAME TEXT: espeak-ng's own output (22050 Hz mono 16-bit) in $TMP/NAME.wav.
speak() { espeak-ng -v en-us -s 150 -w "$TMP/$1.wav" "$2"; }

# wav NAME OUT RATE CHANNELS [ENCODING BITS]: convert $TMP/NAME.wav into $OUT/OUT.
wav() {
  sox -D "$TMP/$1.wav" -r "$3" -c "$4" -b "${6:-16}" -e "${5:-signed-integer}" "$OUT/$2"
  log "$2: $(soxi -D "$OUT/$2") s, $3 Hz, $4 channel(s), ${6:-16}-bit ${5:-signed-integer}"
}

# The plain samples: 16 kHz mono 16-bit PCM, what Whisper wants.
speak door "Please open the door."
speak fox "The quick brown fox jumps over the lazy dog."
speak london "The next train to London leaves at noon."
speak paris "Tomorrow it will be sunny and warm in Paris."
speak rocket "The rocket will launch in ten seconds."
speak long "Good morning, and welcome to the weather report. \
Today will be cloudy in the north, with light rain in the afternoon. \
In the south, the sun will shine all day. \
Tomorrow, strong winds are expected along the coast. \
Please drive carefully, and have a pleasant evening."
for s in door fox london paris rocket long; do wav $s $s.wav 16000 1; done

# door.wav in other formats, for the plugin's resampling and down-mixing.
wav door door-8k.wav 8000 1
wav door door-22k.wav 22050 1
wav door door-44k.wav 44100 1
wav door door-stereo.wav 16000 2
wav door door-f32.wav 16000 1 floating-point 32
log "done: $(du -sh "$OUT" | cut -f1) in $OUT"
