// pushwire console: plain JavaScript, no build step, no dependencies.
//
// Every call goes to the HTTP API with an Authorization header (Basic for user and password,
// Bearer for a token). The header value lives in sessionStorage: this tab only, never a
// cookie, so there is no CSRF surface; it is never put in a URL. Everything that came from
// the network is shown with textContent, never parsed as HTML.
"use strict";

const STORE_KEY = "pushwire.auth";
const TAIL_MAX_ROWS = 500;
const REFRESH_MS = 2000;
const METRICS_MS = 1000;
const METRICS_POINTS = 120;

// -- small DOM helpers --------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    // through the CSSOM: the Content-Security-Policy forbids style attributes
    else if (key === "style") node.style.cssText = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const $ = (sel, root) => (root || document).querySelector(sel);

function fmtTime(unix) {
  if (unix === null || unix === undefined) return "—";
  const d = new Date(unix * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fmtClock(unix) {
  const d = new Date(unix * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function fmtAge(unix) {
  const s = Math.max(0, Date.now() / 1000 - unix);
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d`;
}

function chips(items) {
  if (!items || !items.length) return el("span", { class: "muted", text: "—" });
  return el("div", { class: "chips" }, items.map((t) => el("span", { class: "chip", text: t })));
}

function table(columns, rows, emptyText, id) {
  const head = el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null, text: c.title })));
  const body = el("tbody", {});
  if (!rows.length) {
    body.append(el("tr", {}, el("td", { class: "empty", colspan: String(columns.length), text: emptyText })));
  }
  for (const row of rows) {
    body.append(el("tr", { "data-key": row.__key }, columns.map((c) => {
      const value = c.render(row);
      return el("td", { class: c.num ? "num" : null }, value instanceof Node ? value : String(value));
    })));
  }
  return el("table", { id }, el("thead", {}, head), body);
}

// A button that asks for a second click before it does something destructive.
function confirmButton(label, action) {
  let armed = null;
  const button = el("button", { class: "danger small", type: "button", text: label });
  button.addEventListener("click", async () => {
    if (armed === null) {
      button.textContent = `Confirm ${label.toLowerCase()}`;
      button.classList.add("confirm");
      armed = setTimeout(() => {
        armed = null;
        button.textContent = label;
        button.classList.remove("confirm");
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.disabled = true;
    await action();
  });
  return button;
}

function notice(kind, text) {
  return el("div", { class: `notice ${kind}`, role: "status", text });
}

// -- the API ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function authHeader() {
  return sessionStorage.getItem(STORE_KEY);
}

// A topic or filter as a path: each level percent-encoded (`#` -> %23, `$` -> %24, `+` kept).
function topicPath(topic) {
  return topic.split("/").map((level) => encodeURIComponent(level).replace(/%2B/g, "+")).join("/");
}

// GET a list and the Pushwire-Total header (how many there are when the list was cut).
async function apiList(path) {
  const headers = authHeader() ? { Authorization: authHeader() } : {};
  const response = await fetch(path, { headers, cache: "no-store" });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401) logout("Your credentials are no longer accepted: log in again.");
    const err = data && data.error ? data.error : { code: String(response.status), message: response.statusText };
    throw new ApiError(response.status, err.code, err.message);
  }
  const total = Number(response.headers.get("Pushwire-Total") || data.length);
  return [data, total];
}

async function api(method, path, body, options) {
  const chosen = options && options.auth !== undefined ? options.auth : authHeader();
  const headers = chosen && chosen !== "none" ? { Authorization: chosen } : {};
  let payload;
  if (body !== undefined && !(options && options.raw)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  } else if (body !== undefined) {
    payload = body;
    if (options.contentType) headers["Content-Type"] = options.contentType;
  }
  const response = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!response.ok) {
    const err = data && data.error ? data.error : { code: String(response.status), message: text };
    if (response.status === 401 && !(options && options.auth !== undefined)) {
      logout("Your credentials are no longer accepted: log in again.");
    }
    throw new ApiError(response.status, err.code, err.message);
  }
  return data;
}

// -- pages --------------------------------------------------------------------------------

// name -> {title, admin, render(main) -> cleanup function or undefined}
const pages = new Map();
let current = { name: null, cleanup: null };
let me = null;

// Register a page; `nav` adds a link under "Server"/"Access" style groups. Later features
// (the device gateway's apps and devices) register their pages here.
function registerPage(name, spec) {
  pages.set(name, spec);
  if (spec.nav) {
    $("#nav-extra").append(el("a", { href: `#${name}`, "data-page": name, class: spec.admin ? "admin-only" : null, text: spec.title }));
  }
}
window.pushwireConsole = {
  registerPage, api, apiList, el, table, chips, confirmButton, notice, pageHead, autoRefresh, fmtTime, fmtAge,
};

function show(name) {
  if (!pages.has(name) || (pages.get(name).admin && !(me && me.admin))) name = "live";
  if (current.cleanup) current.cleanup();
  current = { name, cleanup: null };
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.page === name);
  }
  const main = $("#main");
  main.replaceChildren();
  main.dataset.page = name;
  document.title = `${pages.get(name).title} · pushwire console`;
  current.cleanup = pages.get(name).render(main) || null;
}

