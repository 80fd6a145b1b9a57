package events

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DuplicateWindow is how long JetStream remembers message ids to drop a
// re-publication. It must outlast the outbox relay's retry of an event whose
// publication was acknowledged but not yet marked sent when a process died.
const DuplicateWindow = 10 * time.Minute

// StreamConfig is the definition of RM_EVENTS: file storage, limits retention,
// events older than maxAge dropped (0 keeps them until other limits apply).
func StreamConfig(maxAge time.Duration, replicas int) jetstream.StreamConfig {
	if replicas < 1 {
		replicas = 1
	}
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "Resource Manager CloudEvents (binary mode), one per committed change",
		Subjects:    []string{SubjectRoot + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      maxAge,
		Duplicates:  DuplicateWindow,
		Replicas:    replicas,
	}
}

// DeadLetterStreamConfig keeps messages consumers terminated, for 30 days.
func DeadLetterStreamConfig(replicas int) jetstream.StreamConfig {
	if replicas < 1 {
		replicas = 1
	}
	return jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "Events a consumer gave up on, with the reason in Rm-Dead-Reason",
		Subjects:    []string{DeadLetterRoot + ".>"},
		Storage:     jetstream.FileStorage,
		MaxAge:      30 * 24 * time.Hour,
		Duplicates:  time.Minute,
		Replicas:    replicas,
	}
}

// EnsureStreams creates or updates RM_EVENTS and RM_DEADLETTER. Every service
// calls it at start, so any of them may come up first.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, maxAge time.Duration, replicas int) error {
	for _, cfg := range []jetstream.StreamConfig{StreamConfig(maxAge, replicas), DeadLetterStreamConfig(replicas)} {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}
