//go:build race

package sim_test

// raceEnabled: the race detector slows the single-threaded simulator about
// tenfold and finds nothing in it, so make test runs fewer seeds under it.
const raceEnabled = true
