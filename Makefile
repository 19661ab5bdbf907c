# The two commands of the README. Everything else lives in infra/.
.PHONY: dev test bench

dev:
	bash infra/dev.sh

test:
	bash infra/test.sh

# Optional: latency and throughput through the local stack (writes docs/benchmark.md).
bench:
	bash infra/install.sh && cargo build --workspace --bins && target/debug/local-bench
