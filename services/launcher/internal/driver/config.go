package driver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strings"
)

// The plugin types, as spelled in a plugin's "type".
const (
	TypeKubernetes = "kubernetes"
	TypeDocker     = "docker"
	TypeLocal      = "local"
	TypeSimulated  = "simulated"
)

// FieldError is a config validation error naming the offending field (a
// JSON name, e.g. "failure_rate"). It wraps ErrInvalidConfig.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return "invalid config: " + e.Message
	}
	return "invalid config: " + e.Field + ": " + e.Message
}

func (e *FieldError) Unwrap() error { return ErrInvalidConfig }

// KubernetesConfig configures the kubernetes driver. Exactly one of
// InCluster and Kubeconfig is set. Kubeconfig is either the content of a
// kubeconfig file or a path to one; it is a secret.
type KubernetesConfig struct {
	// Namespace where pods are created; "default" when empty (or the
	// service account's namespace when InCluster).
	Namespace  string `json:"namespace"`
	InCluster  bool   `json:"in_cluster"`
	Kubeconfig string `json:"kubeconfig"`
	// APIQPS and APIBurst bound the driver's requests to the API server:
	// APIQPS a second, in bursts of up to APIBurst. Zero: the driver's
	// defaults (50, and a burst of twice the rate).
	APIQPS   float64 `json:"api_qps"`
	APIBurst int     `json:"api_burst"`
}

// The ranges of KubernetesConfig's request limits.
const (
	MaxKubernetesAPIQPS   = 10000
	MaxKubernetesAPIBurst = 100000
)

// Validate checks the fields that can be checked without a cluster.
func (c KubernetesConfig) Validate() error {
	if c.Namespace != "" && !isNamePart(c.Namespace) || len(c.Namespace) > maxNameLen {
		return &FieldError{Field: "namespace", Message: "must be a DNS-1123 label (lower-case alphanumerics and '-', at most 63)"}
	}
	switch {
	case c.InCluster && c.Kubeconfig != "":
		return &FieldError{Field: "kubeconfig", Message: "must be empty when in_cluster is true"}
	case !c.InCluster && strings.TrimSpace(c.Kubeconfig) == "":
		return &FieldError{Field: "kubeconfig", Message: "required unless in_cluster is true"}
	case math.IsNaN(c.APIQPS) || c.APIQPS < 0 || c.APIQPS > MaxKubernetesAPIQPS:
		return &FieldError{Field: "api_qps", Message: fmt.Sprintf("must be between 0 (the default, 50) and %d requests a second", MaxKubernetesAPIQPS)}
	case c.APIBurst < 0 || c.APIBurst > MaxKubernetesAPIBurst:
		return &FieldError{Field: "api_burst", Message: fmt.Sprintf("must be between 0 (the default, twice api_qps) and %d requests", MaxKubernetesAPIBurst)}
	}
	return nil
}

// DockerConfig configures the docker driver. Zero values use the
// environment (DOCKER_HOST etc.) and Docker's default network.
type DockerConfig struct {
	Host    string `json:"host"`    // e.g. unix:///var/run/docker.sock, tcp://host:2376
	Network string `json:"network"` // network containers join
}

// Validate checks the host URL syntax.
func (c DockerConfig) Validate() error {
	if c.Host != "" {
		scheme, rest, ok := strings.Cut(c.Host, "://")
		switch {
		case !ok || rest == "":
			return &FieldError{Field: "host", Message: "must be a URL such as unix:///var/run/docker.sock or tcp://host:2376"}
		case scheme != "unix" && scheme != "tcp" && scheme != "npipe" && scheme != "http" && scheme != "https" && scheme != "ssh":
			return &FieldError{Field: "host", Message: fmt.Sprintf("unsupported scheme %q", scheme)}
		}
	}
	if strings.ContainsAny(c.Network, " \t\n/") {
		return &FieldError{Field: "network", Message: "must be a network name or id"}
	}
	return nil
}

// LocalConfig configures the local driver. WorkDir, when set, is an absolute
// directory under which instance directories are made; the default is
// <data dir>/local.
type LocalConfig struct {
	WorkDir string `json:"work_dir"`
}

// Validate checks that WorkDir is absolute.
func (c LocalConfig) Validate() error {
	if c.WorkDir != "" && !filepath.IsAbs(c.WorkDir) {
		return &FieldError{Field: "work_dir", Message: "must be an absolute path"}
	}
	return nil
}

// Root is the directory the driver keeps its instances under: WorkDir, or
// <opts.DataDir>/local.
func (c LocalConfig) Root(opts Options) (string, error) {
	root := c.WorkDir
	if root == "" {
		if opts.DataDir == "" {
			return "", &FieldError{Field: "work_dir", Message: "required when the launcher has no data directory"}
		}
		root = filepath.Join(opts.DataDir, "local")
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("work dir: %w", err)
	}
	return root, nil
}

// SimulatedConfig configures the simulated driver: each instance runs for
// RunSeconds (0: ends at once) and fails with exit code 1 with probability
// FailureRate.
type SimulatedConfig struct {
	RunSeconds  float64 `json:"run_seconds"`
	FailureRate float64 `json:"failure_rate"`
}

// maxRunSeconds keeps a simulated duration representable as a time.Duration.
const maxRunSeconds = 100 * 365 * 24 * 3600

