// Package deploy holds the tests of the deployment files: deploy/compose
// (loaded with compose-go as Compose v2 does, and run end to end on the local
// Docker Engine by `make compose-test`) and deploy/helm (linted and rendered
// with Helm's library, every object decoded strictly). It is a module of its
// own so that these tools' dependencies stay out of the services' modules.
package deploy
