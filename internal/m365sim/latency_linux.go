//go:build linux

package m365sim

import (
	"os"
	"syscall"
	"time"
	"unsafe"
)

// itimerspec is struct itimerspec of timerfd_settime(2).
type itimerspec struct {
	interval syscall.Timespec
	value    syscall.Timespec
}

// clockMonotonic is CLOCK_MONOTONIC (<linux/time.h>), the same on every
// architecture; the standard library's syscall package does not name it.
const clockMonotonic = 1

// waitPrecise waits d on a timerfd (timerfd_create(2) on CLOCK_MONOTONIC,
// a nanosecond expiry) read through the runtime's netpoller: the goroutine
// is parked, no thread is blocked, and epoll reports the expiry when it
// happens rather than at the next whole millisecond. Falls back to
// time.Sleep when the timerfd cannot be made. The standard library only:
// the emulator imports nothing else (TestNoSDKImports).
func waitPrecise(d time.Duration) {
	if d <= 0 {
		return
	}
	deadline := time.Now().Add(d)
	// TFD_NONBLOCK and TFD_CLOEXEC are O_NONBLOCK and O_CLOEXEC (timerfd_create(2)).
	fd, _, errno := syscall.RawSyscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		time.Sleep(d)
		return
	}
	spec := itimerspec{value: syscall.NsecToTimespec(int64(d))}
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0); errno != 0 {
		_ = syscall.Close(int(fd))
		time.Sleep(d)
		return
	}
	// A non-blocking descriptor is registered with the netpoller, so Read
	// parks until the timer has expired (8 bytes: the expiry count).
	f := os.NewFile(fd, "timerfd")
	var buf [8]byte
	if _, err := f.Read(buf[:]); err != nil {
		time.Sleep(time.Until(deadline))
	}
	_ = f.Close()
}