// Validate checks the ranges.
func (c SimulatedConfig) Validate() error {
	if math.IsNaN(c.RunSeconds) || c.RunSeconds < 0 || c.RunSeconds > maxRunSeconds {
		return &FieldError{Field: "run_seconds", Message: "must be between 0 and 3153600000"}
	}
	if math.IsNaN(c.FailureRate) || c.FailureRate < 0 || c.FailureRate > 1 {
		return &FieldError{Field: "failure_rate", Message: "must be between 0 and 1"}
	}
	return nil
}

// ParseKubernetesConfig decodes and validates a kubernetes config.
func ParseKubernetesConfig(raw json.RawMessage) (KubernetesConfig, error) {
	return parse[KubernetesConfig](raw)
}

// ParseDockerConfig decodes and validates a docker config.
func ParseDockerConfig(raw json.RawMessage) (DockerConfig, error) {
	return parse[DockerConfig](raw)
}

// ParseLocalConfig decodes and validates a local config.
func ParseLocalConfig(raw json.RawMessage) (LocalConfig, error) {
	return parse[LocalConfig](raw)
}

// ParseSimulatedConfig decodes and validates a simulated config.
func ParseSimulatedConfig(raw json.RawMessage) (SimulatedConfig, error) {
	return parse[SimulatedConfig](raw)
}

// ValidateConfig validates a plugin's config for its type, as the API does
// when a plugin is created. Errors wrap ErrInvalidConfig; a *FieldError names
// the field ("type" for an unknown type).
func ValidateConfig(typ string, config json.RawMessage) error {
	var err error
	switch typ {
	case TypeKubernetes:
		_, err = ParseKubernetesConfig(config)
	case TypeDocker:
		_, err = ParseDockerConfig(config)
	case TypeLocal:
		_, err = ParseLocalConfig(config)
	case TypeSimulated:
		_, err = ParseSimulatedConfig(config)
	default:
		return &FieldError{Field: "type", Message: fmt.Sprintf("unknown plugin type %q (want kubernetes, docker, local or simulated)", typ)}
	}
	return err
}

// SharedKey identifies the driver a plugin of type typ with config needs:
// plugins with equal keys are served by one driver. A driver adopts every
// instance it finds in its runtime (a local driver, every directory under
// its root), so two drivers of one root, or of one engine and the same
// settings, would each report, stop and clean up the other's instances.
// The key is the type and the parsed config, with the local driver's root
// resolved (an empty work_dir and the default written out are one). It is
// "" when the config does not parse: its factory says why.
func SharedKey(typ string, config json.RawMessage, opts Options) string {
	var c any
	var err error
	switch typ {
	case TypeKubernetes:
		c, err = ParseKubernetesConfig(config)
	case TypeDocker:
		c, err = ParseDockerConfig(config)
	case TypeLocal:
		var lc LocalConfig
		if lc, err = ParseLocalConfig(config); err == nil {
			lc.WorkDir, err = lc.Root(opts)
			c = lc
		}
	case TypeSimulated:
		c, err = ParseSimulatedConfig(config)
	default:
		return ""
	}
	if err != nil {
		return ""
	}
	b, err := json.Marshal(c)
	if err != nil {
		return ""
	}
	return typ + " " + string(b)
}

// secretFields lists, per type, the config fields never shown to users.
var secretFields = map[string][]string{
	TypeKubernetes: {"kubeconfig"},
}

// Redacted replaces a secret value in configs returned to users.
const Redacted = "***"

// RedactConfig returns config with every non-empty secret value replaced by
// "***", other fields unchanged. A config of a type with secrets that cannot
// be parsed is replaced by {} rather than risk showing a secret.
func RedactConfig(typ string, config json.RawMessage) json.RawMessage {
	fields := secretFields[typ]
	if len(fields) == 0 {
		return config
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(config, &m); err != nil {
		return json.RawMessage(`{}`)
	}
	if m == nil {
		return config
	}
	for _, f := range fields {
		v, ok := m[f]
		if !ok || string(v) == `""` || string(v) == "null" {
			continue
		}
		m[f] = json.RawMessage(`"` + Redacted + `"`)
	}
	out, err := json.Marshal(m)
	if err != nil {
		return json.RawMessage(`{}`)
	}
	return out
}

// parse decodes raw strictly (unknown fields and trailing data rejected;
// empty or null means the zero config) and validates the result.
func parse[T interface{ Validate() error }](raw json.RawMessage) (T, error) {
	var c T
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return c, c.Validate()
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, decodeError(err)
	}
	if dec.More() {
		return c, &FieldError{Message: "trailing data after the JSON object"}
	}
	return c, c.Validate()
}

func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "a boolean"
	case reflect.String:
		return "a string"
	case reflect.Float32, reflect.Float64, reflect.Int, reflect.Int64:
		return "a number"
	}
	return "of another type"
}

// decodeError turns encoding/json errors into FieldErrors naming the field.
func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field == "" {
			return &FieldError{Message: "must be a JSON object"}
		}
		return &FieldError{Field: typeErr.Field, Message: "must be " + jsonKind(typeErr.Type.Kind())}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return &FieldError{Field: strings.Trim(name, `"`), Message: "unknown field"}
	}
	return &FieldError{Message: "malformed JSON: " + err.Error()}
}
