# The two commands of the README. Everything else lives in infra/.
.PHONY: dev test bench

dev:
	bash infra/dev.sh

test:
	bash infra/test.sh

# Optional, not part of test: issue 10's benchmark on release builds through the local stack
# (writes docs/benchmark.md and docs/*.svg; a few minutes on 2 cores once target/release is
# built, never more than 15).
# Arguments go through BENCH_ARGS, e.g. make bench BENCH_ARGS=--quick
bench:
	bash infra/install.sh && cargo build --release --workspace --bins && target/release/local-bench $(BENCH_ARGS)
