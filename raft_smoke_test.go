package raft_test

import (
	"fmt"
	"testing"

	"github.com/raftkit/raft/rafttest"
)

func TestSmoke(t *testing.T) {
	c := rafttest.NewCluster(t, 3, rafttest.Options{})
	l := c.Leader()
	t.Logf("leader %d", l)
	for i := 0; i < 10; i++ {
		c.One([]byte(fmt.Sprint(i)), 3, false)
	}
}
