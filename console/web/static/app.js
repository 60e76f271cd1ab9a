// Sharpeye console: a small client of the HTTP API, logged in with the
// session cookie. No framework, no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
let me = null;

async function call(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  if (res.status === 401 && path !== "/api/v1/auth/login") {
    showLogin();
    throw new Error("not logged in");
  }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    throw new Error((data && data.error && data.error.message) || res.status + " " + res.statusText);
  }
  return data;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

const fmtTime = (t) => (t ? new Date(t).toLocaleString() : "—");

function showLogin() {
  me = null;
  $("#app").hidden = true;
  $("#login").hidden = false;
}

async function start() {
  try {
    me = await call("GET", "/api/v1/auth/me");
  } catch {
    return showLogin();
  }
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#who").textContent = `${me.display_name || me.username} · ${me.role}${me.region ? " · " + me.region : ""}`;
  for (const a of document.querySelectorAll("#nav a[data-role]")) a.hidden = a.dataset.role !== me.role;
  route();
}

const views = {
  overview: loadOverview,
  cameras: loadCameras,
  users: loadUsers,
  tokens: loadTokens,
  audit: loadAudit,
};

function route() {
  if (!me) return;
  let name = (location.hash.match(/^#\/(\w+)/) || [])[1] || "overview";
  if (!views[name]) name = "overview";
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-" + name;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === name);
  views[name]().catch((e) => console.error(e));
}

async function loadOverview() {
  const sys = await call("GET", "/api/v1/system");
  const grid = $("#status");
  grid.replaceChildren(...sys.components.map((c) =>
    el("div", { class: "tile " + (c.ready ? "ok" : "bad") },
      el("div", { class: "name" }, c.name),
      el("div", { class: "state" }, c.ready ? "ready" : c.reason || "not ready"))));
  const facts = [["Version", sys.version], ["Roles", sys.roles.join(", ")], ["Case database", sys.casedb],
    ["Started", fmtTime(sys.started_at)], ["Signed in as", `${me.username} (${me.role}, via ${me.via})`],
    ["Region", me.region || "whole jurisdiction 全辖区"], ["Department", me.department || "—"]];
  $("#node").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

const STATE_NAMES = { online: "online 在线", offline: "offline 离线", error: "error 故障", connecting: "connecting 连接中", idle: "idle 待机", disabled: "disabled 停用" };

async function loadCameras() {
  const { cameras } = await call("GET", "/api/v1/cameras");
  const online = cameras.filter((c) => c.status.state === "online").length;
  $("#camera-summary").textContent = `${online} / ${cameras.length} online`;
  $("#cameras").replaceChildren(...cameras.map((c) => {
    const st = c.status;
    const video = st.width ? `${st.codec} ${st.width}×${st.height} · ${Math.round(st.frame_rate)} fps` : "—";
    const rate = st.bitrate ? `${(st.bitrate / 1e6).toFixed(2)} Mb/s` : "—";
    const loss = st.rtp_packets_received ? `${(100 * st.rtp_packets_lost / (st.rtp_packets_received + st.rtp_packets_lost)).toFixed(2)} %` : "—";
    return el("tr", {},
      el("td", {}, el("div", {}, c.name || c.id), el("div", { class: "muted small" }, c.id)),
      el("td", {}, `${c.region || "—"}${c.grid ? " · " + c.grid : ""}`),
      el("td", {}, el("span", { class: "badge state-" + st.state, title: st.reason || "" }, STATE_NAMES[st.state] || st.state)),
      el("td", {}, video), el("td", {}, rate), el("td", {}, loss), el("td", {}, String(c.stream.consumers)),
      el("td", {}, el("a", { href: "/play/" + encodeURIComponent(c.id), target: "_blank" }, "Play 播放")));
  }));
}

const ROLES = ["admin", "commander", "clerk", "analyst", "handler", "supervisor", "grid_worker", "leader", "service"];

async function loadUsers() {
  const sel = $("#role-select");
  if (!sel.options.length) sel.append(...ROLES.map((r) => el("option", { value: r }, r)));
  const { users } = await call("GET", "/api/v1/users");
  $("#users").replaceChildren(...users.map((u) => el("tr", {},
    el("td", {}, u.username), el("td", {}, u.display_name), el("td", {}, u.role),
    el("td", {}, u.region || "—"), el("td", {}, u.department || "—"),
    el("td", {}, el("span", { class: "badge" + (u.disabled ? " off" : "") }, u.disabled ? "disabled" : "active")),
    el("td", {}, u.disabled || u.id === me.id ? "" : el("button", { class: "danger", onclick: async () => {
      if (!confirm(`Disable ${u.username}? Their sessions and tokens end now.`)) return;
      await call("DELETE", "/api/v1/users/" + u.id); loadUsers();
    } }, "Disable")))));
}

async function loadTokens() {
  const { tokens } = await call("GET", "/api/v1/tokens");
  $("#tokens").replaceChildren(...tokens.map((t) => el("tr", {},
    el("td", {}, t.name), el("td", {}, el("code", {}, t.prefix + "…")), el("td", {}, fmtTime(t.created_at)),
    el("td", {}, t.expires_at ? fmtTime(t.expires_at) : "never"), el("td", {}, fmtTime(t.last_used)),
    el("td", {}, el("span", { class: "badge" + (t.revoked ? " off" : "") }, t.revoked ? "revoked" : "active")),
    el("td", {}, t.revoked ? "" : el("button", { class: "danger", onclick: async () => {
      if (!confirm(`Revoke token "${t.name}"?`)) return;
      await call("DELETE", "/api/v1/tokens/" + t.id); loadTokens();
    } }, "Revoke")))));
}

async function loadAudit() {
  const { entries } = await call("GET", "/api/v1/audit?limit=200");
  $("#audit").replaceChildren(...entries.map((e) => el("tr", {},
    el("td", {}, fmtTime(e.at)), el("td", {}, e.actor), el("td", {}, e.action),
    el("td", {}, e.target), el("td", {}, e.remote), el("td", {}, e.detail))));
}

function formData(form) {
  const o = {};
  for (const [k, v] of new FormData(form)) if (v !== "") o[k] = v;
  return o;
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#login-error").textContent = "";
    try {
      await call("POST", "/api/v1/auth/login", formData(ev.target));
      ev.target.reset();
      start();
    } catch (e) {
      $("#login-error").textContent = e.message;
    }
  });
  $("#logout").addEventListener("click", async () => {
    await call("POST", "/api/v1/auth/logout").catch(() => {});
    showLogin();
  });
  $("#user-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#user-error").textContent = "";
    try {
      await call("POST", "/api/v1/users", formData(ev.target));
      ev.target.reset();
      loadUsers();
    } catch (e) {
      $("#user-error").textContent = e.message;
    }
  });
  $("#token-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#token-error").textContent = "";
    try {
      const t = await call("POST", "/api/v1/tokens", formData(ev.target));
      const box = $("#token-secret");
      box.textContent = `Copy it now, it is shown only once: ${t.token}`;
      box.hidden = false;
      ev.target.reset();
      loadTokens();
    } catch (e) {
      $("#token-error").textContent = e.message;
    }
  });
  window.addEventListener("hashchange", route);
  start();
});
