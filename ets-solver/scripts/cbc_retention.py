"""Times PuLP + CBC on retention problems dumped by the retention bench, for comparison.

Input: a JSON-lines file, one problem per line, as written by
`ETS_DUMP_HARD=<file> cargo bench -p ets-solver --bench retention` (fields of
`ets_core::RetentionProblem`, plus `name` and the Rust solver's `objective`).
The model is the issue's 0/1 program: maximise sum O_i x_i - c (sum y_j + sum x_i) + (l_s/K) sum z_k
with y_parent >= x_i, y_parent >= y_j, y_j <= sum of x below j, z_k <= sum of x in k,
sum x >= 1; c = l_b/(M+N), or -1e-4 when l_b = 0.

Prints one JSON line per problem (CBC's objective, the Rust objective, the wall time of
`prob.solve()` in ms, which includes PuLP writing the model and starting CBC, and CBC's own
reported time when its log gives one), then p50/p90/max of both times.

Usage: python3 ets-solver/scripts/cbc_retention.py problems.jsonl
"""

import json
import re
import sys
import tempfile
import time

import pulp


def build(p):
    n = len(p["targets"])
    m = len(p["ancestor_parent"])
    k = p["num_clusters"]
    cost = -1e-4 if p["lambda_b"] == 0 else p["lambda_b"] / (m + n)
    value = p["lambda_s"] / k if k else 0.0
    prob = pulp.LpProblem("retention", pulp.LpMaximize)
    x = [pulp.LpVariable(f"x{i}", cat="Binary") for i in range(n)]
    y = [pulp.LpVariable(f"y{j}", cat="Binary") for j in range(m)]
    z = [pulp.LpVariable(f"z{c}", cat="Binary") for c in range(k)]
    prob += (
        pulp.lpSum(p["targets"][i] * x[i] for i in range(n))
        - cost * (pulp.lpSum(y) + pulp.lpSum(x))
        + value * pulp.lpSum(z)
    )
    below = [[] for _ in range(m)]
    for i, parent in enumerate(p["candidate_parent"]):
        if parent is None:
            continue
        prob += y[parent] >= x[i]
        a = parent
        while a is not None:
            below[a].append(i)
            a = p["ancestor_parent"][a]
    for j, parent in enumerate(p["ancestor_parent"]):
        if parent is not None:
            prob += y[parent] >= y[j]
        prob += y[j] <= pulp.lpSum(x[i] for i in below[j])
    members = [[] for _ in range(k)]
    for i, c in enumerate(p["clusters"]):
        members[c].append(i)
    for c in range(k):
        prob += z[c] <= pulp.lpSum(x[i] for i in members[c])
    prob += pulp.lpSum(x) >= 1
    return prob


def percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def main(path):
    walls, cbc_times = [], []
    with open(path) as f:
        problems = [json.loads(line) for line in f if line.strip()]
    for p in problems:
        prob = build(p)
        with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
            solver = pulp.PULP_CBC_CMD(msg=False, logPath=log.name, threads=1)
            start = time.perf_counter()
            prob.solve(solver)
            wall = (time.perf_counter() - start) * 1e3
            text = open(log.name).read()
        found = re.search(r"Total time \(CPU seconds\):\s*([0-9.]+)", text)
        cbc = float(found.group(1)) * 1e3 if found else None
        walls.append(wall)
        if cbc is not None:
            cbc_times.append(cbc)
        print(
            json.dumps(
                {
                    "name": p.get("name"),
                    "status": pulp.LpStatus[prob.status],
                    "cbc_objective": pulp.value(prob.objective),
                    "rust_objective": p.get("objective"),
                    "wall_ms": round(wall, 2),
                    "cbc_ms": cbc,
                }
            )
        )
    for label, values in [("pulp+cbc wall", walls), ("cbc reported", cbc_times)]:
        if values:
            print(
                f"{label}: p50 {percentile(values, 0.5):.1f} ms, "
                f"p90 {percentile(values, 0.9):.1f} ms, max {max(values):.1f} ms "
                f"({len(values)} problems)"
            )


if __name__ == "__main__":
    main(sys.argv[1])
