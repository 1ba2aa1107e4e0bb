// Tern dashboard: plain JavaScript, no framework, no build step, nothing loaded from elsewhere.
//
// Everything shown comes from the admin API of the broker that serves this page. Client ids,
// user names, topics and payloads are chosen by MQTT clients, so they only ever reach the page
// as text nodes (textContent) or attribute values set with setAttribute: never as HTML.
//
// The API token from POST /api/v1/login is kept in sessionStorage (gone with the tab). The live
// feed, GET /api/v1/events (Server-Sent Events), is read with fetch() and a ReadableStream so
// that the token goes in the Authorization header, which EventSource cannot send.

"use strict";

const TOKEN_KEY = "tern.token";
const HISTORY = 180; // points kept per chart series (3 minutes at one event per second)
const PAGE_SIZE = 20;

// ---- Small DOM helpers -------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

/** An element with attributes (set with setAttribute) and children (strings become text). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function clear(el) {
  el.replaceChildren();
  return el;
}

const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
function formatNumber(n) {
  return typeof n === "number" && Number.isFinite(n) ? numberFormat.format(n) : "–";
}

function formatDuration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "–";
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${hh}h`;
  if (hh > 0) return `${hh}h ${mm}m`;
  if (mm > 0) return `${mm}m ${s % 60}s`;
  return `${s}s`;
}

/** A value as table text. */
function cellText(value) {
  if (value === undefined || value === null || value === "") return "–";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** The first of `names` that `obj` has. */
function pick(obj, ...names) {
  for (const name of names) {
    if (obj && obj[name] !== undefined) return obj[name];
  }
  return undefined;
}

// ---- API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Calls the admin API with the token; parses JSON; throws ApiError with the API's message. */
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "UNREACHABLE", `the broker does not answer (${e.message})`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const code = (data && data.code) || `HTTP_${response.status}`;
    const message = (data && data.message) || response.statusText || "request refused";
    if (response.status === 401 && path !== "/api/v1/login") {
      signOut("Your session has ended: sign in again.");
    }
    throw new ApiError(response.status, code, message);
  }
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

const seg = (text) => encodeURIComponent(text);

function notice(message, kind) {
  const el = $("notice");
  el.textContent = message;
  el.dataset.kind = kind || "info";
  el.hidden = !message;
}

function showError(e) {
  notice(e instanceof ApiError ? `${e.message} (${e.code})` : String(e), "error");
}

// ---- Login -------------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const key = $("login-key").value.trim();
  const secret = $("login-secret").value;
  const error = $("login-error");
  error.textContent = "";
  if (!key || !secret) {
    error.textContent = "Enter the API key and its secret.";
    return;
  }
  $("login-submit").disabled = true;
  try {
    const answer = await api("POST", "/api/v1/login", { key, secret });
    sessionStorage.setItem(TOKEN_KEY, answer.token);
    $("login-secret").value = "";
    start();
  } catch (e) {
    error.textContent =
      e.status === 401 ? "Unknown API key or wrong secret." : `Cannot sign in: ${e.message}`;
  } finally {
    $("login-submit").disabled = false;
  }
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  live.stop();
  $("app-view").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message || "";
  $("login-key").focus();
}

// ---- Live feed (SSE over fetch) ----------------------------------------------------------

const live = {
  controller: null,
  retry: 1000,
  timer: null,
  running: false,

  start() {
    this.stop();
    this.running = true;
    this.connect();
  },

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
    this.controller = null;
  },

  state(state, text) {
    const el = $("live");
    el.dataset.state = state;
    el.textContent = text;
  },

  async connect() {
    const controller = new AbortController();
    this.controller = controller;
    this.state("connecting", "connecting…");
    try {
      const response = await fetch("/api/v1/events", {
        headers: { Accept: "text/event-stream", Authorization: `Bearer ${token()}` },
        cache: "no-store",
        credentials: "omit",
        signal: controller.signal,
      });
      if (response.status === 401) {
        signOut("Your session has ended: sign in again.");
        return;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      this.state("live", "live");
      this.retry = 1000;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          this.dispatch(block);
        }
        if (buffer.length > 1 << 20) buffer = ""; // a broken stream: do not grow forever
      }
      throw new Error("the stream ended");
    } catch (e) {
      if (!this.running || controller.signal.aborted) return;
      this.state("error", `reconnecting in ${Math.round(this.retry / 1000)} s`);
      this.timer = setTimeout(() => this.running && this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 15000);
    }
  },

  /** One SSE block: `event:` and `data:` lines; comments (`:`) are keep-alives. */
  dispatch(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (event === "stats" && data.length) {
      try {
        overview.update(JSON.parse(data.join("\n")));
      } catch (e) {
        console.warn("bad stats event", e);
      }
    }
  },
};

