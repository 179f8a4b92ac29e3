// meridian's status page: polls /api/… every 2 s and draws what it gets. No dependencies.
"use strict";

const POLL_MS = 2000;
const HISTORY_S = 3600;
const COLOURS = ["#2b7bb9", "#d9822b", "#3d9970", "#b03a2e", "#7d5ba6", "#8c6d31", "#17a2b8", "#e83e8c"];
const MARKS = { selected: "*", candidate: "+", outlier: "-", falseticker: "x" };

// Rolling history per source address: [{t, measured, offset, delay}], t in ms; one point per
// sample (a new sample has a new measured offset).
const history = new Map();
let lastStats = null;

const $ = (id) => document.getElementById(id);

function text(id, value) {
  $(id).textContent = value;
}

// Seconds as a short human value: 12.3 µs, 4.56 ms, 1.20 s.
function secs(v) {
  if (typeof v !== "number" || !isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a === 0) return "0 s";
  if (a < 1e-6) return (v * 1e9).toFixed(0) + " ns";
  if (a < 1e-3) return (v * 1e6).toFixed(1) + " µs";
  if (a < 1) return (v * 1e3).toFixed(2) + " ms";
  return v.toFixed(2) + " s";
}

// An axis label: the unit of the largest value, as many decimals as the step needs.
function tick(v, step, largest) {
  const [scale, unit] = largest < 1e-6 ? [1e9, "ns"] : largest < 1e-3 ? [1e6, "µs"] : largest < 1 ? [1e3, "ms"] : [1, "s"];
  const decimals = Math.min(6, Math.max(0, Math.ceil(-Math.log10(step * scale))));
  return (v * scale).toFixed(decimals) + " " + unit;
}

function signed(v) {
  const s = secs(v);
  return typeof v === "number" && v > 0 ? "+" + s : s;
}

function ago(v) {
  if (typeof v !== "number" || !isFinite(v)) return "–";
  if (v < 120) return v.toFixed(0) + " s";
  if (v < 7200) return (v / 60).toFixed(0) + " min";
  return (v / 3600).toFixed(1) + " h";
}

async function api(command, init) {
  const response = await fetch("/api/" + command, init);
  const body = await response.json();
  if (!body.ok) {
    const e = body.error || { code: "failed", message: "no reason given" };
    throw new Error(e.message + " (" + e.code + ")");
  }
  return body.data;
}

