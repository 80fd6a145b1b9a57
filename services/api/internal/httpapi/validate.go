package httpapi

import (
	"path"
	"regexp"
	"strings"

	"github.com/avxrm/rm/pkg/events"
	"github.com/avxrm/rm/services/api/internal/problem"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Validation rules of API.md that a JSON schema cannot say (map keys,
// quantities, absolute paths). Each returns the offending fields.

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// labelKey is a Kubernetes label key: an optional DNS prefix and a name.
var labelKey = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)

const maxMapEntries = 256

// launcherEnv says what each of events.EnvAlways holds: the variables the
// launcher sets over any value a queue, an application, a runtime config, a
// job or a deployment gives, so that a value given for one, which would
// never be seen, is refused. RM_API_URL and RM_JOB_TOKEN are not among
// them: the launcher sets those only when it has one.
var launcherEnv = map[string]string{
	events.EnvJobID:           "the job's id, in every instance of a job",
	events.EnvRole:            "the instance's role, in every instance",
	events.EnvInstanceIndex:   "the instance's index, in every instance",
	events.EnvWorkerInstances: "the job's worker_instances, in every instance of a job",
	events.EnvDeploymentID:    "the deployment's id, in every replica",
}

func validateEnv(field string, env map[string]string) []*problem.FieldError {
	var errs []*problem.FieldError
	if len(env) > maxMapEntries {
		errs = append(errs, problem.Field(field, "at most %d variables", maxMapEntries))
	}
	for k, v := range env {
		if !envName.MatchString(k) {
			errs = append(errs, problem.Field(field+"."+k, "environment variable names match [A-Za-z_][A-Za-z0-9_]*"))
		} else if what, ok := launcherEnv[k]; ok {
			errs = append(errs, problem.Field(field+"."+k, "set by the launcher (%s) over any value given here; use another name", what))
		}
		if len(v) > 32<<10 {
			errs = append(errs, problem.Field(field+"."+k, "value longer than 32 KiB"))
		}
	}
	return errs
}

func validateLabels(field string, m map[string]string, valueMax int) []*problem.FieldError {
	var errs []*problem.FieldError
	if len(m) > maxMapEntries {
		errs = append(errs, problem.Field(field, "at most %d entries", maxMapEntries))
	}
	for k, v := range m {
		if len(k) > 253 || !labelKey.MatchString(k) {
			errs = append(errs, problem.Field(field+"."+k, "not a valid key (Kubernetes label key syntax)"))
		}
		if len(v) > valueMax {
			errs = append(errs, problem.Field(field+"."+k, "value longer than %d characters", valueMax))
		}
	}
	return errs
}

func validateQuantity(field, q string) []*problem.FieldError {
	if q == "" {
		return nil
	}
	v, err := resource.ParseQuantity(q)
	if err != nil {
		return []*problem.FieldError{problem.Field(field, "%q is not a Kubernetes quantity (e.g. 500m, 2, 4Gi)", q)}
	}
	if v.Sign() < 0 {
		return []*problem.FieldError{problem.Field(field, "must not be negative")}
	}
	return nil
}

func validateLimits(field string, l *events.ResourceLimits) []*problem.FieldError {
	if l == nil {
		return nil
	}
	return append(validateQuantity(field+".cpu", l.CPU), validateQuantity(field+".memory", l.Memory)...)
}

// volumeName is what both runtimes take as a claim or volume name (a pvc
// storage's source): Docker's volume names, which Kubernetes' claim names
// (lowercase DNS subdomains) are a part of.
var volumeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// validateStorages refuses the storages no runtime could mount, which would
// otherwise fail every instance of the queue at its start: a mount path
// that is not absolute and clean, is the root or is taken by another
// storage (Kubernetes and Docker refuse both), and a source its type cannot
// use (the launcher's drivers read nfs as server:/path).
func validateStorages(field string, st []events.Storage) []*problem.FieldError {
	var errs []*problem.FieldError
	names := map[string]bool{}
	mounts := map[string]int{}
	for i, s := range st {
		f := field + "[" + itoa(i) + "]"
		switch {
		case !path.IsAbs(s.MountPath):
			errs = append(errs, problem.Field(f+".mount_path", "must be an absolute path"))
		case path.Clean(s.MountPath) != s.MountPath:
			errs = append(errs, problem.Field(f+".mount_path", "must be a clean path (no //, . or ..)"))
		case s.MountPath == "/":
			errs = append(errs, problem.Field(f+".mount_path", "must not be /, the instance's own root"))
		default:
			if j, ok := mounts[s.MountPath]; ok {
				errs = append(errs, problem.Field(f+".mount_path", "%s is the mount path of storages[%d] already; each storage needs its own", s.MountPath, j))
			} else {
				mounts[s.MountPath] = i
			}
		}
		if !nameRe.MatchString(s.Name) {
			errs = append(errs, problem.Field(f+".name", "names are letters, digits, -, _ and ., starting with a letter or digit"))
		}
		if names[s.Name] {
			errs = append(errs, problem.Field(f+".name", "duplicate storage name %q", s.Name))
		}
		names[s.Name] = true
		switch {
		case s.Type == "empty_dir":
			if s.Source != "" {
				errs = append(errs, problem.Field(f+".source", "an empty_dir storage takes no source (it starts empty); leave it out"))
			}
		case s.Source == "":
			errs = append(errs, problem.Field(f+".source", "required for type %s", s.Type))
		case s.Type == "host_path" && !path.IsAbs(s.Source):
			errs = append(errs, problem.Field(f+".source", "a host_path source must be an absolute path"))
		case s.Type == "nfs":
			server, export, _ := strings.Cut(s.Source, ":")
			if server == "" || !path.IsAbs(export) {
				errs = append(errs, problem.Field(f+".source", "an nfs source is server:/path, e.g. nfs.example:/exports/scenarios"))
			}
		case s.Type == "pvc" && (len(s.Source) > 253 || !volumeName.MatchString(s.Source)):
			errs = append(errs, problem.Field(f+".source", "a pvc source is a claim (or Docker volume) name: letters, digits, -, _ and ., starting with a letter or digit"))
		}
	}
	return errs
}

func validateAttributes(field string, a *events.QueueAttributes) []*problem.FieldError {
	if a == nil {
		return nil
	}
	errs := validateLabels(field+".node_selector", a.NodeSelector, 63)
	errs = append(errs, validateLabelValues(field+".node_selector", a.NodeSelector)...)
	errs = append(errs, validateLabels(field+".labels", a.Labels, 63)...)
	errs = append(errs, validateLabelValues(field+".labels", a.Labels)...)
	errs = append(errs, validateLabels(field+".annotations", a.Annotations, 64<<10)...)
	if sa := a.ServiceAccount; sa != "" && (len(sa) > 253 || !dnsSubdomain.MatchString(sa)) {
		errs = append(errs, problem.Field(field+".service_account", "not a Kubernetes service account name (lower-case letters, digits, - and ., starting and ending with a letter or digit)"))
	}
	for i, t := range a.Tolerations {
		f := field + ".tolerations[" + itoa(i) + "]"
		if t.Operator == "Exists" && t.Value != "" {
			errs = append(errs, problem.Field(f+".value", "must be empty when operator is Exists"))
		} else if !labelValue.MatchString(t.Value) {
			errs = append(errs, problem.Field(f+".value", "%s", labelValueWords))
		}
		if t.Key == "" && t.Operator != "Exists" {
			errs = append(errs, problem.Field(f+".key", "required unless operator is Exists"))
		}
		if t.Key != "" && !labelKey.MatchString(t.Key) {
			errs = append(errs, problem.Field(f+".key", "not a valid key (Kubernetes label key syntax)"))
		}
	}
	return errs
}

// labelValue is a Kubernetes label value (at most 63 characters, which
// the callers bound): what a pod's labels, a node selector and a
// toleration take; the kubernetes driver's pod would be refused otherwise.
var labelValue = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)

const labelValueWords = "not a Kubernetes label value: empty, or letters, digits, -, _ and ., starting and ending with a letter or digit"

// dnsSubdomain is a Kubernetes object name (RFC 1123 subdomain), such as a
// service account's.
var dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// validateLabelValues refuses the values of m that are not label values.
func validateLabelValues(field string, m map[string]string) []*problem.FieldError {
	var errs []*problem.FieldError
	for k, v := range m {
		if len(v) <= 63 && !labelValue.MatchString(v) {
			errs = append(errs, problem.Field(field+"."+k, "%s", labelValueWords))
		}
	}
	return errs
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
