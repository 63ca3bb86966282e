// Baton's live dashboard. It reads /dashboard/stream (Server-Sent Events, read with fetch so a
// token can travel in the Authorization header) and never polls the admin API. The token lives
// in this page's memory only: no cookie, no storage. Everything the server sends is shown with
// textContent, never parsed as HTML.
"use strict";

const WINDOW_SECONDS = 300; // charts and history
const SHARE_SECONDS = 3; // the traffic share is measured over this many seconds
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"];
const GATES = [ // [gate value, its threshold in the rollout's gates, how to show it]
  ["candidate_error_rate", "max_error_rate", "error rate", (v) => (v * 100).toFixed(2) + " %"],
  ["p99_ratio", "max_p99_ratio", "p99 ratio", (v) => v.toFixed(2) + "×"],
  ["mean_shift", "max_mean_shift", "mean shift", (v) => v.toFixed(3)],
  ["class_drift", "max_class_drift", "class drift", (v) => v.toFixed(3)],
  ["shadow_agreement", "min_shadow_agreement", "shadow agreement", (v) => (v * 100).toFixed(1) + " %"],
];

const state = {
  token: null,
  models: [],
  fleet: null,
  history: {}, // model -> version -> [[t, requests, errors, p50, p99], ...]
  events: [],
  abort: null,
  holding: false, // a pointer is down on the models: re-render after, so no click is lost
  stale: false,
};

// ---- tiny DOM helper: el("td", {class: "x"}, "text", child, ...) ---------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

function notice(text, error) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.className = error ? "error" : "ok";
  box.hidden = !text;
}

function setConnection(kind, text) {
  const badge = document.getElementById("connection");
  badge.className = "badge " + kind;
  badge.textContent = text;
}

// ---- the feed -------------------------------------------------------------------------------
async function connect() {
  if (state.abort) state.abort.abort();
  const abort = new AbortController();
  state.abort = abort;
  const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
  let response;
  try {
    response = await fetch("/dashboard/stream", { headers, cache: "no-store", signal: abort.signal });
  } catch (err) {
    if (!abort.signal.aborted) retry(abort);
    return;
  }
  if (response.status === 401 || response.status === 403) {
    const body = await response.json().catch(() => ({}));
    setConnection("off", "needs a token");
    notice((body.error || "the live feed needs a token") + " — enter one above", true);
    return; // a new token reconnects
  }
  if (!response.ok) {
    retry(abort);
    return;
  }
  setConnection("live", "live");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
      }
    }
  } catch (err) {
    // the connection broke; reconnect below
  }
  if (!abort.signal.aborted) retry(abort);
}

function retry(abort) {
  setConnection("off", "reconnecting…");
  setTimeout(() => { if (state.abort === abort) connect(); }, 1000);
}

function dispatch(block) {
  let kind = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) kind = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (!data.length) return; // a comment (keep-alive) or the retry hint
  const doc = JSON.parse(data.join("\n"));
  if (kind === "snapshot") {
    state.history = doc.history || {};
    state.events = doc.events || [];
    update(doc);
    renderEvents();
  } else if (kind === "tick") {
    for (const [model, versions] of Object.entries(doc.traffic || {})) {
      const byVersion = (state.history[model] = state.history[model] || {});
      for (const [version, point] of Object.entries(versions)) {
        (byVersion[version] = byVersion[version] || []).push(point);
      }
    }
    trimHistory(doc.t);
    update(doc);
  } else if (kind === "event") {
    state.events.push(doc);
    if (state.events.length > 1000) state.events.splice(0, state.events.length - 1000);
    if (doc.kind === "state") applyState(doc);
    renderEvents();
  }
}

function update(doc) {
  state.models = doc.models || [];
  state.fleet = doc.fleet || null;
  renderModels();
  renderFleet();
}

function trimHistory(now) {
  for (const byVersion of Object.values(state.history)) {
    for (const [version, points] of Object.entries(byVersion)) {
      while (points.length && points[0][0] < now - WINDOW_SECONDS) points.shift();
      if (!points.length) delete byVersion[version];
    }
  }
}

function applyState(event) { // show a state change at once, before the next tick
  const model = state.models.find((m) => m.name === event.model);
  if (!model) return;
  const version = model.versions.find((v) => v.version === event.version);
  if (version) version.state = event.state;
  else model.versions.push({ version: event.version, state: event.state, inflight: 0 });
  renderModels();
}

