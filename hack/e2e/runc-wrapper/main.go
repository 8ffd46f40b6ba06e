// Command runc-nocap wraps runc for hosts whose capability bounding set lacks
// CAP_SYS_RESOURCE (seen on some VMs). There, runc fails to start a container that asks
// for that capability ("unable to apply caps: operation not permitted") or for a negative
// oom_score_adj ("can't get final child's PID from pipe: EOF"). Privileged containers ask
// for every capability, and kubelet asks for oom_score_adj -998 for every pod sandbox.
//
// The wrapper removes CAP_SYS_RESOURCE from the bundle's config.json on create/run and
// from the --process file (and --cap flags) on exec, drops a negative oomScoreAdj, then
// execs the real runc with the same arguments. Everything else passes through unchanged.
//
// It is installed only where hack/e2e/docker.sh detected the quirk (a privileged test
// container failed); never on a normal machine. It must be static: kind node images have
// no jq or python.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// realRunc is the runc to exec; set at build time with -ldflags "-X main.realRunc=...".
// RUNC_NOCAP_REAL overrides it.
var realRunc = "/usr/sbin/runc"

const dropCap = "CAP_SYS_RESOURCE"

func main() {
	real := realRunc
	if v := os.Getenv("RUNC_NOCAP_REAL"); v != "" {
		real = v
	}
	args := os.Args[1:]
	if err := rewrite(args); err != nil {
		fmt.Fprintf(os.Stderr, "runc-nocap: %v\n", err)
		os.Exit(1)
	}
	args = dropCapFlags(args)
	argv := append([]string{real}, args...)
	if err := syscall.Exec(real, argv, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "runc-nocap: exec %s: %v\n", real, err)
		os.Exit(127)
	}
}

// globalWithValue lists runc's global flags that take a separate value, so the
// subcommand can be found after them.
var globalWithValue = map[string]bool{
	"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true,
}

// command returns the runc subcommand and the index after it.
func command(args []string) (string, int) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			if globalWithValue[a] {
				i++
			}
			continue
		}
		return a, i + 1
	}
	return "", len(args)
}

// flagValue finds a flag's value among args (forms: -x v, --long v, --long=v).
func flagValue(args []string, names ...string) (string, bool) {
	for i, a := range args {
		for _, n := range names {
			if a == n && i+1 < len(args) {
				return args[i+1], true
			}
			if strings.HasPrefix(a, n+"=") {
				return strings.TrimPrefix(a, n+"="), true
			}
		}
	}
	return "", false
}

func rewrite(args []string) error {
	cmd, rest := command(args)
	switch cmd {
	case "create", "run":
		bundle, ok := flagValue(args[rest:], "--bundle", "-b")
		if !ok {
			bundle = "."
		}
		return editJSON(filepath.Join(bundle, "config.json"), func(spec map[string]any) {
			if p, ok := spec["process"].(map[string]any); ok {
				fixProcess(p)
			}
		})
	case "exec":
		if p, ok := flagValue(args[rest:], "--process", "-p"); ok {
			return editJSON(p, fixProcess)
		}
	}
	return nil
}

// fixProcess edits an OCI process object in place.
func fixProcess(p map[string]any) {
	if caps, ok := p["capabilities"].(map[string]any); ok {
		for set, v := range caps {
			list, ok := v.([]any)
			if !ok {
				continue
			}
			kept := list[:0]
			for _, c := range list {
				if c != dropCap {
					kept = append(kept, c)
				}
			}
			caps[set] = kept
		}
	}
	if v, ok := p["oomScoreAdj"].(json.Number); ok && strings.HasPrefix(v.String(), "-") {
		delete(p, "oomScoreAdj")
	}
}

func editJSON(path string, edit func(map[string]any)) error {
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil // let runc report it
		}
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	edit(obj)
	out, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, st.Mode().Perm())
}

// dropCapFlags removes "--cap CAP_SYS_RESOURCE" (and -c) from an exec command line.
func dropCapFlags(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if (a == "--cap" || a == "-c") && i+1 < len(args) && args[i+1] == dropCap {
			i++
			continue
		}
		if a == "--cap="+dropCap {
			continue
		}
		out = append(out, a)
	}
	return out
}
