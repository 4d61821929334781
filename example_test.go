package raft_test

import (
	"context"
	"fmt"
	"time"

	"github.com/raftkit/raft"
	"github.com/raftkit/raft/rafttest"
)

// ExampleNode runs a one-node cluster on an in-memory network, proposes a
// command and applies it.
func ExampleNode() {
	nw := rafttest.NewNetwork(1)
	defer nw.Close() // after the node has stopped
	node, err := raft.NewNode(raft.Config{
		ID:        1,
		Peers:     []raft.NodeID{1},
		Transport: nw.Endpoint(1),
		Persister: raft.NewMemoryPersister(),
		// Short timeouts, so that the example elects its leader at once.
		ElectionTimeout:   50 * time.Millisecond,
		HeartbeatInterval: 10 * time.Millisecond,
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	// The application: apply every committed command, in order, until the
	// node stops and closes ApplyCh.
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		for msg := range node.ApplyCh() {
			fmt.Printf("applied %q at index %d\n", msg.Command, msg.CommandIndex)
		}
	}()

	// Wait to lead: take the change channel before looking at the state, so
	// that no change is missed in between.
	for {
		changed := node.LeaderChanged()
		if _, isLeader := node.State(); isLeader {
			break
		}
		<-changed
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	index, _, err := node.ProposeWait(ctx, []byte("hello"))
	node.Stop()
	<-applied
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("proposed at index", index)
	// Output:
	// applied "hello" at index 2
	// proposed at index 2
}

// ExampleNode_ApplyBatchCh takes committed commands in batches: one channel
// receive for every command that committed together.
func ExampleNode_ApplyBatchCh() {
	nw := rafttest.NewNetwork(1)
	defer nw.Close() // after the node has stopped
	node, err := raft.NewNode(raft.Config{
		ID:                1,
		Peers:             []raft.NodeID{1},
		Transport:         nw.Endpoint(1),
		Persister:         raft.NewMemoryPersister(),
		ElectionTimeout:   50 * time.Millisecond,
		HeartbeatInterval: 10 * time.Millisecond,
		ApplyBatches:      true,
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	// The application: a batch is its own until the next receive.
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		for batch := range node.ApplyBatchCh() {
			for _, msg := range batch {
				if msg.CommandValid {
					fmt.Printf("applied %q at index %d\n", msg.Command, msg.CommandIndex)
				}
			}
		}
	}()

	for {
		changed := node.LeaderChanged()
		if _, isLeader := node.State(); isLeader {
			break
		}
		<-changed
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = node.ProposeWait(ctx, []byte("x=1"))
	node.Stop()
	<-applied
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// applied "x=1" at index 2
}
