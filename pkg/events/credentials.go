package events

import (
	"errors"

	"github.com/nats-io/nats.go"
)

// Credentials returns the options that authenticate a service to NATS, from
// RM_NATS_CREDS (a .creds file: JWT and nkey seed) or RM_NATS_USER and
// RM_NATS_PASSWORD, read through getenv; none set means no authentication.
// docs/auth.md lists the permissions each service needs.
func Credentials(getenv func(string) string) ([]nats.Option, error) {
	creds, user, pass := getenv("RM_NATS_CREDS"), getenv("RM_NATS_USER"), getenv("RM_NATS_PASSWORD")
	switch {
	case creds != "" && user != "":
		return nil, errors.New("set RM_NATS_CREDS or RM_NATS_USER, not both")
	case creds != "":
		return []nats.Option{nats.UserCredentials(creds)}, nil
	case user != "":
		return []nats.Option{nats.UserInfo(user, pass)}, nil
	case pass != "":
		return nil, errors.New("RM_NATS_PASSWORD is set without RM_NATS_USER")
	}
	return nil, nil
}
