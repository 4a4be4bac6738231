// tollgate's dashboard (SPEC 12): the request table with its filters, a
// row's detail, per-virtual-key charts and the summary cards. Plain DOM,
// data only through textContent; everything comes from /admin/logs on this
// listener. Times are shown in the viewer's time zone.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const COLORS = ["#2457c5", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#0b7285", "#e67700", "#5c940d", "#495057"];
  const REFRESH_MS = 3000;
  let token = sessionStorage.getItem("tollgate-admin-token") || "";
  let cursor = null; // the next page's cursor, when the table shows more than the first page
  let paged = false; // older pages loaded: live refresh leaves the table alone
  const rowsById = new Map();

  async function api(path) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const r = await fetch(path, { headers, cache: "no-store" });
    if (r.status === 401) {
      $("token-form").hidden = false;
      throw new Error("This admin listener needs its token.");
    }
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error((body.error && body.error.message) || "HTTP " + r.status);
    return body;
  }

  // The filters as a query string; datetime-local values are the viewer's
  // local time, sent as RFC 3339 UTC.
  function query(extra) {
    const p = new URLSearchParams();
    for (const el of $("filters").elements) {
      if (!el.name || !el.value.trim()) continue;
      let v = el.value.trim();
      if (el.type === "datetime-local") v = new Date(v).toISOString();
      p.set(el.name, v);
    }
    // Without a start, the last 24 hours: what an operator looks at first
    // (the stats then cover a day, not the whole retention).
    if (!p.has("since")) p.set("since", new Date(Date.now() - 86400000).toISOString());
    for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
    return p.toString();
  }

  const fmtTime = (ts) => {
    const d = new Date(ts);
    return isNaN(d) ? ts : d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  };
  const fmtUsd = (x) => (x == null ? "–" : "$" + (x < 0.01 && x > 0 ? x.toPrecision(2) : x.toFixed(4)));
  const fmtMs = (x) => (x == null ? "–" : x < 10 ? x.toFixed(2) + " ms" : Math.round(x) + " ms");
  const fmtInt = (x) => (x == null ? "–" : Number(x).toLocaleString());

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text == null || text === "" ? "–" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function renderRows(logs, append) {
    const tbody = $("rows").tBodies[0];
    if (!append) { tbody.textContent = ""; rowsById.clear(); }
    for (const r of logs) {
      rowsById.set(r.request_id, r);
      const tr = document.createElement("tr");
      tr.tabIndex = 0;
      tr.dataset.id = r.request_id;
      const when = cell(tr, fmtTime(r.ts));
      when.title = r.ts;
      cell(tr, r.status, r.status >= 400 || r.error ? "status-bad" : "status-ok");
      cell(tr, r.virtual_key);
      cell(tr, r.provider, "wide");
      cell(tr, r.model);
      cell(tr, r.route, "wide");
      cell(tr, fmtMs(r.duration_ms), "num");
      const tokens = r.input_tokens == null && r.output_tokens == null ? null : (r.input_tokens || 0) + (r.output_tokens || 0);
      cell(tr, fmtInt(tokens), "num wide");
      cell(tr, fmtUsd(r.cost_usd), "num");
      cell(tr, cacheOf(r), "wide");
      tr.setAttribute("aria-label", `${r.status} ${r.model || ""} at ${fmtTime(r.ts)}: open detail`);
      tbody.appendChild(tr);
    }
    $("empty").hidden = tbody.rows.length > 0;
  }

  function cacheOf(r) {
    const c = r.cache;
    if (c == null) return null;
    if (typeof c === "object") return c.status || c.result || c.kind || JSON.stringify(c);
    return String(c);
  }

  function renderStats(s, overview) {
    $("stat-requests").textContent = fmtInt(s.requests);
    $("stat-errors").textContent = fmtInt(s.errors) + (s.requests ? ` (${((100 * s.errors) / s.requests).toFixed(1)}%)` : "");
    $("stat-p50").textContent = fmtMs(s.p50_latency_ms);
    $("stat-tokens").textContent = fmtInt(s.tokens);
    $("stat-cost").textContent = fmtUsd(s.cost_usd);
    $("stat-cache").textContent = s.requests ? ((100 * s.cache_hits) / s.requests).toFixed(1) + "%" : "–";
    $("stat-fallbacks").textContent = fmtInt(s.fallbacks);
    if (overview) {
      const j = overview.async_jobs;
      $("stat-jobs").textContent = j.queued == null ? `${j.running_here} running` : `${j.queued} waiting · ${j.running} running`;
    }
  }

  // One small SVG chart: a line per virtual key over the buckets.
  function chart(el, data, index, label) {
    const W = 360, H = 130, L = 44, B = 18, T = 6;
    const svgNs = "http://www.w3.org/2000/svg"; // a namespace name, nothing is fetched
    const svg = document.createElementNS(svgNs, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("role", "img");
    const span = Math.max(1, data.until_ms - data.since_ms);
    let max = 0;
    for (const s of data.series) for (const p of s.points) max = Math.max(max, p[index]);
    max = max || 1;
    const x = (t) => L + ((t - data.since_ms) / span) * (W - L - 4);
    const y = (v) => T + (1 - v / max) * (H - T - B);
    const add = (name, attrs, text) => {
      const e = document.createElementNS(svgNs, name);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      if (text != null) e.textContent = text;
      svg.appendChild(e);
      return e;
    };
    add("line", { x1: L, x2: W - 4, y1: H - B, y2: H - B, stroke: "#dde1e8" });
    add("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, label(max));
    add("text", { x: L - 4, y: H - B, "text-anchor": "end" }, "0");
    const tick = (ms) => new Date(ms).toLocaleString(undefined, span > 12 * 3600e3 ? { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" } : { hour: "2-digit", minute: "2-digit" });
    add("text", { x: L, y: H - 4 }, tick(data.since_ms));
    add("text", { x: W - 4, y: H - 4, "text-anchor": "end" }, tick(data.until_ms));
    const summary = [];
    data.series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      const pts = s.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[index]).toFixed(1)}`);
      if (pts.length === 1) add("circle", { cx: x(s.points[0][0]), cy: y(s.points[0][index]), r: 3, fill: color });
      else add("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 2 });
      const total = s.points.reduce((a, p) => a + p[index], 0);
      summary.push(`${s.virtual_key || "no key"}: ${label(total)}`);
    });
    svg.setAttribute("aria-label", summary.join(", ") || "no data");
    el.textContent = "";
    el.appendChild(svg);
  }

  function renderSeries(data) {
    chart($("chart-requests"), data, 1, (v) => fmtInt(v));
    chart($("chart-errors"), data, 2, (v) => fmtInt(v));
    chart($("chart-cost"), data, 3, (v) => "$" + (v >= 1 ? v.toFixed(2) : v >= 0.01 ? v.toPrecision(2) : v.toExponential(1)));
    const legend = $("legend");
    legend.textContent = "";
    data.series.forEach((s, i) => {
      const li = document.createElement("li");
      const sw = document.createElement("i");
      sw.style.background = COLORS[i % COLORS.length];
      li.appendChild(sw);
      li.appendChild(document.createTextNode(s.virtual_key || "no virtual key"));
      legend.appendChild(li);
    });
  }

  async function refresh() {
    try {
      const q = query();
      const [page, series, overview] = await Promise.all([
        paged ? null : api("/admin/logs?" + query({ limit: 50 })),
        api("/admin/logs/series?" + q.replace(/(^|&)limit=[^&]*/, "")),
        api("/admin/logs/overview"),
      ]);
      if (page) {
        renderRows(page.logs, false);
        cursor = page.next_cursor;
        $("more").hidden = !cursor;
        renderStats(page.stats, overview);
      } else {
        const s = await api("/admin/logs?" + query({ limit: 1 }));
        renderStats(s.stats, overview);
      }
      renderSeries(series);
      $("message").hidden = true;
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    } catch (e) {
      $("message").textContent = e.message;
      $("message").hidden = false;
    }
  }

  async function more() {
    if (!cursor) return;
    try {
      const page = await api("/admin/logs?" + query({ limit: 50, cursor }));
      paged = true;
      renderRows(page.logs, true);
      cursor = page.next_cursor;
      $("more").hidden = !cursor;
    } catch (e) {
      $("message").textContent = e.message;
      $("message").hidden = false;
    }
  }

  async function openDetail(id) {
    let r = rowsById.get(id);
    try { r = await api("/admin/logs/" + encodeURIComponent(id)); } catch (e) { /* the row we have */ }
    if (!r) return;
    const usage = [
      ["input", r.input_tokens], ["output", r.output_tokens], ["cached", r.cached_tokens],
      ["cache read", r.cache_read_tokens], ["cache write", r.cache_write_tokens], ["reasoning", r.reasoning_tokens],
    ].filter(([, v]) => v != null).map(([k, v]) => `${k} ${fmtInt(v)}`).join(" · ");
    let attempts = "1";
    if (Array.isArray(r.attempts)) attempts = r.attempts.map((a) => [a.provider, a.model, a.status, a.error].filter((x) => x != null).join(" ")).join(" → ") || String(r.attempts.length);
    else if (r.attempts != null) attempts = String(r.attempts);
    const fields = [
      ["Request id", r.request_id], ["Time", fmtTime(r.ts) + " (" + Intl.DateTimeFormat().resolvedOptions().timeZone + ")"],
      ["Status", r.status + (r.error ? " — " + r.error : "")], ["Virtual key", r.virtual_key], ["Provider", r.provider],
      ["Provider key", r.provider_key], ["Model", r.model], ["Route", r.route], ["Path", r.path],
      ["Attempts", attempts], ["Fallback", r.fallback_index == null ? null : "#" + r.fallback_index],
      ["Cache", cacheOf(r)], ["Usage", usage || null], ["Cost", fmtUsd(r.cost_usd)],
      ["Latency", fmtMs(r.duration_ms) + " (first byte " + fmtMs(r.ttfb_ms) + ")"], ["Stream", r.stream ? "yes" : "no"],
      ["Async job", r.async_job_id], ["Upstream", r.upstream_host],
    ];
    const dl = $("detail-fields");
    dl.textContent = "";
    for (const [k, v] of fields) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v == null || v === "" ? "–" : String(v);
      dd.dataset.field = k;
      dl.append(dt, dd);
    }
    $("detail-json").textContent = JSON.stringify(r, null, 2);
    $("detail").showModal();
    $("close").focus();
  }

  let timer = null;
  function schedule() {
    clearInterval(timer);
    if ($("live").checked) timer = setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("filters").addEventListener("submit", (e) => { e.preventDefault(); paged = false; refresh(); });
    $("filters").addEventListener("reset", () => setTimeout(() => { paged = false; refresh(); }, 0));
    $("more").addEventListener("click", more);
    $("live").addEventListener("change", schedule);
    $("close").addEventListener("click", () => $("detail").close());
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      token = $("token").value;
      sessionStorage.setItem("tollgate-admin-token", token);
      $("token-form").hidden = true;
      refresh();
    });
    const tbody = $("rows").tBodies[0];
    tbody.addEventListener("click", (e) => { const tr = e.target.closest("tr"); if (tr) openDetail(tr.dataset.id); });
    tbody.addEventListener("keydown", (e) => {
      const tr = e.target.closest("tr");
      if (!tr) return;
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openDetail(tr.dataset.id); }
      if (e.key === "ArrowDown" && tr.nextElementSibling) { e.preventDefault(); tr.nextElementSibling.focus(); }
      if (e.key === "ArrowUp" && tr.previousElementSibling) { e.preventDefault(); tr.previousElementSibling.focus(); }
    });
    refresh();
    schedule();
  });
})();
