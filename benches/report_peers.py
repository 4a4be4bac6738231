"""Peers and system-call sections of the bench report (issue 15), for report.py.

figures(runs) -> {"syscalls": ..., "peers": ...} from the raw files of
benches/peers.sh; render(fig, L) appends the tables to the report lines.
"""

# Rows of the peers table: (group, path, who, what).
PEER_ROWS = (
    ("passthrough", "tollgate", "tollgate", "/openai_passthrough/v1/chat/completions"),
    ("passthrough", "bare", "bare Pingora", "/v1/chat/completions, Pingora's proxy with no gateway code (the floor)"),
    ("passthrough", "portkey", "Portkey", "/v1/chat/completions, x-portkey-provider: openai"),
    ("passthrough", "litellm", "LiteLLM", "/openai_passthrough/v1/chat/completions"),
    ("translated", "translated", "tollgate", "/openai/v1/chat/completions, anthropic/claude-sonnet-4-5 -> /v1/messages"),
    ("translated", "portkey-translated", "Portkey", "/v1/chat/completions, x-portkey-provider: anthropic -> /v1/messages"),
    ("translated", "litellm-translated", "LiteLLM", "/chat/completions, anthropic/claude-sonnet-4-5 -> /v1/messages"),
    ("translated", "litellm-openai", "LiteLLM", "/chat/completions, openai/gpt-4o-mini -> /v1/chat/completions "
                                                "(parsed and rebuilt, no translation)"),
)
BASE = {"passthrough": "tollgate", "translated": "translated"}
GOAL = 10.0
# Rows measured beside tollgate at every rate: not peers, no ratios of their own.
OURS = ("tollgate", "bare Pingora")
SYSCALL_ORDER = ("tollgate", "translated", "bare", "nginx", "portkey", "portkey-translated", "litellm", "litellm-translated",
                 "litellm-openai")


def _pick(st):
    return {"p50": round(st["p50_us"], 1), "p99": round(st["p99_us"], 1)}


def _ratio(a, b):
    """a / b, or None when either is missing or b is not positive."""
    if a is None or b is None or b <= 0 or a < 0:
        return None
    return round(a / b, 2)


def _rate_runs(runs):
    """{path: {rate: driver json}} from raw/peer-rate-PATH-RATE.json."""
    out = {}
    for name, d in runs.items():
        if name.startswith("peer-rate-") and d:
            path, _, r = name[len("peer-rate-"):].rpartition("-")
            if path and r.isdigit():
                out.setdefault(path, {})[int(r)] = d
    return out


def _added(d, direct):
    if not d or not direct:
        return None
    a, b = _pick(d["latency"]), _pick(direct["latency"])
    return {k: round(a[k] - b[k], 1) for k in a}


def _better(x, base, base_rates, direct, r):
    """How many times `base` is better than row `x`: added latency at rate r, max RPS, CPU."""
    ba = _added(base_rates.get(r), direct.get(r)) if r else None
    xa = x.get("added_us")
    bm, xm = base.get("max"), x.get("max")
    return {
        "rate": r,
        "base_added_us": ba,
        "added_p50": _ratio(xa and xa["p50"], ba and ba["p50"]),
        "added_p99": _ratio(xa and xa["p99"], ba and ba["p99"]),
        "max_rps": _ratio(bm and bm["rps"], xm and xm["rps"]),
        "cpu": _ratio(xm and xm["cpu_us_per_request"], bm and bm["cpu_us_per_request"]),
    }


