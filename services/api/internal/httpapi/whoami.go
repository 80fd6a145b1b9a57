package httpapi

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/avxrm/rm/services/api/internal/auth"
	"github.com/danielgtaylor/huma/v2"
)

// whoamiPath answers who a token stands for and what it may do: the first
// thing to ask after a 403. Any valid token may ask, a job's too, even
// without one of the three roles (ruleFor).
const whoamiPath = "/whoami"

// Whoami is the caller as the API sees it.
type Whoami struct {
	AuthenticatedBy string   `json:"authenticated_by" enum:"oidc,job_token,none" doc:"oidc: an access token of RM_OIDC_ISSUER; job_token: an instance's RM_JOB_TOKEN; none: auth is off and every request acts as an administrator"`
	Subject         string   `json:"subject" doc:"the token's sub (anonymous while auth is off)"`
	Username        string   `json:"username" doc:"preferred_username, else the subject; what access lists name as user:<name>"`
	Roles           []string `json:"roles" doc:"every role found in the roles claims (RM_OIDC_ROLES_CLAIM)"`
	Groups          []string `json:"groups" doc:"the groups claim (RM_OIDC_GROUPS_CLAIM)"`
	Access          string   `json:"access" enum:"admin,user,viewer,none" doc:"what the roles allow: admin everything; user reads, submits where a queue allows and acts on its own jobs; viewer reads; none nothing but this"`
	JobID           string   `json:"job_id,omitempty" doc:"a job token's job, whose artifacts it may upload and logs read"`
	// Nullable: no expiry while auth is off.
	ExpiresAt *time.Time         `json:"expires_at" nullable:"true" doc:"when the token ends (exp); null while auth is off"`
	Queues    []QueuePermissions `json:"queues" doc:"what the caller may do on each queue (on the one asked for with ?queue=); empty for a job token"`
}

// QueuePermissions is what the caller may do on one queue.
type QueuePermissions struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Read   bool   `json:"read" doc:"may read the queue's jobs (the role, then access.read)"`
	Submit bool   `json:"submit" doc:"may submit jobs to it (rm-user or rm-admin, then access.submit)"`
}

type whoamiInput struct {
	Queue string `query:"queue" maxLength:"63" doc:"a queue's id or name: list only it (404 if there is none)"`
}

type whoamiOutput struct{ Body Whoami }

func (s *Server) registerWhoami() {
	op := s.op("get-whoami", http.MethodGet, BasePath+whoamiPath, "Who the token stands for, and what it may do",
		[]string{"Auth"}, http.StatusOK, http.StatusNotFound, http.StatusUnprocessableEntity)
	op.Description = "The caller as the API sees it: how it was authenticated, its subject, username, roles and groups, " +
		"the access those roles give, when its token ends, and on which queues it may read jobs and submit " +
		"(every queue, or the one named by ?queue=). Any valid token may ask, an instance's RM_JOB_TOKEN and a token " +
		"without any of the three roles too; while auth is off every request is an administrator's."
	huma.Register(s.API, op, s.whoami)
}

func (s *Server) whoami(ctx context.Context, in *whoamiInput) (*whoamiOutput, error) {
	p := auth.From(ctx)
	w := Whoami{AuthenticatedBy: "oidc", Subject: p.Subject, Username: p.Username, Roles: nonNil(p.Roles),
		Groups: nonNil(p.Groups), Access: p.Level.String(), JobID: p.JobID, Queues: []QueuePermissions{}}
	switch {
	case s.opts.Auth == nil:
		w.AuthenticatedBy = "none"
	case p.JobID != "":
		w.AuthenticatedBy = "job_token"
	}
	if !p.ExpiresAt.IsZero() {
		exp := p.ExpiresAt.UTC()
		w.ExpiresAt = &exp
	}
	if in.Queue != "" {
		q, err := s.queues.Get(ctx, in.Queue)
		if err != nil {
			return nil, err
		}
		if p.JobID == "" {
			a := queuePermissions(p, queueAccessDoc{ID: q.Res.ID, Name: q.Res.Name, Access: q.Res.Access})
			w.Queues = append(w.Queues, a)
		}
		return &whoamiOutput{w}, nil
	}
	if p.JobID != "" {
		return &whoamiOutput{w}, nil
	}
	qs, err := s.queueAccess(ctx)
	if err != nil {
		return nil, err
	}
	for _, q := range qs {
		w.Queues = append(w.Queues, queuePermissions(p, q))
	}
	slices.SortFunc(w.Queues, func(a, b QueuePermissions) int { return strings.Compare(a.Name, b.Name) })
	return &whoamiOutput{w}, nil
}

// queuePermissions is what p may do on queue q: the checks reads (mayRead)
// and submissions (maySubmit) make. While auth is off p is auth.Admin,
// whom every list names.
func queuePermissions(p *auth.Principal, q queueAccessDoc) QueuePermissions {
	return QueuePermissions{ID: q.ID, Name: q.Name, Read: mayRead(p, q.Access), Submit: maySubmit(p, q.Access)}
}

func nonNil(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}
