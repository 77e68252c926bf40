package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// teller writes the story: steps with a timestamp, command output indented below them. It
// writes to every one of its writers, whatever happens to the others: when the terminal that
// relays the story is gone, the story log still gets every line.
type teller struct {
	mu sync.Mutex
	ws []io.Writer
}

// newTeller returns a teller that writes to ws.
func newTeller(ws ...io.Writer) *teller { return &teller{ws: ws} }

// emit writes s to every writer. A writer that fails (a closed pipe) is not written to again.
func (t *teller) emit(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	kept := t.ws[:0]
	for _, w := range t.ws {
		if _, err := io.WriteString(w, s); err == nil {
			kept = append(kept, w)
		}
	}
	t.ws = kept
}

// say prints one step of the story.
func (t *teller) say(format string, args ...any) {
	t.emit(fmt.Sprintf("[%s] %s\n", time.Now().Format("15:04:05.00"), fmt.Sprintf(format, args...)))
}

// indent prints text with every line indented, so that it stands apart from the steps.
func (t *teller) indent(text string) {
	var b strings.Builder
	for line := range strings.Lines(strings.TrimRight(text, "\n")) {
		b.WriteString("    " + strings.TrimSuffix(line, "\n") + "\n")
	}
	t.emit(b.String())
}

// println prints a line as it is.
func (t *teller) println(format string, args ...any) {
	t.emit(fmt.Sprintf(format+"\n", args...))
}

// drop stops writing to w.
func (t *teller) drop(w io.Writer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	kept := t.ws[:0]
	for _, x := range t.ws {
		if x != w {
			kept = append(kept, x)
		}
	}
	t.ws = kept
}
