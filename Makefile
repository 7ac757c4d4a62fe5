# Thin wrapper over CMake: the README's commands.
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 120
JOBS ?= $(shell nproc)
# ctest with JOBS tests at a time (one slot of ctest-cores.json each), and the two at the lowest
# priority (tests/CMakeLists.txt) beside them.
CORES = printf '{"version":{"major":1,"minor":0},"local":[{"cores":[{"id":"0","slots":%d}]}]}\n' \
	$(JOBS) >ctest-cores.json
CTEST = ctest --output-on-failure --resource-spec-file ctest-cores.json -j $$(($(JOBS) + 2))

.PHONY: all deps build test test-asan test-fast run bench lint clean fuzz

all: build

deps:
	@./scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The whole suite: lint, the normal build, then the same suite under ASan+UBSan.
test: deps lint
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@cd $(BUILD) && $(CORES) && $(CTEST) --timeout 300
	@$(MAKE) --no-print-directory test-asan

test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DWEBHOOKS_SANITIZE=ON -DWEBHOOKS_BENCH=OFF >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && $(CORES) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(CTEST) --timeout 600

# The suite once, without the sanitizer pass (for quick local runs).
test-fast: build
	@cd $(BUILD) && $(CORES) && $(CTEST) --timeout 300

lint:
	@./scripts/lint.sh

# The libFuzzer harnesses of tests/fuzz (a clang build of their own), FUZZ_SECONDS each;
# make test runs 6 s of each (the ctest test fuzz).
fuzz: deps
	@./scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BUILD)

run: build
	@./scripts/run.sh $(BUILD)

bench: build
	@./bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
