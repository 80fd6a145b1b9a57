module github.com/avxrm/rm/services/launcher

go 1.26.0

replace github.com/avxrm/rm/pkg/events => ../../pkg/events

replace github.com/avxrm/rm/pkg/embedded => ../../pkg/embedded

require (
	github.com/docker/docker v28.5.2+incompatible // indirect
	github.com/google/go-cmp v0.7.0 // indirect
	k8s.io/api v0.37.2 // indirect
	k8s.io/apimachinery v0.37.2 // indirect
	k8s.io/client-go v0.37.2 // indirect
)
