// Command etcd runs the etcd server from go.etcd.io/etcd/server/v3, so the project can build
// its own etcd binary from the Go module proxy instead of downloading a release.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
