module github.com/avxrm/rm/cmd/avxrm

go 1.26

replace github.com/avxrm/rm/pkg/events => ../../pkg/events
replace github.com/avxrm/rm/pkg/embedded => ../../pkg/embedded
replace github.com/avxrm/rm/services/api => ../../services/api
replace github.com/avxrm/rm/services/scheduler => ../../services/scheduler
replace github.com/avxrm/rm/services/launcher => ../../services/launcher
replace github.com/avxrm/rm/services/scenario-export => ../../services/scenario-export
