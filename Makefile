# tlb-c build. `make` builds ./tlb; `make test` builds and runs the Criterion
# suite; `make bench` runs the op and training-step benchmarks.
CC      ?= gcc
OPT     ?= -O3
CFLAGS  += -std=c11 $(OPT) -g -fopenmp -Wall -Wextra -Werror -D_GNU_SOURCE -Isrc -MMD -MP
LDLIBS  += -fopenmp -ldnnl -lxxhash -lcjson -lpng -ljpeg -lyaml -lm -lpthread
BUILD   ?= build

# Builds use every core (`make test` on a fresh clone compiled one file at a
# time: most of its 8.5 minutes); what runs tests or timings still runs as one
# recipe after its prerequisites are built.
MAKEFLAGS += -j$(shell nproc)

# One binary runs on any x86-64: only the files named *_avx2.c / *_avx512.c are
# compiled for those ISAs, and the registry calls them only when the CPU has it
# (and the *_avx512bf16.c files for AVX512_BF16: mixed precision and the probe
# check the CPU first).
AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c
AVX512BF16_FLAGS := $(AVX512_FLAGS) -mavx512bf16

# MPI (data-parallel training, src/train/dist_mpi.c): on when OpenMPI's
# development files are installed, or forced with MPI=1; MPI=0 builds the
# world-of-one dist_none.c and links no MPI at all.
MPI ?= $(shell pkg-config --exists ompi-c 2>/dev/null && echo 1 || (command -v mpicc >/dev/null 2>&1 && echo 1 || echo 0))
ifeq ($(MPI),1)
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null || mpicc --showme:compile)
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null || mpicc --showme:link)
DIST_OFF   := src/train/dist_none.c
LDLIBS     += $(MPI_LIBS)
else
DIST_OFF   := src/train/dist_mpi.c
endif

