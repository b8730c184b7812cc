#!/usr/bin/env bash
# `make bench`: builds the Lambda functions and the bench (bench/), then runs the bench, which
# prints one Markdown table and writes it to target/bench/report.md. See BENCHMARKS.md.
#
#   BENCH=full   (default) release profile, 100 cold starts per function, 10 000 warm calls,
#                arm64 zips via `make build` (cargo-lambda + zig)
#   BENCH=short  debug builds (what `cargo test` has mostly built already), a few iterations, no
#                zips: checks that the bench runs (make test does); its figures mean nothing
#   FUNCTIONS    the functions to measure (the Makefile passes its list)
#   BENCH_VARIANTS  alternatives to today's code to measure beside it, by name of a folder of
#                bench/variants/ (or "all"): each is a copy of the crate with that folder's files
#                swapped in, and adds a table of its own to the report. Off unless set.
#   BENCH_AGAINST  a git revision (e.g. a release tag): its `token` is built from that revision's
#                tree and measured beside today's the same way, so a change's cost shows in the
#                same run. Off unless set.
#
# Needs redis-server (installed from Debian's packages when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${BENCH:-full}
functions=${FUNCTIONS:-login callback token verify revoke keepalive}
work=target/bench
bench_target=$work/target
# The settings of a [profile.NAME] section, on one line.
profile_settings() {
  sed -n "/^\[profile\.$2\]/,/^\[/p" "$1" | grep -E '^[a-z-]+ *=' | tr -s ' ' | paste -sd ';' | sed 's/;/; /g'
}
case "$mode" in
  full)
    profile=release
    profile_note="release ($(profile_settings Cargo.toml release))"
    ;;
  short)
    profile=dev
    profile_note="dev"
    ;;
  *) echo "BENCH must be full or short, not $mode" >&2; exit 2 ;;
esac
if [ "$(profile_settings Cargo.toml release)" != "$(profile_settings bench/Cargo.toml release)" ]; then
  echo "bench: warning: [profile.release] differs between Cargo.toml and bench/Cargo.toml;" \
    "the baseline is not built like the functions" >&2
fi

if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found; installing it from Debian's packages" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi

bins=()
for f in $functions; do bins+=(--bin "$f"); done

echo "bench: building the functions ($profile)" >&2
cargo build --profile "$profile" --locked "${bins[@]}"
echo "bench: building the key-list example ($profile)" >&2
cargo build --profile "$profile" --locked --example key_list
echo "bench: building the bench and the hello-world baseline ($profile)" >&2
CARGO_TARGET_DIR=$bench_target cargo build --manifest-path bench/Cargo.toml --profile "$profile" --locked \
  -p token-broker-bench -p bench-baseline

extra=()

# A copy of the crate with one alternative from bench/variants/<name>/ swapped in, its token
# binary built into $work/variants/<name>/. In the folder: `<module file>.rs` replaces the module
# file of that name, `<module file>.patch` is applied to it (files are found by name wherever they
# sit under src/, so moving modules does not break this), and `Cargo.deps.toml` adds
# dependencies. The lock file starts from the broker's, so shared dependencies keep their versions.
build_variant() {
  local name=$1 dir=bench/variants/$1 copy=$work/variant-$1 file module found
  [ -d "$dir" ] || { echo "bench: no variant $name in bench/variants/" >&2; return 1; }
  rm -rf "$copy" && mkdir -p "$copy"
  cp -r Cargo.toml Cargo.lock src "$copy/"
  for file in "$dir"/*; do
    case "$file" in
      *.rs | *.patch) ;;
      *) continue ;;
    esac
    module=$(basename "${file%.patch}")
    found=$(find "$copy/src" -name "$module")
    if [ "$(printf '%s\n' "$found" | grep -c .)" != 1 ]; then
      echo "bench: variant $name: expected one $module under src/, found: ${found:-none}" >&2
      return 1
    fi
    case "$file" in
      *.patch) patch -s --no-backup-if-mismatch "$found" < "$file" || return 1 ;;
      *) cp "$file" "$found" ;;
    esac
  done
  # A package name of its own (the library keeps its name): cargo names a path package's
  # artifacts after its name and its path inside its workspace, which is the same for every
  # copy, so copies sharing a target directory would otherwise pass for one another's builds.
  sed -i "0,/^name = \"token-broker\"/s//name = \"token-broker-$name\"/" "$copy/Cargo.toml"
  printf '\n[lib]\nname = "token_broker"\npath = "src/lib.rs"\n' >> "$copy/Cargo.toml"
  if [ -f "$dir/Cargo.deps.toml" ]; then
    sed -i "/^\[dependencies\]/r $dir/Cargo.deps.toml" "$copy/Cargo.toml"
  fi
  echo "bench: building variant $name of token ($profile)" >&2
  CARGO_TARGET_DIR=$work/variant-target cargo build --manifest-path "$copy/Cargo.toml" \
    --profile "$profile" --bin token || return 1
  mkdir -p "$work/variants/$name"
  cp "$work/variant-target/$out/token" "$work/variants/$name/token"
}

# Cargo puts the dev profile's output in debug/.
out=$profile
[ "$profile" = dev ] && out=debug
variants=${BENCH_VARIANTS:-}
[ "$variants" = all ] && variants=$(cd bench/variants && ls -d */ | tr -d /)
built=()
for name in $variants; do
  if build_variant "$name"; then
    built+=("$name=$work/variants/$name/token")
  else
    echo "bench: variant $name did not build; it is left out" >&2
  fi
