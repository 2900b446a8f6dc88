# tlb-c build. `make` builds ./tlb; `make test` builds and runs the Criterion
# suite; `make bench` runs the op and training-step benchmarks.
CC      ?= gcc
OPT     ?= -O3
CFLAGS  += -std=c11 $(OPT) -g -fopenmp -Wall -Wextra -Werror -D_GNU_SOURCE -Isrc -MMD -MP
LDLIBS  += -fopenmp -ldnnl -lxxhash -lcjson -lpng -lyaml -lm -lpthread
BUILD   ?= build

# One binary runs on any x86-64: only the files named *_avx2.c / *_avx512.c are
# compiled for those ISAs, and the registry calls them only when the CPU has it.
AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c

LIB_SRCS  := $(filter-out src/cli/%,$(wildcard src/*/*.c))
CLI_SRCS  := $(wildcard src/cli/*.c)
TEST_SRCS := $(wildcard tests/*.c)
BENCH_SRCS := $(wildcard bench/*.c)

LIB_OBJS   := $(LIB_SRCS:%.c=$(BUILD)/%.o)
CLI_OBJS   := $(CLI_SRCS:%.c=$(BUILD)/%.o)
TEST_OBJS  := $(TEST_SRCS:%.c=$(BUILD)/%.o)
BENCH_OBJS := $(BENCH_SRCS:%.c=$(BUILD)/%.o)

.PHONY: all test bench clean
all: tlb

$(BUILD)/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX2_FLAGS) -c $< -o $@

$(BUILD)/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libtlb.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

tlb: $(CLI_OBJS) $(BUILD)/libtlb.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# The test binary counts our code's heap allocations (tests/alloc_counter.c).
WRAP_ALLOC := $(foreach f,malloc calloc realloc aligned_alloc posix_memalign,-Wl,--wrap=$(f))

$(BUILD)/tlb_tests: $(TEST_OBJS) $(BUILD)/libtlb.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -lcriterion $(WRAP_ALLOC)

$(BUILD)/tlb_bench: $(BENCH_OBJS) $(BUILD)/libtlb.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# Tests run from the repository root so tests/data/ paths resolve.
test: tlb $(BUILD)/tlb_tests
	$(BUILD)/tlb_tests $(TEST_ARGS)

bench: $(BUILD)/tlb_bench
	$(BUILD)/tlb_bench $(BENCH_ARGS)

clean:
	rm -rf $(BUILD) tlb

-include $(LIB_OBJS:.o=.d) $(CLI_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(BENCH_OBJS:.o=.d)
