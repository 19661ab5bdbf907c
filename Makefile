# The two commands of the README. Everything else lives in infra/.
.PHONY: dev test

dev:
	bash infra/dev.sh

test:
	bash infra/test.sh
