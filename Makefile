# EMP top-level entry points. `make demo` and `make test` do all set-up on a fresh
# Debian 12 machine (run as root to let them install missing packages).
PRESET      ?= release
BUILD_DIR   := build/$(PRESET)
JOBS        ?= $(shell nproc)
DEB_PACKAGES := build-essential cmake pkg-config libfabric-dev liburing-dev libmimalloc-dev libssl-dev nlohmann-json3-dev libcli11-dev \
                libgtest-dev libgmock-dev libbenchmark-dev python3 redis-server redis-tools stress-ng
BENCH_PACKAGES := python3-matplotlib
FUZZ_PACKAGES := clang libfuzzer-14-dev
FUZZ_TARGETS := mem_path options vmd_session data_plane control_client control_request
FUZZ_SECONDS ?= 60
SOAK_MINUTES ?= 30

# Sanitizer run-time settings (used by the asan-ubsan and tsan presets; harmless otherwise).
export TSAN_OPTIONS ?= suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=1 second_deadlock_stack=1 history_size=7
export UBSAN_OPTIONS ?= print_stacktrace=1 halt_on_error=1
export ASAN_OPTIONS ?= detect_leaks=1

.PHONY: all deps configure build package test test-unit test-integration test-heavy test-stress test-vm test-asan test-tsan demo bench bench-compare clean format test-rdma test-old-kernel fuzz soak

all: build

deps:
	@scripts/install-deps.sh $(DEB_PACKAGES)

configure: deps
	@cmake --preset $(PRESET) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	@if ! command -v qemu-system-x86_64 >/dev/null || ! ls $(BUILD_DIR)/guest/kernel/boot/vmlinuz-* >/dev/null 2>&1; then \
	  echo "make test: the guest tests install qemu-system-x86, busybox-static, cpio and kmod (apt-get) and"; \
	  echo "make test: download Debian's linux-image package (~70 MB) into $(BUILD_DIR)/guest once"; fi
	@cd $(BUILD_DIR) && ctest --output-on-failure -j 2 -LE 'rdma|vm|heavy|old-kernel|stress' --timeout 600

test-unit: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -L unit

test-integration: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -L integration

# Heavier runs kept out of `make test`: redis with 1 GiB of values under libemp.so.
test-heavy: build
	@cd $(BUILD_DIR) && EMP_HEAVY_TESTS=1 ctest --output-on-failure -R Heavy --timeout 3600

# A real QEMU (TCG) guest on EMP-managed RAM (scripts/vm/run.sh; a few minutes).
test-vm: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -L vm

# Debian packages emp and emp-vmd (packaging/CMakeLists.txt) into $(BUILD_DIR)/packages.
package: build
	@cd $(BUILD_DIR) && cpack -B packages >/dev/null && ls -1 $$PWD/packages/*.deb

# stress-ng's memory stressors under libemp.so, 10 s each without EMP, with no eviction, over a file tier and
# over a loopback vmd (tests/stress/stress.py); writes bench/results/latest/stress.md.
test-stress: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -L stress

test-asan:
	@$(MAKE) --no-print-directory test PRESET=asan-ubsan

test-tsan:
	@$(MAKE) --no-print-directory test PRESET=tsan

# The engine suites inside the same guest on Debian 12's 6.1 kernel: the fallbacks of
# every probed fast path (scripts/rdma/run.sh engine).
test-old-kernel: build
	@scripts/rdma/run.sh $(CURDIR)/$(BUILD_DIR) engine

# libFuzzer on every fuzz target for FUZZ_SECONDS each (clang build in build/fuzz; new
# inputs go to build/fuzz/corpus, crashes to build/fuzz/artifacts; docs/fuzzing.md).
fuzz:
	@scripts/install-deps.sh $(DEB_PACKAGES) $(FUZZ_PACKAGES)
	@cmake --preset fuzz >/dev/null
	@cmake --build build/fuzz -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	@scripts/fuzz.sh build/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# One vmd under 4 client slots for SOAK_MINUTES: lease churn, SIGKILLed and frozen
# (reconnecting) clients; vmd's RSS, descriptors and threads must not grow.
soak: build
	@tests/soak/soak.py $(BUILD_DIR)/src/vmd/vmd $(BUILD_DIR)/bench/emp-bench --minutes $(SOAK_MINUTES)

# Remote-tier tests over libfabric verbs on soft-RoCE inside a QEMU (TCG) guest.
test-rdma: build
	@scripts/rdma/run.sh $(CURDIR)/$(BUILD_DIR)

# The build runs as a sub-make without its directory lines, so the demo's output stays readable.
demo:
	@$(MAKE) --no-print-directory build
	@scripts/demo.sh $(BUILD_DIR)

# EMP side by side with all-local memory and Linux swap/zswap (bench/compare, root, about
# 6 minutes on 2 cores); writes bench/results/latest/. Options: COMPARE_ARGS="--help".
bench-compare: build
	@scripts/install-deps.sh $(BENCH_PACKAGES)
	@bench/compare --build $(BUILD_DIR) $(COMPARE_ARGS)

clean:
	rm -rf build

format:
	@find src include tests bench -name '*.h' -o -name '*.cc' | xargs clang-format -i
