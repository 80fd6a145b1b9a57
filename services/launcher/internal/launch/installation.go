package launch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// InstallationCollection holds one document, {_id: "installation", id},
// made by the first launcher that starts on the store. Its id is the
// installation's identity: drivers whose runtime other installations may
// share (docker) label what they make with it and see nothing else. Every
// launcher of the installation (restarts, fail-over replicas) reads the same
// document, so they all see the same instances.
const InstallationCollection = "installation"

const installationDocID = "installation"

// installation reads the installation id from the store once, creating it
// on first use; launchers racing here all get the one inserted first.
type installation struct {
	coll *mongo.Collection

	mu sync.Mutex
	id string
}

type installationDoc struct {
	ID    string `bson:"_id"`
	Value string `bson:"id"`
}

func (in *installation) get(ctx context.Context) (string, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.id != "" {
		return in.id, nil
	}
	for range 3 {
		var d installationDoc
		err := in.coll.FindOne(ctx, bson.D{{Key: "_id", Value: installationDocID}}).Decode(&d)
		if err == nil && d.Value != "" {
			in.id = d.Value
			return in.id, nil
		}
		if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
			return "", fmt.Errorf("read installation id: %w", err)
		}
		if err == nil {
			return "", errors.New("read installation id: the installation document has no id")
		}
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		_, err = in.coll.InsertOne(ctx, installationDoc{ID: installationDocID, Value: hex.EncodeToString(b)})
		if err != nil && !mongo.IsDuplicateKeyError(err) {
			return "", fmt.Errorf("create installation id: %w", err)
		}
		// Read it back: what was inserted, or what another launcher inserted first.
	}
	return "", errors.New("create installation id: lost the race three times")
}
