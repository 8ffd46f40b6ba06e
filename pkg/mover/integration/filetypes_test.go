package integration_test

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// acl encodes a POSIX ACL as the kernel stores it in system.posix_acl_*:
// version 2, then (tag, perm, id) entries.
func acl(entries ...[3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

const (
	aclUserObj, aclUser, aclGroupObj, aclMask, aclOther = 0x01, 0x02, 0x04, 0x10, 0x20
	noID                                                = 0xffffffff
)

// TestEveryFileTypeAndAttribute: fifos, device nodes, extended attributes
// (user, trusted, security.capability) and POSIX ACLs are replicated and
// verified, also when only an attribute changes during continuous mode.
// Sockets are the documented exclusion: not copied, in neither digest.
func TestEveryFileTypeAndAttribute(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("device nodes, trusted.* and chown need root")
	}
	c := makeCreds(t)
	src, dst := t.TempDir(), t.TempDir()
	j := func(p string) string { return filepath.Join(src, p) }
	must(t, os.Mkdir(j("dir"), 0750))
	writeRandom(t, j("dir/file"), 5000, 1)
	writeRandom(t, j("big"), 2<<20, 2)
	must(t, unix.Mkfifo(j("dir/pipe"), 0640))
	must(t, unix.Mknod(j("null"), unix.S_IFCHR|0666, int(unix.Mkdev(1, 3))))
	must(t, unix.Mknod(j("loop"), unix.S_IFBLK|0660, int(unix.Mkdev(7, 0))))
	must(t, unix.Lsetxattr(j("dir/file"), "user.checksum", []byte("sha256:abc"), 0))
	must(t, unix.Lsetxattr(j("dir"), "user.owner", []byte("team-a"), 0))
	must(t, unix.Lsetxattr(j("big"), "trusted.note", []byte("x"), 0))
	must(t, unix.Lsetxattr(j("dir/pipe"), "trusted.pipe", []byte("p"), 0))
	// file capability cap_net_bind_service (v2), which chown would clear
	capv2 := []byte{0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	must(t, unix.Lsetxattr(j("big"), "security.capability", capv2, 0))
	must(t, unix.Lsetxattr(j("dir/file"), "system.posix_acl_access",
		acl([3]uint32{aclUserObj, 6, noID}, [3]uint32{aclUser, 4, 1234}, [3]uint32{aclGroupObj, 4, noID},
			[3]uint32{aclMask, 4, noID}, [3]uint32{aclOther, 0, noID}), 0))
	must(t, unix.Lsetxattr(j("dir"), "system.posix_acl_default",
		acl([3]uint32{aclUserObj, 7, noID}, [3]uint32{aclGroupObj, 5, noID}, [3]uint32{aclOther, 0, noID}), 0))
	ln, err := net.Listen("unix", j("dir/app.sock"))
	must(t, err)
	defer ln.Close()

	r := startReceiver(t, c, dst, false)
	finish := make(chan struct{})
	res := startContinuous(t, sendOpts(c, src, r.addr), finish)

	// Attribute-only changes: no data, no mtime, only ctime moves.
	must(t, unix.Lsetxattr(j("dir/file"), "user.checksum", []byte("sha256:def"), 0))
	must(t, unix.Lremovexattr(j("dir"), "user.owner"))
	must(t, unix.Lsetxattr(j("dir/pipe"), "trusted.added", []byte("later"), 0))
	// Created in a directory with a default ACL: it inherits one, on both sides.
	writeRandom(t, j("dir/later"), 3000, 9)
	time.Sleep(300 * time.Millisecond)
	close(finish)
	if err := <-res; err != nil {
		t.Fatalf("sender: %v", err)
	}
	must(t, r.wait(t))

	assertSameExcept(t, src, dst, "dir/app.sock")
	if _, err := os.Lstat(filepath.Join(dst, "dir/app.sock")); !os.IsNotExist(err) {
		t.Fatalf("a socket was copied (the documented rule: never): %v", err)
	}
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(dst, "null"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		t.Fatalf("char device not recreated: mode %o rdev %d", st.Mode, st.Rdev)
	}
}

// assertSameExcept compares the trees, leaving out paths only the source has
// by rule.
func assertSameExcept(t *testing.T, src, dst string, skip ...string) {
	t.Helper()
	a, b := snapshot(t, src), snapshot(t, dst)
	for _, p := range skip {
		delete(a, p)
	}
	if d := diffTrees(a, b); len(d) > 0 {
		t.Fatalf("trees differ:\n%s", joinLines(d))
	}
}
