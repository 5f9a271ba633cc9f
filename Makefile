# Convenience targets; each is one script, so the scripts stay the truth.
#   make            build into build/
#   make test       the whole suite (the README's test command)
#   make serve      build and run `ringtls serve` on its defaults
#   make fuzz       every libFuzzer target, FUZZ_SECS each (default 600)
#   make soak       mixed load for SOAK_MINUTES (default 10)
#   make bench      the benchmark suite against nginx and h2o
FUZZ_SECS ?= 600
SOAK_MINUTES ?= 10

.PHONY: all build test serve fuzz soak bench
all build:
	bash scripts/build.sh
test:
	./scripts/test
serve:
	./scripts/serve
fuzz:
	DEPS=test bash scripts/build.sh
	bash scripts/fuzz.sh build/fuzz $(FUZZ_SECS)
soak:
	DEPS=test bash scripts/build.sh
	bash scripts/soak.sh $(SOAK_MINUTES)
bench:
	bash bench/run.sh
