#!/usr/bin/env bash
# Set up, build, and run every test: the plugin's unit tests and the end-to-end tests that
# drive the real wasmedge CLI with real guests and models, then the demo (its native build),
# then each fuzz target for FUZZ_SECONDS (60; 0 skips them), then the container image
# (CONTAINER_CHECK, below).
# Extra arguments go to cargo test (e.g. a test name) and skip the container and fuzzing.
set -euo pipefail
started=${NN_RUN_STARTED:-$(date +%s)}
# Where the time goes, phase by phase (.ci/run repeats these lines at the end).
phase() { echo "[test] at minute $(( ($(date +%s) - started) / 60 )): $*" >&2; }
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/setup-tests.sh"
phase "set up; building"
bash "$ROOT/scripts/build.sh"
# Again, now that WasmEdge is installed: the test runner for binaries linking libwasmedge.
. "$ROOT/scripts/env.sh"
cd "$ROOT"
# The native Whisper reference runs as a process of its own (whisper-rs and llama-cpp-2 each
# bring a ggml, so no test binary can link both), built as the Whisper runtime the plugin
# opens on this CPU ($WHISPER_NATIVE).
build_whisper "$(whisper_level_here)" -p whisper-native
# The benchmarks are not run here, but must keep building.
drop_dangling_lib_links
cargo bench --no-run --locked -p e2e
# ggml's worker threads spin-wait: two models running at once on a small machine starve each
# other, so the tests run one at a time.
drop_dangling_lib_links
# (The Whisper crates have no tests of their own and are built per CPU level, above.)
tests=(--release --locked --workspace --exclude wasmedge-nn-whisper --exclude whisper-native)
# One build of llama.cpp for the plugin and the tests' native side, not two (see the
# build-dependencies in plugin/Cargo.toml): a second costs a cold machine minutes.
tests_llama=$(cargo test --no-run "${tests[@]}" --message-format=json-render-diagnostics | llama_out_dir)
[ "$tests_llama" = "$(cat "$CARGO_TARGET_DIR/plugin-llama-build")" ] \
  || echo "warning: the tests build llama.cpp apart from the plugin's ($tests_llama): features differ" >&2
phase "built; the tests"
cargo test "${tests[@]}" "$@" -- --test-threads=1
if [ $# -eq 0 ]; then
  phase "the CLI tests again, on WasmEdge 0.17"
  # The same plugin and guests on WasmEdge 0.17 (plugin API 5, 64-bit memory offsets): every
  # test that drives the wasmedge CLI, again.
  WASMEDGE_BIN=$NN_CACHE/wasmedge-0.17.1/bin/wasmedge \
    cargo test --release --locked -p e2e --test cli --test hostile_guest --test hearing --test vision \
    --test fidelity --test long_runs \
    --test broken_models -- --test-threads=1
fi
if [ $# -eq 0 ]; then
  # The server guest's request handling (a library without WASI) has unit tests of its own,
  # run natively.
  ( cd "$ROOT/guest-examples" && cargo test --locked -p server-api --target "$(rustc -vV | sed -n 's/^host: //p')" )
fi
if [ $# -eq 0 ]; then
  phase "the demo"
  # The README's demo as a new user runs it: the native build (llama.cpp compiled for this
  # CPU, linked into the plugin) answers its question.
  demo_out=$(bash "$ROOT/scripts/demo.sh")
  echo "$demo_out"
  grep -q Paris <<<"$demo_out" || { echo "the demo's answer does not name Paris" >&2; exit 1; }
  echo "demo: the native build answered: $(head -n1 <<<"$demo_out")"
fi
if [ $# -eq 0 ] && [ "${FUZZ_SECONDS:-60}" -gt 0 ]; then
  phase "fuzzing"
  bash "$ROOT/scripts/fuzz.sh" "${FUZZ_SECONDS:-60}"
fi
# The container image, then its health check, chat and transcribe examples. CONTAINER_CHECK:
#   source    the Dockerfile as users build it: its build stage compiles the plugin and the
#             examples (15 minutes from empty caches on 2 cores; minutes once its cargo cache
#             mounts hold a build);
#   prebuilt  assembled from the files built above (about a minute);
#   auto      (the default) source when this run has so far taken under
#             CONTAINER_SOURCE_MINUTES (40) since NN_RUN_STARTED (epoch seconds; .ci/run sets
#             it) or this script's start, else prebuilt. A cold run reaches this point after
#             about 47 minutes on 2 cores and its image build takes 19 more (66 in all, of CI's
#             90): it takes the prebuilt path; a run with warm caches builds from source;
#   0         no container check.
if [ $# -eq 0 ]; then
  check=${CONTAINER_CHECK:-auto}
  if [ "$check" = auto ]; then
    elapsed=$(( ($(date +%s) - started) / 60 ))
    if [ "$elapsed" -lt "${CONTAINER_SOURCE_MINUTES:-40}" ]; then check=source; else check=prebuilt; fi
    echo "[test] at minute $elapsed: the container check builds the image from $check" >&2
  fi
  case $check in
    source) bash "$ROOT/scripts/container.sh"
            echo "container: image built from source and its examples answered" ;;
    prebuilt) bash "$ROOT/scripts/container.sh" --prebuilt
              echo "container: image built from this machine's build and its examples answered" ;;
    0) ;;
    *) echo "CONTAINER_CHECK is auto, source, prebuilt or 0, not $check" >&2; exit 1 ;;
  esac
fi
phase "done"
