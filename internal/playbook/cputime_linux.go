package playbook

import (
	"syscall"
	"time"
	"unsafe"
)

// threadCPU is the CPU time of the calling OS thread (the caller locks it):
// a figure that other processes on the machine do not inflate. It reads
// CLOCK_THREAD_CPUTIME_ID (nanoseconds; getrusage counts in scheduler
// ticks, too coarse for the benchmark's short phases).
func threadCPU() time.Duration {
	const clockThreadCPUTimeID = 3
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}
