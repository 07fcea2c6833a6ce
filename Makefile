# Convenience targets; the scripts are the source of truth.
.PHONY: serve test bench build

build:
	go build -o bin/sluice ./cmd/sluice

serve:
	bash scripts/serve.sh

test:
	bash scripts/test.sh

bench:
	bash scripts/bench.sh
