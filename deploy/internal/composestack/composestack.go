// Package composestack drives the offline compose stack of deploy/compose
// with Debian's docker-compose and the docker CLI: for `make compose-test`
// (deploy/stack_test.go) and `make fault-test` (deploy/faulttest).
package composestack

import (
	"context"
	"os"
	"os/exec"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Compose runs docker-compose on compose.yaml + compose.offline.yaml in dir
// as project, with env added to the environment (and COMPOSE_PROJECT_NAME,
// which the launchers' default driver config names the workers' network
// by), and returns its output.
func Compose(project, dir string, env []string, args ...string) (string, error) {
	cmd := exec.Command("docker-compose", append([]string{"-p", project, "-f", "compose.yaml", "-f", "compose.offline.yaml"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "COMPOSE_PROJECT_NAME="+project), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Docker runs the docker CLI and returns its trimmed output.
func Docker(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Leader is the candidate service whose hostname starts the value of
// bucket's leader key (host-pid-random), "" when there is none.
func Leader(ctx context.Context, js jetstream.JetStream, bucket string, candidates ...string) string {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return ""
	}
	e, err := kv.Get(ctx, "leader")
	if err != nil {
		return ""
	}
	for _, c := range candidates {
		if strings.HasPrefix(string(e.Value()), c+"-") {
			return c
		}
	}
	return ""
}
