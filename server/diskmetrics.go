package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// registerDisk exports the data dir's disk as the node sees it (the write
// probe and free space, cluster/disk.go): alert on tdf_disk_writable == 0
// at once, and on tdf_disk_low_space before the disk fills.
func (m *metrics) registerDisk(s *Server) {
	disk := s.Node.DiskStatus
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tdf_disk_writable", Help: "1 while this node can write its raft log (the write probe passes), 0 while it cannot: it is then not ready and does not lead."},
			func() float64 { return flag(disk().OK) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tdf_disk_free_bytes", Help: "Free bytes on the filesystem of the data dir."},
			func() float64 { return float64(disk().FreeBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tdf_disk_size_bytes", Help: "Size in bytes of the filesystem of the data dir."},
			func() float64 { return float64(disk().TotalBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tdf_disk_low_space", Help: "1 while free space under the data dir is below the warning level (--disk-warn-free-bytes)."},
			func() float64 { return flag(disk().Warning != "") }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tdf_disk_write_failures_total", Help: "Raft log writes and write probes that failed on this node."},
			func() float64 { return float64(disk().Failures) }),
	)
}
