package jobdoc

import (
	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/indexed"
)

// The conditions that lead the jobs collection's reads by index (package
// indexed), kept here so that every service asks for the same indexes.
//
// On the embedded store each index is partial: it holds only the jobs a
// hot read is for (the active ones, those with a cleanup or a post
// controller to do, the jobs of arrays, the ended ones for the run history
// and for the lists of an ended status, of a queue, an owner or a label).
// SQLite updates an index on every write to a job it holds, and FerretDB
// rewrites the whole document on every write, so a full index costs every
// write of every job; a partial one only the writes of its jobs. A job that
// has ended and is neither in an array nor being cleaned up is in the ended
// jobs' indexes alone (its status's, and those of its queue, owner and
// labels that lists have made) and (succeeded or failed) the run history's,
// and a running one in the active index alone.

var (
	activeStatuses = []any{events.JobSubmitted, events.JobPending, events.JobAdmitted, events.JobRunning}
	ranStatuses    = []any{events.JobSucceeded, events.JobFailed}
	endedStatuses  = []any{events.JobSucceeded, events.JobFailed, events.JobCancelled}
	activePC       = []any{events.PostControllerPending, events.PostControllerAdmitted, events.PostControllerRunning}
)

// ActiveStatus is the condition that a job has one of statuses, all of
// them active (submitted, pending, admitted, running).
func ActiveStatus(statuses ...string) indexed.Cond {
	return indexed.Cond{Path: "status", In: anys(statuses), Partial: activeStatuses}
}

// RanStatus is the condition that a job ended succeeded or failed: the
// jobs whose runs the start estimates learn from.
func RanStatus() indexed.Cond {
	return indexed.Cond{Path: "status", In: ranStatuses, Partial: ranStatuses}
}

// EndedStatus is the clause of the jobs with one of statuses, all of them
// ended (succeeded, failed, cancelled), for a read of their _ids in _id
// order (indexed.Reader.ScanWhere: the API's lists of an ended status). Its
// index, of the status and _id, holds the ended jobs only: a job enters it
// with its final status, and the writes of the active jobs leave it alone.
func EndedStatus(statuses ...string) indexed.Clause {
	return indexed.Clause{{Path: "status", In: anys(statuses), Partial: endedStatuses}}
}

// Labelled is the clause of the jobs whose label key has value and whose
// status is one of statuses, all of them ended, for a read of their _ids
// in _id order (the API's lists by label, which find the active jobs with
// the label by the active ones' index and LabelCond). Its index, of the
// label, the status and _id, holds the ended jobs that have the key: a job
// enters it with its final status, and the writes of the active jobs leave
// it alone. It is made on the first list by that key, and on the embedded
// store at most ferretembed.MaxOnDemandIndexes keys have one: a list by
// another key reads in _id order.
func Labelled(key, value string, statuses ...string) indexed.Clause {
	return endedWith(indexed.Cond{Path: events.LabelField(key), In: []any{value}, Sparse: true, OnDemand: true}, statuses)
}

// OwnedEnded are the clauses of the jobs of owner (its subject, or its
// username) whose status is one of statuses, all of them ended, for reads
// of their _ids in _id order (the API's lists by owner), as Labelled's:
// their indexes hold the ended jobs that have an owner.
func OwnedEnded(owner string, statuses ...string) []indexed.Clause {
	return []indexed.Clause{
		endedWith(indexed.Cond{Path: "owner.subject", In: []any{owner}, Sparse: true}, statuses),
		endedWith(indexed.Cond{Path: "owner.username", In: []any{owner}, Sparse: true}, statuses),
	}
}

// OwnerConds are the conditions that owner is a job's subject or its
// username, for the reads of the active jobs beside OwnedEnded's.
func OwnerConds(owner string) []indexed.Cond {
	return []indexed.Cond{{Path: "owner.subject", In: []any{owner}}, {Path: "owner.username", In: []any{owner}}}
}

// QueueEnded is the clause of the jobs of a queue whose status is one of
// statuses, all of them ended, for a read of their _ids in _id order (the
// API's lists of a queue's jobs), as Labelled's: its index holds the ended
// jobs.
func QueueEnded(queueID string, statuses ...string) indexed.Clause {
	return endedWith(indexed.Cond{Path: "queue_id", In: []any{queueID}}, statuses)
}

// endedWith is the clause of c and a status among statuses, all of them
// ended, whose index holds the ended jobs only (those c's index holds).
func endedWith(c indexed.Cond, statuses []string) indexed.Clause {
	return indexed.Clause{c, {Path: "status", In: anys(statuses), Partial: endedStatuses}}
}

// LabelCond is the condition that a job's label key has value, for the
// conditions a read checks on the entries an index gave (no index of its
// own).
func LabelCond(key, value string) indexed.Cond {
	return indexed.Cond{Path: events.LabelField(key), In: []any{value}, OnDemand: true}
}

// CleanupPending is the clause of the jobs whose cleanup was asked for and
// not yet done.
func CleanupPending() indexed.Clause {
	return indexed.Clause{{Path: "cleanup_requested", In: []any{true}, Partial: []any{true}}, {Path: "cleaned_at", Missing: true}}
}

// PostControllerStatus is the clause of the jobs whose post controller
// has one of statuses, all of them active (pending, admitted, running).
func PostControllerStatus(statuses ...string) indexed.Clause {
	return indexed.Clause{{Path: "post_controller.status", In: anys(statuses), Partial: activePC}}
}

// InArray is the condition that a job is in array id.
func InArray(id string) indexed.Cond {
	return indexed.Cond{Path: "array_id", In: []any{id}, Sparse: true}
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
