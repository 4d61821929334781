package kv

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func apply(t *testing.T, s *Store, c Command) Result {
	t.Helper()
	r, err := s.Apply(c.Encode())
	require.NoError(t, err, "apply %v", c)
	return r
}

func TestStore_Operations(t *testing.T) {
	var s Store // the zero Store is ready to use
	require.Equal(t, Result{}, apply(t, &s, Command{ClientID: 1, Seq: 1, Op: OpGet, Key: "a"}))
	require.Zero(t, s.Len(), "a Get writes nothing")
	require.Equal(t, Result{}, apply(t, &s, Command{ClientID: 1, Seq: 2, Op: OpPut, Key: "a", Value: "x"}))
	require.Equal(t, Result{Value: "x"}, apply(t, &s, Command{ClientID: 1, Seq: 3, Op: OpAppend, Key: "a", Value: "y"}))
	require.Equal(t, Result{Value: "xy"}, apply(t, &s, Command{ClientID: 2, Seq: 1, Op: OpGet, Key: "a"}))
	require.Equal(t, Result{}, apply(t, &s, Command{ClientID: 2, Seq: 2, Op: OpAppend, Key: "b", Value: "z"}))
	require.Equal(t, Result{Value: "xy"}, apply(t, &s, Command{ClientID: 2, Seq: 3, Op: OpPut, Key: "a", Value: "w"}))
	v, ok := s.Get("a")
	require.True(t, ok)
	require.Equal(t, "w", v)
	v, ok = s.Get("b")
	require.True(t, ok)
	require.Equal(t, "z", v)
	_, ok = s.Get("c")
	require.False(t, ok)
	require.Equal(t, 2, s.Len())
}

// TestStore_DuplicateAppliedOnce: a retried command (same ClientID and
// Seq, as after a timeout or a leader change) is applied once; every retry
// gets the first application's Result, flagged Dup, even after other
// clients changed the key.
func TestStore_DuplicateAppliedOnce(t *testing.T) {
	s := NewStore()
	apply(t, s, Command{ClientID: 1, Seq: 1, Op: OpPut, Key: "k", Value: "a"})
	app := Command{ClientID: 1, Seq: 2, Op: OpAppend, Key: "k", Value: "b"}
	require.Equal(t, Result{Value: "a"}, apply(t, s, app))
	apply(t, s, Command{ClientID: 2, Seq: 1, Op: OpAppend, Key: "k", Value: "c"})
	for range 3 {
		require.Equal(t, Result{Value: "a", Dup: true}, apply(t, s, app))
	}
	v, _ := s.Get("k")
	require.Equal(t, "abc", v, "the duplicate appends changed the store")

	// A retried Get returns the value it read first, not the current one.
	get := Command{ClientID: 3, Seq: 1, Op: OpGet, Key: "k"}
	require.Equal(t, Result{Value: "abc"}, apply(t, s, get))
	apply(t, s, Command{ClientID: 2, Seq: 2, Op: OpPut, Key: "k", Value: "new"})
	require.Equal(t, Result{Value: "abc", Dup: true}, apply(t, s, get))

	// Deduplication is per client: another client's Seq 2 is new.
	require.Equal(t, Result{Value: "new"}, apply(t, s, Command{ClientID: 4, Seq: 2, Op: OpAppend, Key: "k", Value: "!"}))
	v, _ = s.Get("k")
	require.Equal(t, "new!", v)
}

// TestStore_StaleSeqRejected: a command below its client's last applied Seq
// (an old retry that a later operation overtook in the log) fails with
// ErrStale and changes nothing.
func TestStore_StaleSeqRejected(t *testing.T) {
	s := NewStore()
	apply(t, s, Command{ClientID: 1, Seq: 5, Op: OpPut, Key: "k", Value: "five"})
	r, err := s.Apply(Command{ClientID: 1, Seq: 4, Op: OpPut, Key: "k", Value: "four"}.Encode())
	require.ErrorIs(t, err, ErrStale)
	require.Zero(t, r)
	v, _ := s.Get("k")
	require.Equal(t, "five", v)
	// The client's last result is still remembered for its retries.
	require.Equal(t, Result{Dup: true}, apply(t, s, Command{ClientID: 1, Seq: 5, Op: OpPut, Key: "k", Value: "five"}))
	// Seqs may skip: only their order matters.
	require.Equal(t, Result{Value: "five"}, apply(t, s, Command{ClientID: 1, Seq: 9, Op: OpGet, Key: "k"}))
}

