package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/rafttest"
)

// raftkitCluster is raftkit/raft as its README's "Embedding" shows: a
// zero-value Config but for ID, Peers, Transport, Persister and
// ApplyBatches; an apply goroutine per node draining ApplyBatchCh;
// ProposeWait on the leader, which returns once the command's batch has
// reached the leader's application. The transport
// is rafttest.Network (in-process, reliable, no delay, messages passed
// without encoding); the persister MemoryPersister, or FilePersister (one
// append-only WAL per node, one fsync per Sync, group commit) on disk.
type raftkitCluster struct {
	net        *rafttest.Network
	nodes      []*raft.Node
	persisters []raft.Persister
	leader     *raft.Node
	syncs      atomic.Int64
	appliers   sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

func startRaftkit(ctx context.Context, s spec) (cluster, error) {
	c := &raftkitCluster{net: rafttest.NewNetwork(1)}
	var peers []raft.NodeID
	for i := 1; i <= s.nodes; i++ {
		peers = append(peers, raft.NodeID(i))
	}
	for _, id := range peers {
		var p raft.Persister = raft.NewMemoryPersister()
		if s.dir != "" {
			fp, err := raft.OpenFilePersister(filepath.Join(s.dir, fmt.Sprintf("node%d", id)), id, raft.FileOptions{})
			if err != nil {
				c.close()
				return nil, err
			}
			p = &countingPersister{Persister: fp, syncs: &c.syncs}
		}
		c.persisters = append(c.persisters, p)
		n, err := raft.NewNode(raft.Config{
			ID:        id,
			Peers:     peers,
			Transport: c.net.Endpoint(id),
			Persister: p,
			// Committed commands in batches, as the peers' applications get
			// them (hashicorp's BatchingFSM, etcd's CommittedEntries).
			ApplyBatches: true,
		})
		if err != nil {
			c.close()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
		c.appliers.Go(func() {
			for range n.ApplyBatchCh() { // the state machine does nothing
			}
		})
	}
	err := waitLeader(ctx, func() bool {
		for _, n := range c.nodes {
			if _, ok := n.State(); ok {
				// Commit the leader's first entry before measuring anything.
				if _, _, err := n.ProposeWait(ctx, make([]byte, 8)); err == nil {
					c.leader = n
					return true
				}
			}
		}
		return false
	})
	if err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *raftkitCluster) propose(ctx context.Context, cmd []byte) error {
	_, _, err := c.leader.ProposeWait(ctx, cmd)
	return err
}

func (c *raftkitCluster) commitIndex() (uint64, error) {
	st := c.leader.Status()
	if st.Role != raft.RoleLeader {
		return 0, fmt.Errorf("node %d is no longer the leader", st.ID)
	}
	return st.Commit, nil
}

func (c *raftkitCluster) fsyncs() int64 { return c.syncs.Load() }

func (c *raftkitCluster) close() error {
	c.closeOnce.Do(func() {
		for _, n := range c.nodes {
			n.Stop()
		}
		c.appliers.Wait()
		c.net.Close()
		var errs []error
		for _, p := range c.persisters {
			if cl, ok := p.(io.Closer); ok {
				errs = append(errs, cl.Close())
			}
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// countingPersister counts Sync calls: FilePersister makes each one fsync
// of its active segment (none if nothing was written since the last).
type countingPersister struct {
	raft.Persister
	syncs *atomic.Int64
}

func (p *countingPersister) Sync() error {
	p.syncs.Add(1)
	return p.Persister.Sync()
}

func (p *countingPersister) Close() error {
	if c, ok := p.Persister.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
