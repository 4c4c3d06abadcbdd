// Command etcd is the etcd server at the version Kubernetes pins, built for stackable-testenv.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"

	"github.com/stackabletech/webhook-kit/crates/stackable-testenv/go/internal/watchdog"
)

func main() {
	watchdog.Start()
	etcdmain.Main(os.Args)
}
