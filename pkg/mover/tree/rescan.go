package tree

import (
	"maps"
	"slices"
	"strings"

	"github.com/stateful-migration/stateful-migration/pkg/mover/beneath"
)

// Rescan brings es, a sorted scan of root, up to date with what changed in
// it since, as inotify reports it (package watch): each changed path is
// looked up again, each tree (a directory created or moved in) scanned
// whole, and the directory holding each looked up too, since adding or
// removing an entry moved its mtime without an event of its own. The
// result lists what a full scan would, provided nothing changed unseen.
//
// ok is false when only a full scan is exact: the root itself was
// replaced, or a hard link is among the changes (its other names, which
// may lie outside them, changed too).
func Rescan(root string, es []Entry, changed []string, trees map[string]bool, known Known) (out []Entry, ok bool, err error) {
	b, err := beneath.New(root)
	if err != nil {
		return nil, false, err
	}
	defer b.Close()
	trees = maps.Clone(trees)
	drop := make([]bool, len(es))
	var add []Entry
	dropTree := func(p string) {
		if i, found := find(es, p); found {
			drop[i] = true
		}
		lo, hi := below(es, p)
		for i := lo; i < hi; i++ {
			drop[i] = true
		}
	}
	look := func(p string) (bool, error) {
		i, found := find(es, p)
		e, ok, err := lookup(b, root, p)
		if err != nil {
			return false, err
		}
		wasDir := found && es[i].Kind == KindDir
		switch {
		case !ok && wasDir, ok && wasDir && e.Kind != KindDir:
			dropTree(p)
		case found:
			drop[i] = true
		}
		if ok {
			add = append(add, e)
		}
		return ok && e.Kind == KindDir && !wasDir, nil
	}
	for _, p := range changed {
		if trees[p] || p == "." {
			continue
		}
		if becameDir, err := look(p); err != nil {
			return nil, false, err
		} else if becameDir {
			trees[p] = true // a directory where there was none: list it whole
		}
		if _, err := look(Parent(p)); err != nil {
			return nil, false, err
		}
	}
	for p := range trees {
		if p == "." {
			return nil, false, nil
		}
		dropTree(p)
		sub, err := Scan(root, p, known)
		if err != nil {
			return nil, false, err
		}
		add = append(add, sub...)
		if _, err := look(Parent(p)); err != nil {
			return nil, false, err
		}
	}
	if _, err := look("."); err != nil { // its own attributes, or a child's coming and going
		return nil, false, err
	}
	slices.SortStableFunc(add, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	add = slices.CompactFunc(add, func(a, b Entry) bool { return a.Path == b.Path })
	for i := range es {
		if drop[i] && es[i].Kind == KindFile && es[i].Nlink > 1 {
			return nil, false, nil
		}
	}
	for i := range add {
		if add[i].Kind == KindFile && add[i].Nlink > 1 {
			return nil, false, nil
		}
	}
	if len(es) > 0 && es[0].Path == "." && (len(add) == 0 || add[0].Path != ".") {
		return nil, false, nil // the root is gone or no longer a directory
	}
	return merge(es, drop, add), true, nil
}

// below is the range of sorted es strictly below directory p.
func below(es []Entry, p string) (lo, hi int) {
	if p == "." {
		return 0, len(es)
	}
	lo, _ = find(es, p+"/")
	hi, _ = find(es, p+"0") // '0' follows '/': the end of p's subtree
	return lo, hi
}

// find is the index of p in sorted es, or where it would go.
func find(es []Entry, p string) (int, bool) {
	return slices.BinarySearchFunc(es, p, func(e Entry, t string) int { return strings.Compare(e.Path, t) })
}

// merge returns the entries of es not dropped, and add, in path order.
func merge(es []Entry, drop []bool, add []Entry) []Entry {
	out := make([]Entry, 0, len(es)+len(add))
	j := 0
	for i := range es {
		if drop[i] {
			continue
		}
		for j < len(add) && add[j].Path < es[i].Path {
			out = append(out, add[j])
			j++
		}
		out = append(out, es[i])
	}
	return append(out, add[j:]...)
}

// Parent is the directory holding tree path p ("." for the root's entries).
func Parent(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return "."
}
