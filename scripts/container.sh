#!/usr/bin/env bash
# Build the container image (Dockerfile) and run its examples, on a machine without a Docker
# engine or registry access: buildah builds, podman runs, runc underneath, and the base image
# comes from debootstrap instead of a registry. Idempotent; storage lives under
# $NN_CACHE/containers, never in the system's.
#
#   scripts/container.sh            build the image, then check it: its default command (the
#                                   server) through `podman run -p`, its health check, the chat
#                                   example on SmolLM2, the transcribe example on a sample
#   scripts/container.sh build      only build it
#   scripts/container.sh --prebuilt [build]
#                                   the same, with the plugin and examples this machine built
#                                   (scripts/build.sh) instead of compiling them in the image:
#                                   about a minute instead of a quarter of an hour (the test
#                                   command's choice when a run is already long). The files
#                                   must run on Debian 13 (they do: built on Debian 12, older
#                                   glibc)
#
# With Docker instead:  docker build -t wasmedge-nn . && docker run --rm \
#   -v "$PWD/test-models:/models:ro" wasmedge-nn
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { echo "[container] $*" >&2; }
IMAGE=${IMAGE:-localhost/wasmedge-nn:latest}
BASE=debian:trixie-slim   # the Dockerfile's FROM

SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
apt_install container -- buildah podman runc debootstrap uidmap

# Private storage and settings: runc (crun fails on hybrid cgroup hosts), no registries.
C=$NN_CACHE/containers
mkdir -p "$C/storage" "$C/run"
cat > "$C/storage.conf" <<EOC
[storage]
driver = "overlay"
graphroot = "$C/storage"
runroot = "$C/run"
EOC
cat > "$C/containers.conf" <<EOC
[engine]
runtime = "runc"
EOC
printf 'unqualified-search-registries = ["docker.io"]\n' > "$C/registries.conf"
export CONTAINERS_STORAGE_CONF=$C/storage.conf CONTAINERS_CONF=$C/containers.conf \
       CONTAINERS_REGISTRIES_CONF=$C/registries.conf

# The base image, made locally and named as the registry's so `FROM debian:trixie-slim`
# resolves without pulling.
if ! podman image exists "docker.io/library/$BASE"; then
  MIRROR=$(debian_mirror)
  [ -n "$MIRROR" ] || { log "set DEBIAN_MIRROR to your Debian mirror"; exit 1; }
  log "making the base image $BASE with debootstrap (about a minute)"
  rootfs=$(mktemp -d); trap '$SUDO rm -rf "$rootfs"' EXIT
  $SUDO debootstrap --variant=minbase trixie "$rootfs" "$MIRROR" >/dev/null
  $SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  $SUDO tar --numeric-owner -C "$rootfs" -c . | podman import --change 'CMD ["bash"]' - "localhost/$BASE" >/dev/null
  podman tag "localhost/$BASE" "docker.io/library/$BASE"
fi