// ---- numbers --------------------------------------------------------------------------------
function recent(model, version, seconds) {
  const points = ((state.history[model] || {})[String(version)] || []);
  const last = points.length ? points[points.length - 1][0] : 0;
  return points.filter((p) => p[0] > last - seconds);
}

function shares(model) {
  const counts = {};
  let total = 0;
  for (const version of Object.keys(state.history[model] || {})) {
    const n = recent(model, version, SHARE_SECONDS).reduce((sum, p) => sum + p[1], 0);
    counts[version] = n;
    total += n;
  }
  const result = {};
  for (const [version, n] of Object.entries(counts)) result[version] = total ? n / total : null;
  return result;
}

function lastPoint(model, version) {
  const points = (state.history[model] || {})[String(version)] || [];
  return points.length ? points[points.length - 1] : null;
}

const pct = (x) => (x === null || x === undefined ? "–" : (x * 100).toFixed(1) + " %");
const ms = (s) => (s === null || s === undefined ? "–" : (s * 1000).toFixed(2));

// ---- actions --------------------------------------------------------------------------------
async function act(method, path, body) {
  const headers = { "content-type": "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  try {
    const response = await fetch(path + "?wait=5s", {
      method, headers, body: body ? JSON.stringify(body) : undefined,
    });
    const doc = await response.json().catch(() => ({}));
    if (response.ok) notice(doc.change || "done", false);
    else notice(`refused (${response.status}): ${doc.error || response.statusText}`, true);
  } catch (err) {
    notice("the server did not answer: " + err, true);
  }
}

const modelPath = (name) => "/admin/models/" + encodeURIComponent(name);

// ---- rendering ------------------------------------------------------------------------------
function renderModels() {
  if (state.holding) {
    state.stale = true;
    return;
  }
  const root = document.getElementById("models");
  const open = new Set([...root.querySelectorAll("details[open]")].map((d) => d.dataset.key));
  root.replaceChildren(...(state.models.length
    ? state.models.map((m) => modelCard(m, open))
    : [el("p", { class: "muted" }, "no models")]));
  const filter = document.getElementById("event-filter");
  const names = state.models.map((m) => m.name);
  const shown = [...filter.options].slice(1).map((o) => o.value);
  if (names.join("\n") !== shown.join("\n")) { // rebuilt only when the models change
    const chosen = filter.value;
    filter.replaceChildren(el("option", { value: "" }, "all models"),
      ...names.map((name) => el("option", { value: name, selected: name === chosen }, name)));
  }
}

function modelCard(m, open) {
  const share = shares(m.name);
  const rows = m.versions.map((v) => {
    const point = lastPoint(m.name, v.version);
    const window = recent(m.name, v.version, 5);
    const requests = window.reduce((s, p) => s + p[1], 0);
    const errors = window.reduce((s, p) => s + p[2], 0);
    const marks = [];
    if (v.version === m.default_version) marks.push("default");
    if (v.version === m.pinned) marks.push("pinned");
    for (const [label, lv] of Object.entries(m.labels || {})) if (lv === v.version) marks.push("@" + label);
    const pinnable = v.version !== m.pinned && !["FAILED", "UNLOADED", "DRAINING"].includes(v.state);
    return el("tr", { "data-version": v.version },
      el("td", {}, v.version),
      el("td", {}, el("span", { class: "state " + String(v.state).toLowerCase() }, v.state)),
      el("td", { class: "share" }, pct(share[String(v.version)])),
      el("td", {}, point ? point[1] : "–"),
      el("td", {}, point ? ms(point[3]) : "–"),
      el("td", {}, point ? ms(point[4]) : "–"),
      el("td", {}, requests ? pct(errors / requests) : "–"),
      el("td", {}, v.sequences === null || v.sequences === undefined ? "" : v.sequences),
      el("td", {}, marks.join(" ")),
      el("td", { class: "why" }, v.message || v.reason || ""),
      el("td", {}, pinnable
        ? el("button", { onclick: () => act("POST", modelPath(m.name) + "/pin", { version: v.version }) }, "pin")
        : ""),
    );
  });
  const controls = el("div", { class: "controls" },
    el("button", { onclick: () => act("POST", modelPath(m.name) + "/rollback") }, "rollback"),
    m.pinned !== null ? el("button", { onclick: () => act("DELETE", modelPath(m.name) + "/pin") }, "unpin") : null,
  );
  const key = "charts:" + m.name;
  return el("article", { class: "model", "data-model": m.name },
    el("h2", {}, m.name, el("span", { class: "muted" },
      m.default_version === null ? " — nothing serving" : ` — serving v${m.default_version}`)),
    m.config_error ? el("p", { class: "error" }, "model.yaml: " + m.config_error) : null,
    el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, ["version", "state", "share", "req/s", "p50 ms", "p99 ms",
        "errors", "sequences", "routing", "last error", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows))),
    controls,
    rolloutPanel(m),
    el("details", { "data-key": key, open: open.has(key) || !open.size },
      el("summary", {}, "last 5 minutes"), charts(m)),
  );
}

