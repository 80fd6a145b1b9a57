module github.com/avxrm/rm/services/scheduler

go 1.26

replace github.com/avxrm/rm/pkg/events => ../../pkg/events

replace github.com/avxrm/rm/pkg/embedded => ../../pkg/embedded

require github.com/google/go-cmp v0.7.0