function pageHead(title, ...right) {
  return el("div", { class: "page-head" }, el("h2", { text: title }), el("div", { class: "row-actions" }, right));
}

// A page section that reloads itself every REFRESH_MS while the page is shown.
function autoRefresh(load) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try { await load(); } catch (err) { /* shown by load itself */ }
    if (!stopped) timer = setTimeout(tick, REFRESH_MS);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

// -- live tail and publish ----------------------------------------------------------------

// Server-Sent Events read with fetch, so the credential goes in a header, not the URL.
class Tail {
  constructor(view) {
    this.view = view;
    this.abort = null;
    this.cursor = null;
    this.count = 0;
  }

  async start(filter, since) {
    this.stop();
    const controller = new AbortController();
    this.abort = controller;
    this.filter = filter;
    this.view.status("wait", `connecting to ${filter}…`);
    const headers = { Accept: "text/event-stream" };
    if (authHeader()) headers.Authorization = authHeader();
    if (this.cursor) headers["Last-Event-ID"] = this.cursor;
    const query = this.cursor ? "" : `?since=${encodeURIComponent(since)}`;
    let response;
    try {
      response = await fetch(`/v1/sse/${topicPath(filter)}${query}`, { headers, signal: controller.signal, cache: "no-store" });
    } catch (err) {
      if (!controller.signal.aborted) this.view.status("off", `connection failed: ${err.message}`);
      return;
    }
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try { message = (await response.json()).error.message; } catch { /* keep the status */ }
      this.view.status("off", message);
      this.view.event("closed", `refused: ${message}`);
      this.abort = null;
      return;
    }
    this.view.status("live", `live on ${filter}`);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let closeReason = null;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const reason = this.handle(block);
          if (reason) closeReason = reason;
        }
      }
    } catch (err) {
      if (controller.signal.aborted) return;
      closeReason = closeReason || "network";
    }
    if (controller.signal.aborted) return;
    this.abort = null;
    if (closeReason === "revoked") {
      this.view.status("off", "ended: the credentials were revoked");
      return;
    }
    // overflow, shutdown or a dropped connection: resume from the cursor, nothing is skipped
    this.view.status("wait", `reconnecting (${closeReason || "stream ended"})…`);
    this.retry = setTimeout(() => this.start(filter, since), 1000);
  }

  handle(block) {
    let event = "message";
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) {
        const comment = line.slice(1).trim();
        if (comment.startsWith("pushwire ")) this.setCursor(comment.slice(9));
        continue;
      }
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "id") id = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return null;
    let payload;
    try { payload = JSON.parse(data.join("\n")); } catch { return null; }
    if (event === "message") this.count += 1;
    if (id) this.setCursor(id);
    if (event === "message") {
      this.view.message(payload, id);
    } else if (event === "gap") {
      this.view.event("gap", `gap: messages after ${payload.requested} are gone; replay starts from the oldest kept (cursor ${payload.cursor})`);
    } else if (event === "close") {
      this.view.event("closed", `stream closed by the server: ${payload.reason} (cursor ${payload.cursor})`);
      return payload.reason;
    }
    return null;
  }

  setCursor(cursor) {
    this.cursor = cursor;
    this.view.cursor(cursor, this.count);
  }

  stop() {
    clearTimeout(this.retry);
    if (this.abort) this.abort.abort();
    this.abort = null;
  }
}