def figures(runs):
    # System calls per request.
    sc = {}
    for name, d in runs.items():
        if name.startswith("syscalls-") and d:
            sc[name[len("syscalls-"):]] = d
    # Peers.
    status = {name[len("peer-"):]: d for name, d in runs.items()
              if name.startswith("peer-") and d and "installed" in d}
    rr = _rate_runs(runs)
    direct = rr.get("direct", {})
    top = max(direct) if direct else None
    rows = {}
    for group, path, who, what in PEER_ROWS:
        m = runs.get(f"peer-max-{path}")
        rates = rr.get(path, {})
        if not rates and not m:
            continue
        x = {"group": group, "who": who, "what": what}
        if rates:
            r = top if who in OURS and top in rates else max(rates)
            d = rates[r]
            x["rate"] = {"rps_target": r, "rps_achieved": round(d["rps_achieved"], 1), "requests": d["requests"],
                         "errors": d["errors"] + d["non_2xx"], "latency_us": _pick(d["latency"]),
                         "saturated": d["rps_achieved"] < 0.9 * r}
            x["added_us"] = _added(d, direct.get(r))
        if m:
            n = m["requests"]
            x["max"] = {"conns": m["conns"], "rps": round(m["rps"], 1), "requests": n,
                        "errors": m["errors"] + m["non_2xx"],
                        "cpu_us_per_request": round(m["cpu_ms_per_1000_requests"], 1) if n else None,
                        "pids": m["pids"]}
        peer = path.split("-")[0] if who != "tollgate" else "tollgate"
        for when in ("idle", "end"):
            mm = runs.get(f"peer-mem-{peer}-{when}")
            if mm:
                x[f"rss_{when}"] = mm["rss"]
                x["hwm"] = max(x.get("hwm", 0), mm["hwm"])
        rows[path] = x
    # Ratios: how many times tollgate is better, per peer row, against
    # tollgate's path of the same group at the peer's own rate.
    for path, x in rows.items():
        base_path = BASE[x["group"]]
        base = rows.get(base_path)
        if x["who"] in OURS or not base:
            continue
        r = (x.get("rate") or {}).get("rps_target")
        rt = _better(x, base, rr.get(base_path, {}), direct, r)
        need = (rt["added_p50"], rt["max_rps"], rt["cpu"])
        rt["goal_met"] = None if None in need else all(v >= GOAL for v in need)
        x["tollgate_better_by"] = rt
        # The same ratios for the engine alone: what a gateway on Pingora could reach at best.
        if rows.get("bare"):
            x["bare_better_by"] = _better(x, rows["bare"], rr.get("bare", {}), direct, r)
    return {"syscalls": sc, "peers": {"status": status, "rows": rows, "rps": top, "goal": GOAL,
                                      "rates": sorted(direct)}}


def _f(v, fmt="{:.0f}"):
    return "-" if v is None else fmt.format(v)


def _mib(v):
    return "-" if v is None else f"{v / 1048576:.1f} MiB"


