GO ?= go

.PHONY: test bench soak vet sim fuzz-sim

# The one command CI and developers run: vet, then every test with the race detector.
test:
	$(GO) vet ./...
	$(GO) test -race ./...

vet:
	$(GO) vet ./...

# Benchmarks: proposals/s, latency percentiles, allocations per proposal.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

# Raw fsync, then the cluster on FilePersisters, in one run on one disk: RAFT_BENCH_DIR (default $TMPDIR or /tmp).
.PHONY: bench-disk
bench-disk:
	$(GO) test -run='^$$' -bench='^BenchmarkDisk$$' -benchmem -benchtime=3s -count=3 -timeout=30m .

# The cluster tests, many times over, to shake out flakes.
COUNT ?= 20
soak:
	$(GO) test -race -count=$(COUNT) -timeout=60m ./...

# The deterministic simulator over many seeds, using every core. A failing
# seed prints the command that replays it. Example: make sim SEEDS=100000
SEEDS ?= 10000
sim:
	$(GO) test -run '^TestSimSeeds$$' -count=1 -timeout=0 -v ./internal/sim -sim.seeds=$(SEEDS)

# Let the fuzzer choose the simulator's fault schedules.
FUZZTIME ?= 10m
fuzz-sim:
	$(GO) test -run '^$$' -fuzz='^FuzzSim$$' -fuzztime=$(FUZZTIME) ./internal/sim

# Snapshots and compaction over a long run: 1,000,000 entries, a snapshot
# every 10,000; prints and bounds the peak log length, heap and (on disk)
# directory size. Then the time and peak heap to catch up a new follower
# with a 100 MiB snapshot (RAFT_BENCH_SNAPSHOT_MIB to change it).
.PHONY: soak-snapshot bench-snapshot
soak-snapshot:
	RAFT_LONG=1 $(GO) test -run '^TestLongRunBoundedMemory$$' -count=1 -v -timeout=30m .
	RAFT_LONG=1 RAFT_LONG_DISK=1 $(GO) test -run '^TestLongRunBoundedMemory$$' -count=1 -v -timeout=30m .
bench-snapshot:
	$(GO) test -run '^$$' -bench='^BenchmarkSnapshotCatchUp$$' -benchtime=1x -count=3 .

# raftkit/raft beside hashicorp/raft and etcd-io/raft: 3-node in-process
# clusters, 128-byte commands, 1, 16 and 256 proposers, in memory and on
# disk (RAFT_BENCH_DIR, default $TMPDIR or /tmp), one table; under 5
# minutes. The peers live in bench/, a module of its own, so they never
# become dependencies of the library; the first run downloads them.
# Extra flags: make compare COMPARE_FLAGS='-duration 5s -json out.json'
COMPARE_FLAGS ?=
COMPARE_REV = $(shell git describe --always --dirty 2>/dev/null)
COMPARE = cd bench && $(GO) run ./cmd/compare -rev '$(COMPARE_REV)'
.PHONY: compare compare-scaling
compare:
	$(COMPARE) $(COMPARE_FLAGS)

# The same table for 5 nodes, for 1 KiB and 16 KiB commands, then
# throughput and peak live heap as proposers grow to 4,096.
compare-scaling:
	$(COMPARE) -nodes 5 $(COMPARE_FLAGS)
	$(COMPARE) -size 1024,16384 $(COMPARE_FLAGS)
	$(COMPARE) -proposers 1,16,64,256,1024,4096 $(COMPARE_FLAGS)
