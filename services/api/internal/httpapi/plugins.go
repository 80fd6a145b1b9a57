package httpapi

import (
	"time"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/store"
)

// timePrecision is what MongoDB keeps of a time; responses use the same so a
// resource reads back exactly as it was returned.
const timePrecision = time.Millisecond

// Plugin is the stored plugin (full resource work is in the resources issue).
type Plugin struct {
	events.Meta `bson:",inline"`
	Name        string         `json:"name" bson:"name"`
	Type        string         `json:"type" bson:"type"`
	Config      map[string]any `json:"config,omitempty" bson:"config,omitempty"`
	IsDefault   bool           `json:"is_default" bson:"is_default"`
}

func pluginKind(s *Server) store.Kind[*Plugin] {
	return store.Kind[*Plugin]{S: s.opts.Store, Coll: store.Plugins, Name: "plugin", IDPrefix: "plg"}
}
