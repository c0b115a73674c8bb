// pushwire console: the device gateway's pages (apps, devices, push status), for admins.
//
// Registered through the console's hook (console.js `pushwireConsole.registerPage`); every call
// is the admin API of docs/gateway.md. Like the rest of the console: data from the network is
// shown with textContent only, secrets (an app's API key) are shown once and never stored.
"use strict";

(() => {
  const { registerPage, api, el, table, chips, confirmButton, notice, pageHead, autoRefresh, fmtTime, fmtAge } =
    window.pushwireConsole;

  const enc = encodeURIComponent;
  const muted = (text) => el("span", { class: "muted", text });
  const mono = (text) => el("span", { class: "mono", text });
  // a long identifier cut for the table; the whole value stays in the tooltip
  const short = (text, keep = 14) => el("span", { class: "mono nowrap", title: text, text: text.length > keep + 1 ? `${text.slice(0, keep)}…` : text });
  const seen = (unix) => (unix ? `${fmtAge(unix)} ago` : "never");

  // Runs an admin call, reports it in `msg`, then reloads the page's data.
  function actor(msg, load) {
    return async (call, done) => {
      try { await call(); msg.replaceChildren(notice("ok", done)); } catch (err) { msg.replaceChildren(notice("bad", err.message)); }
      await load().catch((err) => msg.replaceChildren(notice("bad", err.message)));
    };
  }

  // -- apps ---------------------------------------------------------------------------------

  function webhooks(hooks) {
    const receipt = hooks.receipt_url ? mono(hooks.receipt_url) : muted("no receipt webhook");
    const wake = hooks.wake
      ? el("span", {}, mono(hooks.wake.url), muted(` after ${hooks.wake.after_seconds}s`))
      : muted("no wake webhook");
    return el("div", { class: "stack" }, el("div", {}, "receipts: ", receipt), el("div", {}, "wake: ", wake));
  }

  function renderApps(main) {
    const out = el("div", { id: "apps-out" });
    const msg = el("div", { id: "apps-msg" });
    const name = el("input", { id: "app-name", placeholder: "mail", spellcheck: "false" });
    const form = el("form", { id: "app-form", class: "inline" },
      el("label", {}, "Name", name), el("button", { class: "primary", type: "submit", text: "Create app" }));
    const load = async () => {
      const { apps } = await api("GET", "/v1/admin/apps");
      // keys come with one app at a time
      const detailed = await Promise.all(apps.map((a) => api("GET", `/v1/admin/apps/${enc(a.app_id)}`)));
      out.replaceChildren(table([
        { title: "Name", render: (a) => a.name },
        { title: "App id", render: (a) => mono(a.app_id) },
        { title: "Created", render: (a) => fmtTime(a.created) },
        { title: "Webhooks", render: (a) => webhooks(a.webhooks) },
        { title: "ES256 keys", render: (a) => keyList(a) },
        { title: "", render: (a) => el("div", { class: "row-actions" }, confirmButton("Remove", () => act(() => api("DELETE", `/v1/admin/apps/${enc(a.app_id)}`), `app ${a.name} removed: its key and tokens stop working`))) },
      ], detailed.map((a) => ({ ...a, __key: a.app_id })), "No apps yet: create one to push to devices.", "apps-table"));
    };
    const keyList = (a) => {
      if (!a.keys.length) return muted("API key only");
      return el("div", { class: "stack" }, a.keys.map((k) => el("div", { class: "row-actions", "data-kid": k.kid },
        mono(k.kid), el("span", { class: `badge ${k.status === "active" ? "on" : "off"}`, text: k.status }),
        k.status === "active" ? confirmButton("Revoke", () => act(() => api("DELETE", `/v1/admin/apps/${enc(a.app_id)}/keys/${enc(k.kid)}`), `key ${k.kid} revoked`)) : "")));
    };
    const act = actor(msg, load);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const created = await api("POST", "/v1/admin/apps", { name: name.value.trim() });
        name.value = "";
        msg.replaceChildren(el("div", { class: "secret", id: "app-key" },
          el("b", { text: `App ${created.name} (${created.app_id}): copy its API key now, it is not shown again.` }),
          el("code", { text: created.api_key })));
      } catch (err) {
        msg.replaceChildren(notice("bad", err.message));
      }
      await load().catch((err) => msg.replaceChildren(notice("bad", err.message)));
    });
    main.append(pageHead("Apps"),
      el("div", { class: "card" }, el("h3", { text: "Create an app" }), form,
        el("p", { class: "muted", text: "An app's servers push with its API key (Authorization: Bearer) or an ES256 JWT signed by one of its keys (pushwire app key add). Webhooks are set with PUT /v1/apps/{id}/webhooks." }), msg),
      el("div", { class: "card" }, out));
    load().catch((err) => msg.replaceChildren(notice("bad", err.message)));
  }

  // -- devices ------------------------------------------------------------------------------

  function renderDevices(main) {
    const out = el("div", { id: "devices-out" });
    const msg = el("div", { id: "devices-msg" });
    const load = async () => {
      const [{ devices }, { apps }] = await Promise.all([api("GET", "/v1/admin/devices"), api("GET", "/v1/admin/apps")]);
      const names = Object.fromEntries(apps.map((a) => [a.app_id, a.name]));
      devices.sort((a, b) => (b.online - a.online) || ((b.last_seen || 0) - (a.last_seen || 0)) || (b.created - a.created));
      const online = devices.filter((d) => d.online).length;
      main.dataset.devices = String(devices.length);
      out.replaceChildren(
        el("p", { class: "muted", id: "devices-count", text: `${devices.length} registered, ${online} online` }),
        table([
          { title: "Device", render: (d) => mono(d.device_id) },
          { title: "Status", render: (d) => el("span", { class: `badge ${d.online ? "on" : "off"}`, "data-status": d.online ? "online" : "offline", text: d.online ? "online" : "offline" }) },
          { title: "Last seen", render: (d) => (d.online ? "now" : el("span", { title: fmtTime(d.last_seen) }, seen(d.last_seen))) },
          { title: "Registered", render: (d) => fmtTime(d.created) },
          { title: "Tokens (app: token)", render: (d) => d.tokens.length ? el("div", { class: "stack" }, d.tokens.map((t) => el("div", {}, el("span", { title: t.app, text: names[t.app] || t.app }), ": ", short(t.token)))) : muted("none") },
          { title: "", render: (d) => el("div", { class: "row-actions" }, confirmButton("Remove", () => act(() => api("DELETE", `/v1/admin/devices/${enc(d.device_id)}`), `device ${d.device_id} removed: its connections are closed`))) },
        ], devices.map((d) => ({ ...d, __key: d.device_id })), "No devices yet: a device registers with POST /v1/devices.", "devices-table"));
    };
    const act = actor(msg, load);
    main.append(pageHead("Devices", muted("refreshed every 2 s")),
      el("div", { class: "card" }, msg, out));
    return autoRefresh(() => load().catch((err) => msg.replaceChildren(notice("bad", err.message))));
  }

  // -- push status --------------------------------------------------------------------------

  const STATE_BADGE = { delivered: "on", queued: "warn", expired: "off", collapsed: "off", unregistered: "bad", dropped: "bad" };

  function stateBadge(state) {
    return el("span", { class: `badge ${STATE_BADGE[state] || ""}`, "data-state": state, text: state });
  }

  function outcome(p) {
    if (p.state === "delivered") return el("span", {}, `${fmtTime(p.delivered_at)} `, muted(p.connection || ""));
    return p.reason ? muted(p.reason) : muted("—");
  }

  function renderPushes(main) {
    const msg = el("div", { id: "pushes-msg" });
    const found = el("div", { id: "push-record" });
    const out = el("div", { id: "pushes-out" });
    const pushId = el("input", { id: "push-id", placeholder: "push id (a UUID)", spellcheck: "false" });
    const lookup = el("form", { id: "push-lookup", class: "inline" },
      el("label", {}, "Push id", pushId), el("button", { class: "primary", type: "submit", text: "Look up" }));
    const app = el("select", { id: "pushes-app" }, el("option", { value: "", text: "all apps" }));
    const device = el("input", { id: "pushes-device", placeholder: "all devices", spellcheck: "false" });
    const limit = el("select", { id: "pushes-limit" }, ["20", "50", "200"].map((n) => el("option", { value: n, text: n })));
    limit.value = "50";
    const filters = el("form", { id: "pushes-filter", class: "inline" },
      el("label", {}, "App", app), el("label", {}, "Device", device), el("label", { class: "narrow" }, "Show", limit));

    lookup.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const id = pushId.value.trim();
      if (!id) return;
      try {
        const p = await api("GET", `/v1/admin/pushes/${enc(id)}`);
        found.replaceChildren(el("dl", { class: "record" },
          ["id", "state", "app", "device_id", "token", "priority", "created", "updated", "delivered_at", "connection", "reason"]
            .filter((k) => p[k] !== undefined && p[k] !== null)
            .flatMap((k) => [el("dt", { text: k }),
              el("dd", {}, k === "state" ? stateBadge(p.state) : ["created", "updated", "delivered_at"].includes(k) ? fmtTime(p[k]) : mono(String(p[k])))])));
      } catch (err) {
        found.replaceChildren(notice("bad", err.message));
      }
    });

    let apps = [];
    const load = async () => {
      const params = new URLSearchParams({ limit: limit.value });
      if (app.value) params.set("app", app.value);
      if (device.value.trim()) params.set("device", device.value.trim());
      const [list, appList] = await Promise.all([api("GET", `/v1/admin/pushes?${params}`), api("GET", "/v1/admin/apps")]);
      if (appList.apps.map((a) => a.app_id).join() !== apps.map((a) => a.app_id).join()) {
        apps = appList.apps;
        const chosen = app.value;
        app.replaceChildren(el("option", { value: "", text: "all apps" }), ...apps.map((a) => el("option", { value: a.app_id, text: `${a.name} (${a.app_id})` })));
        app.value = apps.some((a) => a.app_id === chosen) ? chosen : "";
      }
      const names = Object.fromEntries(apps.map((a) => [a.app_id, a.name]));
      out.replaceChildren(table([
        { title: "Push", render: (p) => short(p.id, 13) },
        { title: "State", render: (p) => stateBadge(p.state) },
        { title: "App", render: (p) => names[p.app] || mono(p.app) },
        { title: "Device", render: (p) => mono(p.device_id) },
        { title: "Priority", num: true, render: (p) => p.priority },
        { title: "Sent", render: (p) => el("span", { class: "nowrap", text: fmtTime(p.created) }) },
        { title: "Delivered / reason", render: outcome },
      ], list.pushes.map((p) => ({ ...p, __key: p.id })), "No push records: pushes show here while they wait and for push_record_ttl after their end.", "pushes-table"));
    };
    const reload = () => load().catch((err) => msg.replaceChildren(notice("bad", err.message)));
    app.addEventListener("change", reload);
    limit.addEventListener("change", reload);
    device.addEventListener("change", reload);
    filters.addEventListener("submit", (ev) => { ev.preventDefault(); reload(); });

    main.append(pageHead("Push status", muted("refreshed every 2 s")),
      el("div", { class: "card" }, el("h3", { text: "Look up a push" }), lookup, found),
      el("div", { class: "card" }, el("h3", { text: "Recent pushes" }), filters, msg, out));
    return autoRefresh(reload);
  }

  // the nav group's heading, then one link per page (console.js hides .admin-only for others)
  document.getElementById("nav-extra").append(el("div", { class: "nav-group admin-only", text: "Device gateway" }));
  registerPage("apps", { title: "Apps", admin: true, nav: true, render: renderApps });
  registerPage("devices", { title: "Devices", admin: true, nav: true, render: renderDevices });
  registerPage("pushes", { title: "Push status", admin: true, nav: true, render: renderPushes });
})();
