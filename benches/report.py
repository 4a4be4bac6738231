#!/usr/bin/env python3
"""Turns the raw driver outputs of benches/run.sh into the benchmark figures.

    python3 benches/report.py RAW_DIR OUT_DIR

Writes OUT_DIR/latest.json (figures, targets, machine, raw runs),
OUT_DIR/latest.md (the tables, also printed on stdout) and
OUT_DIR/latency.svg (latency distributions at 1,000 RPS, via gnuplot).
Standard library only.
"""
import json
import os
import shutil
import subprocess
import sys

import report_peers

RATES = (500, 1000, 2000)
PATHS = ("direct", "nginx", "tollgate", "translated")
# Open loop also runs bare Pingora: the added latency of the engine alone.
OPEN_PATHS = ("direct", "nginx", "bare", "tollgate", "translated")
# Max rate and held streams also run bare Pingora (benches/pingora_bare.rs).
MAX_PATHS = ("direct", "nginx", "bare", "tollgate", "translated")
PROXIES = ("nginx", "bare", "tollgate", "translated")
# translated = tollgate /openai with an anthropic/ model (OpenAI -> Anthropic
# Messages -> OpenAI), tollgate = /openai_passthrough (issue 13).
PCTS = (("p50", "p50_us"), ("p90", "p90_us"), ("p99", "p99_us"), ("p99.9", "p999_us"))
KIB, MIB = 1024, 1024 * 1024


