package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/pkg/events/outbox"
	"github.com/avxrm/rm/services/api/internal/jobspec"
	"github.com/avxrm/rm/services/api/internal/problem"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// JobApplication returns what a job needs of the registered application
// with id, else with name and version; problem.ErrNotFound if none.
func (s *Store) JobApplication(ctx context.Context, id, name, version string) (*jobspec.Application, error) {
	filter := bson.D{{Key: "_id", Value: id}}
	if id == "" {
		filter = bson.D{{Key: "name", Value: name}, {Key: "app_version", Value: version}}
	}
	var app jobspec.Application
	err := s.DB.Collection(Applications).FindOne(ctx, append(filter, outbox.NotDeleted())).Decode(&app)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("application: %w", problem.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("look up application: %w", err)
	}
	return &app, nil
}

// JobRuntimeConfig returns what a job needs of the app-runtime-config of
// (q, appID), nil if there is none.
func (s *Store) JobRuntimeConfig(ctx context.Context, q *events.Queue, appID string) (*jobspec.RuntimeConfig, error) {
	var arc jobspec.RuntimeConfig
	err := s.DB.Collection(AppRuntimeConfigs).FindOne(ctx, bson.D{
		{Key: "queue_id", Value: bson.D{{Key: "$in", Value: bson.A{q.ID, q.Name}}}},
		{Key: "application_id", Value: appID},
		outbox.NotDeleted(),
	}).Decode(&arc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up app-runtime-config: %w", err)
	}
	return &arc, nil
}
