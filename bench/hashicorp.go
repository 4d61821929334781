package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// hashicorpCluster is hashicorp/raft as Consul and Vault build it:
// raft.DefaultConfig() with BatchApplyCh on (proposals batched from the
// apply channel, up to MaxAppendEntries = 64), a BatchingFSM, InmemTransport
// between the nodes (in-process, pipelined, requests passed without
// encoding), and for storage either InmemStore or raft-boltdb v2 (bbolt,
// NoSync off: every write transaction fdatasyncs) behind raft.NewLogCache
// with 512 entries, the size Consul and Vault use. Apply on the leader;
// ApplyFuture.Error returns once the leader's FSM has applied the entry.
type hashicorpCluster struct {
	nodes   []*raft.Raft
	trans   []*raft.InmemTransport
	closers []io.Closer
	leader  *raft.Raft
	txs     atomic.Int64 // bbolt write transactions

	closeOnce sync.Once
	closeErr  error
}

func startHashicorp(ctx context.Context, s spec) (cluster, error) {
	c := &hashicorpCluster{}
	var servers []raft.Server
	addrs := make([]raft.ServerAddress, s.nodes)
	for i := range s.nodes {
		addr, t := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("node%d", i+1)))
		addrs[i] = addr
		c.trans = append(c.trans, t)
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(addr), Address: addr})
	}
	for i, t := range c.trans {
		for j, u := range c.trans {
			if i != j {
				t.Connect(addrs[j], u)
			}
		}
	}
	for i, t := range c.trans {
		conf := raft.DefaultConfig()
		conf.LocalID = raft.ServerID(addrs[i])
		conf.BatchApplyCh = true
		conf.Logger = hclog.New(&hclog.LoggerOptions{Name: string(addrs[i]), Level: hclog.Warn, Output: io.Discard})

		var logs raft.LogStore
		var stable raft.StableStore
		var snaps raft.SnapshotStore
		if s.dir == "" {
			store := raft.NewInmemStore()
			logs, stable, snaps = store, store, raft.NewInmemSnapshotStore()
		} else {
			dir := filepath.Join(s.dir, string(addrs[i]))
			if err := os.MkdirAll(dir, 0o700); err != nil {
				c.close()
				return nil, err
			}
			bolt, err := raftboltdb.New(raftboltdb.Options{
				Path:        filepath.Join(dir, "raft.db"),
				BoltOptions: &bbolt.Options{Timeout: time.Second},
			})
			if err != nil {
				c.close()
				return nil, err
			}
			c.closers = append(c.closers, bolt)
			counted := &countingBolt{BoltStore: bolt, txs: &c.txs}
			cache, err := raft.NewLogCache(512, counted)
			if err != nil {
				c.close()
				return nil, err
			}
			logs, stable = cache, counted
			if snaps, err = raft.NewFileSnapshotStoreWithLogger(dir, 1, conf.Logger); err != nil {
				c.close()
				return nil, err
			}
		}
		err := raft.BootstrapCluster(conf, logs, stable, snaps, t, raft.Configuration{Servers: servers})
		if err != nil {
			c.close()
			return nil, err
		}
		r, err := raft.NewRaft(conf, &hashicorpFSM{}, logs, stable, snaps, t)
		if err != nil {
			c.close()
			return nil, err
		}
		c.nodes = append(c.nodes, r)
	}
	err := waitLeader(ctx, func() bool {
		for _, r := range c.nodes {
			// The barrier commits the leader's first entry.
			if r.State() == raft.Leader && r.Barrier(5*time.Second).Error() == nil {
				c.leader = r
				return true
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

func (c *hashicorpCluster) propose(ctx context.Context, cmd []byte) error {
	// No timeout: it bounds only the wait to enqueue, never the commit.
	return c.leader.Apply(cmd, 0).Error()
}

func (c *hashicorpCluster) commitIndex() (uint64, error) {
	if c.leader.State() != raft.Leader {
		return 0, errors.New("the leader lost its leadership")
	}
	return c.leader.CommitIndex(), nil
}

// fsyncs: bbolt's Tx.Commit calls fdatasync twice, once after writing the
// dirty pages and once after writing the meta page (tx.go in bbolt v1.5.0).
// The fsync bbolt makes when it grows the file (rare) is not counted.
func (c *hashicorpCluster) fsyncs() int64 { return 2 * c.txs.Load() }

func (c *hashicorpCluster) close() error {
	c.closeOnce.Do(func() {
		var errs []error
		for _, r := range c.nodes {
			errs = append(errs, r.Shutdown().Error())
		}
		for _, t := range c.trans {
			errs = append(errs, t.Close())
		}
		for _, cl := range c.closers {
			errs = append(errs, cl.Close())
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// hashicorpFSM is a state machine that does nothing, in batches. Its
// response slice is reused: the FSM goroutine reads it before the next call.
type hashicorpFSM struct {
	resp []any
}

func (f *hashicorpFSM) Apply(*raft.Log) any { return nil }

func (f *hashicorpFSM) ApplyBatch(logs []*raft.Log) []any {
	f.resp = f.resp[:0]
	for range logs {
		f.resp = append(f.resp, nil)
	}
	return f.resp
}

func (f *hashicorpFSM) Snapshot() (raft.FSMSnapshot, error) { return emptySnapshot{}, nil }

func (f *hashicorpFSM) Restore(r io.ReadCloser) error { return r.Close() }

type emptySnapshot struct{}

func (emptySnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (emptySnapshot) Release()                             {}

// countingBolt counts raft-boltdb's write transactions: each method below
// is one bbolt Update (one Tx.Commit), whatever the number of entries.
type countingBolt struct {
	*raftboltdb.BoltStore
	txs *atomic.Int64
}

func (b *countingBolt) StoreLog(l *raft.Log) error {
	b.txs.Add(1)
	return b.BoltStore.StoreLog(l)
}

func (b *countingBolt) StoreLogs(logs []*raft.Log) error {
	b.txs.Add(1)
	return b.BoltStore.StoreLogs(logs)
}

func (b *countingBolt) DeleteRange(lo, hi uint64) error {
	b.txs.Add(1)
	return b.BoltStore.DeleteRange(lo, hi)
}

func (b *countingBolt) Set(k, v []byte) error {
	b.txs.Add(1)
	return b.BoltStore.Set(k, v)
}

func (b *countingBolt) SetUint64(k []byte, v uint64) error {
	b.txs.Add(1)
	return b.BoltStore.SetUint64(k, v)
}
