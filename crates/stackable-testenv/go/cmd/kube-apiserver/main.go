// Command kube-apiserver is the Kubernetes API server, built from the k8s.io/kubernetes module
// for stackable-testenv. It is the same program as k8s.io/kubernetes/cmd/kube-apiserver.
package main

import (
	"os"
	_ "time/tzdata" // for timeZone support in CronJob

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
	"k8s.io/kubernetes/cmd/kube-apiserver/app"

	"github.com/stackabletech/webhook-kit/crates/stackable-testenv/go/internal/watchdog"
)

func main() {
	watchdog.Start()
	command := app.NewAPIServerCommand()
	os.Exit(cli.Run(command))
}