// ---- Charts (canvas, drawn here) ---------------------------------------------------------

class LineChart {
  /** `series`: [{label, color: CSS variable name}]; `integer`: whole numbers only. */
  constructor(canvas, legend, series, integer) {
    this.canvas = canvas;
    this.integer = Boolean(integer);
    this.series = series.map((s) => ({ ...s, points: [] }));
    this.times = [];
    clear(legend);
    this.series.forEach((s, i) => {
      s.legendValue = h("span", { class: "legend-value" }, "–");
      legend.append(h("li", { "data-series": i }, `${s.label}: `, s.legendValue));
    });
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  push(time, values) {
    this.times.push(time);
    values.forEach((v, i) => this.series[i].points.push(v));
    if (this.times.length > HISTORY) {
      this.times.shift();
      for (const s of this.series) s.points.shift();
    }
    const latest = values.map((v) => formatNumber(v));
    this.series.forEach((s, i) => {
      s.legendValue.textContent = latest[i];
    });
    this.canvas.dataset.points = String(this.times.length);
    this.canvas.setAttribute(
      "aria-label",
      this.series.map((s, i) => `${s.label} ${latest[i]}`).join(", "),
    );
    this.draw();
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const style = getComputedStyle(document.documentElement);
    const color = (name) => style.getPropertyValue(name).trim() || "#888";
    const font = getComputedStyle(document.body).fontFamily;

    let max = 0;
    for (const s of this.series) {
      for (const v of s.points) if (Number.isFinite(v)) max = Math.max(max, v);
    }
    // Four grid steps of a round size (1, 2 or 5 × 10^n); whole steps for whole quantities.
    let step = niceStep(max / 4);
    if (this.integer) step = Math.max(1, Math.ceil(step));
    const top = 4 * step;
    const pad = { left: 46, right: 10, top: 10, bottom: 22 };
    const plotW = Math.max(1, width - pad.left - pad.right);
    const plotH = Math.max(1, height - pad.top - pad.bottom);
    const x = (i) => pad.left + (plotW * i) / (HISTORY - 1);
    const y = (v) => pad.top + plotH - (plotH * v) / top;

    // Grid and value labels.
    ctx.font = `11px ${font}`;
    ctx.fillStyle = color("--muted");
    ctx.strokeStyle = color("--grid");
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let k = 0; k <= 4; k++) {
      const value = (top * k) / 4;
      const yy = Math.round(y(value)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.left, yy);
      ctx.lineTo(width - pad.right, yy);
      ctx.stroke();
      ctx.fillText(axisFormat.format(value), pad.left - 6, yy);
    }
    // Time axis: the span shown.
    ctx.textAlign = "left";
    ctx.textBaseline = "alphabetic";
    ctx.fillText(`${HISTORY} s ago`, pad.left, height - 6);
    ctx.textAlign = "right";
    ctx.fillText("now", width - pad.right, height - 6);

    // Series, newest at the right edge.
    const offset = HISTORY - this.times.length;
    for (const s of this.series) {
      ctx.strokeStyle = color(s.color);
      ctx.lineWidth = 2;
      ctx.lineJoin = "round";
      ctx.beginPath();
      let started = false;
      s.points.forEach((v, i) => {
        if (!Number.isFinite(v)) {
          started = false;
          return;
        }
        const px = x(offset + i);
        const py = y(v);
        if (started) ctx.lineTo(px, py);
        else ctx.moveTo(px, py);
        started = true;
      });
      ctx.stroke();
    }
  }
}

/** The smallest round number (1, 2 or 5 × 10^n) at or above `v`; 0.25 for nothing. */
function niceStep(v) {
  if (!(v > 0)) return 0.25;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5]) if (v <= m * p) return m * p;
  return 10 * p;
}

const axisFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

// ---- Overview ----------------------------------------------------------------------------

const overview = {
  previous: null,
  connections: null,
  rates: null,

  init() {
    this.connections = new LineChart($("chart-connections"), $("legend-connections"), [
      { label: "connections", color: "--series-1" },
    ], true);
    this.rates = new LineChart($("chart-rates"), $("legend-rates"), [
      { label: "in", color: "--series-1" },
      { label: "out", color: "--series-2" },
      { label: "dropped", color: "--series-3" },
    ]);
  },

  update(stats) {
    const time = Number(stats.time) || Date.now();
    const connections = Number(pick(stats, "connections.count", "connections"));
    const counters = {
      in: Number(pick(stats, "messages.received", "messages.publish.received")),
      out: Number(pick(stats, "messages.sent", "messages.publish.sent")),
      dropped: Number(pick(stats, "messages.dropped", "messages.dropped.total")),
    };
    setText("n-connections", formatNumber(connections));
    setText("n-sessions", formatNumber(Number(pick(stats, "sessions.count", "sessions"))));
    setText(
      "n-subscriptions",
      formatNumber(Number(pick(stats, "subscriptions.count", "subscriptions"))),
    );
    setText("n-retained", formatNumber(Number(pick(stats, "retained.count", "retained"))));
    setText("n-uptime", formatDuration(Number(pick(stats, "uptime", "broker.uptime"))));

    // Rates per second from two consecutive counter readings (none across a restart, when
    // counters go back).
    const prev = this.previous;
    this.previous = { time, counters };
    const rates = { in: NaN, out: NaN, dropped: NaN };
    if (prev && time > prev.time) {
      const seconds = (time - prev.time) / 1000;
      for (const k of Object.keys(rates)) {
        const delta = counters[k] - prev.counters[k];
        rates[k] = delta >= 0 ? delta / seconds : NaN;
      }
    }
    const chart = $("chart-rates");
    for (const k of Object.keys(rates)) {
      setText(`n-rate-${k}`, formatNumber(rates[k]));
      chart.dataset[`rate${k[0].toUpperCase()}${k.slice(1)}`] = Number.isFinite(rates[k])
        ? rates[k].toFixed(2)
        : "";
    }
    $("chart-connections").dataset.latest = Number.isFinite(connections) ? String(connections) : "";
    this.connections.push(time, [connections]);
    if (prev) this.rates.push(time, [rates.in, rates.out, rates.dropped]);
  },
};

function setText(id, text) {
  $(id).textContent = text;
}

// ---- Tables ------------------------------------------------------------------------------

/**
 * Fills `table` with `rows`: `columns` are [{title, value(row) → text | Node}]; an empty list
 * shows `empty`.
 */
function fillTable(table, columns, rows, empty) {
  clear(table);
  table.append(
    h("thead", null, h("tr", null, columns.map((c) => h("th", { scope: "col" }, c.title)))),
  );
  const body = h("tbody");
  if (!rows.length) {
    body.append(h("tr", null, h("td", { colspan: columns.length, class: "empty" }, empty)));
  }
  for (const row of rows) {
    const tr = h("tr");
    for (const c of columns) {
      const value = c.value(row);
      const td = h("td", c.cls ? { class: c.cls } : null);
      td.append(value instanceof Node ? value : document.createTextNode(cellText(value)));
      tr.append(td);
    }
    body.append(tr);
  }
  table.append(body);
  table.dataset.rows = String(rows.length);
}

/** A list view: a filter form, a table, a pager. */
class ListView {
  constructor({ name, form, table, path, columns, empty }) {
    this.name = name;
    this.form = form;
    this.table = table;
    this.path = path;
    this.columns = columns;
    this.empty = empty;
    this.page = 1;
    this.pager = document.querySelector(`.pager[data-for="${name}"]`);
    if (this.form) {
      this.form.addEventListener("submit", (e) => {
        e.preventDefault();
        this.page = 1;
        this.load();
      });
    }
  }

  params() {
    return this.form ? Object.fromEntries(new FormData(this.form)) : {};
  }

