GO ?= go

.PHONY: test bench soak vet

# The one command CI and developers run: vet, then every test with the race detector.
test:
	$(GO) vet ./...
	$(GO) test -race ./...

vet:
	$(GO) vet ./...

# Benchmarks: proposals/s, latency percentiles, allocations per proposal.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

# The cluster tests, many times over, to shake out flakes.
COUNT ?= 20
soak:
	$(GO) test -race -count=$(COUNT) -timeout=60m ./...