function renderLive(main) {
  const filter = el("input", { id: "tail-filter", value: sessionStorage.getItem("pushwire.filter") || "#", spellcheck: "false" });
  const since = el("select", { id: "tail-since" },
    el("option", { value: "latest", text: "now on" }),
    el("option", { value: "10m", text: "last 10 min" }),
    el("option", { value: "1h", text: "last hour" }),
    el("option", { value: "all", text: "all kept" }));
  const startButton = el("button", { id: "tail-start", class: "primary", type: "submit", text: "Tail" });
  const stopButton = el("button", { id: "tail-stop", type: "button", text: "Stop", disabled: true });
  const clearButton = el("button", { type: "button", text: "Clear" });
  const dot = el("span", { class: "dot" });
  const statusText = el("span", { id: "tail-status", text: "not tailing" });
  const cursorText = el("span", { id: "tail-cursor", class: "mono", text: "" });
  const countText = el("span", { id: "tail-count", text: "0 messages" });
  const log = el("div", { id: "tail-log", class: "tail" }, el("div", { class: "placeholder", text: "Pick a filter (MQTT syntax: + and #) and press Tail." }));
  let rows = 0;

  const view = {
    status(kind, text) {
      dot.className = `dot ${kind === "live" ? "live" : kind === "wait" ? "wait" : ""}`;
      statusText.textContent = text;
      main.dataset.tail = kind;
    },
    cursor(cursor, count) {
      cursorText.textContent = `cursor ${cursor}`;
      countText.textContent = `${count} message${count === 1 ? "" : "s"}`;
    },
    add(node) {
      if (rows === 0) log.replaceChildren();
      log.prepend(node);
      rows += 1;
      while (rows > TAIL_MAX_ROWS) { log.lastChild.remove(); rows -= 1; }
    },
    message(m, id) {
      const text = m.payload !== undefined ? m.payload : `base64: ${m.payload_base64}`;
      const flags = [`#${m.id}`, m.qos ? `qos ${m.qos}` : "", m.retain ? "retained" : ""].filter(Boolean).join(" · ");
      this.add(el("div", { class: "msg", "data-id": String(m.id) },
        el("span", { class: "time", text: fmtClock(m.time) }),
        el("span", { class: "topic", title: m.topic, text: m.topic }),
        el("span", { class: "payload", text }),
        el("span", { class: "cursor", title: id || "", text: flags })));
    },
    event(kind, text) {
      this.add(el("div", { class: `event ${kind}` }, el("span", { text: fmtClock(Date.now() / 1000) }), el("span", { text })));
    },
  };
  const tail = new Tail(view);

  const tailForm = el("form", { id: "tail-form", class: "inline" },
    el("label", {}, "Filter", filter),
    el("label", { class: "narrow" }, "From", since),
    startButton, stopButton, clearButton);
  tailForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("pushwire.filter", filter.value);
    tail.cursor = null;
    tail.count = 0;
    tail.start(filter.value.trim(), since.value);
    stopButton.disabled = false;
  });
  stopButton.addEventListener("click", () => {
    tail.stop();
    view.status("off", "stopped");
    stopButton.disabled = true;
  });
  clearButton.addEventListener("click", () => {
    rows = 0;
    log.replaceChildren(el("div", { class: "placeholder", text: "Cleared." }));
  });

  // publish form
  const topic = el("input", { id: "pub-topic", value: "demo/hello", spellcheck: "false" });
  const payload = el("textarea", { id: "pub-payload", text: "" });
  payload.value = "hello from the console";
  const contentType = el("input", { id: "pub-content-type", value: "text/plain" });
  const qos = el("select", { id: "pub-qos" }, ["0", "1", "2"].map((q) => el("option", { value: q, text: `QoS ${q}` })));
  const retain = el("input", { id: "pub-retain", type: "checkbox" });
  const result = el("div", { id: "pub-result" });
  const pubForm = el("form", { id: "pub-form" },
    el("label", {}, "Topic", topic),
    el("label", {}, "Payload", payload),
    el("div", { class: "inline" }, el("label", {}, "Content type", contentType), el("label", { class: "narrow" }, "QoS", qos)),
    el("div", { class: "inline", style: "margin-top:12px; justify-content:space-between" },
      el("label", { class: "check" }, retain, "retain"),
      el("button", { id: "pub-send", class: "primary", type: "submit", text: "Publish" })),
    result);
  pubForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const query = new URLSearchParams({ qos: qos.value });
    if (retain.checked) query.set("retain", "true");
    try {
      const reply = await api("POST", `/v1/publish/${topicPath(topic.value.trim())}?${query}`, payload.value,
        { raw: true, contentType: contentType.value || "text/plain" });
      result.replaceChildren(notice("ok", reply.id === null ? "published (not logged: $ topic)" : `published: id ${reply.id}, cursor ${reply.cursor}`));
    } catch (err) {
      result.replaceChildren(notice("bad", err.message));
    }
  });

  main.append(
    pageHead("Live tail"),
    el("div", { class: "cols" },
      el("div", { class: "card" }, tailForm,
        el("div", { class: "status-line" }, el("span", {}, dot, statusText), countText, cursorText),
        log),
      el("div", { class: "card" }, el("h3", { text: "Publish" }), pubForm)));
  return () => tail.stop();
}