function rolloutPanel(m) {
  const view = m.rollout_view || {};
  const r = view.rollout;
  const history = state.events.filter((e) => e.kind === "rollout" && e.model === m.name).slice(-8);
  if (!r && !history.length) return null;
  const parts = [el("h3", {}, "rollout")];
  if (r) {
    const verdict = view.last_verdict || {};
    const values = verdict.values || {};
    parts.push(el("p", { class: "rollout-status" },
      `v${r.stable} → v${r.candidate}: ${r.status}, step ${r.step + 1} of ${r.steps.length}, `,
      el("strong", { class: "weight" }, `${(r.weight * 100).toFixed(0)} %`), " to the candidate",
      verdict.failed ? el("span", { class: "error" }, " — failing: " + verdict.reasons.join("; ")) : "",
      verdict.insufficient ? el("span", { class: "muted" }, " — gathering requests") : ""));
    parts.push(el("div", { class: "scroll" }, el("table", { class: "gates" },
      el("thead", {}, el("tr", {}, el("th", {}, "gate"), el("th", {}, "value"), el("th", {}, "threshold"))),
      el("tbody", {}, GATES.filter(([, limit]) => r.gates[limit] !== null).map(([name, limit, label, show]) => {
        const value = values[name];
        const bad = value !== undefined && (limit.startsWith("min") ? value < r.gates[limit] : value > r.gates[limit]);
        return el("tr", { class: bad ? "failing" : "" }, el("td", {}, label),
          el("td", {}, value === undefined ? "–" : show(value)), el("td", {}, show(r.gates[limit])));
      })))));
    const path = modelPath(m.name) + "/rollout/";
    parts.push(el("div", { class: "controls" },
      el("button", { onclick: () => act("POST", path + "promote") }, "promote"),
      r.status === "PAUSED"
        ? el("button", { onclick: () => act("POST", path + "resume") }, "resume")
        : el("button", { onclick: () => act("POST", path + "pause") }, "pause"),
      el("button", { class: "danger", onclick: () => act("POST", path + "abort") }, "abort")));
  }
  if (history.length) {
    parts.push(el("ol", { class: "verdicts" }, history.map((e) => el("li", {},
      new Date(e.time * 1000).toLocaleTimeString(), " ", e.state, " ",
      e.data && e.data.weight !== undefined ? `${(e.data.weight * 100).toFixed(0)} %` : "",
      e.reason ? " — " + e.reason : ""))));
  }
  return el("section", { class: "rollout" }, parts);
}

function charts(m) {
  const versions = Object.keys(state.history[m.name] || {}).sort((a, b) => a - b);
  const series = (pick) => versions.map((v, i) => ({
    label: "v" + v,
    color: COLORS[i % COLORS.length],
    tone: "c" + (i % COLORS.length),
    points: (state.history[m.name][v] || []).map((p) => [p[0], pick(p)]).filter((p) => p[1] !== null),
  }));
  return el("div", { class: "charts" },
    chart("requests / s", series((p) => p[1])),
    chart("p50 ms", series((p) => (p[3] === null ? null : p[3] * 1000))),
    chart("p99 ms", series((p) => (p[4] === null ? null : p[4] * 1000))),
    chart("errors / s", series((p) => p[2])));
}

