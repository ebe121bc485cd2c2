//go:build !linux

package cluster

import "errors"

// diskSpace is only implemented on Linux; elsewhere free space is unknown.
func diskSpace(string) (free, total uint64, err error) {
	return 0, 0, errors.New("free disk space is only read on Linux")
}
