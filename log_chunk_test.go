package raft

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLogChunks drives the chunked log with random appends, conflicting
// appends, compactions and persist batches across many chunk boundaries, and
// checks every read against a plain slice of the same entries.
func TestLogChunks(t *testing.T) {
	for seed := uint64(1); seed <= 12; seed++ {
		// Small chunks mostly, so that reads, conflicts and compactions
		// land on and around many boundaries; the real size too.
		chunkBits := uint(2 + seed%5)
		if seed%6 == 0 {
			chunkBits = logChunkBits
		}
		rng := rand.New(rand.NewPCG(seed, 7))
		l, err := newRaftLog(SnapshotMeta{}, nil, 0, chunkBits)
		require.NoError(t, err)
		var model []Entry // model[i] has index i+1; entries at or below l.offset are not checked
		term := uint64(1)
		next := func(idx uint64) Entry {
			return Entry{Index: idx, Term: term, Data: []byte{byte(idx), byte(idx >> 8), byte(term)}}
		}
		var shared [][]Entry // slices handed out: they must never change
		var sharedCopy [][]Entry
		for step := 0; step < 300; step++ {
			switch op := rng.IntN(10); {
			case op < 6: // append a batch, sometimes larger than a chunk
				n := 1 + rng.IntN(300)
				if rng.IntN(20) == 0 {
					n = int(l.chunk()) + rng.IntN(int(l.chunk()))
				}
				ents := make([]Entry, n)
				for i := range ents {
					ents[i] = next(l.lastIndex() + 1 + uint64(i))
				}
				l.append(ents...)
				model = append(model, ents...)
			case op < 8 && l.lastIndex() > l.committed: // a conflict: replace a suffix
				term++
				from := l.committed + 1 + rng.Uint64N(l.lastIndex()-l.committed)
				n := 1 + rng.IntN(2*int(l.chunk()))
				ents := make([]Entry, n)
				for i := range ents {
					ents[i] = next(from + uint64(i))
				}
				l.truncateAndAppend(ents)
				model = append(model[:from-1], ents...)
			case op < 9 && l.lastIndex() > l.offset: // commit, apply, compact
				idx := l.offset + 1 + rng.Uint64N(l.lastIndex()-l.offset)
				l.committed, l.applied = max(l.committed, idx), max(l.applied, idx)
				l.compact(idx)
			default: // a persist batch: exactly the entries not yet handed over
				lo := l.unstable
				_, _, ents := l.takeUnstable()
				if want := model[lo-1:]; len(want) > 0 || len(ents) > 0 {
					require.Equal(t, want, ents, "seed %d step %d: persist batch from %d", seed, step, lo)
				}
				require.Equal(t, l.lastIndex()+1, l.unstable)
			}
			require.NoError(t, l.checkInvariants(), "seed %d step %d", seed, step)
			require.Equal(t, uint64(len(model)), l.lastIndex(), "seed %d step %d", seed, step)
			// Every entry now and then; otherwise a window and the ends.
			lo, hi := l.offset+1, l.lastIndex()
			if step%50 != 49 && hi > lo+200 {
				lo += rng.Uint64N(hi - lo - 200)
				hi = lo + 200
			}
			for i := lo; i <= hi; i++ {
				tm, ok := l.term(i)
				require.True(t, ok)
				require.Equal(t, model[i-1].Term, tm, "seed %d step %d index %d", seed, step, i)
				require.Equal(t, model[i-1], *l.at(i))
			}
			if _, ok := l.term(l.offset); !ok {
				t.Fatalf("seed %d step %d: the snapshot's last entry %d has no term", seed, step, l.offset)
			}
			if l.offset > 0 {
				_, ok := l.term(l.offset - 1)
				require.False(t, ok, "compacted entries are gone")
			}
			// A read from a random point: a non-empty prefix of the model,
			// never past a chunk's end, and capped.
			if l.lastIndex() > l.offset {
				lo := l.offset + 1 + rng.Uint64N(l.lastIndex()-l.offset)
				got := l.slice(lo, l.lastIndex()+1, 1<<30)
				require.NotEmpty(t, got)
				require.Equal(t, model[lo-1:lo-1+uint64(len(got))], got)
				require.Equal(t, len(got), cap(got), "slices are capped")
				if len(got) < int(l.lastIndex()+1-lo) {
					end := got[len(got)-1].Index
					require.Zero(t, (end+1-l.first)%l.chunk(), "a short read ends at a chunk's end")
				}
				if rng.IntN(4) == 0 {
					shared = append(shared, got)
					sharedCopy = append(sharedCopy, append([]Entry(nil), got...))
				}
			}
		}
		for i := range shared {
			require.Equal(t, sharedCopy[i], shared[i], "seed %d: a slice handed out was changed later", seed)
		}
	}
}