  async load() {
    try {
      const answer = await api(
        "GET",
        this.path + query({ ...this.params(), page: this.page, limit: PAGE_SIZE }),
      );
      const rows = (answer && answer.data) || [];
      fillTable(this.table, this.columns, rows, this.empty);
      this.renderPager((answer && answer.meta) || {}, rows.length);
    } catch (e) {
      showError(e);
    }
  }

  renderPager(meta, shown) {
    if (!this.pager) return;
    clear(this.pager);
    const count = typeof meta.count === "number" ? meta.count : shown;
    const first = shown ? (this.page - 1) * PAGE_SIZE + 1 : 0;
    const previous = h("button", { type: "button", class: "secondary small" }, "Previous");
    previous.disabled = this.page <= 1;
    previous.addEventListener("click", () => {
      this.page -= 1;
      this.load();
    });
    const next = h("button", { type: "button", class: "secondary small" }, "Next");
    next.disabled = !meta.hasnext;
    next.addEventListener("click", () => {
      this.page += 1;
      this.load();
    });
    const summary = shown ? `${first}–${first + shown - 1} of ${count}` : `none of ${count}`;
    this.pager.append(previous, h("span", { "aria-live": "polite" }, summary), next);
  }
}

function button(label, cls, onClick, attrs) {
  const b = h("button", { type: "button", class: `small ${cls}`, ...attrs }, label);
  b.addEventListener("click", onClick);
  return b;
}

function fillFields(dl, object, skip) {
  clear(dl);
  for (const [key, value] of Object.entries(object || {})) {
    if (skip && skip.includes(key)) continue;
    dl.append(h("dt", null, key), h("dd", null, cellText(value)));
  }
}

// Clients.

const subscriptionColumns = [
  { title: "Client id", value: (r) => r.clientid, cls: "wrap" },
  { title: "Topic filter", value: (r) => r.topic, cls: "wrap" },
  { title: "QoS", value: (r) => r.qos },
  { title: "No local", value: (r) => pick(r, "nl") },
  { title: "Retain as published", value: (r) => pick(r, "rap") },
  { title: "Retain handling", value: (r) => pick(r, "rh") },
  { title: "Share group", value: (r) => pick(r, "share_group", "group") },
];

const clients = new ListView({
  name: "clients",
  form: $("clients-filter"),
  table: $("clients-table"),
  path: "/api/v1/clients",
  empty: "No clients.",
  columns: [
    { title: "Client id", value: (r) => r.clientid, cls: "wrap" },
    { title: "Username", value: (r) => r.username },
    {
      title: "State",
      value: (r) =>
        h(
          "span",
          { class: "state", "data-connected": String(Boolean(r.connected)) },
          r.connected ? "connected" : "disconnected",
        ),
    },
    {
      title: "Address",
      value: (r) => {
        const ip = pick(r, "ip_address", "peername");
        const port = pick(r, "port");
        return ip && port ? `${ip}:${port}` : ip;
      },
    },
    { title: "Protocol", value: (r) => pick(r, "proto_ver", "proto_name") },
    { title: "Subscriptions", value: (r) => pick(r, "subscriptions_cnt", "subscriptions") },
    { title: "Queued", value: (r) => pick(r, "mqueue_len", "queued") },
    { title: "Connected at", value: (r) => pick(r, "connected_at", "created_at") },
    {
      title: "Actions",
      cls: "actions",
      value: (r) =>
        h(
          "span",
          { class: "actions" },
          button("Details", "secondary", () => showClient(r.clientid), {
            "aria-label": `Details of ${r.clientid}`,
          }),
          button("Kick", "danger", () => kick(r.clientid), {
            "aria-label": `Kick ${r.clientid}`,
            "data-kick": r.clientid,
            disabled: !r.connected,
          }),
        ),
    },
  ],
});

async function kick(clientid) {
  if (!confirm(`Disconnect client "${clientid}"? Its session stays until it expires.`)) return;
  try {
    await api("DELETE", `/api/v1/clients/${seg(clientid)}`);
    notice(`Kicked ${clientid}.`);
    await clients.load();
  } catch (e) {
    showError(e);
  }
}

