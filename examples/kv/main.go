// Command kv runs a three-node replicated key-value store in one process on
// raft's in-memory test network: it writes keys through the leader, crashes
// the leader, writes more through the new one, and shows that every node
// holds the same data.
//
//	go run ./examples/kv
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/rafttest"
)

// store is the replicated state machine: a map fed by ApplyMsgs.
type store struct {
	mu    sync.Mutex
	data  map[string]string
	index uint64 // last log index applied
}

func (s *store) apply(msg raft.ApplyMsg) {
	k, v, _ := strings.Cut(string(msg.Command), "=")
	s.mu.Lock()
	s.data[k] = v
	s.index = msg.CommandIndex
	s.mu.Unlock()
}

func (s *store) applied() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

func (s *store) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.data)
}

func main() {
	if err := run(); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run() error {
	net := rafttest.NewNetwork(1)
	defer net.Close()
	peers := []raft.NodeID{1, 2, 3}
	nodes := map[raft.NodeID]*raft.Node{}
	stores := map[raft.NodeID]*store{}
	var wg sync.WaitGroup
	for _, id := range peers {
		n, err := raft.NewNode(raft.Config{
			ID:                id,
			Peers:             peers,
			Transport:         net.Endpoint(id),
			Persister:         raft.NewMemoryPersister(),
			ElectionTimeout:   300 * time.Millisecond,
			HeartbeatInterval: 50 * time.Millisecond,
		})
		if err != nil {
			return err
		}
		s := &store{data: map[string]string{}}
		nodes[id], stores[id] = n, s
		wg.Add(1)
		go func() { // apply loop: ends when the node stops and closes ApplyCh
			defer wg.Done()
			for msg := range n.ApplyCh() {
				if msg.CommandValid {
					s.apply(msg)
				}
			}
		}()
	}
	defer func() {
		for _, n := range nodes {
			n.Stop()
		}
		wg.Wait()
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, kv := range []string{"color=blue", "shape=circle", "size=large"} {
		if _, err := put(ctx, nodes, kv); err != nil {
			return err
		}
	}
	leader := leaderOf(nodes)
	fmt.Printf("leader is node %d; crashing it\n", leader.ID())
	leader.Stop()
	net.Disconnect(leader.ID())
	delete(nodes, leader.ID())
	if _, err := put(ctx, nodes, "color=green"); err != nil {
		return err
	}
	fmt.Printf("new leader is node %d\n", leaderOf(nodes).ID())
	last, err := put(ctx, nodes, "done=yes")
	if err != nil {
		return err
	}
	if err := waitApplied(ctx, nodes, stores, last); err != nil {
		return err
	}
	for _, id := range peers {
		fmt.Printf("node %d: %v\n", id, stores[id])
	}
	return nil
}

// put proposes kv on whichever node is leader, retrying while an election
// is in progress, and returns its log index once it is committed.
func put(ctx context.Context, nodes map[raft.NodeID]*raft.Node, kv string) (uint64, error) {
	for {
		for _, n := range nodes {
			index, _, err := n.ProposeWait(ctx, []byte(kv))
			if err == nil {
				return index, nil
			}
			if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrProposalDropped) {
				return 0, fmt.Errorf("put %s: %w", kv, err)
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("put %s: %w", kv, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func leaderOf(nodes map[raft.NodeID]*raft.Node) *raft.Node {
	for {
		for _, n := range nodes {
			if _, ok := n.State(); ok {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitApplied waits until every running node's store has applied index.
func waitApplied(ctx context.Context, nodes map[raft.NodeID]*raft.Node, stores map[raft.NodeID]*store, last uint64) error {
	for _, n := range nodes {
		for stores[n.ID()].applied() < last {
			select {
			case <-ctx.Done():
				return fmt.Errorf("node %d: %w", n.ID(), ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}
