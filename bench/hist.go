package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram counts latencies in log-linear buckets: exact below 64ns, then
// 64 buckets per power of two, so a percentile is off by under 1%. Recording
// is one atomic add and allocates nothing, so the harness adds no
// allocations of its own to the libraries' inside the measured window,
// however many proposals it takes.
type histogram struct {
	counts [histBuckets]atomic.Uint64
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	histBuckets = histSub + (64-histSubBits)*histSub
)

func bucketOf(ns uint64) int {
	if ns < histSub {
		return int(ns)
	}
	shift := bits.Len64(ns) - 1 - histSubBits
	return histSub + shift*histSub + int(ns>>shift) - histSub
}

// bucketValue is the middle of bucket b.
func bucketValue(b int) uint64 {
	if b < histSub {
		return uint64(b)
	}
	shift := (b - histSub) / histSub
	m := uint64((b-histSub)%histSub + histSub)
	return m<<shift + (uint64(1)<<shift)/2
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))].Add(1)
}

func (h *histogram) total() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// percentile returns the latency below which a fraction p of the recorded
// ones fall (the nearest-rank method), or 0 if none was recorded.
func (h *histogram) percentile(p float64) time.Duration {
	n := h.total()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(bucketValue(i))
		}
	}
	return time.Duration(bucketValue(histBuckets - 1))
}