async function showClient(clientid) {
  try {
    const [client, subs] = await Promise.all([
      api("GET", `/api/v1/clients/${seg(clientid)}`),
      api("GET", `/api/v1/clients/${seg(clientid)}/subscriptions`),
    ]);
    $("client-details-title").textContent = `Client ${clientid}`;
    fillFields($("client-details-fields"), client);
    const rows = Array.isArray(subs) ? subs : (subs && subs.data) || [];
    fillTable($("client-subscriptions"), subscriptionColumns.slice(1), rows, "No subscriptions.");
    $("client-details").hidden = false;
    $("client-details").scrollIntoView({ block: "nearest" });
  } catch (e) {
    showError(e);
  }
}

// Topics and subscriptions.

const topics = new ListView({
  name: "topics",
  form: $("topics-filter"),
  table: $("topics-table"),
  path: "/api/v1/topics",
  empty: "No routes: nothing is subscribed.",
  columns: [
    { title: "Topic filter", value: (r) => r.topic, cls: "wrap" },
    { title: "Subscriptions", value: (r) => pick(r, "subscribers", "count") },
    {
      title: "",
      value: (r) =>
        button("Subscribers", "secondary", () => {
          const form = $("subscriptions-filter");
          form.elements.topic.value = r.topic;
          form.elements.clientid.value = "";
          form.elements.match_topic.value = "";
          location.hash = "#subscriptions";
        }),
    },
  ],
});

const subscriptions = new ListView({
  name: "subscriptions",
  form: $("subscriptions-filter"),
  table: $("subscriptions-table"),
  path: "/api/v1/subscriptions",
  empty: "No subscriptions.",
  columns: [
    ...subscriptionColumns,
    {
      title: "",
      value: (r) =>
        button("Unsubscribe", "danger", () => unsubscribe(r.clientid, r.topic), {
          "aria-label": `Unsubscribe ${r.clientid} from ${r.topic}`,
        }),
    },
  ],
});

async function unsubscribe(clientid, topic) {
  if (!confirm(`Remove the subscription of "${clientid}" to "${topic}"?`)) return;
  try {
    await api("POST", `/api/v1/clients/${seg(clientid)}/unsubscribe`, { topic });
    notice(`Unsubscribed ${clientid} from ${topic}.`);
    await subscriptions.load();
  } catch (e) {
    showError(e);
  }
}

async function subscribeClient(event) {
  event.preventDefault();
  const form = event.target;
  const clientid = form.elements.clientid.value;
  const topic = form.elements.topic.value;
  const qos = Number(form.elements.qos.value);
  try {
    await api("POST", `/api/v1/clients/${seg(clientid)}/subscribe`, { topic, qos });
    notice(`Subscribed ${clientid} to ${topic}.`);
    await subscriptions.load();
  } catch (e) {
    showError(e);
  }
}

// Retained messages.

const retained = new ListView({
  name: "retained",
  form: $("retained-filter"),
  table: $("retained-table"),
  path: "/api/v1/mqtt/retainer/messages",
  empty: "No retained messages.",
  columns: [
    { title: "Topic", value: (r) => r.topic, cls: "wrap" },
    { title: "QoS", value: (r) => r.qos },
    { title: "Size", value: (r) => pick(r, "payload_size", "size") },
    { title: "Published at", value: (r) => pick(r, "publish_at", "published_at") },
    {
      title: "Actions",
      cls: "actions",
      value: (r) =>
        h(
          "span",
          { class: "actions" },
          button("View", "secondary", () => showRetained(r.topic), {
            "aria-label": `View ${r.topic}`,
          }),
          button("Delete", "danger", () => deleteRetained(r.topic), {
            "aria-label": `Delete ${r.topic}`,
          }),
        ),
    },
  ],
});

/** A retained topic as a path: the API takes it URL-encoded. */
const retainedPath = (topic) => `/api/v1/mqtt/retainer/message/${seg(topic)}`;

async function showRetained(topic) {
  try {
    const message = await api("GET", retainedPath(topic));
    $("retained-message-title").textContent = `Retained message of ${topic}`;
    fillFields($("retained-message-fields"), message, ["payload"]);
    $("retained-payload").textContent = describePayload(message && message.payload);
    $("retained-message").hidden = false;
    $("retained-message").scrollIntoView({ block: "nearest" });
  } catch (e) {
    showError(e);
  }
}

