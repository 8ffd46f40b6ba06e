package watch

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Only filesystems this kernel alone writes count: tmpfs and ramfs (as
// root) do, procfs (standing in for any type not known local, such as NFS)
// and a path that does not exist do not.
func TestSeesAll(t *testing.T) {
	if SeesAll("/proc") {
		t.Error("procfs counted as a local filesystem")
	}
	if SeesAll(filepath.Join(t.TempDir(), "missing")) {
		t.Error("a missing directory counted as a local filesystem")
	}
	if os.Geteuid() != 0 {
		t.Log("not root: tmpfs and ramfs not mounted")
		return
	}
	for _, fs := range []string{"tmpfs", "ramfs"} {
		d := t.TempDir()
		if err := unix.Mount(fs, d, fs, 0, ""); err != nil {
			t.Fatalf("mount %s: %v", fs, err)
		}
		t.Cleanup(func() { unix.Unmount(d, unix.MNT_DETACH) })
		if !SeesAll(d) {
			t.Errorf("%s not counted as a local filesystem", fs)
		}
	}
}
