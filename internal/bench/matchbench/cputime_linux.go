package matchbench

import (
	"syscall"
	"time"
	"unsafe"
)

// processCPU is the CPU time of the whole process, every thread: a figure
// that other processes on the machine do not inflate, and that counts the
// collector's work (which runs on other threads than the benchmark's). With
// GOMAXPROCS 1 and nothing else running, it is what one core spends. It
// reads CLOCK_PROCESS_CPUTIME_ID (nanoseconds; getrusage counts in
// scheduler ticks, too coarse for the benchmark's short phases).
func processCPU() time.Duration {
	const clockProcessCPUTimeID = 2
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockProcessCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}