/** A base64 payload as text when it is UTF-8, else as hexadecimal. */
function describePayload(encoded) {
  if (typeof encoded !== "string") return "";
  let bytes;
  try {
    bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
  } catch {
    return encoded;
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
    return `(binary, ${bytes.length} bytes)\n${hex}`;
  }
}

async function deleteRetained(topic) {
  if (!confirm(`Delete the retained message of "${topic}"?`)) return;
  try {
    await api("DELETE", retainedPath(topic));
    notice(`Deleted the retained message of ${topic}.`);
    $("retained-message").hidden = true;
    await retained.load();
  } catch (e) {
    showError(e);
  }
}

// Listeners and configuration.

async function loadServer() {
  try {
    const [listeners, config] = await Promise.all([
      api("GET", "/api/v1/listeners"),
      api("GET", "/api/v1/config"),
    ]);
    const rows = Array.isArray(listeners) ? listeners : (listeners && listeners.data) || [];
    fillTable(
      $("listeners-table"),
      [
        { title: "Id", value: (r) => r.id },
        { title: "Type", value: (r) => r.type },
        { title: "Address", value: (r) => pick(r, "bind", "address") },
        { title: "Running", value: (r) => r.running },
        { title: "Connections", value: (r) => pick(r, "current_connections", "connections") },
        { title: "Max connections", value: (r) => r.max_connections },
        { title: "Authentication", value: (r) => r.authenticate },
        { title: "Anonymous", value: (r) => r.allow_anonymous },
        { title: "Mount point", value: (r) => r.mount_point },
      ],
      rows,
      "No listeners.",
    );
    renderConfig(config || {});
  } catch (e) {
    showError(e);
  }
}

function renderConfig(config) {
  const dl = clear($("config-fields"));
  const add = (name, value) => dl.append(h("dt", null, name), h("dd", null, value));
  add("Configuration file", cellText(config.file));
  add("Loaded at", cellText(config.loaded_at));
  const last = config.last_reload;
  if (!last) {
    add("Last reload", "none since start");
  } else if (last.ok) {
    add("Last reload", h("span", { class: "ok" }, `${cellText(last.at)}: succeeded`));
  } else {
    add(
      "Last reload",
      h("span", { class: "bad" }, `${cellText(last.at)}: ${cellText(last.error)}`),
    );
  }
}

async function reload() {
  const out = clear($("reload-result"));
  $("reload").disabled = true;
  try {
    const answer = await api("POST", "/api/v1/reload");
    const changes = Array.isArray(answer)
      ? answer
      : (answer && (answer.changes || answer.changed || answer.data)) || [];
    out.append(h("p", { class: "ok" }, "Configuration reloaded."));
    if (changes.length) out.append(h("ul", null, changes.map((c) => h("li", null, cellText(c)))));
  } catch (e) {
    out.append(h("p", { class: "bad" }, `Reload refused: ${e.message}`));
  } finally {
    $("reload").disabled = false;
    loadServer();
  }
}

// ---- Navigation --------------------------------------------------------------------------

const VIEWS = {
  overview: () => {},
  clients: () => clients.load(),
  topics: () => topics.load(),
  subscriptions: () => subscriptions.load(),
  retained: () => retained.load(),
  server: () => loadServer(),
};

function route() {
  if (!token()) return;
  const name = location.hash.slice(1);
  const view = Object.hasOwn(VIEWS, name) ? name : "overview";
  for (const key of Object.keys(VIEWS)) $(`view-${key}`).hidden = key !== view;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.body.dataset.view = view;
  notice("");
  VIEWS[view]();
}

function start() {
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  live.start();
  route();
  overview.connections.draw();
  overview.rates.draw();
}

function init() {
  overview.init();
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", () => signOut(""));
  $("client-details-close").addEventListener("click", () => {
    $("client-details").hidden = true;
  });
  $("retained-message-close").addEventListener("click", () => {
    $("retained-message").hidden = true;
  });
  $("subscribe-form").addEventListener("submit", subscribeClient);
  $("reload").addEventListener("click", reload);
  window.addEventListener("hashchange", route);
  if (token()) start();
  else signOut("");
}

init();
