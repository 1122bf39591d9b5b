# WasmEdge with this WASI-NN plugin (GGML and Whisper) and the guest examples, for serverless
# platforms and plain `docker run`. Models are mounted at /models, never baked in.
#
#   docker build -t wasmedge-nn .
#   docker run --rm -p 8080:8080 -v "$PWD/test-models:/models:ro" wasmedge-nn     # the server: http://localhost:8080/
#   docker run --rm -v "$PWD/test-models:/models:ro" wasmedge-nn chat             # one question, default model
#   docker run --rm -v "$PWD/test-models:/models:ro" -e MODEL=/models/other.gguf \
#       wasmedge-nn chat 'Why is the sky blue?'
#   docker run --rm -v "$PWD/test-models:/models:ro" wasmedge-nn transcribe /models/speech/hello.wav
#   docker run --rm wasmedge-nn --version                                         # also the health check
#
# Without a Docker engine: scripts/container.sh builds and runs it with buildah and podman.
# `--build-arg FILES=prebuilt` takes the plugin and examples from docker/prebuilt/ instead of
# compiling them (scripts/container.sh --prebuilt puts a host build there; the test command
# uses that when a run is already long).
#
# The image runs on any x86-64 CPU: llama.cpp's math comes as per-CPU variants (baseline SSE2
# up to AVX-512 and AMX) and the plugin loads the best one for the machine it runs on; the
# Whisper runtime comes built for three CPU levels (x86-64, x86-64-v3 with AVX2, x86-64-v4
# with AVX-512) and the plugin opens the best one. Nothing is built for the building machine.

# Where the runtime stage takes its files from: the build stage, or docker/prebuilt/.
ARG FILES=build

# ---- build: the plugin, its Whisper runtime and the guest examples -------------------------
FROM debian:trixie-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake clang libclang-dev pkg-config ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
# Rust from the Rust project's own distribution (Debian's rustc has no wasm32-wasip1).
ARG RUST_VERSION=1.95.0
ENV RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo PATH=/opt/cargo/bin:$PATH
RUN curl --proto '=https' -sSf -o /tmp/rustup-init \
      "https://static.rust-lang.org/rustup/dist/$(uname -m)-unknown-linux-gnu/rustup-init" \
 && chmod +x /tmp/rustup-init \
 && /tmp/rustup-init -y -q --no-modify-path --profile minimal \
      --default-toolchain "$RUST_VERSION" --target wasm32-wasip1 \
 && rm /tmp/rustup-init
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/opt/cargo/registry \
    --mount=type=cache,target=/src/target \
    export CARGO_TARGET_DIR=/src/target \
 && bash scripts/plugin-files.sh /out/plugin --strip \
 && (cd guest-examples && cargo build --release --locked) \
 && mkdir -p /out/examples \
 && cp target/wasm32-wasip1/release/*.wasm /out/examples/ \
 && bash -c 'printf "$(sed "s/../\\\\x&/g" scripts/nn-check.wasm.hex)"' > /out/nn-check.wasm \
 && sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1 > /out/VERSION

# ---- prebuilt: the same files, built outside (docker/prebuilt/: plugin/, examples/,
# nn-check.wasm, VERSION) ------------------------------------------------------------------------
FROM scratch AS prebuilt
COPY docker/prebuilt/ /out/

FROM ${FILES} AS files

# ---- runtime: WasmEdge, the plugin, the examples; no compilers ------------------------------
FROM debian:trixie-slim
# Debian 13 packages WasmEdge 0.14.1; libgomp1 runs ggml's OpenMP threads; tini, as PID 1,
# passes SIGTERM on (a process that is PID 1 ignores it), so `docker stop` and a serverless
# host's scale-down end the server at once instead of killing it after a grace period.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wasmedge libgomp1 tini \
 && rm -rf /var/lib/apt/lists/*
COPY --from=files /out/plugin/ /opt/wasmedge-nn/plugin/
COPY --from=files /out/examples/ /opt/wasmedge-nn/examples/
COPY --from=files /out/nn-check.wasm /out/VERSION /opt/wasmedge-nn/
COPY docker/wasmedge-nn /usr/local/bin/wasmedge-nn
# The server compiled ahead of time, as a generic x86-64 binary (any CPU runs it): its own
# code (HTTP, JSON, templates, per token) runs natively instead of in WasmEdge's interpreter.
RUN wasmedge compile --generic-binary /opt/wasmedge-nn/examples/server.wasm /tmp/server.wasm >/dev/null \
 && mv /tmp/server.wasm /opt/wasmedge-nn/examples/server.wasm
ENV WASMEDGE_PLUGIN_PATH=/opt/wasmedge-nn/plugin \
    MODEL=/models/SmolLM2-135M-Instruct.Q4_1.gguf \
    WHISPER_MODEL=/models/ggml-tiny.en.bin
WORKDIR /work
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s CMD ["wasmedge-nn", "health"]
ENTRYPOINT ["tini", "--", "wasmedge-nn"]
CMD ["serve"]