def render(fig, L):
    sc = fig.get("syscalls") or {}
    if sc:
        names = [n for n in SYSCALL_ORDER if n in sc] + sorted(n for n in sc if n not in SYSCALL_ORDER)
        any_ = sc.get("tollgate") or next(iter(sc.values()))
        # Columns: every call at >= 0.05 per request on some path, most frequent first.
        freq = {}
        for d in sc.values():
            for c, v in d["calls"].items():
                if v["per_request"] is not None and v["per_request"] >= 0.05:
                    freq[c] = max(freq.get(c, 0), v["per_request"])
        # tollgate's and nginx's calls first (the point of the table), then the peers' most frequent.
        focus = {}
        for n in ("tollgate", "translated", "nginx"):
            for c, v in (sc.get(n) or {}).get("calls", {}).items():
                if v["per_request"] is not None and v["per_request"] >= 0.05:
                    focus[c] = max(focus.get(c, 0), v["per_request"])
        cols = sorted(focus, key=lambda c: -focus[c])
        cols += [c for c in sorted(freq, key=lambda c: -freq[c]) if c not in focus][:max(0, 14 - len(cols))]
        L.append(f"System calls per proxied request: strace -c -f attached to the serving process(es) while the "
                 f"driver sends {any_['rps_target']:.0f} RPS open loop (a peer: at most the rate it sustains, column "
                 f"RPS) over {any_['conns']} keep-alive connections (counts, not times: strace slows the process); "
                 "other = every other call")
        L.append("")
        L.append("| path | RPS | requests | total / req | " + " | ".join(cols) + " | other | errors |")
        L.append("|---|---:|---:|---:|" + "---:|" * len(cols) + "---:|---:|")
        for n in names:
            d = sc[n]
            pr = {c: v["per_request"] or 0 for c, v in d["calls"].items()}
            other = sum(v for c, v in pr.items() if c not in cols)
            L.append(f"| {n} | {d['rps_target']:.0f} | {d['requests']} | **{_f(d['per_request'], '{:.2f}')}** | "
                     + " | ".join(_f(pr.get(c), "{:.2f}") if c in pr else "0" for c in cols)
                     + f" | {other:.2f} | {d['errors']} |")
        L.append("")
    pe = fig.get("peers") or {}
    status = pe.get("status") or {}
    rows = pe.get("rows") or {}
    if status or rows:
        L.append(f"Peers, same run: added latency open loop (path minus direct at the same rate, µs) at "
                 f"{_f(pe.get('rps'))} RPS, or for a peer that cannot sustain twice that, at a lower rate it can "
                 "(column rate; tollgate's ratio figures are taken at the same rate), max RPS over 32 keep-alive "
                 "connections (closed loop), CPU per request (utime+stime of the process tree during the max run), "
                 "RSS of the process tree after warm-up and VmHWM at the end")
        L.append("")
        for name, s in sorted(status.items()):
            if s["started"] and not s["note"]:
                state = f"v{s['version']}: ran"
            elif s["started"]:
                state = f"v{s['version']}: ran, with paths left out: {s['note']}"
            else:
                state = ("installed, " if s["installed"] else "") + f"NOT measured: {s['note']}"
            L.append(f"- {name}: {state}")
        L.append("")
        L.append("| group | gateway | route | rate | added p50 | added p99 | errors | max RPS | CPU µs / req | RSS idle | "
                 "VmHWM | tollgate better: p50 / p99 / RPS / CPU | goal ≥ 10× |")
        L.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for group, path, who, what in PEER_ROWS:
            x = rows.get(path)
            if not x:
                continue
            a, m, rt = x.get("added_us") or {}, x.get("max") or {}, x.get("tollgate_better_by")
            errs = (x.get("rate") or {}).get("errors", 0) + m.get("errors", 0)
            if rt:
                better = " / ".join(_f(rt[k], "{:.1f}×") for k in ("added_p50", "added_p99", "max_rps", "cpu"))
                ta = rt.get("base_added_us")
                if rt.get("rate") != pe.get("rps") and ta:
                    better += f" (tollgate at {rt['rate']} RPS: added p50 {ta['p50']:.0f} / p99 {ta['p99']:.0f})"
                goal = "n/a" if rt["goal_met"] is None else ("met" if rt["goal_met"] else "NOT met")
            else:
                better, goal = "", ""
            rate = x.get("rate") or {}
            rs = _f(rate.get("rps_target"))
            if rate.get("saturated"):
                rs += f" (saturated: {rate['rps_achieved']:.0f})"
            L.append(f"| {group} | {who} | {what} | {rs} | {_f(a.get('p50'))} | {_f(a.get('p99'))} | {errs} | "
                     f"{_f(m.get('rps'))} | {_f(m.get('cpu_us_per_request'), '{:.1f}')} | {_mib(x.get('rss_idle'))} | "
                     f"{_mib(x.get('hwm'))} | {better} | {goal} |")
        L.append("")
        floor = [(path, x["bare_better_by"]) for _, path, _, _ in PEER_ROWS
                 for x in [rows.get(path)] if x and x.get("bare_better_by")]
        if floor:
            L.append("The same ratios for bare Pingora (the engine with no gateway code, same mock, same rate): "
                     + "; ".join(f"{path} " + " / ".join(_f(b[k], "{:.1f}×") for k in
                                                               ("added_p50", "added_p99", "max_rps", "cpu"))
                                 + (f" (bare at {b['rate']} RPS: added p50 {b['base_added_us']['p50']:.0f})"
                                    if b.get("base_added_us") else "")
                                 for path, b in floor)
                     + ". Where bare Pingora's own ratio is under 10×, no gateway built on it reaches the goal.")
            L.append("")
        L.append("Ratios: peer added latency / tollgate's, tollgate RPS / peer's, peer CPU / tollgate's, against "
                 "tollgate's row of the same group; the goal (issue 15) is ≥ 10× on added p50, max RPS and CPU. "
                 "On 2 cores the driver and the mock share the CPUs, so tollgate's max RPS (and the RPS ratio) is "
                 "a floor.")
        L.append("")


