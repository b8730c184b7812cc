#!/usr/bin/env bash
# Coverage-guided fuzzing of the broker's parsers with cargo-fuzz (libFuzzer), on stable Rust.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (make fuzz)
#
# Runs each target (default: all of them) for SECONDS (default 60), starting from the seeds in
# fuzz/corpus/<target>/ and the minimized crashes in fuzz/regressions/<target>/. What a run
# learns is kept in fuzz/target/corpus/<target>/ (ignored by git) and reused by the next run.
# Installs cargo-fuzz first if it is missing (about 1.5 minutes, once).
#
# Environment:
#   FUZZ_SANITIZER=none|address   default none. The broker is safe Rust, where a bug shows as a
#                                 panic (overflow checks and debug assertions are on), which
#                                 every mode catches; AddressSanitizer needs nightly's
#                                 -Zsanitizer, which this script gets on stable through
#                                 RUSTC_BOOTSTRAP=1, and runs about half as fast.
#   FUZZ_LAMBDA_HTTP_STRICT=1     fuzz lambda_http's own event conversion without the broker's
#                                 sanitize in front, to find what sanitize must repair (see
#                                 fuzz/harness.rs).
#
# Exit status 1 if any target crashed: the input is in fuzz/artifacts/<target>/, and the script
# prints how to reproduce and minimize it.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(request_parsing api_gateway_event provider_response stored_record)

seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ && $seconds -gt 0 ]] || {
	echo "usage: $0 [SECONDS] [TARGET...]   (targets: ${ALL_TARGETS[*]})" >&2
	exit 2
}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")
for target in "${targets[@]}"; do
	[[ -f fuzz/fuzz_targets/$target.rs ]] || {
		echo "no fuzz target '$target' (targets: ${ALL_TARGETS[*]})" >&2
		exit 2
	}
done

if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io (once; about 1.5 minutes)"
	cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

sanitizer=${FUZZ_SANITIZER:-none}
build_flags=(--sanitizer "$sanitizer")
case $sanitizer in
none) ;;
address)
	# -Zsanitizer is a nightly flag; stable rustc accepts it with RUSTC_BOOTSTRAP=1. A target
	# directory of its own keeps the two builds from rebuilding each other.
	rustc --version | grep -q nightly || export RUSTC_BOOTSTRAP=1
	build_flags+=(--target-dir "fuzz/target/$sanitizer")
	;;
*)
	echo "FUZZ_SANITIZER must be none or address" >&2
	exit 2
	;;
esac

echo "== building ${targets[*]} (sanitizer: $sanitizer)"
for target in "${targets[@]}"; do
	cargo fuzz build "${build_flags[@]}" "$target"
done

mkdir -p fuzz/target/logs
failed=()
summary=()
for target in "${targets[@]}"; do
	work=fuzz/target/corpus/$target${FUZZ_LAMBDA_HTTP_STRICT:+-strict}
	mkdir -p "$work" "fuzz/artifacts/$target"
	dirs=("$work" "fuzz/corpus/$target")
	# Known lambda_http panics are kept as regressions; in strict mode they would stop the run
	# at once instead of letting it look for new ones (and so would much of the corpus that a
	# contained run collects: strict runs keep their own).
	if [[ -d fuzz/regressions/$target && -z ${FUZZ_LAMBDA_HTTP_STRICT:-} ]]; then
		dirs+=("fuzz/regressions/$target")
	fi
	if [[ $(find "$work" -type f | wc -l) -gt 5000 ]]; then
		# Every run adds to the kept corpus; keep only what adds coverage (a few seconds).
		echo "== shrinking $work"
		cargo fuzz cmin "${build_flags[@]}" "$target" "$work" >/dev/null 2>&1 || true
	fi
	log=fuzz/target/logs/$target.log
	echo "== fuzzing $target for ${seconds}s (log: $log)"
	status=0
	cargo fuzz run "${build_flags[@]}" "$target" "${dirs[@]}" -- \
		-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-dict="fuzz/dict/$target.dict" >"$log" 2>&1 || status=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 || true)
	line=$(printf '%-20s %10s runs %8s exec/s  %-12s corpus %s' "$target" "${runs:-?}" "${rate:-?}" "${cov:-}" \
		"$(find "$work" -type f | wc -l)")
	if [[ $status -ne 0 ]]; then
		failed+=("$target")
		line+="  CRASHED"
		echo "-- $target crashed:"
		grep -E -A3 "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "$log" | head -20 || true
		artifact=$(grep -oE "fuzz/artifacts/$target/[a-z]+-[0-9a-f]+" "$log" | tail -1 || true)
		if [[ -n $artifact ]]; then
			echo "-- input: $artifact"
			env=${RUSTC_BOOTSTRAP:+RUSTC_BOOTSTRAP=1 }${FUZZ_LAMBDA_HTTP_STRICT:+FUZZ_LAMBDA_HTTP_STRICT=1 }
			echo "   reproduce: ${env}cargo fuzz run ${build_flags[*]} $target $artifact"
			echo "   minimize:  ${env}cargo fuzz tmin ${build_flags[*]} $target $artifact"
			echo "   then save the minimized input as fuzz/regressions/$target/<name> (make test runs it)"
		fi
	fi
	summary+=("$line")
done

echo "== summary (${seconds}s per target, sanitizer: $sanitizer)"
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
	echo "crashed: ${failed[*]}" >&2
	exit 1
fi