// -- retained -----------------------------------------------------------------------------

function renderRetained(main) {
  const filter = el("input", { id: "retained-filter", value: "#", spellcheck: "false" });
  const out = el("div", { id: "retained-out" });
  const form = el("form", { id: "retained-form", class: "inline" },
    el("label", {}, "Filter", filter), el("button", { class: "primary", type: "submit", text: "Show" }));
  const load = async () => {
    try {
      const reply = await api("GET", `/v1/retained/${topicPath(filter.value.trim())}?limit=500`);
      out.replaceChildren(reply.more ? el("p", { class: "muted", text: `The first ${reply.messages.length} topics: narrow the filter to see others.` }) : "", table([
        { title: "Topic", render: (m) => el("span", { class: "mono", text: m.topic }) },
        { title: "Payload", render: (m) => el("span", { class: "mono", text: m.payload !== undefined ? m.payload : `base64: ${m.payload_base64}` }) },
        { title: "QoS", num: true, render: (m) => m.qos || 0 },
        { title: "Published", render: (m) => fmtTime(m.time) },
      ], reply.messages, "No retained messages under this filter.", "retained-table"));
    } catch (err) {
      out.replaceChildren(notice("bad", err.message));
    }
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  main.append(pageHead("Retained messages"),
    el("div", { class: "card" }, form, el("p", { class: "muted", text: "The last message published with the retain flag, per topic: what a new MQTT subscriber gets first." }), out));
  load();
}

// -- clients and sessions ------------------------------------------------------------------

function transportBadge(t) {
  return el("span", { class: "badge", text: t });
}

function renderClients(main) {
  const out = el("div", { id: "clients-out" });
  const count = el("span", { class: "muted", id: "clients-count" });
  main.append(pageHead("Connected clients", count), el("div", { class: "card" }, out));
  return autoRefresh(async () => {
    try {
      const [clients, total] = await apiList("/v1/admin/clients");
      const shown = total > clients.length ? ` (the oldest ${clients.length} shown)` : "";
      count.textContent = `${total} connected${shown} · refreshed every ${REFRESH_MS / 1000}s`;
      out.replaceChildren(table([
        { title: "Client id", render: (c) => el("span", { class: "mono", text: c.id }) },
        { title: "Transport", render: (c) => transportBadge(c.transport) },
        { title: "User", render: (c) => c.user || el("span", { class: "muted", text: "anonymous" }) },
        { title: "Token", render: (c) => c.token_id ? el("span", { class: "mono", text: c.token_id }) : el("span", { class: "muted", text: "—" }) },
        { title: "Address", render: (c) => el("span", { class: "mono", text: c.address }) },
        { title: "Since", render: (c) => el("span", { title: fmtTime(c.since), text: fmtAge(c.since) }) },
        { title: "Subscriptions", render: (c) => chips(c.subscriptions) },
      ], clients.map((c) => ({ ...c, __key: `${c.transport}:${c.id}` })), "No clients connected.", "clients-table"));
    } catch (err) {
      out.replaceChildren(notice("bad", err.message));
    }
  });
}

function renderSessions(main) {
  const out = el("div", { id: "sessions-out" });
  const count = el("span", { class: "muted" });
  main.append(pageHead("MQTT sessions", count), el("div", { class: "card" }, out));
  return autoRefresh(async () => {
    try {
      const [sessions, total] = await apiList("/v1/admin/sessions");
      const queued = sessions.reduce((n, s) => n + s.queued + s.inflight, 0);
      const shown = total > sessions.length ? ` (the ${sessions.length} deepest shown)` : "";
      count.textContent = `${total} sessions${shown} · ${queued} messages waiting`;
      out.replaceChildren(table([
        { title: "Client id", render: (s) => el("span", { class: "mono", text: s.client_id }) },
        { title: "Owner", render: (s) => s.owner || el("span", { class: "muted", text: "anonymous" }) },
        { title: "State", render: (s) => el("span", { class: `badge ${s.connected ? "on" : "off"}`, text: s.connected ? "connected" : `offline ${s.disconnected_at ? fmtAge(s.disconnected_at) : ""}` }) },
        { title: "Kept", render: (s) => !s.persistent ? "with the connection" : s.expiry_interval === null ? "until cleaned" : `${s.expiry_interval}s after disconnect` },
        { title: "Queued", num: true, render: (s) => s.queued },
        { title: "In flight", num: true, render: (s) => s.inflight },
        { title: "Subscriptions", render: (s) => chips(s.subscriptions) },
      ], sessions.map((s) => ({ ...s, __key: s.client_id })), "No sessions.", "sessions-table"));
    } catch (err) {
      out.replaceChildren(notice("bad", err.message));
    }
  });
}

// -- users, tokens, ACL ---------------------------------------------------------------------

function splitList(text) {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

function renderUsers(main) {
  const out = el("div", { id: "users-out" });
  const msg = el("div", { id: "users-msg" });
  const name = el("input", { id: "user-name", autocomplete: "off" });
  const password = el("input", { id: "user-password", type: "password", autocomplete: "new-password" });
  const roles = el("input", { id: "user-roles", placeholder: "admin, ops" });
  const form = el("form", { id: "user-form", class: "inline" },
    el("label", {}, "Name", name), el("label", {}, "Password", password), el("label", {}, "Roles", roles),
    el("button", { class: "primary", type: "submit", text: "Add user" }));
  const load = async () => {
    const users = await api("GET", "/v1/admin/users");
    out.replaceChildren(table([
      { title: "Name", render: (u) => el("b", { text: u.name }) },
      { title: "Roles", render: (u) => {
        const input = el("input", { value: u.roles.join(", "), "aria-label": `roles of ${u.name}` });
        const save = el("button", { class: "small", type: "button", text: "Save" });
        save.addEventListener("click", () => act(() => api("PUT", `/v1/admin/users/${encodeURIComponent(u.name)}/roles`, { roles: splitList(input.value) }), `roles of ${u.name} saved`));
        return el("div", { class: "cell-form" }, input, save);
      } },
      { title: "Created", render: (u) => fmtTime(u.created) },
      { title: "Password", render: (u) => {
        const input = el("input", { type: "password", placeholder: "new password", autocomplete: "new-password", "aria-label": `new password of ${u.name}` });
        const save = el("button", { class: "small", type: "button", text: "Set" });
        save.addEventListener("click", () => act(() => api("PUT", `/v1/admin/users/${encodeURIComponent(u.name)}/password`, { password: input.value }), `password of ${u.name} set`));
        return el("div", { class: "cell-form" }, input, save);
      } },
      { title: "", render: (u) => el("div", { class: "row-actions" }, confirmButton("Remove", () => act(() => api("DELETE", `/v1/admin/users/${encodeURIComponent(u.name)}`), `user ${u.name} removed`))) },
    ], users.map((u) => ({ ...u, __key: u.name })), "No users: the server admits anonymous clients by its policy.", "users-table"));
  };
  const act = async (call, done) => {
    try { await call(); msg.replaceChildren(notice("ok", done)); } catch (err) { msg.replaceChildren(notice("bad", err.message)); }
    await load().catch((err) => msg.replaceChildren(notice("bad", err.message)));
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(() => api("POST", "/v1/admin/users", { name: name.value.trim(), password: password.value, roles: splitList(roles.value) }), `user ${name.value.trim()} added`)
      .then(() => { password.value = ""; });
  });
  main.append(pageHead("Users"), el("div", { class: "card" }, el("h3", { text: "Add a user" }), form, msg), el("div", { class: "card" }, out));
  load().catch((err) => msg.replaceChildren(notice("bad", err.message)));
}

function tokenStatus(t) {
  const kind = t.status === "active" ? "on" : t.status === "revoked" ? "bad" : "warn";
  return el("span", { class: `badge ${kind}`, text: t.status });
}

function renderTokens(main) {
  const out = el("div", { id: "tokens-out" });
  const msg = el("div", { id: "tokens-msg" });
  const user = el("select", { id: "token-user" });
  const label = el("input", { id: "token-name", placeholder: "dashboard" });
  const expires = el("input", { id: "token-expires", value: "30d", placeholder: "12h, 30d, never" });
  const scope = el("input", { id: "token-scope", placeholder: "read:news/#, write:cmd/+  (empty: full rights)" });
  const form = el("form", { id: "token-form", class: "inline" },
    el("label", {}, "User", user), el("label", {}, "Name", label), el("label", { class: "narrow" }, "Expires", expires),
    el("label", {}, "Scope", scope), el("button", { class: "primary", type: "submit", text: "Create token" }));
  const load = async () => {
    const [tokens, users] = await Promise.all([api("GET", "/v1/admin/tokens"), api("GET", "/v1/admin/users")]);
    const chosen = user.value;
    user.replaceChildren(...users.map((u) => el("option", { value: u.name, text: u.name })));
    if (chosen) user.value = chosen;
    out.replaceChildren(table([
      { title: "Id", render: (t) => el("span", { class: "mono", text: t.id }) },
      { title: "User", render: (t) => t.user },
      { title: "Name", render: (t) => t.name || el("span", { class: "muted", text: "—" }) },
      { title: "Scope", render: (t) => t.scope.length ? chips(t.scope) : el("span", { class: "muted", text: "full rights" }) },
      { title: "Expires", render: (t) => t.expires ? fmtTime(t.expires) : "never" },
      { title: "Last used", render: (t) => t.last_used ? fmtAge(t.last_used) + " ago" : "never" },
      { title: "Status", render: tokenStatus },
      { title: "", render: (t) => t.status === "active" ? el("div", { class: "row-actions" }, confirmButton("Revoke", () => act(() => api("DELETE", `/v1/admin/tokens/${encodeURIComponent(t.id)}`), `token ${t.id} revoked: its connections are closed`))) : "" },
    ], tokens.map((t) => ({ ...t, __key: t.id })), "No tokens yet.", "tokens-table"));
  };
  const act = async (call, done) => {
    try { await call(); msg.replaceChildren(notice("ok", done)); } catch (err) { msg.replaceChildren(notice("bad", err.message)); }
    await load().catch((err) => msg.replaceChildren(notice("bad", err.message)));
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = expires.value.trim();
    const body = { user: user.value, name: label.value.trim() || null, scope: splitList(scope.value),
      expires: !text || text === "never" ? null : text };
    try {
      const created = await api("POST", "/v1/admin/tokens", body);
      msg.replaceChildren(el("div", { class: "secret", id: "token-secret" },
        el("b", { text: `Token ${created.id} for ${created.user}: copy it now, it is not shown again.` }),
        el("code", { text: created.token })));
    } catch (err) {
      msg.replaceChildren(notice("bad", err.message));
    }
    await load().catch((err) => msg.replaceChildren(notice("bad", err.message)));
  });
  main.append(pageHead("Access tokens"), el("div", { class: "card" }, el("h3", { text: "Create a token" }), form, msg), el("div", { class: "card" }, out));
  load().catch((err) => msg.replaceChildren(notice("bad", err.message)));
}

