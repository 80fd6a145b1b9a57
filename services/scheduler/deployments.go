package scheduler

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/scheduler/internal/admit"
	"github.com/avxrm/rm/services/scheduler/internal/lease"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Deployments count against their queue. Each replica slot k of deployment
// d holds its own lease, holder "<d>/replica/<k>", of one instance on d's
// queue, admitted like a job's workers (admit.KindReplica): all or nothing
// per replica, in the order of the deployment's creation and then by slot.
// Scaling down releases the leases of the slots beyond the replica count;
// deleting the deployment releases them all. The launcher starts only the
// slots that hold a lease (services/launcher/internal/launch/deployments.go)
// and says in the deployment's status how many wait and why.

// DeploymentsCollection is the API's collection of deployments.
const DeploymentsCollection = "deployments"

// replicaInfix separates a deployment id from its slot in a lease holder.
const replicaInfix = "/replica/"

// ReplicaHolder is the lease holder of replica slot k of deployment dep.
func ReplicaHolder(dep string, k int) string { return dep + replicaInfix + strconv.Itoa(k) }

// splitReplicaHolder parses a replica lease holder.
func splitReplicaHolder(h string) (dep string, slot int, ok bool) {
	dep, s, ok := strings.Cut(h, replicaInfix)
	if !ok {
		return "", 0, false
	}
	n, err := strconv.Atoi(s)
	return dep, n, err == nil && n >= 0
}

func isReplicaHolder(h string) bool { return strings.Contains(h, replicaInfix) }

// deployment is what the scheduler knows of a deployment.
type deployment struct {
	ID        string    `bson:"_id" json:"id"`
	Version   int64     `bson:"version" json:"version"`
	CreatedAt time.Time `bson:"created_at" json:"created_at"`
	QueueID   string    `bson:"queue_id" json:"queue_id"`
	Replicas  int       `bson:"replicas" json:"replicas"`
}

// replicaPlan is what a pass decides for the replicas.
type replicaPlan struct {
	deployments map[string]*deployment // the picture's, by id
	waiting     int                    // replicas not admitted, for the log
}

// followReplica releases the lease of replica holder h when its slot is no
// longer wanted: the deployment is gone or was scaled below it, or it
// moved to another queue than the one the lease holds (the slot asks
// again, on its new queue, in the next pass).
func (p *plan) followReplica(h string, claims []lease.Claim) {
	dep, slot, _ := splitReplicaHolder(h)
	d := p.replicas.deployments[dep]
	if d == nil || slot >= d.Replicas || !slices.ContainsFunc(claims, func(c lease.Claim) bool { return c.Queue == d.QueueID }) {
		p.change.Releases = append(p.change.Releases, h)
	}
}

// replicaRequests are the wanted replica slots that hold no lease.
func (p *plan) replicaRequests(leases map[string][]lease.Claim) []admit.Request {
	var reqs []admit.Request
	for _, d := range p.replicas.deployments {
		for k := range d.Replicas {
			h := ReplicaHolder(d.ID, k)
			if leases[h] != nil {
				continue
			}
			reqs = append(reqs, admit.Request{
				ID: h, Kind: admit.KindReplica, SubmittedAt: d.CreatedAt.Add(time.Duration(k)),
				Claims: []admit.Claim{{Queue: d.QueueID, Count: 1}},
			})
		}
	}
	return reqs
}

// replicaDecision takes decision d if it is a replica's, and reports
// whether it was. A replica granted gets its lease; one not admitted waits
// without a write: the launcher reports it in the deployment's status.
func (p *plan) replicaDecision(d admit.Decision) bool {
	if !isReplicaHolder(d.ID) {
		return false
	}
	if !d.Admit {
		p.replicas.waiting++
		return true
	}
	p.change.Grants[d.ID] = []lease.Claim{{Queue: d.Grants[0].Queue, Count: d.Grants[0].Count}}
	return true
}

// applyDeployment takes the deployment of an event into the picture.
func (t *term) applyDeployment(e events.Event) bool {
	var d deployment
	if err := e.DecodeData(&d); err != nil || d.ID == "" {
		return false
	}
	if e.Type == events.TypeDeploymentDeleted {
		if _, ok := t.deployments[d.ID]; !ok {
			return false
		}
		delete(t.deployments, d.ID)
		t.goneDeployments[d.ID] = true
		return true
	}
	if cur := t.deployments[d.ID]; t.goneDeployments[d.ID] || (cur != nil && cur.Version >= d.Version) {
		return false
	}
	t.deployments[d.ID] = &d
	return true
}

// loadDeployments reads every live deployment.
func (t *term) loadDeployments(ctx context.Context) error {
	cur, err := t.s.deps.DB.Collection(DeploymentsCollection).Find(ctx, bson.D{{Key: "_deleted", Value: bson.D{{Key: "$exists", Value: false}}}},
		options.Find().SetProjection(bson.D{{Key: "version", Value: 1}, {Key: "created_at", Value: 1}, {Key: "queue_id", Value: 1}, {Key: "replicas", Value: 1}}))
	if err != nil {
		return fmt.Errorf("resync deployments: %w", err)
	}
	var ds []*deployment
	if err := cur.All(ctx, &ds); err != nil {
		return fmt.Errorf("resync deployments: %w", err)
	}
	m := make(map[string]*deployment, len(ds))
	for _, d := range ds {
		if c := t.deployments[d.ID]; c != nil && c.Version > d.Version {
			d = c
		}
		m[d.ID] = d
	}
	t.deployments = m
	return nil
}