def targets(fig):
    """Issue-15 targets from these sections, in report.py's target format."""
    t = []
    d = (fig.get("syscalls") or {}).get("tollgate")
    v = d and d["per_request"]
    t.append({"target": "system calls per proxied request (passthrough)", "measured": v, "limit": 5, "unit": "ratio",
              "ok_if_le": True, "met": None if v is None else v <= 5, "note": "strace -c -f"})
    mx = fig.get("max_rate") or {}
    v = mx.get("tollgate_cpu_over_bare")
    t.append({"target": "passthrough CPU per request / bare Pingora's (same run)", "measured": v, "limit": 1.0,
              "unit": "ratio", "ok_if_le": True, "met": None if v is None else v <= 1.0,
              "note": "driver, 64 connections; with wrk: %s" % mx.get("tollgate_cpu_over_bare_wrk")})
    n = (mx.get("nginx") or {}).get("cpu_ms_per_1000_requests")
    tg = (mx.get("tollgate") or {}).get("cpu_ms_per_1000_requests")
    v = round(tg / n, 2) if n and tg else None
    t.append({"target": "passthrough CPU per request / nginx's (same run)", "measured": v, "limit": 2.5,
              "unit": "ratio", "ok_if_le": True, "met": None if v is None else v <= 2.5, "note": "driver, 64 connections"})
    row = (fig.get("open_loop") or {}).get("1000") or {}
    a = row.get("tollgate", {}).get("added_latency_us")
    v = a and a["p50"]
    b = row.get("bare", {}).get("added_latency_us")
    floor = f" (bare Pingora in the same run: {b['p50']:.0f} µs)" if b else ""
    t.append({"target": "passthrough added p50 at 1,000 RPS" + floor, "measured": v, "limit": 100, "unit": "us",
              "ok_if_le": True, "met": None if v is None else v <= 100, "note": ""})
    sd = ((fig.get("sse") or {}).get("tollgate") or {}).get("added_delivery_us")
    v = sd and sd["p99"]
    t.append({"target": "SSE added inter-event delay p99", "measured": v, "limit": 500, "unit": "us",
              "ok_if_le": True, "met": None if v is None else v <= 500, "note": ""})
    mem = fig.get("memory") or {}
    st, sb = mem.get("streams_tollgate"), mem.get("streams_bare")
    v = st and round(st["bytes_per_stream"])
    t.append({"target": "RSS per open SSE stream", "measured": v, "limit": 40 * 1024, "unit": "bytes",
              "ok_if_le": True, "met": None if v is None else v <= 40 * 1024,
              "note": "bare Pingora in the same run: %s bytes" % (sb and round(sb["bytes_per_stream"]))})
    rows = (fig.get("peers") or {}).get("rows") or {}
    for path in ("portkey", "litellm", "portkey-translated", "litellm-translated"):
        rt = (rows.get(path) or {}).get("tollgate_better_by")
        if rt is None:
            t.append({"target": f"tollgate ≥ 10× better than {path} (p50, RPS, CPU)", "measured": None,
                      "limit": GOAL, "unit": "ratio", "ok_if_le": False, "met": None, "note": "not measured"})
            continue
        need = [rt[k] for k in ("added_p50", "max_rps", "cpu")]
        worst = None if None in need else min(need)
        t.append({"target": f"tollgate ≥ 10× better than {path} (worst of p50, RPS, CPU)", "measured": worst,
                  "limit": GOAL, "unit": "ratio", "ok_if_le": False, "met": rt["goal_met"], "note": ""})
    return t
