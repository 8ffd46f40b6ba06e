package sender

import (
	"sort"

	"golang.org/x/sys/unix"

	"github.com/stateful-migration/stateful-migration/pkg/mover/tree"
)

// scan builds a pass plan: the whole tree, or only the dirty paths with their
// subtrees plus their parent directories (whose mtimes they moved). It
// returns nil when hard links are involved, which only a full scan resolves.
func (s *Sender) scan(dirty []string) (*plan, error) {
	pl := &plan{touched: map[string]bool{}, whole: map[string]bool{}}
	known := &tree.Earlier{Entries: s.lastScan, Taken: s.lastScanAt, Window: s.cache.Window()}
	if dirty == nil {
		cur, err := tree.Scan(s.o.Dir, ".", known)
		if err != nil {
			return nil, err
		}
		tree.LinkGroups(cur)
		pl.cur = cur
	} else {
		sort.Strings(dirty)
		seen := map[string]bool{}
		for _, p := range dirty {
			if len(pl.roots) > 0 && under(p, pl.roots[len(pl.roots)-1]) {
				continue
			}
			pl.roots = append(pl.roots, p)
			es, err := tree.Scan(s.o.Dir, p, known)
			if err != nil {
				return nil, err
			}
			for i := range es {
				if !seen[es[i].Path] {
					seen[es[i].Path] = true
					pl.cur = append(pl.cur, es[i])
				}
			}
		}
		for _, r := range pl.roots {
			d := tree.Parent(r)
			if seen[d] || r == "." {
				continue
			}
			var st unix.Stat_t
			if unix.Lstat(tree.Join(s.o.Dir, d), &st) != nil {
				continue
			}
			if e, ok := tree.FromStat(d, &st); ok && e.Kind == tree.KindDir {
				seen[d] = true
				pl.cur = append(pl.cur, e)
			}
		}
		sort.Slice(pl.cur, func(i, j int) bool { return pl.cur[i].Path < pl.cur[j].Path })
		for i := range pl.cur {
			if e := &pl.cur[i]; e.Kind == tree.KindFile && e.Nlink > 1 {
				return nil, nil
			}
		}
		for _, r := range pl.roots {
			for _, p := range s.sentUnder(r) {
				if e := s.sent[p]; e.LinkTo != "" || (e.Kind == tree.KindFile && e.Nlink > 1) {
					return nil, nil
				}
			}
		}
	}
	return pl, nil
}
