package chaos

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// The disk-full fault: each node's data dir sits on a small tmpfs of its
// own (SmallDisks), and the nemesis fills the leader's to the last byte,
// holds, then frees it. The node must report the failure, hand over and
// stay out of elections while full, and be whole again once freed; the
// checker then finds nothing acknowledged lost (docs/operations.md, "Disk
// trouble").

// DiskFiller is a Target whose nodes' data dirs can be filled and freed.
type DiskFiller interface {
	FillDisk(node string) error
	FreeDisk(node string) error
}

// fillerName is the file that fills a data dir's filesystem.
const fillerName = "chaos-disk-filler"

// SmallDisks moves every node's data dir onto a tmpfs of its own, the
// size of what it holds plus headroom bytes: one node at a time, stopped
// (SIGKILL) and restarted on the same data, each waiting for a leader.
// Run it before the workload. It needs root (mount); cleanup unmounts.
func (p *ProcessTarget) SmallDisks(headroom int64, cleanup func(func())) error {
	for _, n := range p.C.Nodes {
		p.C.Kill(n)
		used, err := dirSize(n.DataDir)
		if err != nil {
			return err
		}
		saved := n.DataDir + ".saved"
		if err := os.Rename(n.DataDir, saved); err != nil {
			return err
		}
		if err := os.Mkdir(n.DataDir, 0o750); err != nil {
			return err
		}
		size := (used + headroom + 1<<20) >> 20
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm,mode=0750", size), "tmpfs", n.DataDir).CombinedOutput(); err != nil {
			_ = os.Remove(n.DataDir)
			_ = os.Rename(saved, n.DataDir)
			p.C.Restart(n)
			return fmt.Errorf("mount a %d MiB tmpfs on %s: %v: %s", size, n.DataDir, err, strings.TrimSpace(string(out)))
		}
		dir := n.DataDir
		cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
		if out, err := exec.Command("cp", "-a", saved+"/.", n.DataDir+"/").CombinedOutput(); err != nil {
			return fmt.Errorf("copy %s onto its tmpfs: %v: %s", n.DataDir, err, out)
		}
		if err := os.RemoveAll(saved); err != nil {
			return err
		}
		p.C.Restart(n)
		p.C.Leader()
	}
	return nil
}

func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil && !d.IsDir() {
			total += info.Size()
		}
		return nil
	})
	return total, err
}

// FillDisk implements DiskFiller: a file in the node's data dir takes every
// free byte of its filesystem.
func (p *ProcessTarget) FillDisk(node string) error {
	n, err := p.node(node)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(n.DataDir, fillerName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			return err
		}
	}
	// Whatever is left below a chunk.
	for _, size := range []int{64 << 10, 4 << 10, 512} {
		for {
			if _, err := f.Write(chunk[:size]); err != nil {
				if errors.Is(err, syscall.ENOSPC) {
					break
				}
				return err
			}
		}
	}
	return nil
}

// FreeDisk implements DiskFiller.
func (p *ProcessTarget) FreeDisk(node string) error {
	n, err := p.node(node)
	if err != nil {
		return err
	}
	return os.Remove(filepath.Join(n.DataDir, fillerName))
}
