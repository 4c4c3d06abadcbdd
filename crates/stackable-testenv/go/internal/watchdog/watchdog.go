// Package watchdog lets stackable-testenv's children die with the test process.
//
// When STACKABLE_TESTENV_EXIT_ON_STDIN_EOF=1, Start reads stdin until it is closed and then
// exits the process. stackable-testenv holds the write end of that pipe: when the test
// process ends for any reason (also SIGKILL, abort, or a harness kept in a static that is
// never dropped), the kernel closes the pipe and the control plane goes away with it.
package watchdog

import (
	"fmt"
	"io"
	"os"
)

// EnvVar switches the watchdog on.
const EnvVar = "STACKABLE_TESTENV_EXIT_ON_STDIN_EOF"

// Start starts the watchdog if EnvVar is "1"; otherwise it does nothing.
func Start() {
	if os.Getenv(EnvVar) != "1" {
		return
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		fmt.Fprintln(os.Stderr, "stackable-testenv watchdog: stdin closed (the test process is gone), exiting")
		os.Exit(3)
	}()
}
