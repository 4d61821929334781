package bench

import "os"

// syncDir makes dir's entries (a file just created in it) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// IsTmpfs reports whether dir is on tmpfs, where fsync does nothing.
func IsTmpfs(dir string) bool { return fsType(dir) == "tmpfs" }

// FSType names the file system holding dir ("ext2/3/4", "tmpfs", ...).
func FSType(dir string) string { return fsType(dir) }
