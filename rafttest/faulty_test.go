package rafttest

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft"
)

var errFaultyDisk = errors.New("disk on fire")

// faultySync runs p.Sync in a goroutine and returns its result channel.
func faultySync(p *FaultyPersister) <-chan error {
	done := make(chan error, 1)
	go func() { done <- p.Sync() }() // owner: the test; exits when Sync returns
	return done
}

func faultyWaitBlocked(t *testing.T, p *FaultyPersister, n int) {
	t.Helper()
	deadline := time.Now().Add(netWait)
	for p.Blocked() != n {
		require.True(t, time.Now().Before(deadline), "%d Syncs blocked, want %d", p.Blocked(), n)
		time.Sleep(time.Millisecond) // poll interval
	}
}

func TestFaultyPersisterForwards(t *testing.T) {
	mem := raft.NewMemoryPersister()
	p := NewFaultyPersister(t, mem)
	require.Same(t, mem, p.Inner())
	require.NoError(t, p.Append([]raft.Entry{{Index: 1, Term: 1}, {Index: 2, Term: 1}}))
	require.NoError(t, p.TruncateFrom(2))
	require.NoError(t, p.SetHardState(raft.HardState{Term: 1, Vote: 1}))
	require.NoError(t, p.Sync())
	st, err := p.Load()
	require.NoError(t, err)
	require.Equal(t, raft.HardState{Term: 1, Vote: 1}, st.HardState)
	require.Equal(t, []raft.Entry{{Index: 1, Term: 1}}, st.Entries)
	require.EqualValues(t, 1, p.Syncs())
	require.EqualValues(t, 1, mem.Syncs())
	require.Error(t, p.Append([]raft.Entry{{Index: 5, Term: 1}}), "errors of the wrapped persister pass through")
}

func TestFaultyPersisterStall(t *testing.T) {
	mem := raft.NewMemoryPersister()
	p := NewFaultyPersister(t, mem)
	p.Stall()
	p.Stall() // idempotent
	d1, d2 := faultySync(p), faultySync(p)
	faultyWaitBlocked(t, p, 2)
	require.Zero(t, mem.Syncs(), "a stalled Sync does not reach the disk")
	require.EqualValues(t, 2, p.Syncs(), "blocked Syncs are counted")
	p.Resume()
	require.NoError(t, <-d1)
	require.NoError(t, <-d2)
	require.Zero(t, p.Blocked())
	require.EqualValues(t, 2, mem.Syncs())
	require.NoError(t, p.Sync(), "after Resume, Sync does not block")
	p.Resume() // not stalled: nothing happens
}

func TestFaultyPersisterFailNext(t *testing.T) {
	mem := raft.NewMemoryPersister()
	p := NewFaultyPersister(t, mem)
	require.NoError(t, p.Append([]raft.Entry{{Index: 1, Term: 1}}))
	p.FailNext(errFaultyDisk)
	require.ErrorIs(t, p.Sync(), errFaultyDisk)
	require.Zero(t, mem.Syncs(), "a failed Sync makes nothing durable")
	p.Crash()
	st, err := p.Load()
	require.NoError(t, err)
	require.Empty(t, st.Entries, "Crash forwards: the unsynced append is gone")
	require.NoError(t, p.Sync(), "FailNext fails one Sync only")

	p.FailNext(errFaultyDisk)
	p.FailNext(nil)
	require.NoError(t, p.Sync(), "FailNext(nil) cancels")
	require.EqualValues(t, 3, p.Syncs())
}

func TestFaultyPersisterFailAlways(t *testing.T) {
	p := NewFaultyPersister(t, raft.NewMemoryPersister())
	p.FailAlways(errFaultyDisk)
	for range 3 {
		require.ErrorIs(t, p.Sync(), errFaultyDisk)
	}
	p.FailAlways(nil)
	require.NoError(t, p.Sync())
	require.EqualValues(t, 4, p.Syncs())
}

func TestFaultyPersisterStallThenFail(t *testing.T) {
	p := NewFaultyPersister(t, raft.NewMemoryPersister())
	p.Stall()
	done := faultySync(p)
	faultyWaitBlocked(t, p, 1)
	p.FailAlways(errFaultyDisk)
	p.Resume()
	require.ErrorIs(t, <-done, errFaultyDisk, "a stalled Sync returns the fault in force when it resumes")
}

func TestFaultyPersisterCrashWithoutInnerCrash(t *testing.T) {
	p := NewFaultyPersister(t, faultyNoCrash{raft.NewMemoryPersister()})
	p.Crash() // the wrapped persister has no Crash: nothing happens
	_, err := p.Load()
	require.NoError(t, err)
}

// faultyNoCrash hides MemoryPersister's Crash method.
type faultyNoCrash struct{ raft.Persister }

func TestFaultyPersisterCloseReleasesStall(t *testing.T) {
	p := NewFaultyPersister(nil, raft.NewMemoryPersister())
	p.Stall()
	done := faultySync(p)
	faultyWaitBlocked(t, p, 1)
	p.Close()
	require.NoError(t, <-done)
	p.Stall() // disabled after Close
	require.NoError(t, p.Sync())
	p.Close() // idempotent
}

func TestFaultyPersisterCleanupReleasesStall(t *testing.T) {
	var (
		p    *FaultyPersister
		done <-chan error
	)
	t.Run("stalled", func(t *testing.T) {
		p = NewFaultyPersister(t, raft.NewMemoryPersister())
		p.Stall()
		done = faultySync(p)
		faultyWaitBlocked(t, p, 1)
		// The subtest ends with the Sync still blocked.
	})
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(netWait):
		t.Fatal("the test's cleanup did not release the stalled Sync")
	}
}
