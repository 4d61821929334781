module github.com/raftkit/raft

go 1.24

require go.uber.org/goleak v1.3.0

require github.com/anishathalye/porcupine v1.3.1

require (
	github.com/stretchr/testify v1.12.1
	go.yaml.in/yaml/v3 v3.0.5 // indirect
)
