# The two commands of the README. Everything else lives in infra/.
.PHONY: dev test bench reliability

# make dev PARAMS="MaxSendsPerMinute=1000" overrides template parameters (as sam local does).
dev:
	PARAMS="$(PARAMS)" bash infra/dev.sh

test:
	bash infra/test.sh

# Optional, not part of test: issue 10's benchmark on release builds through the local stack
# (writes docs/benchmark.md and docs/*.svg; a few minutes on 2 cores once target/release is
# built, never more than 15).
# Arguments go through BENCH_ARGS, e.g. make bench BENCH_ARGS=--quick
bench:
	bash infra/install.sh && cargo build --release --workspace --bins && target/release/local-bench $(BENCH_ARGS)

# Optional, not part of test: load and fault runs on release builds through the local stack
# (writes docs/reliability-figures.md; see docs/reliability.md). Bounded: 20 minutes at most.
# make reliability RELIABILITY_ARGS=--quick for a short run.
reliability:
	bash infra/install.sh && cargo build --release --workspace --bins && target/release/local-reliability --release $(RELIABILITY_ARGS)
