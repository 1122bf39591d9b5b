#!/usr/bin/env bash
# Build the container image (Dockerfile) and run its examples, on a machine without a Docker
# engine or registry access: buildah builds, podman runs, runc underneath, and the base image
# comes from debootstrap instead of a registry. Idempotent; storage lives under
# $NN_CACHE/containers, never in the system's.
#
#   scripts/container.sh            build the image, then check it: health check, the chat
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
missing=()
for p in buildah podman runc debootstrap uidmap; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

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
buildah bud --pull=never --runtime runc --layers --format docker "${certs[@]}" "${files[@]}" -t "$IMAGE" "$ROOT"
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$IMAGE"
[ "${1:-}" = build ] && exit 0

run() {
  podman run --runtime runc --ulimit nofile=1024:20000 --ulimit nproc=32768:32768 --rm \
    -v "$MODELS_DIR:/models:ro" "$IMAGE" "$@"
}
log "health check"
run --version
log "the image's default command: the server, its health check, and a chat through it"
# One container: the server in the background, then the image's health check and a request,
# both from inside (bash's /dev/tcp; the image has no curl).
out=$(run bash -c '
  wasmedge-nn & server=$!
  for _ in $(seq 120); do wasmedge-nn health 2>/dev/null && break; sleep 0.5; done
  wasmedge-nn health || exit 1
  body="{\"messages\": [{\"role\": \"system\", \"content\": \"You are a helpful assistant.\"}, {\"role\": \"user\", \"content\": \"What is the capital of France?\"}], \"temperature\": 0, \"max_tokens\": 32}"
  exec 3<>/dev/tcp/127.0.0.1/8080
  printf "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" "${#body}" "$body" >&3
  timeout 60 cat <&3
  kill $server')
echo "$out"
grep -q Paris <<< "$out" || { log "the server did not answer with Paris"; exit 1; }
log "chat example on SmolLM2"
out=$(run chat)
echo "$out"
grep -q Paris <<< "$out" || { log "the chat example did not answer with Paris"; exit 1; }
log "transcribe example"
out=$(run transcribe /models/speech/fox.wav)
echo "$out"
grep -qi 'brown fox' <<< "$out" || { log "the transcribe example did not hear the fox"; exit 1; }
log "the image works: $IMAGE"
