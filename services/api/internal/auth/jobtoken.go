package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Job tokens are the API's own: ES256 JWTs with iss JobIssuer, aud
// JobAudience and a job_id claim, minted at submission and handed to every
// instance of the job as RM_JOB_TOKEN. They are valid for that job's
// artifact uploads and log reads only, and only while the job is not final
// (httpapi checks the job on each use); exp bounds them besides.
const (
	JobIssuer   = "urn:avxrm:api"
	JobAudience = "avxrm-job"
)

// JobTokens mints and verifies job tokens with one key.
type JobTokens struct {
	key      *ecdsa.PrivateKey
	kid      string
	ttl      time.Duration
	now      func() time.Time
	signer   jose.Signer
	verifier *oidc.IDTokenVerifier
}

// NewJobTokens uses key; tokens live ttl at most (cfg.JobTokenTTL).
func NewJobTokens(key *ecdsa.PrivateKey, cfg Config) (*JobTokens, error) {
	cfg = cfg.withDefaults()
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	kid := "job-" + base64.RawURLEncoding.EncodeToString(sum[:9])
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	skew := cfg.ClockSkew
	v := oidc.NewVerifier(JobIssuer, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&key.PublicKey}}, &oidc.Config{
		ClientID: JobAudience, SupportedSigningAlgs: []string{oidc.ES256},
		Now: func() time.Time { return cfg.Now().Add(-skew) },
	})
	return &JobTokens{key: key, kid: kid, ttl: cfg.JobTokenTTL, now: cfg.Now, signer: signer, verifier: v}, nil
}

type jobClaims struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub"`
	Aud   string `json:"aud"`
	Iat   int64  `json:"iat"`
	Exp   int64  `json:"exp"`
	JobID string `json:"job_id"`
	Scope string `json:"scope"`
}

// jobScope is what a job token allows, for readers of the token.
const jobScope = "artifacts:write logs:read"

// Mint returns a token for the instances of job jobID.
func (j *JobTokens) Mint(jobID string) (string, error) {
	now := j.now()
	payload, err := json.Marshal(jobClaims{
		Iss: JobIssuer, Sub: "job:" + jobID, Aud: JobAudience, JobID: jobID, Scope: jobScope,
		Iat: now.Unix(), Exp: now.Add(j.ttl).Unix(),
	})
	if err != nil {
		return "", err
	}
	sig, err := j.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign job token: %w", err)
	}
	return sig.CompactSerialize()
}

// JWKS is the public key set that verifies job tokens.
func (j *JobTokens) JWKS() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &j.key.PublicKey, KeyID: j.kid, Algorithm: string(jose.ES256), Use: "sig"}}}
}

func (j *JobTokens) verify(ctx context.Context, raw string) (*Principal, *Error) {
	tok, err := j.verifier.Verify(ctx, raw)
	if err != nil {
		e := describe(err, "")
		e.Detail = "job token: " + e.Detail
		return nil, e
	}
	var c jobClaims
	if err := tok.Claims(&c); err != nil || c.JobID == "" || !strings.HasPrefix(c.Sub, "job:") {
		return nil, Unauthorized("job token: no job_id claim")
	}
	return &Principal{Subject: c.Sub, Username: c.Sub, JobID: c.JobID, Level: LevelNone, ExpiresAt: tok.Expiry}, nil
}

// keysCollection holds the job-token key, so that every API replica and
// every restart signs and verifies with the same one.
const keysCollection = "auth_keys"

type keyDoc struct {
	ID  string `bson:"_id"`
	DER []byte `bson:"der"` // SEC 1 EC private key
}

// LoadJobKey returns the job-token key stored in db, creating it on first
// use; replicas racing here all end up with the one that was inserted first.
func LoadJobKey(ctx context.Context, db *mongo.Database) (*ecdsa.PrivateKey, error) {
	coll := db.Collection(keysCollection)
	for attempt := 0; attempt < 3; attempt++ {
		var d keyDoc
		err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "job-token"}}).Decode(&d)
		if err == nil {
			return x509.ParseECPrivateKey(d.DER)
		}
		if !errors.Is(err, mongo.ErrNoDocuments) {
			return nil, fmt.Errorf("load job-token key: %w", err)
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, err
		}
		_, err = coll.InsertOne(ctx, keyDoc{ID: "job-token", DER: der})
		if err == nil {
			return key, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return nil, fmt.Errorf("store job-token key: %w", err)
		}
	}
	return nil, errors.New("load job-token key: lost the race three times")
}
