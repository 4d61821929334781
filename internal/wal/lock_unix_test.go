//go:build unix && !solaris && !aix

package wal

import (
	"bufio"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLock_OtherProcess opens a WAL in a child process (this test binary
// run again): while the child holds it, Open here fails with ErrLocked;
// once the child is killed (no Close), the kernel has released the lock.
func TestLock_OtherProcess(t *testing.T) {
	if dir := os.Getenv("WAL_TEST_LOCK_CHILD"); dir != "" {
		w, _, err := Open(dir, Options{NodeID: 1})
		if err != nil {
			os.Stdout.WriteString("error: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("ready\n")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until killed
		w.Close()
		os.Exit(0)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLock_OtherProcess$")
	cmd.Env = append(os.Environ(), "WAL_TEST_LOCK_CHILD="+dir)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", line)

	_, _, err = Open(dir, Options{NodeID: 1})
	require.ErrorIs(t, err, ErrLocked)

	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	stdin.Close()
	w, _, err := Open(dir, Options{NodeID: 1})
	require.NoError(t, err, "a dead process holds no lock")
	require.NoError(t, w.Close())
}