done
if [ -n "${BENCH_AGAINST:-}" ]; then
  against=$work/against-tree
  rev=$(git rev-parse --short "$BENCH_AGAINST")
  rm -rf "$against" && mkdir -p "$against"
  git archive "$rev" | tar -x -C "$against"
  echo "bench: building token as of $rev ($profile)" >&2
  if CARGO_TARGET_DIR=$work/against-target cargo build --manifest-path "$against/Cargo.toml" \
      --profile "$profile" --locked --bin token; then
    mkdir -p "$work/variants/at-$rev"
    cp "$work/against-target/$out/token" "$work/variants/at-$rev/token"
    built+=("at-$rev=$work/variants/at-$rev/token")
  else
    echo "bench: token as of $rev did not build; it is left out" >&2
  fi
fi
if [ ${#built[@]} -gt 0 ]; then
  # Today's token for the comparison, and once more as a control whose row shows the spread.
  mkdir -p "$work/variants/today" "$work/variants/control"
  cp "target/$out/token" "$work/variants/today/token"
  cp "target/$out/token" "$work/variants/control/token"
  extra+=(--today-token "$work/variants/today/token")
  extra+=(--variants "control=$work/variants/control/token ${built[*]}")
fi

if [ "$mode" = full ]; then
  # The token function again, on tokio's multi-threaded runtime: a copy of the crate with that one
  # line changed, for the runtime-flavour comparison.
  variant=$work/variant-mt
  rm -rf "$variant" && mkdir -p "$variant"
  cp -r Cargo.toml Cargo.lock src "$variant/"
  sed -i 's/new_current_thread()/new_multi_thread()/' "$variant/src/serve/lambda.rs"
  if grep -q 'new_multi_thread()' "$variant/src/serve/lambda.rs"; then
    echo "bench: building the multi_thread variant of token" >&2
    if CARGO_TARGET_DIR=$work/variant-target cargo build --manifest-path "$variant/Cargo.toml" \
        --release --locked --bin token --features tokio/rt-multi-thread; then
      extra+=(--token-mt "$work/variant-target/release/token")
    else
      echo "bench: the multi_thread variant did not build; the runtime comparison covers the hello-world only" >&2
    fi
  else
    echo "bench: src/serve/lambda.rs has no new_current_thread() any more; no multi_thread variant" >&2
  fi

  echo "bench: building the arm64 zips (make build)" >&2
  make --no-print-directory build >&2
  extra+=(--zip-dir target/lambda)
  # The baseline's zip, built the same way.
  (cd bench && PATH="$(cd .. && pwd)/target/tools-venv/bin:$PATH" CARGO_TARGET_DIR=../$bench_target \
    cargo lambda build --release --arm64 --output-format zip --package bench-baseline --lambda-dir ../$work/lambda) >&2
  extra+=(--baseline-zip "$work/lambda/hello/bootstrap.zip")
fi

# Every binary of the comparison written anew just before it is measured: the same bytes
# faulted 11 times less per cold start, and kept 0.2 MiB more resident, freshly written by cp
# than as the linker wrote them, and a copy drifted towards the latter within minutes (the page
# cache holds a file in pieces whose size depends on how and when it was written, and the kernel
# maps the pieces around a fault).
if [ ${#built[@]} -gt 0 ]; then
  for binary in "$work"/variants/*/token; do
    cp "$binary" "$binary.new" && mv "$binary.new" "$binary"
  done
fi
exec "$bench_target/$out/token-broker-bench" \
  --mode "$mode" \
  --functions "$functions" \
  --bin-dir "target/$out" \
  --baseline "$bench_target/$out/hello" \
  --events events \
  --profile "$profile_note" \
  --work "$work" \
  --key-list "target/$out/examples/key_list" \
  "${extra[@]}"
