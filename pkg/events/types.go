package events

import "strings"

// Resource kinds, the second token of an event type and the third of a subject.
const (
	KindQueue            = "queue"
	KindPlugin           = "plugin"
	KindApplication      = "application"
	KindAppRuntimeConfig = "app-runtime-config"
	KindDeployment       = "deployment"
	KindJob              = "job"
	KindExport           = "export"
)

// Event types. Each event's data is the resource as the API returns it.
const (
	TypeQueueCreated = "rm.queue.created"
	TypeQueueUpdated = "rm.queue.updated"
	TypeQueueDeleted = "rm.queue.deleted"

	TypePluginCreated = "rm.plugin.created"
	TypePluginUpdated = "rm.plugin.updated"
	TypePluginDeleted = "rm.plugin.deleted"

	TypeApplicationCreated = "rm.application.created"
	TypeApplicationUpdated = "rm.application.updated"
	TypeApplicationDeleted = "rm.application.deleted"

	TypeAppRuntimeConfigCreated = "rm.app-runtime-config.created"
	TypeAppRuntimeConfigUpdated = "rm.app-runtime-config.updated"
	TypeAppRuntimeConfigDeleted = "rm.app-runtime-config.deleted"

	TypeDeploymentCreated = "rm.deployment.created"
	TypeDeploymentUpdated = "rm.deployment.updated"
	TypeDeploymentDeleted = "rm.deployment.deleted"

	TypeJobSubmitted       = "rm.job.submitted"
	TypeJobPending         = "rm.job.pending"
	TypeJobAdmitted        = "rm.job.admitted"
	TypeJobRunning         = "rm.job.running"
	TypeJobSucceeded       = "rm.job.succeeded"
	TypeJobFailed          = "rm.job.failed"
	TypeJobCancelRequested = "rm.job.cancel-requested"
	TypeJobCancelled       = "rm.job.cancelled"
	TypeJobCleaned         = "rm.job.cleaned"
	TypeJobUpdated         = "rm.job.updated"
	TypeJobRetrying        = "rm.job.retrying"
	TypeJobDeleted         = "rm.job.deleted"

	TypeExportRequested = "rm.export.requested"
	TypeExportReady     = "rm.export.ready"
	TypeExportFailed    = "rm.export.failed"
	TypeExportDeleted   = "rm.export.deleted"
)

// Types are the event types there are, by kind in the order above: every
// Type constant (a test keeps them in step).
var Types = []string{
	TypeQueueCreated, TypeQueueUpdated, TypeQueueDeleted,
	TypePluginCreated, TypePluginUpdated, TypePluginDeleted,
	TypeApplicationCreated, TypeApplicationUpdated, TypeApplicationDeleted,
	TypeAppRuntimeConfigCreated, TypeAppRuntimeConfigUpdated, TypeAppRuntimeConfigDeleted,
	TypeDeploymentCreated, TypeDeploymentUpdated, TypeDeploymentDeleted,
	TypeJobSubmitted, TypeJobPending, TypeJobAdmitted, TypeJobRunning, TypeJobSucceeded, TypeJobFailed,
	TypeJobCancelRequested, TypeJobCancelled, TypeJobCleaned, TypeJobUpdated, TypeJobRetrying, TypeJobDeleted,
	TypeExportRequested, TypeExportReady, TypeExportFailed, TypeExportDeleted,
}

// Type returns the event type for an action on a kind: Type("queue", "created").
func Type(kind, action string) string { return "rm." + kind + "." + action }

// KindOf returns the kind of an event type: KindOf("rm.job.admitted") = "job".
func KindOf(typ string) string {
	rest, ok := strings.CutPrefix(typ, "rm.")
	if !ok {
		return ""
	}
	kind, _, _ := strings.Cut(rest, ".")
	return kind
}

// Stream and subject layout.
const (
	// StreamName is the stream every event is stored in.
	StreamName = "RM_EVENTS"
	// SubjectRoot prefixes every event subject: rm.events.<kind>.<queue_id>.<resource_id>.
	SubjectRoot = "rm.events"
	// DeadLetterStream keeps the messages consumers gave up on, for inspection.
	DeadLetterStream = "RM_DEADLETTER"
	// DeadLetterRoot prefixes dead-letter subjects: rm.deadletter.<consumer>.
	DeadLetterRoot = "rm.deadletter"
	// NoQueue stands in the queue token of resources that belong to no queue
	// (plugins, applications).
	NoQueue = "_"
)

// Subject returns the NATS subject of an event about resource id of the given
// kind on queue queueID (NoQueue when the resource has none). For a queue's
// own events queueID is the queue's id.
func Subject(kind, queueID, id string) string {
	if queueID == "" {
		queueID = NoQueue
	}
	return SubjectRoot + "." + kind + "." + queueID + "." + id
}

// FilterSubject returns a subject filter; empty arguments match anything.
func FilterSubject(kind, queueID, id string) string {
	tok := func(s string) string {
		if s == "" {
			return "*"
		}
		return s
	}
	return SubjectRoot + "." + tok(kind) + "." + tok(queueID) + "." + tok(id)
}