function renderAcl(main) {
  const out = el("div", { id: "acl-out" });
  const msg = el("div", { id: "acl-msg" });
  const kind = el("select", { id: "acl-kind" }, ["user", "role", "anonymous", "all"].map((k) => el("option", { value: k, text: k })));
  const subject = el("input", { id: "acl-subject", placeholder: "alice" });
  const access = el("select", { id: "acl-access" }, ["allow", "deny"].map((k) => el("option", { value: k, text: k })));
  const permission = el("select", { id: "acl-permission" }, ["read", "write", "readwrite"].map((k) => el("option", { value: k, text: k })));
  const filter = el("input", { id: "acl-filter", placeholder: "users/%u/#", spellcheck: "false" });
  kind.addEventListener("change", () => { subject.disabled = kind.value === "anonymous" || kind.value === "all"; });
  const form = el("form", { id: "acl-form", class: "inline" },
    el("label", { class: "narrow" }, "Subject", kind), el("label", {}, "Name", subject),
    el("label", { class: "narrow" }, "Access", access), el("label", { class: "narrow" }, "Permission", permission),
    el("label", {}, "Filter", filter), el("button", { class: "primary", type: "submit", text: "Add rule" }));
  const load = async () => {
    const rules = await api("GET", "/v1/admin/acl");
    out.replaceChildren(table([
      { title: "#", num: true, render: (r) => r.id },
      { title: "Subject", render: (r) => r.subject_kind === "anonymous" || r.subject_kind === "all" ? el("i", { text: r.subject_kind }) : `${r.subject_kind} ${r.subject}` },
      { title: "Access", render: (r) => el("span", { class: `badge ${r.access === "allow" ? "on" : "bad"}`, text: r.access }) },
      { title: "Permission", render: (r) => r.permission },
      { title: "Filter", render: (r) => el("span", { class: "mono", text: r.filter }) },
      { title: "", render: (r) => el("div", { class: "row-actions" }, confirmButton("Remove", () => act(() => api("DELETE", `/v1/admin/acl/${r.id}`), `rule ${r.id} removed`))) },
    ], rules.map((r) => ({ ...r, __key: String(r.id) })), "No rules: every identity the server admits may publish and subscribe to everything (but $SYS).", "acl-table"));
  };
  const act = async (call, done) => {
    try { await call(); msg.replaceChildren(notice("ok", done)); } catch (err) { msg.replaceChildren(notice("bad", err.message)); }
    await load().catch((err) => msg.replaceChildren(notice("bad", err.message)));
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = { access: access.value, permission: permission.value, filter: filter.value.trim() };
    if (kind.value === "user" || kind.value === "role") body[kind.value] = subject.value.trim();
    else body[kind.value] = true;
    act(() => api("POST", "/v1/admin/acl", body), "rule added");
  });
  main.append(pageHead("ACL rules"),
    el("div", { class: "card" }, el("h3", { text: "Add a rule" }), form,
      el("p", { class: "muted", text: "Rules apply at once, to open connections too. A deny beats an allow; the first rule switches the server from open to default deny." }), msg),
    el("div", { class: "card" }, out));
  load().catch((err) => msg.replaceChildren(notice("bad", err.message)));
}

