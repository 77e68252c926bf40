// Command kubectl-deich is the kubectl plugin for Deich: `kubectl deich status`, `switchover`,
// `history` and `drills` read both sites of a shared service side by side and move it with
// one command. kubectl runs it for `kubectl deich ...` when it is on the PATH.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand(newOptions(os.Stdin, os.Stdout, os.Stderr)).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