function cell(row, value, cls) {
  const td = document.createElement("td");
  td.textContent = value;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function empty(body, columns, message) {
  const row = document.createElement("tr");
  cell(row, message, "empty").colSpan = columns;
  body.appendChild(row);
}

function showTracking(t) {
  const status = $("status");
  status.textContent = t.status;
  status.className = "badge " + (t.status === "synchronised" ? "good" : t.status === "unsynchronised" ? "bad" : "warn");
  text("t-refid", t.reference_id);
  text("t-refname", t.reference_name ? "(" + t.reference_name + ")" : "");
  text("t-stratum", String(t.stratum));
  text("t-offset", signed(t.last_offset_s));
  text("t-rms", secs(t.rms_offset_s));
  text("t-system", signed(t.system_time_s) + (t.system_time_s > 0 ? " fast" : t.system_time_s < 0 ? " slow" : ""));
  const freq = t.frequency_ppm.toFixed(3);
  text("t-freq", freq + " ppm" + (Number(freq) > 0 ? " slow" : Number(freq) < 0 ? " fast" : ""));
  text("t-skew", t.skew_ppm.toFixed(3) + " ppm");
  text("t-rdelay", secs(t.root_delay_s));
  text("t-rdisp", secs(t.root_dispersion_s));
  text("t-interval", secs(t.update_interval_s));
  text("t-leap", t.leap);
}

function showSources(sources, now) {
  const body = $("sources").tBodies[0];
  body.replaceChildren();
  if (!sources.length) empty(body, 12, "no [[source]] configured");
  // Nothing to plot without sources.
  $("plots").hidden = !sources.length;
  sources.forEach((s) => {
    const row = document.createElement("tr");
    row.className = "state-" + s.state;
    cell(row, MARKS[s.state] || "?", "mark");
    cell(row, s.address);
    cell(row, String(s.stratum), "num");
    cell(row, String(s.poll), "num");
    cell(row, s.reach.toString(8).padStart(3, "0"), "num");
    cell(row, s.last_sample ? ago(s.last_sample.ago_s) : "–", "num");
    const last = s.last_sample;
    cell(row, last ? signed(last.adjusted_s) : "–", "num");
    cell(row, last ? signed(last.measured_s) : "–", "num");
    cell(row, secs(s.root_distance), "num");
    cell(row, secs(s.delay), "num");
    cell(row, secs(s.jitter), "num");
    cell(row, s.state);
    body.appendChild(row);
    if (last) {
      // One point per sample: when it was taken (its age is counted from the last update,
      // at most a second old), the offset against the served clock, the delay.
      const points = history.get(s.address) || [];
      const t = now - last.ago_s * 1000;
      const prev = points[points.length - 1];
      if (!prev || last.measured_s !== prev.measured) {
        const when = prev ? Math.max(t, prev.t + 1) : t;
        points.push({ t: when, measured: last.measured_s, offset: last.adjusted_s, delay: s.delay });
      }
      while (points.length && points[0].t < now - HISTORY_S * 1000) points.shift();
      history.set(s.address, points);
    }
  });
}

const SVG = "http://www.w3.org/2000/svg";

function svgEl(name, attrs) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// One plot of `field` for every source, over the last hour.
function plot(svg, field, now) {
  const width = svg.clientWidth || 600;
  const height = svg.clientHeight || 200;
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.replaceChildren();
  const left = 76, right = 12, top = 8, bottom = 28;
  let lo = Infinity, hi = -Infinity, oldest = now;
  for (const points of history.values()) {
    for (const p of points) {
      lo = Math.min(lo, p[field]);
      hi = Math.max(hi, p[field]);
      oldest = Math.min(oldest, p.t);
    }
  }
  if (!isFinite(lo)) {
    const empty = svgEl("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "note" });
    empty.textContent = "waiting for samples…";
    svg.appendChild(empty);
    return;
  }
  // The time axis spans what the page has seen: from 2 minutes up to the hour it keeps.
  const span = Math.min(HISTORY_S * 1000, Math.max(120000, now - oldest));
  const t0 = now - span;
  if (field === "delay") lo = Math.min(lo, 0);
  if (hi - lo < 1e-9) {
    hi += 1e-6;
    lo -= 1e-6;
  }
  // Round ticks: a step of 1, 2 or 5 times a power of ten, about four of them.
  const raw = (hi - lo) / 4;
  const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  lo = Math.floor(lo / step) * step;
  hi = Math.ceil(hi / step) * step;
  if (field === "delay") lo = Math.max(0, lo);
  const x = (t) => left + ((t - t0) / span) * (width - left - right);
  const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (height - top - bottom);
  const ticks = Math.round((hi - lo) / step);
  for (let k = 0; k <= ticks; k++) {
    const v = lo + step * k;
    svg.appendChild(svgEl("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), class: "grid" }));
    const label = svgEl("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" });
    label.textContent = tick(v, step, Math.max(Math.abs(lo), Math.abs(hi)));
    svg.appendChild(label);
  }
  const minutes = span / 60000;
  const every = minutes > 30 ? 10 : minutes > 10 ? 5 : 1;
  for (let m = 0; m <= minutes; m += every) {
    const anchor = m === 0 ? "end" : m + every > minutes ? "start" : "middle";
    const label = svgEl("text", { x: x(now - m * 60000), y: height - 4, "text-anchor": anchor, class: "axis" });
    label.textContent = m === 0 ? "now" : "−" + m + " min";
    svg.appendChild(label);
  }
  let i = 0;
  for (const [address, points] of history) {
    const colour = COLOURS[i++ % COLOURS.length];
    const visible = points.filter((p) => p.t >= t0);
    if (visible.length > 1) {
      const d = visible.map((p, j) => (j ? "L" : "M") + x(p.t).toFixed(1) + " " + y(p[field]).toFixed(1)).join(" ");
      svg.appendChild(svgEl("path", { d: d, stroke: colour, class: "series", "data-source": address }));
    }
    const last = visible[visible.length - 1];
    if (last) {
      svg.appendChild(svgEl("circle", { cx: x(last.t), cy: y(last[field]), r: 3, fill: colour, class: "point", "data-source": address, "data-points": visible.length }));
    }
  }
}

function showLegend() {
  const legend = $("legend");
  legend.replaceChildren();
  let i = 0;
  for (const address of history.keys()) {
    const item = document.createElement("span");
    item.className = "legend-item";
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = COLOURS[i++ % COLOURS.length];
    item.append(swatch, address);
    legend.appendChild(item);
  }
}

const RATES = [
  ["received", "Received"],
  ["answered", "Answered"],
  ["dropped_total", "Dropped"],
  ["kod_deny", "KoD DENY"],
  ["kod_rate", "KoD RATE"],
  ["interleaved", "Interleaved"],
];

function showServing(on) {
  const badge = $("serving");
  badge.textContent = on ? "serving" : "not serving";
  badge.className = "badge " + (on ? "good" : "bad");
}

function showRates(stats, now) {
  const list = $("rates-list");
  const prev = lastStats;
  lastStats = { t: now, total: stats.total };
  showServing(stats.serving);
  const rows = [];
  for (const [key, label] of RATES) {
    rows.push([label, key, stats.total[key] || 0, prev ? prev.total[key] || 0 : null]);
    if (key !== "dropped_total") continue;
    // The reasons under the total, those that happened.
    for (const [reason, n] of Object.entries(stats.total.dropped || {})) {
      if (n > 0) rows.push(["  " + reason, "dropped-" + reason, n, prev ? (prev.total.dropped || {})[reason] || 0 : null]);
    }
  }
  list.replaceChildren();
  const dt = prev ? (now - prev.t) / 1000 : 0;
  for (const [label, key, n, before] of rows) {
    const dtEl = document.createElement("dt");
    dtEl.textContent = label;
    const dd = document.createElement("dd");
    dd.id = "rate-" + key;
    const rate = before !== null && dt > 0 ? Math.max(0, n - before) / dt : null;
    dd.textContent = (rate === null ? "–" : rate.toFixed(1) + "/s") + "  (" + n + " total)";
    list.append(dtEl, dd);
  }
  const up = document.createElement("dt");
  up.textContent = "Uptime";
  const upv = document.createElement("dd");
  upv.textContent = ago(stats.uptime_secs) + " · " + stats.backend + " · " + stats.workers.length + " worker" + (stats.workers.length === 1 ? "" : "s");
  list.append(up, upv);
}

function showClients(c) {
  text("clients-total", "(" + c.total + " tracked of " + c.capacity + ")");
  const body = $("clients-table").tBodies[0];
  body.replaceChildren();
  if (!c.clients.length) empty(body, 6, "no client yet");
  for (const client of c.clients) {
    const row = document.createElement("tr");
    cell(row, client.address);
    cell(row, String(client.requests), "num");
    cell(row, String(client.drops), "num");
    cell(row, String(client.kods), "num");
    cell(row, client.interval_s == null ? "–" : ago(client.interval_s), "num");
    cell(row, ago(client.last_seen_ago_s) + " ago", "num");
    body.appendChild(row);
  }
}

// The recent log lines, newest first; an alert's event name leads its message.
function showLog(log) {
  const body = $("log-table").tBodies[0];
  body.replaceChildren();
  if (!log.lines.length) empty(body, 4, "no line yet");
  for (const line of log.lines.slice().reverse()) {
    const row = document.createElement("tr");
    row.className = "level-" + line.level.toLowerCase();
    cell(row, line.time.replace("T", " ").replace("Z", ""));
    cell(row, line.level);
    cell(row, line.target, "muted");
    const fields = line.fields.map(([k, v]) => k + "=" + v).join(" ");
    cell(row, fields ? line.message + " " + fields : line.message, "message");
    body.appendChild(row);
  }
}

async function poll() {
  const now = Date.now();
  const results = await Promise.allSettled([
    api("tracking").then(showTracking),
    api("sources").then((s) => showSources(s, now)),
    api("serverstats").then((s) => showRates(s, now)),
    api("clients?limit=10").then(showClients),
    api("log?n=100").then(showLog),
  ]);
  plot($("plot-offset"), "offset", now);
  plot($("plot-delay"), "delay", now);
  showLegend();
  const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
  const updated = $("updated");
  updated.textContent = failed.length ? "error: " + failed.join("; ") : "updated " + new Date(now).toLocaleTimeString();
  updated.className = failed.length ? "error" : "muted";
  setTimeout(poll, POLL_MS);
}

// The changing requests: POST with the token the operator typed (kept for this tab only).
async function change(command, body, done) {
  const token = $("token").value.trim();
  const result = $("control-result");
  if (!token) {
    result.textContent = "enter the token first";
    result.className = "error";
    return;
  }
  sessionStorage.setItem("meridian-token", token);
  result.textContent = command + "…";
  result.className = "muted";
  try {
    const data = await api(command, {
      method: "POST",
      headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
      body: body ? JSON.stringify(body) : "",
    });
    if (typeof data.serving === "boolean") showServing(data.serving);
    result.textContent = done(data);
    result.className = "ok";
  } catch (e) {
    result.textContent = command + ": " + e.message;
    result.className = "error";
  }
}

$("token").value = sessionStorage.getItem("meridian-token") || "";
$("serving-off").addEventListener("click", () =>
  change("serving", { on: false }, (d) => (d.serving ? "still serving" : "serving off: NTP requests are not answered")));
$("serving-on").addEventListener("click", () =>
  change("serving", { on: true }, (d) => (d.serving ? "serving on" : "still not serving")));
$("sync-now").addEventListener("click", () =>
  change("sync-now", null, () => "sync now: every source polled, then a burst"));
poll();
