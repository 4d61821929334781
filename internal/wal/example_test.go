package wal_test

import (
	"fmt"
	"log"
	"os"

	"github.com/raftkit/raft/internal/wal"
)

// ExampleOpen writes a batch (entries and hard state, one fsync), then
// reopens the directory as a restarted node would.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "wal-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	opts := wal.Options{NodeID: 1, ClusterID: 42}

	w, st, err := wal.Open(dir, opts)
	if err != nil {
		log.Fatal(err)
	}
	next := st.FirstIndex + uint64(len(st.Entries))
	if err := w.Append([]wal.Entry{{Index: next, Term: 1, Data: []byte("x=1")}}); err != nil {
		log.Fatal(err)
	}
	if err := w.SetHardState(wal.HardState{Term: 1, Vote: 1, Commit: next}); err != nil {
		log.Fatal(err)
	}
	if err := w.Sync(); err != nil { // both durable, together
		log.Fatal(err)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	w, st, err = wal.Open(dir, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	fmt.Printf("%+v\n", st.HardState)
	for _, e := range st.Entries {
		fmt.Printf("%d %d %s\n", e.Index, e.Term, e.Data)
	}
	// Output:
	// {Term:1 Vote:1 Commit:1}
	// 1 1 x=1
}
