# Pairs the figures of `go test -bench 'BenchmarkHistory'` by workload:
# each metric on the empty store, with the history, and their ratio
# (history / empty; for latencies and ns/op lower is better).
/^BenchmarkHistory/ && !/^BenchmarkHistoryInterleaved/ { # that one prints its own table
	split($1, p, "/")
	h = p[2]; sub(/^history=/, "", h)
	w = p[1] (p[3] != "" ? "/" p[3] : ""); sub(/-[0-9]+$/, "", w)
	for (i = 3; i < NF; i += 2) {
		k = w " " $(i + 1)
		if (h == 0) empty[k] = $i; else { hist[k] = $i; n = h }
		if (!(k in seen)) { seen[k] = 1; order[++m] = k }
	}
}
END {
	if (m == 0) exit
	printf "%-40s %14s %14s %8s\n", "workload metric", "empty", "history=" n, "ratio"
	for (j = 1; j <= m; j++) {
		k = order[j]
		r = (empty[k] != 0 && k in hist) ? sprintf("%.2f", hist[k] / empty[k]) : "-"
		printf "%-40s %14s %14s %8s\n", k, empty[k], hist[k], r
	}
}