func TestStore_MalformedChangesNothing(t *testing.T) {
	s := NewStore()
	apply(t, s, Command{ClientID: 1, Seq: 1, Op: OpPut, Key: "k", Value: "v"})
	for _, data := range [][]byte{nil, []byte("k=v"), {byte(OpPut), 1, 2, 9}} {
		r, err := s.Apply(data)
		require.ErrorIs(t, err, ErrMalformed)
		require.Zero(t, r)
	}
	_, err := s.ApplyCommand(Command{ClientID: 1, Seq: 2, Op: 0, Key: "k"})
	require.ErrorIs(t, err, ErrMalformed)
	require.Equal(t, Result{Value: "v"}, apply(t, s, Command{ClientID: 1, Seq: 2, Op: OpGet, Key: "k"}),
		"a rejected command must not count as the client's last")
	require.Equal(t, 1, s.Len())
}

// TestStore_ReplicasAgree: replicas applying the same log, duplicates,
// stale and malformed entries included, return the same Results and end in
// the same state; a replica replaying the log from the start (a restarted
// node, with a new Store) does too.
func TestStore_ReplicasAgree(t *testing.T) {
	var log [][]byte
	for i := uint64(1); i <= 50; i++ {
		c := Command{ClientID: i % 4, Seq: i / 4, Op: Op(i%3 + 1), Key: string(rune('a' + i%3)), Value: string(rune('0' + i%10))}
		log = append(log, c.Encode())
		if i%7 == 0 {
			log = append(log, c.Encode()) // a retry committed twice
		}
		if i%11 == 0 {
			c.Seq-- // an old retry committed late
			log = append(log, c.Encode())
		}
		if i%13 == 0 {
			log = append(log, []byte{0xff})
		}
	}
	type outcome struct {
		r   Result
		err string
	}
	run := func() ([]outcome, *Store) {
		s := NewStore()
		var out []outcome
		for _, e := range log {
			r, err := s.Apply(e)
			o := outcome{r: r}
			if err != nil {
				o.err = err.Error()
			}
			out = append(out, o)
		}
		return out, s
	}
	a, sa := run()
	b, sb := run()
	require.Equal(t, a, b)
	require.Equal(t, sa, sb)
	var dups, errs int
	for _, o := range a {
		if o.r.Dup {
			dups++
		}
		if o.err != "" {
			errs++
		}
	}
	require.Positive(t, dups)
	require.Positive(t, errs)
}

// TestStore_SnapshotRestoreKeepsDedup: a replica restored from another's
// snapshot continues exactly as that replica would: a retry of a command
// the snapshot covers is a duplicate with the first Result, an older retry
// is stale, and a new command applies.
func TestStore_SnapshotRestoreKeepsDedup(t *testing.T) {
	a := NewStore()
	apply(t, a, Command{ClientID: 1, Seq: 1, Op: OpPut, Key: "k", Value: "a"})
	app := Command{ClientID: 1, Seq: 2, Op: OpAppend, Key: "k", Value: "b"}
	apply(t, a, app)
	get := Command{ClientID: 2, Seq: 7, Op: OpGet, Key: "k"}
	apply(t, a, get)
	apply(t, a, Command{ClientID: 3, Seq: 1, Op: OpPut, Key: "", Value: ""})

	b := NewStore()
	apply(t, b, Command{ClientID: 9, Seq: 1, Op: OpPut, Key: "old", Value: "gone"}) // replaced whole
	require.NoError(t, b.Restore(a.Snapshot()))
	require.Equal(t, a, b)
	_, ok := b.Get("old")
	require.False(t, ok, "restore replaces the state, it does not merge")

	require.Equal(t, Result{Value: "a", Dup: true}, apply(t, b, app), "a retry after the restore is still a duplicate")
	require.Equal(t, Result{Value: "ab", Dup: true}, apply(t, b, get))
	_, err := b.Apply(Command{ClientID: 1, Seq: 1, Op: OpPut, Key: "k", Value: "a"}.Encode())
	require.ErrorIs(t, err, ErrStale)
	v, _ := b.Get("k")
	require.Equal(t, "ab", v, "the duplicates changed nothing")

	// From here both replicas apply the same commands alike.
	for i := uint64(3); i < 10; i++ {
		c := Command{ClientID: 1 + i%3, Seq: 10 + i, Op: Op(1 + i%3), Key: "k", Value: "v"}
		ra, erra := a.Apply(c.Encode())
		rb, errb := b.Apply(c.Encode())
		require.Equal(t, ra, rb)
		require.Equal(t, erra, errb)
	}
	require.Equal(t, a.Snapshot(), b.Snapshot())
}

