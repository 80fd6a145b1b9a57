module github.com/avxrm/rm/services/scenario-export

go 1.26

replace github.com/avxrm/rm/pkg/events => ../../pkg/events
replace github.com/avxrm/rm/pkg/embedded => ../../pkg/embedded