LIB_SRCS  := $(filter-out src/cli/% $(DIST_OFF),$(wildcard src/*/*.c))
CLI_SRCS  := $(wildcard src/cli/*.c)
TEST_SRCS := $(wildcard tests/*.c)
BENCH_SRCS := $(wildcard bench/*.c)

LIB_OBJS   := $(LIB_SRCS:%.c=$(BUILD)/%.o)
CLI_OBJS   := $(CLI_SRCS:%.c=$(BUILD)/%.o)
TEST_OBJS  := $(TEST_SRCS:%.c=$(BUILD)/%.o)
BENCH_OBJS := $(BENCH_SRCS:%.c=$(BUILD)/%.o)

# The tlb binary: ./tlb normally; a sanitizer build puts its own in $(BUILD).
TLB ?= tlb

.PHONY: all test test-run deps layers bench bench-pytorch bench-pytorch-infer bench-pytorch-train bench-ab bench-profile bench-products print-ldlibs clean test-sanitize test-tsan fuzz fuzz-smoke fuzz-build
all: $(TLB)

$(BUILD)/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX2_FLAGS) -c $< -o $@

$(BUILD)/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -c $< -o $@

$(BUILD)/%_avx512bf16.o: %_avx512bf16.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512BF16_FLAGS) -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# The bf16 rate (src/ops/bf16_rate.c) times two register-bound loops and a
# run's precision follows it: a sanitizer build's -O1 spilled their
# accumulators and read 1.15-1.37x where -O3 reads 0.49x, so two runs of one
# config could choose differently. This file is always optimized and never
# instrumented (it touches no memory).
$(BUILD)/src/ops/bf16_rate.o: src/ops/bf16_rate.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O2 -fno-sanitize=all -c $< -o $@

# tlb --version: the commit built (git describe); main.o is rebuilt when it changes.
TLB_VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(BUILD)/version.stamp: version-check
	@mkdir -p $(dir $@)
	@echo '$(TLB_VERSION)' | cmp -s - $@ || echo '$(TLB_VERSION)' > $@
.PHONY: version-check
$(BUILD)/src/cli/main.o: $(BUILD)/version.stamp
$(BUILD)/src/cli/main.o: CFLAGS += -DTLB_VERSION='"$(TLB_VERSION)"'

$(BUILD)/src/train/dist_mpi.o: src/train/dist_mpi.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MPI_CFLAGS) -c $< -o $@

# Switching MPI=0/1 relinks: the library's member list depends on it.
$(BUILD)/mpi-$(MPI).stamp:
	@mkdir -p $(BUILD)
	@rm -f $(BUILD)/mpi-*.stamp
	@touch $@

$(BUILD)/libtlb.a: $(LIB_OBJS) $(BUILD)/mpi-$(MPI).stamp
	@rm -f $@
	ar rcs $@ $(LIB_OBJS)

$(TLB): $(CLI_OBJS) $(BUILD)/libtlb.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# The test binary counts our code's heap allocations (tests/alloc_counter.c).
WRAP_ALLOC := $(foreach f,malloc calloc realloc aligned_alloc posix_memalign,-Wl,--wrap=$(f))

$(BUILD)/tlb_tests: $(TEST_OBJS) $(BUILD)/libtlb.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -lcriterion $(WRAP_ALLOC)

$(BUILD)/tlb_bench: $(BENCH_OBJS) $(BUILD)/libtlb.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# The gradient allreduce alone, under mpirun (BENCHMARKS.md, "Data parallel").
$(BUILD)/bench_allreduce: bench/mpi/allreduce.c $(BUILD)/libtlb.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# Tests run from the repository root so tests/data/ paths resolve. The cli
# tests run $(TLB) (TLB_BIN); the fuzz targets then run over their corpora.
test: deps
	$(MAKE) --no-print-directory test-run
test-run: $(TLB) $(BUILD)/tlb_tests $(BUILD)/tlb_bench layers
	TLB_BIN=./$(TLB) $(BUILD)/tlb_tests $(TEST_ARGS)
	$(MAKE) --no-print-directory fuzz-smoke

# The Debian packages (scripts/install-deps.sh: installs them as root, else
# names them), so `make test` works on a fresh machine; the test run is a new
# make, which sees OpenMPI if this just installed it.
deps:
	@scripts/install-deps.sh

# Layers point down (tests/layers.sh); the planted upward include must fail.
layers:
	tests/layers.sh
	@d=$$(mktemp -d) && mkdir -p $$d/src/ops && \
	  echo '#include "model/model.h"' > $$d/src/ops/planted.c && \
	  if tests/layers.sh $$d >/dev/null; then rm -rf $$d; \
	    echo "tests/layers.sh missed a planted upward include"; exit 1; fi; \
	  rm -rf $$d; echo "tests/layers.sh: planted upward include caught"

# The whole suite and the binary under AddressSanitizer + UBSan (gcc, -O1),
# in build-san/. LSan suppressions cover third-party frames only. TLB_TEST_SMALL
# shrinks the long training test (fewer images), it skips none. Passive OpenMP
# waiting: on a loaded machine spinning threads made one test 20x slower.
SAN_FLAGS := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_odr_violation=0 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/.ci/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 TLB_TEST_SMALL=1 OMP_WAIT_POLICY=passive
test-sanitize:
	$(MAKE) --no-print-directory BUILD=build-san TLB=build-san/tlb OPT="$(SAN_FLAGS)" build-san/tlb build-san/tlb_tests
	$(SAN_ENV) TLB_BIN=./build-san/tlb build-san/tlb_tests $(TEST_ARGS)

# ThreadSanitizer, in build-tsan/: clang with libomp and its Archer tool,
# which tells TSan about OpenMP's fork, join and barriers (gcc's libgomp is
# not instrumented: every parallel region reported as a race). oneDNN is
# built against libgomp, so build-tsan/libgomp.so.1 points it at libomp too:
# one OpenMP runtime, all of it visible. Criterion cannot run under TSan, so
# tests/tsan_run.sh runs the binary (sharded training, golden checks).
# .ci/tsan.supp only silences locks taken inside oneDNN and libomp. Archer's
# advice to set ignore_noninstrumented_modules=1 is not taken: with it this
# TSan missed the shard race in model.c that it reports without it.
TSAN_LIBOMP := $(realpath $(shell clang -print-file-name=libomp.so.5))
TSAN_ENV := LD_LIBRARY_PATH=build-tsan OMP_TOOL_LIBRARIES=$(dir $(TSAN_LIBOMP))libarcher.so \
	TSAN_OPTIONS=halt_on_error=1:suppressions=$(CURDIR)/.ci/tsan.supp TLB_NO_FETCH=1 OMP_WAIT_POLICY=passive
test-tsan:
	$(MAKE) --no-print-directory CC=clang BUILD=build-tsan TLB=build-tsan/tlb \
	  OPT="-O1 -fsanitize=thread -fno-omit-frame-pointer" LDLIBS="-fsanitize=thread $(LDLIBS)" build-tsan/tlb
	ln -sf $(TSAN_LIBOMP) build-tsan/libgomp.so.1
	$(TSAN_ENV) tests/tsan_run.sh build-tsan/tlb

# libFuzzer targets (clang): fuzz/fuzz_*.c against the library built with
# -fsanitize=fuzzer-no-link,address,undefined in build-fuzz/.
FUZZ_TARGETS := config safetensors cifar10 image
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_BINS := $(FUZZ_TARGETS:%=build-fuzz/fuzz_%)
FUZZ_SECONDS ?= 600
FUZZ_ENV := ASAN_OPTIONS=detect_leaks=1:detect_odr_violation=0 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/.ci/lsan.supp:print_suppressions=0 UBSAN_OPTIONS=print_stacktrace=1
fuzz-build:
	$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang OPT="-O1 -fsanitize=fuzzer-no-link $(FUZZ_SAN)" build-fuzz/libtlb.a
	$(MAKE) --no-print-directory $(FUZZ_BINS)
build-fuzz/fuzz_%: fuzz/fuzz_%.c build-fuzz/libtlb.a
	clang -std=c11 -O1 -g -D_GNU_SOURCE -Isrc -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $< build-fuzz/libtlb.a $(filter-out -fopenmp,$(LDLIBS)) -fopenmp

# Each target over its seed corpus only (seconds; part of `make test`).
fuzz-smoke: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  $(FUZZ_ENV) build-fuzz/fuzz_$$t -runs=0 fuzz/corpus/$$t || exit 1; done

# Each target for FUZZ_SECONDS, new inputs into build-fuzz/corpus-<t> (the
# seeds stay as they are); a crash leaves crash-* in build-fuzz/.
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do mkdir -p build-fuzz/corpus-$$t; \
	  $(FUZZ_ENV) build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	    -artifact_prefix=build-fuzz/ -print_final_stats=1 build-fuzz/corpus-$$t fuzz/corpus/$$t || exit 1; done

bench: $(BUILD)/tlb_bench
	$(BUILD)/tlb_bench --out $(BUILD)/bench $(BENCH_ARGS)

# Issues 15 and 22's baselines: PyTorch 1.13 (python3-torch, a fair OpenBLAS)
# against tlb-c, alternated: inference (ROUNDS, default 5), then the training
# step (TRAIN_ROUNDS x TRAIN_STEPS, default 3 x 3); one after the other, never
# in parallel. bench-pytorch-infer / bench-pytorch-train run one of them.
TRAIN_ROUNDS ?= 3
TRAIN_STEPS  ?= 3
bench-pytorch: $(BUILD)/tlb_bench
	bench/infer_vs_pytorch.sh $(ROUNDS)
	bench/train_vs_pytorch.sh $(TRAIN_ROUNDS) $(TRAIN_STEPS)
bench-pytorch-infer: $(BUILD)/tlb_bench
	bench/infer_vs_pytorch.sh $(ROUNDS)
bench-pytorch-train: $(BUILD)/tlb_bench
	bench/train_vs_pytorch.sh $(TRAIN_ROUNDS) $(TRAIN_STEPS)

# A change's speed on a shared machine: REF (a commit) and the working tree
# in one process, their micro-batch steps alternated (bench/ab.sh).
bench-ab:
	@test -n "$(REF)" || { echo "make bench-ab REF=<commit> [ROUNDS=15]" >&2; exit 2; }
	bench/ab.sh $(REF) $(or $(ROUNDS),15)

# Where a micro-batch's time goes, by op and product kind (perf call graphs).
bench-profile:
	bench/profile/profile.sh $(or $(MB),410) $(or $(REPEATS),6)
bench-products:
	bench/profile/products.sh $(or $(MB),410) $(or $(REPEATS),6)

print-ldlibs:
	@echo $(LDLIBS)

clean:
	rm -rf $(BUILD) tlb build-san build-fuzz build-tsan build-ab

-include $(LIB_OBJS:.o=.d) $(CLI_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(BENCH_OBJS:.o=.d)
