package raft_test

// Regression tests from the review of the proposal queue (b6a1903) that
// need the rafttest helpers.

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/rafttest"
)

// TestReviewProposeDuringSlowStopReturnsStopped: once Stop has begun, a
// Propose must fail with ErrStopped at once, as it did while callers
// selected on the stop channel. Stop itself waits for the persist in
// progress, which a stalled disk can make last any time; a proposal queued
// meanwhile must not wait with it (with no deadline it waited forever,
// since only Stop's own return answered the queue).
func TestReviewProposeDuringSlowStopReturnsStopped(t *testing.T) {
	var fp *rafttest.FaultyPersister
	n := nodeSingle(t, func(c *raft.Config) {
		fp = rafttest.NewFaultyPersister(t, raft.NewMemoryPersister())
		c.Persister = fp
	})
	c := nodeConsume(n)
	nodeWaitLeader(t, n)

	fp.Stall()
	defer fp.Resume()
	_, _, err := n.Propose(context.Background(), []byte("stalled"))
	require.NoError(t, err)
	faultWaitFor(t, nodeWait, "the Sync to block", func() bool { return fp.Blocked() > 0 })

	stopped := make(chan struct{})
	go func() { n.Stop(); close(stopped) }() // owner: the test; exits once the disk resumes
	select {
	case <-c.done: // ApplyCh closed: the stop channel is closed, Stop waits for the disk
	case <-time.After(nodeWait):
		t.Fatal("ApplyCh still open after Stop began")
	}

	for _, propose := range []func(context.Context, []byte) (uint64, uint64, error){n.Propose, n.ProposeWait} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _, err = propose(ctx, []byte("during stop"))
		cancel()
		require.ErrorIs(t, err, raft.ErrStopped, "a proposal made while Stop waits for the disk")
	}

	fp.Resume()
	select {
	case <-stopped:
	case <-time.After(nodeWait):
		t.Fatal("Stop did not return once the disk resumed")
	}
}

// TestStopMidBatchAnswersDeliveredProposeWait: when Stop interrupts the
// delivery of an apply batch, a ProposeWait whose command the application
// had already received was applied and must return success; only those not
// yet delivered end with ErrStopped.
func TestStopMidBatchAnswersDeliveredProposeWait(t *testing.T) {
	n := nodeSingle(t, nil)
	nodeWaitLeader(t, n)

	const callers, read = 10, 3
	received := map[uint64]bool{}
	var lastRead uint64
	readDone := make(chan struct{})
	go func() { // owner: the test; exits after read commands
		defer close(readDone)
		for msg := range n.ApplyCh() {
			if msg.CommandValid {
				received[msg.CommandIndex], lastRead = true, msg.CommandIndex
				if len(received) == read {
					return // and never read again: delivery blocks mid-batch
				}
			}
		}
	}()
	type result struct {
		index uint64
		err   error
	}
	results := make(chan result, callers)
	for i := range callers {
		go func() { // owner: the test; ends when Stop answers it at the latest
			idx, _, err := n.ProposeWait(context.Background(), []byte{byte(i)})
			results <- result{idx, err}
		}()
	}
	<-readDone
	faultWaitFor(t, nodeWait, "the apply loop to block on the next command", func() bool {
		return n.Status().Applied == lastRead && n.Status().Commit >= lastRead+1
	})
	n.Stop()

	for range callers {
		r := <-results
		if received[r.index] {
			require.NoError(t, r.err, "command %d reached the application", r.index)
		} else {
			require.ErrorIs(t, r.err, raft.ErrStopped, "command %d did not reach the application", r.index)
		}
	}
}
