// Package registry lists the drivers the launcher can use, explicitly (no
// init-time registration): adding a driver is one line here.
package registry

import (
	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/docker"
	"github.com/avxrm/rm/services/launcher/internal/driver/kubernetes"
	"github.com/avxrm/rm/services/launcher/internal/driver/local"
	"github.com/avxrm/rm/services/launcher/internal/driver/simulated"
)

// Factories maps each plugin type to its driver's constructor.
func Factories() map[string]driver.Factory {
	return map[string]driver.Factory{
		driver.TypeKubernetes: kubernetes.New,
		driver.TypeDocker:     docker.New,
		driver.TypeLocal:      local.New,
		driver.TypeSimulated:  simulated.New,
	}
}
