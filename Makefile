# ddts top-level Makefile: thin wrappers over CMake and CTest.
# `make deps` is the one place that lists the Debian packages ddts needs.

DEBS := build-essential cmake pkg-config clang libclang-rt-14-dev libomp-14-dev \
	libopenblas-dev libhdf5-dev libsodium-dev libzip-dev libjansson-dev libexpat1-dev \
	zlib1g-dev libcairo2-dev fonts-dejavu-core libcmocka-dev libcurl4-openssl-dev \
	python3 python3-numpy python3-h5py python3-pandas python3-openpyxl dataset-fashion-mnist \
	tshark socat libssl-dev openmpi-bin libopenmpi-dev libmicrohttpd-dev chromium slurm-wlm

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD ?= build
CMAKE_FLAGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build asan fuzz-build check check-release check-asan check-fuzz \
	demo bench fuzz install clean format lint

all: build

# Installs only what is missing, so a second run is quick and quiet.
deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
		grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

asan:
	CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DDDTS_SANITIZE=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build build-asan -j $(JOBS)

fuzz-build:
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDDTS_FUZZ=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build build-fuzz -j $(JOBS)

check-release: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# use_tls=0: LeakSanitizer 14 crashes ("Tracer caught signal 11") reading a
# bogus dynamic-TLS entry on Debian 12's glibc, depending on memory layout;
# heap blocks reachable only from thread-local storage are none of ours but
# glibc's dlerror buffer (tests/lsan.supp).
check-asan: asan
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=use_tls=0:suppressions=$(CURDIR)/tests/lsan.supp UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j $(JOBS)

check-fuzz: fuzz-build
	cd build-fuzz && ctest --output-on-failure -j $(JOBS)

# The README's test command: release tests (unit + loopback integration),
# the unit tests under AddressSanitizer+UBSan, and each fuzz target briefly.
check: deps
	$(MAKE) check-release CMAKE_FLAGS="-DDDTS_WERROR=ON"
	$(MAKE) check-asan CMAKE_FLAGS="-DDDTS_WERROR=ON"
	$(MAKE) check-fuzz
	@echo "make check: all test suites passed"

demo: deps build
	./$(BUILD)/ddts demo

bench: deps build
	cmake --build $(BUILD) -j $(JOBS) --target $$(cd bench && ls bench_*.c 2>/dev/null | sed 's/\.c$$//')
	sh bench/run.sh $(BUILD)

fuzz: deps fuzz-build
	cd build-fuzz && for t in fuzz_*; do [ -x "$$t" ] || continue; \
		mkdir -p corpus/$$t; ./$$t -max_total_time=$${FUZZ_SECONDS:-300} corpus/$$t ../fuzz/corpus/$$t || exit 1; done

install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

lint: build
	clang-tidy -p $(BUILD) --quiet --extra-arg=-Wno-unknown-warning-option $$(git ls-files 'src/*.c' 'cli/*.c')
	sh scripts/banned.sh

clean:
	rm -rf build build-asan build-fuzz