function chart(title, series) {
  const width = 300, height = 90;
  const all = series.flatMap((s) => s.points);
  const now = all.length ? Math.max(...all.map((p) => p[0])) : 0;
  const top = Math.max(1e-9, ...all.map((p) => p[1]));
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  for (const s of series) {
    if (!s.points.length) continue;
    const coords = s.points.map(([t, y]) =>
      `${(width * (1 - (now - t) / WINDOW_SECONDS)).toFixed(1)},${(height - 2 - (height - 4) * y / top).toFixed(1)}`);
    svg.append(svgEl("polyline", { points: coords.join(" "), fill: "none", stroke: s.color, "stroke-width": 1.5 }));
  }
  const legend = series.map((s) => el("span", { class: s.tone }, s.label)); // no inline styles
  return el("figure", {}, el("figcaption", {}, title, " (max ", top < 1e-6 ? 0 : +top.toPrecision(3), ") ", legend), svg);
}

function renderFleet() {
  const root = document.getElementById("fleet");
  const fleet = state.fleet;
  root.hidden = !fleet;
  if (!fleet) return;
  const models = fleet.models || [];
  const status = fleet.status + (fleet.leader ? `, coordinator ${fleet.leader}` : "")
    + (fleet.stale ? ` (etcd unreachable, last known: ${fleet.stale})` : "");
  root.replaceChildren(
    el("h2", {}, "Fleet ", el("span", { class: fleet.status === "diverged" ? "error" : "muted" }, status)),
    el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "node"), models.map((m) => el("th", {}, m)))),
      el("tbody", {}, (fleet.nodes || []).map((n) => el("tr", { class: n.diverged ? "diverged" : "" },
        el("td", {}, n.name, n.diverged ? " (diverged)" : ""),
        models.map((m) => {
          const cell = (n.models || {})[m] || {};
          const wants = cell.want !== null && cell.want !== undefined && cell.want !== cell.version
            ? ` (wants v${cell.want})` : "";
          return el("td", { class: cell.state === "diverged" ? "diverged" : "", title: cell.why || "" },
            cell.version === null || cell.version === undefined ? "–" : "v" + cell.version, wants,
            cell.digest ? el("span", { class: "muted" }, " " + cell.digest.slice(0, 8)) : "",
            cell.state && cell.state !== "ok" && cell.state !== "unmanaged" ? " " + cell.state : "");
        })))))),
    fleet.diverged && fleet.diverged.length
      ? el("ul", { class: "error" }, fleet.diverged.map((d) => el("li", {}, d))) : null,
    (fleet.rollouts || []).map((r) => el("p", { class: "rollout-status" },
      `fleet rollout of ${r.model}: v${r.stable} → v${r.candidate}, ${r.status}, wave ${r.wave} of ${r.waves}`,
      r.nodes.length ? ` (on ${r.nodes.join(", ")})` : "", r.reason ? " — " + r.reason : "")));
}

function renderEvents() {
  const filter = document.getElementById("event-filter").value;
  const shown = state.events.filter((e) => !filter || e.model === filter).slice(-200).reverse();
  document.getElementById("events").replaceChildren(...shown.map((e) => {
    const failure = e.state === "FAILED" || e.state === "refused" || e.state === "ROLLED_BACK";
    return el("li", { class: failure ? "failure" : "" },
      el("time", {}, new Date(e.time * 1000).toLocaleTimeString()), " ",
      el("strong", {}, e.model || "server"), e.version === null ? "" : ` v${e.version}`, " ",
      e.kind, e.state ? " " + e.state : "",
      e.reason ? el("span", { class: "why" }, " " + e.reason) : "",
      e.message ? el("span", { class: "muted" }, " — " + e.message) : "");
  }));
}

// ---- start ----------------------------------------------------------------------------------
document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  state.token = input.value.trim() || null;
  input.value = "";
  input.placeholder = state.token ? "a token is set for this tab" : "operate / read token (kept in this tab only)";
  notice(state.token ? "token set (kept in this tab's memory only)" : "token cleared", false);
  connect();
});
document.getElementById("event-filter").addEventListener("change", renderEvents);
document.getElementById("models").addEventListener("pointerdown", () => { state.holding = true; });
window.addEventListener("pointerup", () => setTimeout(() => { // after the click is dispatched
  state.holding = false;
  if (state.stale) {
    state.stale = false;
    renderModels();
  }
}, 0));
connect();
