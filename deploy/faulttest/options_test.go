package main

import (
	"context"
	"slices"
	"testing"
	"time"
)

func defaultOptions() options {
	return options{submissions: 10000, clients: 8, runSeconds: 0.2, maxRecovery: 10 * time.Second,
		disconnect: 30 * time.Second, drain: 20 * time.Minute, logLevel: "info"}
}

func TestOptionsRefuseWhatWouldHangOrPassWithoutAFault(t *testing.T) {
	if err := defaultOptions().check(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	some := defaultOptions()
	some.only = "nats, store"
	if err := some.check(); err != nil {
		t.Errorf("-faults %q: %v", some.only, err)
	}
	for name, change := range map[string]func(*options){
		"no client":           func(o *options) { o.clients = 0 },
		"no submission":       func(o *options) { o.submissions = 0 },
		"negative run":        func(o *options) { o.runSeconds = -1 },
		"no recovery time":    func(o *options) { o.maxRecovery = 0 },
		"negative submit-for": func(o *options) { o.submitFor = -time.Second },
		"misspelt fault":      func(o *options) { o.only = "nats,stor" },
		"empty fault":         func(o *options) { o.only = "nats," },
		"unknown log level":   func(o *options) { o.logLevel = "verbose" },
	} {
		o := defaultOptions()
		change(&o)
		if err := o.check(); err == nil {
			t.Errorf("%s: check() accepted %+v", name, o)
		}
	}
}

// The names -faults accepts are those of the faults the run injects, in
// their order.
func TestFaultNamesAreTheSteps(t *testing.T) {
	var got []string
	for _, st := range (&stack{}).faultSteps(context.Background(), nil, defaultOptions()) {
		got = append(got, st.short)
	}
	if !slices.Equal(got, faultNames) {
		t.Errorf("faultSteps are %v, faultNames %v", got, faultNames)
	}
}
