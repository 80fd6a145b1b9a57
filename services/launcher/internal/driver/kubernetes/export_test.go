package kubernetes

import "github.com/avxrm/rm/services/launcher/internal/driver"

// RestConfig is restConfig, for the tests of the client it configures.
var RestConfig = restConfig

// RememberedOwners is how many controllers' UIDs d remembers.
func RememberedOwners(d driver.Driver) int {
	o := &d.(*Driver).owners
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.uid)
}

// PendingDeletions is how many pods d deleted that its watch has not yet
// seen go.
func PendingDeletions(d driver.Driver) int {
	s := &d.(*Driver).deletions
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.uids)
}
