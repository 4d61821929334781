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