files=()
if [ "${1:-}" = --prebuilt ]; then
  shift
  # The files the Dockerfile's build stage would make, from this machine's build.
  bash "$ROOT/scripts/build.sh"
  pre=$ROOT/docker/prebuilt
  find "$pre" -mindepth 1 ! -name README.md -delete
  bash "$ROOT/scripts/plugin-files.sh" "$pre/plugin" --strip
  mkdir -p "$pre/examples"
  for main in "$ROOT"/guest-examples/*/src/main.rs; do   # the examples' programs
    cp "$GUEST_DIR/$(basename "$(dirname "$(dirname "$main")")").wasm" "$pre/examples/"
  done
  printf "$(sed 's/../\\x&/g' "$ROOT/scripts/nn-check.wasm.hex")" > "$pre/nn-check.wasm"
  sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1 > "$pre/VERSION"
  files=(--build-arg FILES=prebuilt)
  log "building $IMAGE from this machine's build"
else
  # buildah skips stages nothing names directly, and the build stage is only named through
  # the FILES argument (`FROM ${FILES}`): without this it is skipped and `files` fails.
  files=(--skip-unused-stages=false)
  log "building $IMAGE (the first build compiles llama.cpp and whisper.cpp: about 15 minutes on 2 cores)"
fi
# The host's CA certificates, for HTTPS inside RUN steps (the Rust toolchain, crates).
certs=()
[ -d /usr/local/share/ca-certificates ] && certs=(-v /usr/local/share/ca-certificates:/usr/local/share/ca-certificates:ro)
# Docker's image format: OCI images cannot carry the HEALTHCHECK.
# buildah keeps RUN --mount=type=cache folders (cargo's registry and target: gigabytes) under
# $TMPDIR, /var/tmp by default: they go beside the image storage instead.
mkdir -p "$C/tmp"
TMPDIR=$C/tmp buildah bud --pull=never --runtime runc --layers --format docker "${certs[@]}" "${files[@]}" -t "$IMAGE" "$ROOT"
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$IMAGE"
# Each build of changed sources leaves the previous build's layers behind (2 GB for the build
# stage); the ones older than two days go, so the cache does not grow without end.
podman image prune -f --filter until=48h >/dev/null 2>&1 || true
[ "${1:-}" = build ] && exit 0

run() {
  podman run --runtime runc --ulimit nofile=1024:20000 --ulimit nproc=32768:32768 --health-interval disable --rm \
    -v "$MODELS_DIR:/models:ro" "$IMAGE" "$@"
}
log "health check"
run --version
log "the image's default command: the server, through podman run -p"
# As a serverless host runs it: detached, its port published, requests from outside. (The
# health check runs when asked: podman's timer for it needs systemd.)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cid=$(podman run -d --runtime runc --ulimit nofile=1024:20000 --ulimit nproc=32768:32768 --health-interval disable \
  -p "127.0.0.1:$port:8080" -v "$MODELS_DIR:/models:ro" "$IMAGE" 2>/dev/null)
trap 'podman rm -f "$cid" >/dev/null 2>&1 || true' EXIT
url=http://127.0.0.1:$port
for _ in $(seq 240); do curl -sf "$url/health" >/dev/null && break; sleep 0.5; done
curl -sf "$url/health" || { podman logs "$cid" | tail -20; log "the server did not answer $url/health"; exit 1; }
echo
podman healthcheck run "$cid" || { log "the image's HEALTHCHECK failed while the server ran"; exit 1; }
out=$(curl -sS --max-time 120 "$url/v1/chat/completions" -H 'Content-Type: application/json' -d '{"messages": [
  {"role": "system", "content": "You are a helpful assistant."},
  {"role": "user", "content": "What is the capital of France?"}], "temperature": 0, "max_tokens": 32}')
echo "$out"
grep -q Paris <<< "$out" || { log "the server did not answer with Paris"; exit 1; }
out=$(curl -sS --max-time 120 "$url/v1/audio/transcriptions" -F model=asr -F file=@"$MODELS_DIR/speech/fox.wav")
echo "$out"
grep -qi 'brown fox' <<< "$out" || { log "the server did not hear the fox"; exit 1; }
# `podman stop` sends SIGTERM: the server ends on it (143), not killed after the grace period (137).
podman stop -t 20 "$cid" >/dev/null 2>&1
code=$(podman inspect --format '{{.State.ExitCode}}' "$cid")
[ "$code" != 137 ] || { log "the server ignored SIGTERM and was killed"; exit 1; }
log "the server stopped on SIGTERM (exit status $code)"
podman rm -f "$cid" >/dev/null
log "chat example on SmolLM2"
out=$(run chat)
echo "$out"
grep -q Paris <<< "$out" || { log "the chat example did not answer with Paris"; exit 1; }
log "a model split over machines: the image's rpc-server worker, and its chat example as the host"
# The worker publishes its port (on loopback here); the host's plugin finds it through
# WASMEDGE_NN_RPC_SERVERS and puts every layer there (SmolLM2's weights are computed the same
# way on either side: the answer is the one above).
rport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
wid=$(podman run -d --runtime runc --ulimit nofile=1024:20000 --ulimit nproc=32768:32768 --health-interval disable \
  -p "127.0.0.1:$rport:50052" "$IMAGE" rpc-server --threads 2 2> "$C/worker.err") \
  || { grep -v 'level=error' "$C/worker.err"; log "the rpc-server worker did not start"; exit 1; }
trap 'podman rm -f "$wid" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 120); do (exec 3<>"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && break; sleep 0.5; done
split=$(podman run --runtime runc --ulimit nofile=1024:20000 --ulimit nproc=32768:32768 --health-interval disable --rm \
  --network host -e WASMEDGE_NN_RPC_SERVERS="127.0.0.1:$rport" -e WASMEDGE_NN_LOG=info \
  -v "$MODELS_DIR:/models:ro" "$IMAGE" chat 2> "$C/split.log") || { tail -20 "$C/split.log"; exit 1; }
echo "$split"
grep -q "on RPC0 (127.0.0.1:$rport)" "$C/split.log" || { tail -20 "$C/split.log"; log "the layers did not go to the worker"; exit 1; }
[ "$split" = "$out" ] || { log "split over the worker, the chat example answered otherwise"; exit 1; }
podman rm -f "$wid" >/dev/null
log "transcribe example"
out=$(run transcribe /models/speech/fox.wav)
echo "$out"
grep -qi 'brown fox' <<< "$out" || { log "the transcribe example did not hear the fox"; exit 1; }
log "the image works: $IMAGE"
