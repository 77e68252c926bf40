// Package controllers holds Deich's reconcilers, one per kind. They orchestrate; the work they
// share (peer connections, rendering, the failover decision) lives in internal packages.
package controllers
