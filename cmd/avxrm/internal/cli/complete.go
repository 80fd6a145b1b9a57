package cli

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/spf13/cobra"
)

// completeTimeout bounds what a shell completion asks of the server: a
// server that is slow or gone completes nothing rather than hang the shell.
const completeTimeout = 2 * time.Second

// completeLimit is how many of a kind a completion reads: the first page.
const completeLimit = 100

// completion is a cobra completion function that reads the candidates
// with read (each "value\tdescription"); an error completes nothing, and
// never a file name.
func completion(g *globals, read func(ctx context.Context, c *avxrm.Client) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
		defer cancel()
		g.normalizeServer() // a completion runs no PersistentPreRunE
		c, err := g.client(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		all, err := read(ctx, c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		var out []string
		for _, v := range all {
			if value, _, _ := strings.Cut(v, "\t"); strings.HasPrefix(value, toComplete) {
				out = append(out, v)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// firstPage reads the first page (completeLimit) of the list at path with
// query q, each item decoded as a map.
func firstPage(ctx context.Context, c *avxrm.Client, path string, q url.Values) ([]map[string]any, error) {
	if q == nil {
		q = url.Values{}
	}
	q.Set("limit", strconv.Itoa(completeLimit))
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if _, err := c.Do(ctx, http.MethodGet, path+"?"+q.Encode(), nil, &list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// queueNames are the queues by name, with their descriptions.
func queueNames(ctx context.Context, c *avxrm.Client) ([]string, error) {
	items, err := firstPage(ctx, c, "/queues", nil)
	var out []string
	for _, q := range items {
		out = append(out, text(q["name"])+"\t"+text(q["description"]))
	}
	return out, err
}

// appNames are the applications as name:version.
func appNames(ctx context.Context, c *avxrm.Client) ([]string, error) {
	items, err := firstPage(ctx, c, "/applications", nil)
	var out []string
	for _, a := range items {
		out = append(out, text(a["name"])+":"+text(a["version"])+"\t"+text(a["image"]))
	}
	return out, err
}

// jobIDs are the ids of the jobs that have not ended (the first page of
// each such status), described by name and status.
func jobIDs(ctx context.Context, c *avxrm.Client) ([]string, error) {
	var out []string
	for _, s := range activeStatuses {
		items, err := firstPage(ctx, c, "/jobs", url.Values{"status": {string(s)}})
		if err != nil {
			return nil, err
		}
		for _, j := range items {
			desc := text(j["status"])
			if name := givenName(j); name != "-" {
				desc = name + " " + desc
			}
			out = append(out, text(j["id"])+"\t"+desc)
		}
	}
	return out, nil
}

// arrayIDs are the job arrays' ids, described by name.
func arrayIDs(ctx context.Context, c *avxrm.Client) ([]string, error) {
	items, err := firstPage(ctx, c, "/job-arrays", nil)
	var out []string
	for _, a := range items {
		out = append(out, text(a["id"])+"\t"+givenName(a))
	}
	return out, err
}

// addCompletions gives the commands under root the completions of the
// queues, applications, jobs and arrays their flags and arguments name.
func addCompletions(root *cobra.Command, g *globals) {
	queues, apps, jobs, arrays := completion(g, queueNames), completion(g, appNames), completion(g, jobIDs), completion(g, arrayIDs)
	firstArg := func(f cobra.CompletionFunc) cobra.CompletionFunc {
		return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return f(cmd, args, toComplete)
		}
	}
	anyArg := func(f cobra.CompletionFunc) cobra.CompletionFunc { return f }
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for flag, f := range map[string]cobra.CompletionFunc{"queue": queues, "app": apps, "job": jobs, "array": arrays,
			"after-ok": jobs, "after-any": jobs} {
			if c.Flags().Lookup(flag) != nil {
				_ = c.RegisterFlagCompletionFunc(flag, f)
			}
		}
		path := strings.TrimPrefix(c.CommandPath(), "avxrm ")
		switch {
		case c.ValidArgsFunction != nil || !c.Runnable() || c.HasSubCommands():
		case strings.HasPrefix(path, "jobs ") && path != "jobs ls" || path == "logs" || path == "export" ||
			path == "exports ls" || path == "artifacts ls" || path == "artifacts get":
			many := strings.HasPrefix(c.Use, c.Name()+" [<job>…]")
			if many {
				c.ValidArgsFunction = anyArg(jobs)
			} else {
				c.ValidArgsFunction = firstArg(jobs)
			}
		case path == "arrays get" || path == "arrays wait" || path == "arrays cancel":
			c.ValidArgsFunction = firstArg(arrays)
		case path == "queues get" || path == "queues set" || path == "queues rm" || path == "queues pending":
			c.ValidArgsFunction = firstArg(queues)
		case path == "apps get" || path == "apps set" || path == "apps rm":
			c.ValidArgsFunction = firstArg(apps)
		case path == "runtime-configs get" || path == "runtime-configs set" || path == "runtime-configs rm" || path == "runtime-configs create":
			c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				switch len(args) {
				case 0:
					return queues(cmd, args, toComplete)
				case 1:
					return apps(cmd, args, toComplete)
				}
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
