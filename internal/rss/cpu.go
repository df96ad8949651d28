package rss

import (
	"syscall"
	"time"
)

// CPU returns the CPU time (user + system, all threads) this process has
// used. Benchmarks report it per operation next to wall time: on a shared
// machine wall time follows the load, CPU time follows the work.
func CPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
