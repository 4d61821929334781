module github.com/raftkit/raft

go 1.24
