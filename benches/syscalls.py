#!/usr/bin/env python3
"""System calls per request from an `strace -c -f` summary (benches/run.sh).

    python3 benches/syscalls.py STRACE_SUMMARY DRIVER_JSON LABEL PIDS > syscalls-LABEL.json

STRACE_SUMMARY is the table `strace -c -f -o FILE -p PID...` writes when it
detaches; DRIVER_JSON is the driver's output for the workload run while strace
was attached (`rate --warmup 0`, so every request it sent is counted). Prints
one JSON object: calls and errors per system call, the total, and both divided
by the number of requests. Standard library only.
"""
import json
import sys


def parse_summary(text):
    """{syscall: (calls, errors)} from strace's -c table (the total row left out)."""
    out = {}
    rules = 0
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("------"):
            rules += 1
            continue
        if rules != 1:  # the header is above the first rule, the total below the second
            continue
        f = s.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(f) not in (5, 6):
            raise ValueError(f"unexpected strace -c row: {line!r}")
        name = f[-1]
        calls = int(f[3])
        errors = int(f[4]) if len(f) == 6 else 0
        c, e = out.get(name, (0, 0))
        out[name] = (c + calls, e + errors)
    if rules < 1:
        raise ValueError("no strace -c table (did strace attach?)")
    return out


def per_request(summary, requests):
    total = sum(c for c, _ in summary.values())
    rows = sorted(summary.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return {
        "requests": requests,
        "total_calls": total,
        "per_request": round(total / requests, 3) if requests else None,
        "calls": {k: {"calls": c, "errors": e, "per_request": round(c / requests, 3) if requests else None}
                  for k, (c, e) in rows},
    }


def main():
    summary_path, driver_path, label, pids = sys.argv[1:5]
    with open(summary_path) as f:
        summary = parse_summary(f.read())
    with open(driver_path) as f:
        d = json.load(f)
    r = per_request(summary, d["requests"])
    r.update(label=label, pids=pids, rps_target=d["rps_target"], conns=d["conns"],
             errors=d["errors"] + d["non_2xx"], statuses=d.get("statuses", {}))
    print(json.dumps(r))


if __name__ == "__main__":
    main()