def load(raw, name):
    p = os.path.join(raw, name + ".json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def pick(st):
    return {k: round(st[f], 1) for k, f in PCTS}


def diff(a, b):
    return {k: round(a[k] - b[k], 1) for k in a}


def main():
    raw, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    machine = load(raw, "machine") or {}
    runs = {}
    for f in sorted(os.listdir(raw)):
        if f.endswith(".json") and f != "machine.json":
            runs[f[:-5]] = load(raw, f[:-5])

    fig = {"machine": machine}

    # Open loop: latency from the scheduled send time, and service time.
    ol = {}
    for r in RATES:
        row = {}
        for p in OPEN_PATHS:
            d = runs.get(f"rate-{p}-{r}")
            if d:
                row[p] = {
                    "latency_us": pick(d["latency"]),
                    "service_us": pick(d["service"]),
                    "rps_achieved": round(d["rps_achieved"], 1),
                    "requests": d["requests"],
                    "errors": d["errors"] + d["non_2xx"],
                }
        if "direct" in row:
            for p in PROXIES:
                if p in row:
                    row[p]["added_latency_us"] = diff(row[p]["latency_us"], row["direct"]["latency_us"])
                    row[p]["added_service_us"] = diff(row[p]["service_us"], row["direct"]["service_us"])
        ol[str(r)] = row
    fig["open_loop"] = ol

    # Max rate and CPU.
    mx = {}
    for p in MAX_PATHS:
        d = runs.get(f"max-{p}")
        if d:
            mx[p] = {
                "rps": round(d["rps"], 1),
                "errors": d["errors"] + d["non_2xx"],
                "latency_us": pick(d["latency"]),
                "cpu_ms_per_1000_requests": round(d["cpu_ms_per_1000_requests"], 2),
                "cpu_cores_busy": round(d["cpu_cores_busy"], 2),
            }
    for p in MAX_PATHS:
        w = runs.get(f"wrk-{p}")
        if w and p in mx and w.get("requests"):
            rps = w["requests"] / (w["duration_us"] / 1e6)
            mx[p]["wrk"] = {
                "rps": round(rps, 1),
                "errors": w["socket_errors"] + w["non_2xx"],
                "p50_us": w["p50_us"],
                "p99_us": w["p99_us"],
                "cpu_ms_per_1000_requests": round(w["cpu_seconds"] * 1000 / (w["requests"] / 1000), 2),
            }
    if "nginx" in mx and "tollgate" in mx and mx["nginx"]["rps"] > 0:
        mx["tollgate_over_nginx"] = round(mx["tollgate"]["rps"] / mx["nginx"]["rps"], 3)
        if "wrk" in mx["nginx"] and "wrk" in mx["tollgate"]:
            mx["tollgate_over_nginx_wrk"] = round(mx["tollgate"]["wrk"]["rps"] / mx["nginx"]["wrk"]["rps"], 3)
    if "bare" in mx and "tollgate" in mx and mx["bare"]["cpu_ms_per_1000_requests"] > 0:
        b = mx["bare"]
        mx["tollgate_cpu_over_bare"] = round(mx["tollgate"]["cpu_ms_per_1000_requests"] / b["cpu_ms_per_1000_requests"], 3)
        if "wrk" in b and "wrk" in mx["tollgate"] and b["wrk"]["cpu_ms_per_1000_requests"] > 0:
            mx["tollgate_cpu_over_bare_wrk"] = round(
                mx["tollgate"]["wrk"]["cpu_ms_per_1000_requests"] / b["wrk"]["cpu_ms_per_1000_requests"], 3)
    fig["max_rate"] = mx

    # SSE.
    sse = {}
    for p in PATHS:
        d = runs.get(f"sse-{p}")
        if d:
            sse[p] = {
                "streams": d["streams_done"],
                "events": d["events"],
                "errors": d["errors"],
                "ttfe_us": pick(d["ttfe"]),
                "delivery_us": pick(d["delivery"]),
                "gap_us": pick(d["gap"]),
            }
    if "direct" in sse:
        for p in PROXIES:
            if p in sse:
                sse[p]["added_ttfe_us"] = diff(sse[p]["ttfe_us"], sse["direct"]["ttfe_us"])
                sse[p]["added_delivery_us"] = diff(sse[p]["delivery_us"], sse["direct"]["delivery_us"])
                sse[p]["added_gap_us"] = diff(sse[p]["gap_us"], sse["direct"]["gap_us"])
    fig["sse"] = sse

    # Memory.
    mem = {}
    for name in ("tollgate-fresh", "tollgate", "tollgate-end", "nginx-fresh", "nginx"):
        d = runs.get(f"idle-{name}")
        if d:
            mem[f"idle_{name.replace('-', '_')}"] = {"rss": d["rss"], "hwm": d["hwm"]}
    for p in ("nginx", "bare", "tollgate"):
        d = runs.get(f"hold-{p}")
        if d:
            mem[f"streams_{p}"] = {
                k: d[k]
                for k in ("streams", "opened", "failed", "open_seconds", "rss_before", "rss_open",
                          "rss_open_peak", "hwm_held", "rss_after_close", "bytes_per_stream")
            }
    for p in ("direct", "tollgate"):
        for kind in ("upload", "download"):
            d = runs.get(f"{kind}-{p}")
            if d:
                mem[f"{kind}_{p}"] = {k: d[k] for k in ("bytes", "moved", "status", "error", "seconds",
                                                          "mb_per_s", "rss_before", "rss_peak", "rss_growth")}
    fig["memory"] = mem

    # Targets of issue 7.
    t = []

    def target(name, measured, limit, unit, ok_if_le=True, note=""):
        met = None if measured is None else (measured <= limit if ok_if_le else measured >= limit)
        t.append({"target": name, "measured": measured, "limit": limit, "unit": unit, "met": met, "note": note,
                  "ok_if_le": ok_if_le})

    a = ol.get("1000", {}).get("tollgate", {}).get("added_latency_us")
    target("added p50 at 1,000 RPS", a and a["p50"], 150, "us")
    target("added p99 at 1,000 RPS", a and a["p99"], 1000, "us")
    target("max RPS vs nginx", mx.get("tollgate_over_nginx"), 0.9, "ratio", ok_if_le=False,
           note="driver, 64 connections; with wrk: %s" % mx.get("tollgate_over_nginx_wrk"))
    s = sse.get("tollgate", {}).get("added_delivery_us")
    target("added SSE inter-event delay p99", s and s["p99"], 1000, "us",
           note="per-event delivery delay (arrival minus the mock's write time), events after the first")
    idle = mem.get("idle_tollgate")
    target("RSS idle", idle and idle["rss"], 64 * MIB, "bytes", note="after start and a few warm-up requests")
    st = mem.get("streams_tollgate")
    target("RSS per open SSE stream", st and round(st["bytes_per_stream"]), 40 * KIB, "bytes",
           note=f"{st['opened'] if st else 0} streams; (peak RSS while open - RSS before) / streams")
    g = [mem[k]["rss_growth"] for k in ("upload_tollgate", "download_tollgate") if k in mem]
    target("RSS growth moving a 1 GB body", max(g) if g else None, 32 * MIB, "bytes", note="max of upload and download")
    fig["targets"] = t

    # The translated path (issue 13): same run, same direct baseline.
    tr = {"open_loop": {}}
    for r, row in ol.items():
        x, y = row.get("translated", {}), row.get("tollgate", {})
        if "added_latency_us" in x and "added_latency_us" in y:
            ax, ay = x["added_latency_us"], y["added_latency_us"]
            tr["open_loop"][r] = {
                "translated_added_us": ax,
                "passthrough_added_us": ay,
                "ratio_added_p50": round(ax["p50"] / ay["p50"], 2) if ay["p50"] > 0 else None,
                "translated_minus_passthrough_p50_us": round(ax["p50"] - ay["p50"], 1),
            }
    if "translated" in mx and "tollgate" in mx:
        tr["cpu_us_per_request"] = {p: mx[p]["cpu_ms_per_1000_requests"] for p in ("tollgate", "translated")}
        tr["cpu_ratio"] = (round(mx["translated"]["cpu_ms_per_1000_requests"] / mx["tollgate"]["cpu_ms_per_1000_requests"], 2)
                           if mx["tollgate"]["cpu_ms_per_1000_requests"] > 0 else None)
        tr["max_rps"] = {p: mx[p]["rps"] for p in ("tollgate", "translated")}
    if "translated" in sse and "added_delivery_us" in sse["translated"]:
        tr["sse_added_delivery_us"] = {p: sse[p]["added_delivery_us"] for p in ("tollgate", "translated") if p in sse}
    fig["translated"] = tr
    t13 = []
    r1k = tr["open_loop"].get("1000", {})
    ratio = r1k.get("ratio_added_p50")
    t13.append({"target": "translated added p50 / passthrough added p50 at 1,000 RPS", "measured": ratio, "limit": 1.5,
                "unit": "ratio", "ok_if_le": True, "met": None if ratio is None else (0 < ratio <= 1.5),
                "note": "added = path p50 minus direct p50, same run"})
    st = sse.get("translated", {}).get("added_delivery_us")
    t13.append({"target": "translated added SSE inter-event delay p99", "measured": st and st["p99"], "limit": 1000,
                "unit": "us", "ok_if_le": True, "met": None if not st else st["p99"] <= 1000,
                "note": "stamp read from choices[0].delta.content"})
    fig["targets_issue13"] = t13

    # Async inference (issue 14): submit latency next to a sync 401 on the
    # same route (same gateway, same rate, same run), jobs/s through the pool.
    asy = {}
    sub, ref, jb = runs.get("async-submit"), runs.get("async-401"), runs.get("jobs-async")
    for name, d in (("submit", sub), ("refusal_401", ref)):
        if d:
            asy[name] = {"latency_us": pick(d["latency"]), "service_us": pick(d["service"]),
                         "rps_target": d["rps_target"], "requests": d["requests"], "errors": d["errors"],
                         "statuses": d.get("statuses", {})}
    if sub and ref:
        asy["submit_minus_401_us"] = diff(asy["submit"]["latency_us"], asy["refusal_401"]["latency_us"])
        asy["submit_minus_401_service_us"] = diff(asy["submit"]["service_us"], asy["refusal_401"]["service_us"])
    if jb:
        asy["jobs"] = {k: jb[k] for k in ("jobs", "accepted", "completed_200", "submit_statuses", "final_statuses",
                                         "submit_seconds", "submit_per_s", "span_seconds", "jobs_per_s",
                                         "pending_after_tail", "polls", "conns")}
        asy["jobs"]["burst_submit_latency_us"] = pick(jb["submit_latency"])
        asy["jobs"]["completion_us"] = pick(jb["completion"])
    fig["async"] = asy
    t14 = []
    dd = asy.get("submit_minus_401_us")
    ok = bool(sub and ref and set(asy["submit"]["statuses"]) == {"202"} and set(asy["refusal_401"]["statuses"]) == {"401"})
    t14.append({"target": "async submit p50 minus sync 401 p50 (same route)", "measured": dd and dd["p50"],
                "limit": 1000, "unit": "us", "ok_if_le": True, "met": None if not dd or not ok else dd["p50"] <= 1000,
                "note": "n/a unless every submit answered 202 and every refusal 401"})
    fig["targets_issue14"] = t14

    # Peers and system calls (issue 15): benches/report_peers.py.
    fig.update(report_peers.figures(runs))
    fig["targets_issue15"] = report_peers.targets(fig)
    fig["raw"] = runs

    with open(os.path.join(out, "latest.json"), "w") as f:
        json.dump(fig, f, indent=1)
    md = render(fig)
    with open(os.path.join(out, "latest.md"), "w") as f:
        f.write(md)
    print(md)
    plot(runs, out)


def fmt_us(v):
    return f"{v:.0f}" if abs(v) >= 10 else f"{v:.1f}"


def mb(v):
    return f"{v / MIB:.1f} MiB"


def render(fig):
    m = fig["machine"]
    L = []
    L.append(f"Run: {m.get('date', '?')}; {m.get('nproc', '?')} CPUs ({m.get('cpu_model', '?')}), "
             f"{m.get('mem_total_gib', '?')} GiB RAM, kernel {m.get('kernel', '?')}, tollgate {m.get('git', '?')}, "
             f"{m.get('run_seconds', '?')} s, load average at end {' '.join(m.get('loadavg_at_end', []))}")
    L.append("")
    L.append("Open loop, latency from the scheduled send time (µs); added = path minus direct")
    L.append("")
    L.append("| RPS | path | p50 | p90 | p99 | p99.9 | added p50 | added p90 | added p99 | added p99.9 | errors |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r, row in fig["open_loop"].items():
        for p in OPEN_PATHS:
            if p not in row:
                continue
            x = row[p]
            lat = x["latency_us"]
            add = x.get("added_latency_us")
            adds = [fmt_us(add[k]) for k, _ in PCTS] if add else ["", "", "", ""]
            L.append(f"| {r} | {p} | " + " | ".join(fmt_us(lat[k]) for k, _ in PCTS) + " | " + " | ".join(adds)
                     + f" | {x['errors']} |")
    L.append("")
    L.append("Service time (from the actual write, µs), added vs direct: "
             + "; ".join(f"{r} RPS {p} p50 {fmt_us(row[p]['added_service_us']['p50'])} / p99 "
                         f"{fmt_us(row[p]['added_service_us']['p99'])}"
                         for r, row in fig["open_loop"].items() for p in PROXIES
                         if p in row and "added_service_us" in row[p]))
    L.append("")
    mx = fig["max_rate"]
    L.append("Max rate: 64 keep-alive connections, closed loop; CPU = utime+stime of the serving process(es)")
    L.append("")
    L.append("| path | RPS | p50 µs | p99 µs | CPU ms / 1,000 req | cores busy | errors | wrk RPS | wrk CPU ms / 1,000 req |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in MAX_PATHS:
        if p in mx:
            x = mx[p]
            w = x.get("wrk")
            who = {"direct": "mock", "nginx": "nginx workers", "bare": "bare Pingora", "tollgate": "tollgate",
                   "translated": "tollgate"}[p]
            L.append(f"| {p} | {x['rps']:.0f} | {fmt_us(x['latency_us']['p50'])} | {fmt_us(x['latency_us']['p99'])} | "
                     f"{x['cpu_ms_per_1000_requests']:.1f} ({who}) | {x['cpu_cores_busy']:.2f} | {x['errors']} | "
                     + (f"{w['rps']:.0f} | {w['cpu_ms_per_1000_requests']:.1f} |" if w else "- | - |"))
    if "tollgate_over_nginx" in mx:
        L.append("")
        L.append(f"tollgate / nginx max RPS: {mx['tollgate_over_nginx']:.3f} (driver)"
                 + (f", {mx['tollgate_over_nginx_wrk']:.3f} (wrk)" if "tollgate_over_nginx_wrk" in mx else ""))
    if "tollgate_cpu_over_bare" in mx:
        L.append("")
        L.append(f"tollgate / bare Pingora CPU per request: {mx['tollgate_cpu_over_bare']:.2f} (driver)"
                 + (f", {mx['tollgate_cpu_over_bare_wrk']:.2f} (wrk)" if "tollgate_cpu_over_bare_wrk" in mx else ""))
    L.append("")
    sse = fig["sse"]
    L.append("SSE: 300 streams x 50 events at 50 events/s, 50 concurrent (µs)")
    L.append("")
    L.append("| path | TTFE p50 | TTFE p99 | delivery p50 | delivery p99 | delivery p99.9 | gap p99 | "
             "added TTFE p50 | added TTFE p99 | added delivery p99 | added gap p99 | errors |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in PATHS:
        if p in sse:
            x = sse[p]
            at, ad, ag = x.get("added_ttfe_us"), x.get("added_delivery_us"), x.get("added_gap_us")
            L.append(f"| {p} | {fmt_us(x['ttfe_us']['p50'])} | {fmt_us(x['ttfe_us']['p99'])} | "
                     f"{fmt_us(x['delivery_us']['p50'])} | {fmt_us(x['delivery_us']['p99'])} | "
                     f"{fmt_us(x['delivery_us']['p99.9'])} | {fmt_us(x['gap_us']['p99'])} | "
                     + (f"{fmt_us(at['p50'])} | {fmt_us(at['p99'])} | {fmt_us(ad['p99'])} | {fmt_us(ag['p99'])}"
                        if at else " | | | ") + f" | {x['errors']} |")
    L.append("")
    mem = fig["memory"]
    L.append("Memory (VmRSS; nginx = sum of its 2 workers)")
    L.append("")
    L.append("| figure | tollgate | nginx |")
    L.append("|---|---:|---:|")

    def g(k, f):
        return mem[k][f] if k in mem else None

    def cell(v, fn=mb):
        return fn(v) if v is not None else "-"

    L.append(f"| RSS just started | {cell(g('idle_tollgate_fresh', 'rss'))} | {cell(g('idle_nginx_fresh', 'rss'))} |")
    L.append(f"| RSS idle after warm-up | {cell(g('idle_tollgate', 'rss'))} | {cell(g('idle_nginx', 'rss'))} |")
    for p in ("tollgate", "nginx"):
        pass
    st_t, st_n = mem.get("streams_tollgate"), mem.get("streams_nginx")

    def sv(st, k, fn=mb):
        return fn(st[k]) if st else "-"

    L.append(f"| streams opened / failed | {sv(st_t, 'opened', str)} / {sv(st_t, 'failed', str)} | "
             f"{sv(st_n, 'opened', str)} / {sv(st_n, 'failed', str)} |")
    L.append(f"| RSS before the streams | {sv(st_t, 'rss_before')} | {sv(st_n, 'rss_before')} |")
    L.append(f"| peak RSS with the streams open | {sv(st_t, 'rss_open_peak')} | {sv(st_n, 'rss_open_peak')} |")
    L.append(f"| bytes per open stream | {sv(st_t, 'bytes_per_stream', lambda v: f'{v / KIB:.1f} KiB')} | "
             f"{sv(st_n, 'bytes_per_stream', lambda v: f'{v / KIB:.1f} KiB')} |")
    L.append(f"| VmHWM at the end of the hold | {sv(st_t, 'hwm_held')} | {sv(st_n, 'hwm_held')} |")
    st_b = mem.get("streams_bare")
    if st_b:
        L.append(f"| bytes per open stream, bare Pingora (the floor) | {st_b['bytes_per_stream'] / KIB:.1f} KiB "
                 f"({st_b['opened']} opened, {st_b['failed']} failed) | |")
    for kind in ("upload", "download"):
        x = mem.get(f"{kind}_tollgate")
        d = mem.get(f"{kind}_direct")
        if x:
            L.append(f"| 1 GB {kind}: RSS growth (throughput; direct {d['mb_per_s']:.0f} MB/s) | "
                     f"{mb(x['rss_growth'])} ({x['mb_per_s']:.0f} MB/s, status {x['status']}) | - |"
                     if d else f"| 1 GB {kind}: RSS growth | {mb(x['rss_growth'])} | - |")
    L.append("")
    tr = fig.get("translated", {})
    if tr.get("open_loop"):
        L.append("Translated path (/openai, anthropic/ model -> mock /v1/messages) vs passthrough "
                 "(/openai_passthrough), added latency vs direct (µs)")
        L.append("")
        L.append("| RPS | passthrough added p50 | passthrough added p99 | translated added p50 | translated added p99 "
                 "| translated - passthrough p50 | ratio added p50 |")
        L.append("|---:|---:|---:|---:|---:|---:|---:|")
        for r, x in tr["open_loop"].items():
            a, b = x["passthrough_added_us"], x["translated_added_us"]
            ratio = f"{x['ratio_added_p50']:.2f}" if x["ratio_added_p50"] is not None else "-"
            L.append(f"| {r} | {fmt_us(a['p50'])} | {fmt_us(a['p99'])} | {fmt_us(b['p50'])} | {fmt_us(b['p99'])} | "
                     f"{fmt_us(x['translated_minus_passthrough_p50_us'])} | {ratio} |")
        L.append("")
        if "cpu_us_per_request" in tr:
            c = tr["cpu_us_per_request"]
            L.append(f"CPU per request (max rate, driver, tollgate process): passthrough {c['tollgate']:.1f} µs, "
                     f"translated {c['translated']:.1f} µs (x{tr['cpu_ratio']:.2f}); max RPS passthrough "
                     f"{tr['max_rps']['tollgate']:.0f}, translated {tr['max_rps']['translated']:.0f}")
        if "sse_added_delivery_us" in tr:
            d = tr["sse_added_delivery_us"]
            L.append("SSE added delivery delay p50 / p99 (µs): "
                     + ", ".join(f"{'passthrough' if p == 'tollgate' else p} {fmt_us(v['p50'])} / {fmt_us(v['p99'])}"
                                 for p, v in d.items()))
        L.append("")
    asy = fig.get("async", {})
    if "submit" in asy or "jobs" in asy:
        L.append("Async jobs (issue 14): /openai/v1/chat/completions, openai/gpt-4o-mini -> mock, SQLite store, "
                 "16 workers; latency open loop from the scheduled send time (µs)")
        L.append("")
        L.append("| figure | p50 | p99 | statuses |")
        L.append("|---|---:|---:|---|")
        for name, label in (("submit", "submit (x-bf-async: true -> 202)"), ("refusal_401", "sync 401 (unknown virtual key)")):
            if name in asy:
                x = asy[name]
                st = ", ".join(f"{k}: {v}" for k, v in x["statuses"].items()) or "-"
                L.append(f"| {label} at {x['rps_target']:.0f} RPS | {fmt_us(x['latency_us']['p50'])} | "
                         f"{fmt_us(x['latency_us']['p99'])} | {st}" + (f", errors {x['errors']}" if x["errors"] else "") + " |")
        if "submit_minus_401_us" in asy:
            dd = asy["submit_minus_401_us"]
            L.append(f"| difference (submit - 401) | {fmt_us(dd['p50'])} | {fmt_us(dd['p99'])} | |")
        if "jobs" in asy:
            j = asy["jobs"]
            met = fig["targets_issue14"][0]["met"]
            L.append("")
            L.append(f"Jobs/s through the pool: {j['jobs']} jobs submitted back to back over {j['conns']} connections "
                     f"in {j['submit_seconds']:.2f} s ({j['submit_per_s']:.0f}/s, submit p50 "
                     f"{fmt_us(j['burst_submit_latency_us']['p50'])} / p99 {fmt_us(j['burst_submit_latency_us']['p99'])} µs "
                     f"under the burst), all final after {j['span_seconds']:.2f} s: **{j['jobs_per_s']:.0f} jobs/s** "
                     f"({j['completed_200']} answered 200; final statuses "
                     + ", ".join(f"{k}: {v}" for k, v in j["final_statuses"].items())
                     + f"; submit to seen done p50 {j['completion_us']['p50'] / 1000:.0f} ms)")
            L.append("")
            L.append("Target: submit p50 within 1 ms of the 401's p50: "
                     + ("n/a" if met is None else ("met" if met else "NOT met")))
        L.append("")
    report_peers.render(fig, L)
    targets_table(L, "Targets (issue 7)", fig["targets"])
    if fig.get("targets_issue13"):
        L.append("")
        targets_table(L, "Targets (issue 13, translated path)", fig["targets_issue13"])
    if fig.get("targets_issue14"):
        L.append("")
        targets_table(L, "Targets (issue 14, async jobs)", fig["targets_issue14"])
    if fig.get("targets_issue15"):
        L.append("")
        targets_table(L, "Targets (issue 15, system calls and peers)", fig["targets_issue15"])
    return "\n".join(L) + "\n"


def targets_table(L, title, targets):
    L.append(title)
    L.append("")
    L.append("| target | limit | measured | met |")
    L.append("|---|---:|---:|---|")
    for t in targets:
        u, v, lim = t["unit"], t["measured"], t["limit"]
        if u == "us":
            f = lambda x: f"{x:.0f} µs"
        elif u == "bytes":
            f = lambda x: (f"{x / KIB:.1f} KiB" if x < MIB else f"{x / MIB:.1f} MiB")
        else:
            f = lambda x: f"{x:.3f}"
        lim_s = ("≤ " if t.get("ok_if_le", True) else "≥ ") + f(lim)
        met = "n/a" if t["met"] is None else ("met" if t["met"] else "NOT met")
        L.append(f"| {t['target']} | {lim_s} | {f(v) if v is not None else '-'} | {met} |")


def plot(runs, out):
    gp = shutil.which("gnuplot")
    if not gp:
        print("report.py: gnuplot not found, no plot", file=sys.stderr)
        return
    datadir = os.path.join(out, ".plotdata")
    os.makedirs(datadir, exist_ok=True)
    series = []
    for p in OPEN_PATHS:
        d = runs.get(f"rate-{p}-1000")
        if not d:
            continue
        fn = os.path.join(datadir, f"{p}.dat")
        with open(fn, "w") as f:
            for pct, us in d["latency"]["spectrum"]:
                if pct < 100:
                    f.write(f"{1 / (1 - pct / 100):.6f} {max(us, 1):.3f}\n")
        series.append((p, fn))
    if not series:
        shutil.rmtree(datadir, ignore_errors=True)
        print("report.py: no 1,000 RPS runs, no plot", file=sys.stderr)
        return
    svg = os.path.join(out, "latency.svg")
    script = f"""
set terminal svg size 900,540 dynamic font 'sans,12'
set output '{svg}'
set title 'Latency distribution at 1,000 RPS open loop (from scheduled send time; translated = /openai to Anthropic)'
set logscale x
set logscale y
set xlabel 'percentile'
set ylabel 'latency (µs)'
set xtics ('0%%' 1, '50%%' 2, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000)
set grid xtics ytics mytics
set key top left
plot """ + ", ".join(f"'{fn}' using 1:2 with linespoints title '{p}'" for p, fn in series) + "\n"
    r = subprocess.run([gp], input=script, text=True, capture_output=True)
    shutil.rmtree(datadir, ignore_errors=True)
    if r.returncode != 0:
        print("report.py: gnuplot failed: " + r.stderr, file=sys.stderr)
    else:
        print(f"plot: {svg}")


if __name__ == "__main__":
    main()