// TestStore_SnapshotDeterministic: equal states give equal bytes, however
// the maps were built; different states give different bytes; the empty
// store round-trips.
func TestStore_SnapshotDeterministic(t *testing.T) {
	cmds := []Command{
		{ClientID: 1, Seq: 1, Op: OpPut, Key: "x", Value: "1"},
		{ClientID: 2, Seq: 1, Op: OpPut, Key: "y", Value: "2"},
		{ClientID: 3, Seq: 1, Op: OpAppend, Key: "z", Value: "3"},
	}
	// Independent commands in another order: the same state, built in
	// another order.
	a, b := NewStore(), NewStore()
	for i := range cmds {
		apply(t, a, cmds[i])
		apply(t, b, cmds[len(cmds)-1-i])
	}
	for range 20 { // map iteration order varies between calls
		require.Equal(t, a.Snapshot(), b.Snapshot())
	}
	// Another value, or the same values with another dedup table, is
	// another state.
	c := NewStore()
	require.NoError(t, c.Restore(a.Snapshot()))
	apply(t, c, Command{ClientID: 1, Seq: 2, Op: OpGet, Key: "x"})
	require.NotEqual(t, a.Snapshot(), c.Snapshot())
	apply(t, c, Command{ClientID: 1, Seq: 3, Op: OpAppend, Key: "x", Value: ""})
	require.NotEqual(t, a.Snapshot(), c.Snapshot())

	var empty Store
	e := NewStore()
	require.NoError(t, e.Restore(empty.Snapshot()))
	require.Equal(t, &empty, e)
	require.Equal(t, Result{}, apply(t, e, Command{ClientID: 1, Seq: 1, Op: OpGet, Key: "x"}))
}

// TestStore_RestoreMalformed: every truncation of a snapshot, trailing
// bytes, a wrong version and duplicated keys fail with ErrMalformed and
// leave the store as it was.
func TestStore_RestoreMalformed(t *testing.T) {
	src := NewStore()
	apply(t, src, Command{ClientID: 1, Seq: 1, Op: OpPut, Key: "k", Value: "v"})
	apply(t, src, Command{ClientID: 2, Seq: 4, Op: OpAppend, Key: "j", Value: "w"})
	snap := src.Snapshot()

	dst := NewStore()
	apply(t, dst, Command{ClientID: 5, Seq: 1, Op: OpPut, Key: "mine", Value: "m"})
	before := dst.Snapshot()
	bad := [][]byte{nil, {0}, {2}, append(append([]byte(nil), snap...), 0)}
	for i := 1; i < len(snap); i++ {
		bad = append(bad, snap[:i])
	}
	// Two keys, both "k".
	bad = append(bad, []byte{snapshotVersion, 2, 1, 'k', 1, 'v', 1, 'k', 1, 'w', 0})
	// Two sessions, both client 1.
	bad = append(bad, []byte{snapshotVersion, 0, 2, 1, 1, 0, 1, 2, 0})
	// A count far beyond the input.
	bad = append(bad, []byte{snapshotVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	for _, b := range bad {
		require.ErrorIs(t, dst.Restore(b), ErrMalformed, "%v", b)
		require.Equal(t, before, dst.Snapshot(), "a failed restore changed the store")
	}
	require.NoError(t, dst.Restore(snap))
	require.Equal(t, src, dst)
}