// -- metrics ---------------------------------------------------------------------------------

const COLORS = ["#2563eb", "#16a34a", "#f59e0b", "#db2777", "#7c3aed", "#0891b2"];

// A line chart on a canvas: `series` is [{name, points: [[t, v], ...]}].
function drawChart(canvas, series, unit) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  const left = 48, right = 10, top = 10, bottom = 22;
  const all = series.flatMap((s) => s.points);
  const now = Date.now() / 1000;
  const t0 = now - (METRICS_POINTS * METRICS_MS) / 1000;
  let max = Math.max(1, ...all.map((p) => p[1]));
  const step = niceStep(max / 4);
  max = Math.ceil(max / step) * step;
  const x = (t) => left + ((t - t0) / (now - t0)) * (width - left - right);
  const y = (v) => top + (1 - v / max) * (height - top - bottom);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#6b7280";
  ctx.strokeStyle = "#eceef2";
  ctx.lineWidth = 1;
  for (let v = 0; v <= max + 1e-9; v += step) {
    ctx.beginPath();
    ctx.moveTo(left, Math.round(y(v)) + 0.5);
    ctx.lineTo(width - right, Math.round(y(v)) + 0.5);
    ctx.stroke();
    ctx.textAlign = "right";
    ctx.fillText(fmtNumber(v) + (unit || ""), left - 6, y(v) + 4);
  }
  ctx.textAlign = "center";
  for (const ago of [120, 90, 60, 30, 0]) {
    ctx.fillText(ago ? `-${ago}s` : "now", x(now - ago), height - 6);
  }
  series.forEach((s, i) => {
    ctx.strokeStyle = COLORS[i % COLORS.length];
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.points.forEach(([t, v], j) => (j ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
    ctx.stroke();
  });
}

function niceStep(raw) {
  if (raw <= 0) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const n = raw / power;
  return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * power;
}

function fmtNumber(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(1)}`;
}

function legend(names) {
  return el("div", { class: "legend" }, names.map((n, i) => el("span", {}, el("i", { style: `background:${COLORS[i % COLORS.length]}` }), n)));
}

function renderMetrics(main) {
  const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);
  const kpi = (id, label) => el("div", { class: "kpi" }, el("b", { id, text: "…" }), el("span", { text: label }));
  const charts = {
    rate: el("canvas", { class: "chart", id: "chart-rate" }),
    conns: el("canvas", { class: "chart", id: "chart-connections" }),
    queue: el("canvas", { class: "chart", id: "chart-queue" }),
    drops: el("canvas", { class: "chart", id: "chart-drops" }),
  };
  const connLegend = el("div");
  main.append(pageHead("Metrics", el("span", { class: "muted", text: "GET /v1/stats every second; full set at /metrics" })),
    el("div", { class: "kpis" }, kpi("kpi-in", "messages/s in"), kpi("kpi-out", "messages/s out"), kpi("kpi-conns", "connections"), kpi("kpi-queued", "queued in sessions")),
    el("div", { class: "grid2" },
      el("div", { class: "card" }, el("h3", { text: "Messages per second" }), charts.rate, legend(["in", "out"])),
      el("div", { class: "card" }, el("h3", { text: "Connections per transport" }), charts.conns, connLegend),
      el("div", { class: "card" }, el("h3", { text: "Queue depth (MQTT sessions)" }), charts.queue, legend(["queued + in flight"])),
      el("div", { class: "card" }, el("h3", { text: "Drops per second" }), charts.drops, legend(["dropped or refused"]))));
  const history = [];
  let stopped = false;
  let timer = null;
  const tick = async () => {
    try {
      const s = await api("GET", "/v1/stats");
      history.push(s);
      while (history.length > METRICS_POINTS + 1) history.shift();
      redraw();
    } catch (err) { /* keep the last picture; the next tick retries */ }
    if (!stopped) timer = setTimeout(tick, METRICS_MS);
  };
  const redraw = () => {
    const rates = (get) => history.slice(1).map((s, i) => {
      const prev = history[i];
      const dt = Math.max(1e-3, s.time - prev.time);
      return [s.time, Math.max(0, (get(s) - get(prev)) / dt)];
    });
    const rateIn = rates((s) => sum(s.messages_in));
    const rateOut = rates((s) => sum(s.messages_out));
    const drops = rates((s) => s.dropped);
    const last = history[history.length - 1];
    const transports = Object.keys(last.connections);
    $("#kpi-in").textContent = rateIn.length ? fmtNumber(rateIn[rateIn.length - 1][1]) : "0";
    $("#kpi-out").textContent = rateOut.length ? fmtNumber(rateOut[rateOut.length - 1][1]) : "0";
    $("#kpi-conns").textContent = String(sum(last.connections));
    $("#kpi-queued").textContent = String(last.queued);
    connLegend.replaceChildren(legend(transports));
    drawChart(charts.rate, [{ name: "in", points: rateIn }, { name: "out", points: rateOut }], "");
    drawChart(charts.conns, transports.map((t) => ({ name: t, points: history.map((s) => [s.time, s.connections[t]]) })), "");
    drawChart(charts.queue, [{ name: "queued", points: history.map((s) => [s.time, s.queued]) }], "");
    drawChart(charts.drops, [{ name: "drops", points: drops }], "");
    main.dataset.samples = String(history.length);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

registerPage("live", { title: "Live tail", render: renderLive });
registerPage("retained", { title: "Retained", render: renderRetained });
registerPage("clients", { title: "Clients", admin: true, render: renderClients });
registerPage("sessions", { title: "Sessions", admin: true, render: renderSessions });
registerPage("metrics", { title: "Metrics", admin: true, render: renderMetrics });
registerPage("users", { title: "Users", admin: true, render: renderUsers });
registerPage("tokens", { title: "Tokens", admin: true, render: renderTokens });
registerPage("acl", { title: "ACL rules", admin: true, render: renderAcl });

// -- login -----------------------------------------------------------------------------------

let loginMode = "password";

function setLoginMode(mode) {
  loginMode = mode;
  for (const tab of document.querySelectorAll("[data-login]")) tab.classList.toggle("active", tab.dataset.login === mode);
  for (const pane of document.querySelectorAll("[data-login-pane]")) pane.hidden = pane.dataset.loginPane !== mode;
}

function basic(user, password) {
  // UTF-8, then base64 (btoa takes bytes as a binary string)
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

async function login(ev) {
  ev.preventDefault();
  const error = $("#login-error");
  error.textContent = "";
  const header = loginMode === "token"
    ? `Bearer ${$("#login-token").value.trim()}`
    : basic($("#login-user").value.trim(), $("#login-password").value);
  try {
    me = await api("GET", "/v1/me", undefined, { auth: header });
  } catch (err) {
    error.textContent = err.message || "login failed";
    return;
  }
  sessionStorage.setItem(STORE_KEY, header);
  $("#login-password").value = "";
  $("#login-token").value = "";
  enter();
}

function enter() {
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#who-user").textContent = me.user || "anonymous";
  const badge = $("#who-badge");
  badge.textContent = me.admin ? "admin" : me.token_id ? "token" : me.user ? "user" : "no login";
  badge.className = `badge ${me.admin ? "admin" : ""}`;
  for (const node of document.querySelectorAll(".admin-only")) node.hidden = !me.admin;
  show((location.hash || "#live").slice(1));
}

function logout(message) {
  sessionStorage.removeItem(STORE_KEY);
  me = null;
  if (current.cleanup) current.cleanup();
  current = { name: null, cleanup: null };
  $("#main").replaceChildren();
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
}

async function boot() {
  for (const tab of document.querySelectorAll("[data-login]")) tab.addEventListener("click", () => setLoginMode(tab.dataset.login));
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", () => logout(""));
  window.addEventListener("hashchange", () => { if (me) show(location.hash.slice(1)); });
  if (authHeader() !== null) {
    try {
      me = await api("GET", "/v1/me", undefined, { auth: authHeader() || "none" });
      enter();
      return;
    } catch { sessionStorage.removeItem(STORE_KEY); }
  }
  $("#login").hidden = false;
  $("#login-user").focus();
  // the server's anonymous policy may admit this browser (e.g. no users yet, on localhost)
  try {
    const anonymous = await api("GET", "/v1/me", undefined, { auth: "none" });
    $("#login-anonymous").hidden = false;
    $("#login-anonymous").addEventListener("click", () => {
      sessionStorage.setItem(STORE_KEY, "");
      me = anonymous;
      enter();
    });
  } catch { /* credentials needed */ }
}

// after every script of the page ran: gateway.js registers its pages before the first show()
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
else boot();
