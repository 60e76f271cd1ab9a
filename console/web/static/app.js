// Sharpeye console: a small client of the HTTP API, logged in with the
// session cookie. No framework, no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
let me = null;
let view = { name: "" }; // the view shown, and its argument

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
    const e = data && data.error;
    const err = new Error((e && e.message) || res.status + " " + res.statusText);
    err.status = res.status;
    err.code = e && e.code;
    err.field = e && e.field;
    throw err;
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
  closeStream();
  stopWall();
  an.built = false; // the next user may see other cards
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
  // data-role lists the roles a link is for (the server decides what they may see).
  for (const a of document.querySelectorAll("#nav a[data-role]")) a.hidden = !a.dataset.role.split(",").includes(me.role);
  $("#case-new-link").hidden = !INTAKE_ROLES.includes(me.role);
  openStream();
  route();
}

const views = {
  overview: loadOverview,
  cases: loadCases,
  case: loadCase,
  "case-new": loadCaseNew,
  cameras: loadCameras,
  users: loadUsers,
  tokens: loadTokens,
  audit: loadAudit,
  analytics: loadAnalytics,
};

// route shows the view the hash names: #/name, #/cases/new, #/cases/{id},
// with an optional ?query (filter presets for #/cases).
function route() {
  if (!me) return;
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  let name = parts[0] || "overview", arg;
  if (name === "cases" && parts[1] === "new") name = "case-new";
  else if (name === "cases" && parts[1]) [name, arg] = ["case", decodeURIComponent(parts[1])];
  if (!views[name]) name = "overview";
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-" + name;
  const tab = name.startsWith("case") ? "cases" : name;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === tab);
  view = { name, arg };
  views[name](arg, new URLSearchParams(query || "")).catch((e) => console.error(e));
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
  loadCaseCounts().catch(() => { $("#case-counts-box").hidden = true; });
  cameraCountsOff = false;
  refreshCameraCounts();
}

// The camera tiles of the overview follow the cameras' states while it
// is shown: looked at again every 10 s and when the page is shown again,
// one request at a time; a node that answers 403 or 404 (no ingest role
// here, or no right to the cameras) is not asked again until the
// overview is opened anew.
let cameraCountsBusy = false, cameraCountsOff = false;
async function refreshCameraCounts() {
  if (!me || view.name !== "overview" || document.hidden || cameraCountsBusy || cameraCountsOff) return;
  cameraCountsBusy = true;
  try {
    await loadCameraCounts();
  } catch (e) {
    $("#camera-counts-box").hidden = true;
    if (e.status === 403 || e.status === 404) cameraCountsOff = true;
  } finally {
    cameraCountsBusy = false;
  }
}
setInterval(refreshCameraCounts, 10000);
document.addEventListener("visibilitychange", refreshCameraCounts);

// loadCameraCounts fills the overview's tiles from the cameras' numbers
// by state (not the whole list: a city has tens of thousands).
async function loadCameraCounts() {
  const { summary } = await call("GET", "/api/v1/cameras?summary=true");
  const n = (s) => summary.states[s] || 0;
  const tiles = [
    ["online", STATE_NAMES.online, n("online")],
    ["offline", STATE_NAMES.offline, n("offline")],
    ["error", STATE_NAMES.error, n("error")],
    ["other", "other 其他", summary.total - n("online") - n("offline") - n("error")],
    ["all", "total 总数", summary.total],
  ];
  $("#camera-counts").replaceChildren(...tiles.map(([cls, name, count]) =>
    el("a", { class: "tile count cameras-" + cls + (count ? "" : " zero"), href: "#/cameras",
      title: cls === "other" ? "connecting, idle (on demand) or disabled 连接中、待机、停用" : undefined },
    el("div", { class: "name" }, name), el("div", { class: "state" }, String(count)))));
  $("#camera-counts-box").hidden = false;
}

// inState is how many of cameras are in state s.
const inState = (cameras, s) => cameras.filter((c) => c.status.state === s).length;

const STATE_NAMES = { online: "online 在线", offline: "offline 离线", error: "error 故障", connecting: "connecting 连接中", idle: "idle 待机", disabled: "disabled 停用" };

async function loadCameras() {
  const { cameras } = await call("GET", "/api/v1/cameras");
  $("#camera-summary").textContent = `${inState(cameras, "online")} / ${cameras.length} online`;
  $("#cameras").replaceChildren(...cameras.map((c) => {
    const st = c.status;
    const video = st.width ? `${st.codec} ${st.width}×${st.height} · ${Math.round(st.frame_rate)} fps` : "—";
    const rate = st.bitrate ? `${(st.bitrate / 1e6).toFixed(2)} Mb/s` : "—";
    const loss = st.rtp_packets_received ? `${(100 * st.rtp_packets_lost / (st.rtp_packets_received + st.rtp_packets_lost)).toFixed(2)} %` : "—";
    return el("tr", {},
      el("td", {}, el("div", {}, c.name || c.id), el("div", { class: "muted small" }, c.id)),
      el("td", {}, `${c.region || "—"}${c.grid ? " · " + c.grid : ""}`),
      el("td", {}, el("span", { class: "badge state-" + st.state, title: st.reason || "" }, STATE_NAMES[st.state] || st.state),
        pulledFrom(c)),
      el("td", {}, video), el("td", {}, rate), el("td", {}, loss), el("td", { title: `${c.stream.consumers} consumers in all, detectors included 含检测器` }, String(c.stream.watching)),
      el("td", {}, el("a", { href: "/play/" + encodeURIComponent(c.id), target: "_blank" }, "Play 播放")));
  }));
}

// pulledFrom says, in a cluster of ingest nodes, which node pulls the
// camera from the camera: this one, or another (whose re-serve this node
// pulls it from while someone watches here), or none (the last owner
// named stopped confirming it).
function pulledFrom(c) {
  if (!c.owner) return "";
  const node = c.owner.replace(/^rtsp:\/\//, "");
  const text = {
    camera: "pulled here 本节点拉流",
    node: `via ${node} 经由`,
  }[c.pulled] || `no owner (last ${node}) 无节点拉流`;
  return el("div", { class: "muted small", title: "owner " + node }, text);
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

// ---- Cases: the queue, the case page and manual intake ----

const CASE_STATES = [["registered", "受理登记"], ["assessed", "研判"], ["dispatched", "分流交办"], ["accepted", "签收"],
  ["resolved", "办结"], ["followed_up", "回访"], ["closed", "销号"]];
const STATE_CN = Object.fromEntries(CASE_STATES);
const OPEN_STATES = CASE_STATES.map(([s]) => s).filter((s) => s !== "closed").join(",");
const COLOURS = [["red", "红"], ["orange", "橙"], ["yellow", "黄"]];
const COLOUR_CN = Object.fromEntries(COLOURS);
const ELEMENTS = [["when", "何时"], ["where", "何地"], ["who", "何人"], ["what", "何事"], ["circumstances", "何情"], ["cause", "何故"], ["object", "何物"]];
const SOURCE_CN = { alert: "告警", window: "窗口", hotline: "热线", grid: "网格", police: "警情" };
const LEVEL_CN = { village: "村（社区）", township: "乡镇（街道）", county: "县" };
const OUTCOME_CN = { mediated: "调解成功", handled: "处置完毕", arbitration: "仲裁", administrative: "行政处理", court: "诉讼", referred: "移交", unsubstantiated: "不属实" };
const SATISFACTION_CN = { satisfied: "满意", basically: "基本满意", dissatisfied: "不满意" };
const EVIDENCE_CN = { event: "事件", snapshot: "截图", reading: "读数", readings: "前后读数", url: "链接", clip: "录像", document: "文件", photo: "照片" };
const TASK_CN = { open: "待签收", accepted: "办理中", done: "已完成" };
const TIMER_CN = { remind: "到期提醒", urge: "催办", supervise: "督办", escalate: "提级", warn: "风险提示函", verify: "不过夜核查", readings: "前后读数" };
const STAGE_CN = { assess: "研判", accept: "签收", resolve: "办结", follow_up: "回访", task: "子任务" };
const ACTION_CN = {
  assess: "研判", dispatch: "分流交办", accept: "签收", resolve: "办结", follow_up: "回访", close: "销号",
  dismiss: "核销", reopen: "重新办理", reassign: "改派", comment: "备注", edit: "编辑", urge: "催办", supervise: "督办",
  escalate: "提级", merge: "合并", unmerge: "取消合并", split: "拆分交办", task_accept: "任务签收", task_done: "任务办结",
  attach: "补充证据", registered: "受理登记", merged_in: "并入案件", merged_out: "并入他案", merge_suggested: "疑似同案",
  reminded: "到期提醒", urged: "超时催办", supervised: "超时督办", escalated: "超时提级", risk_warning: "风险提示",
  alert_repeated: "告警重复", alert_suppressed: "告警抑制", verify_overdue: "未当日核查",
  readings_none: "无前后读数", readings_failed: "读数未取到",
};
// Who may register cases (the server decides; this only hides the link).
const INTAKE_ROLES = ["clerk", "commander", "grid_worker", "admin"];

const bi = (cn, en) => el("span", {}, cn + " ", el("span", { class: "en" }, en));

let ref = null; // GET /api/v1/playbooks
async function loadRef() {
  if (!ref) ref = await call("GET", "/api/v1/playbooks");
  return ref;
}
const playbook = (cat) => (ref && ref.playbooks.find((p) => p.category === cat)) || null;
const catName = (cat) => (playbook(cat) ? playbook(cat).name : cat || "—");
function deptName(id) {
  const d = ref && ref.departments.find((d) => d.id === id);
  return d ? d.name : id;
}
const deptOptions = () => (ref ? ref.departments.map((d) => [d.id, `${d.name} ${d.id}`]) : []);

function colourBadge(c) {
  if (!c) return el("span", { class: "badge colour colour-none" }, bi("未研判", "unassessed"));
  return el("span", { class: "badge colour colour-" + c }, bi(COLOUR_CN[c] || c, c));
}
const stateBadge = (s) => el("span", { class: "badge cstate cs-" + s }, bi(STATE_CN[s] || s, s));
const overdueBadge = () => el("span", { class: "badge overdue-badge" }, bi("超期", "overdue"));

// fmtLeft says how long until (or since) a deadline.
function fmtLeft(t) {
  const ms = new Date(t) - Date.now();
  const s = Math.floor(Math.abs(ms) / 1000), m = Math.floor(s / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
  const span = d ? `${d}d ${h % 24}h` : h ? `${h}h ${m % 60}m` : `${m}m ${s % 60}s`;
  return ms >= 0 ? `剩 ${span} left` : `超 ${span} overdue`;
}
function countdown(t) {
  if (!t) return el("span", { class: "muted" }, "—");
  const e = el("span", { class: "countdown", "data-deadline": t, title: fmtTime(t) }, fmtLeft(t));
  e.classList.toggle("late", new Date(t) < Date.now());
  return e;
}
function tickCountdowns() {
  for (const e of document.querySelectorAll(".countdown")) {
    e.textContent = fmtLeft(e.dataset.deadline);
    e.classList.toggle("late", new Date(e.dataset.deadline) < Date.now());
  }
}

const caseHref = (id) => "#/cases/" + encodeURIComponent(id);
const regionText = (c) => `${c.region || "全辖区"}${c.grid ? " · " + c.grid : ""}`;

// ---- The queue ----

const queue = { loaded: false, filter: {}, next: "", rows: new Map() };
const colourSeen = new Map(); // case id → last colour seen, for the red toast

function readFilter() {
  const f = {};
  for (const [k, v] of new FormData($("#case-filter"))) if (v !== "") f[k] = v;
  return f;
}

function matchesFilter(c) {
  const f = queue.filter;
  if (f.state && !f.state.split(",").includes(c.state)) return false;
  if (f.colour && c.colour !== f.colour) return false;
  if (f.category && c.category !== f.category) return false;
  if (f.overdue && !c.overdue) return false;
  if (f.q) {
    const q = f.q.toLowerCase();
    if (!(c.title || "").toLowerCase().includes(q) && !(c.number || "").toLowerCase().includes(q)) return false;
  }
  return true;
}

function caseRow(c) {
  const flags = [];
  if (c.supervised) flags.push(el("span", { class: "badge flag" }, "督办 supervised"));
  if (c.urge_count) flags.push(el("span", { class: "badge flag" }, `催办 urged ×${c.urge_count}`));
  if (c.escalations) flags.push(el("span", { class: "badge flag" }, `提级 escalated ×${c.escalations}`));
  if (c.alert_count > 1) flags.push(el("span", { class: "badge flag" }, `告警 alerts ×${c.alert_count}`));
  if (c.merged_into) flags.push(el("span", { class: "badge flag" }, "已合并 merged"));
  let dept = c.department ? deptName(c.department) : "—";
  if (c.co_departments && c.co_departments.length) dept += ` +${c.co_departments.length}`;
  return el("tr", { "data-id": c.id, class: "case-row" + (c.overdue ? " overdue" : ""), onclick: (ev) => {
    if (!ev.target.closest("a")) location.hash = caseHref(c.id);
  } },
    el("td", {}, colourBadge(c.colour), el("div", { class: "muted small" }, c.colour ? `risk ${c.risk}` : "")),
    el("td", {}, el("a", { href: caseHref(c.id), class: "case-no" }, c.number)),
    el("td", {}, el("div", { class: "case-title" }, c.title), flags.length ? el("div", { class: "flags" }, ...flags) : ""),
    el("td", {}, catName(c.category).replace(/（.*$/, ""), el("div", { class: "muted small" }, `${SOURCE_CN[c.source] || ""} ${c.source || ""}`)),
    el("td", {}, stateBadge(c.state)),
    el("td", {}, regionText(c)),
    el("td", {}, dept),
    el("td", {}, c.overdue ? overdueBadge() : "", " ", c.state === "closed" ? el("span", { class: "muted" }, "—") : countdown(c.deadline)),
    el("td", { class: "small muted" }, fmtTime(c.updated)));
}

function updateQueueSummary() {
  const n = queue.rows.size;
  const red = [...queue.rows.values()].filter((c) => c.colour === "red").length;
  const late = [...queue.rows.values()].filter((c) => c.overdue).length;
  $("#case-summary").textContent = `${n}${queue.next ? "+" : ""} 条 shown · ${red} 红 red · ${late} 超期 overdue`;
  $("#cases-empty").hidden = n > 0;
  $("#cases-more").hidden = !queue.next;
}

async function fetchCases(cursor) {
  const q = new URLSearchParams(queue.filter);
  q.set("limit", "50");
  if (cursor) q.set("cursor", cursor);
  return call("GET", "/api/v1/cases?" + q);
}

async function loadCases(_, params) {
  await loadRef().catch(() => {});
  fillFilterOptions();
  const form = $("#case-filter");
  if (params && [...params.keys()].length) {
    // A preset from a link (the overview's tiles): it replaces the filter.
    form.reset();
    for (const [k, v] of params) {
      const f = form.elements[k];
      if (!f) continue;
      if (f.type === "checkbox") f.checked = v === "true";
      else f.value = v;
    }
  }
  queue.filter = readFilter();
  $("#cases-error").textContent = "";
  let page;
  try {
    page = await fetchCases("");
  } catch (e) {
    $("#cases-error").textContent = e.status === 404 ? "The case workflow does not run on this node (alerts role). 本节点未运行案件服务。" : e.message;
    $("#cases").replaceChildren();
    return;
  }
  queue.rows.clear();
  queue.next = page.next || "";
  for (const c of page.cases) {
    queue.rows.set(c.id, c);
    colourSeen.set(c.id, c.colour || "");
  }
  $("#cases").replaceChildren(...page.cases.map(caseRow));
  queue.loaded = true;
  updateQueueSummary();
}

async function moreCases() {
  if (!queue.next) return;
  try {
    const page = await fetchCases(queue.next);
    queue.next = page.next || "";
    const fresh = page.cases.filter((c) => !queue.rows.has(c.id));
    for (const c of fresh) {
      queue.rows.set(c.id, c);
      colourSeen.set(c.id, c.colour || "");
    }
    $("#cases").append(...fresh.map(caseRow));
    updateQueueSummary();
  } catch (e) {
    $("#cases-error").textContent = e.message;
  }
}

function fillFilterOptions() {
  const form = $("#case-filter");
  if (!form.elements.state.options.length) {
    form.elements.state.append(el("option", { value: OPEN_STATES }, "Open 在办"), el("option", { value: "" }, "All 全部状态"),
      ...CASE_STATES.map(([s, cn]) => el("option", { value: s }, `${cn} ${s}`)));
    form.elements.colour.append(el("option", { value: "" }, "All colours 全部颜色"),
      ...COLOURS.map(([c, cn]) => el("option", { value: c }, `${cn} ${c}`)));
  }
  const cat = form.elements.category;
  if (cat.options.length <= 1 && ref) {
    cat.replaceChildren(el("option", { value: "" }, "All categories 全部类别"),
      ...ref.playbooks.map((p) => el("option", { value: p.category }, p.name)));
  } else if (!cat.options.length) {
    cat.append(el("option", { value: "" }, "All categories 全部类别"));
  }
}

// upsertRow puts a case's fresh state in the queue: in place when shown,
// at its place by creation time when new, gone when it no longer matches.
function upsertRow(c) {
  const tbody = $("#cases");
  const old = tbody.querySelector(`tr[data-id="${CSS.escape(c.id)}"]`);
  if (!matchesFilter(c)) {
    if (old) old.remove();
    queue.rows.delete(c.id);
    updateQueueSummary();
    return;
  }
  const tr = caseRow(c);
  if (old) {
    old.replaceWith(tr);
  } else {
    const later = [...tbody.children].find((r) => {
      const o = queue.rows.get(r.dataset.id);
      return o && new Date(o.created) < new Date(c.created);
    });
    if (later) tbody.insertBefore(tr, later);
    else if (!queue.next) tbody.append(tr);
    else return; // older than the loaded pages: "more" brings it
  }
  queue.rows.set(c.id, c);
  tr.classList.add("flash");
  updateQueueSummary();
}

// ---- Live updates ----

let stream = null;
const pendingRows = new Set();
let pendingTimer = 0;

function openStream() {
  if (stream || typeof EventSource === "undefined") return;
  stream = new EventSource("/api/v1/cases/stream");
  stream.addEventListener("open", () => $("#case-live").classList.add("on"));
  stream.addEventListener("error", () => {
    $("#case-live").classList.remove("on");
    if (stream && stream.readyState === EventSource.CLOSED) stream = null; // refused (logged out, no case API)
  });
  stream.addEventListener("case", (ev) => {
    let u;
    try {
      u = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (u && typeof u.id === "string") onCaseUpdate(u);
  });
}

function closeStream() {
  if (stream) stream.close();
  stream = null;
  const live = $("#case-live");
  if (live) live.classList.remove("on");
}

function onCaseUpdate(u) {
  const was = colourSeen.get(u.id);
  const mine = me && u.actor === me.username;
  if (u.colour === "red" && was !== "red" && !mine && (was !== undefined || ["registered", "assess", "alert_repeated"].includes(u.action))) {
    toast(`红色预警 red: ${u.number} ${u.title}`, "red", caseHref(u.id));
  }
  colourSeen.set(u.id, u.colour || "");
  if (queue.loaded) {
    pendingRows.add(u.id);
    if (!pendingTimer) pendingTimer = setTimeout(flushRows, 200);
  }
  if (view.name === "case" && current && current.id === u.id && u.version > current.version) caseChanged(u);
  if (view.name === "overview") loadCaseCounts().catch(() => {});
}

// flushRows fetches the cases changed since the last flush (a burst of
// changes to one case is one request).
async function flushRows() {
  pendingTimer = 0;
  const ids = [...pendingRows];
  pendingRows.clear();
  for (const id of ids) {
    try {
      upsertRow(await call("GET", "/api/v1/cases/" + encodeURIComponent(id)));
    } catch (e) {
      if (e.status === 404) {
        const old = $("#cases").querySelector(`tr[data-id="${CSS.escape(id)}"]`);
        if (old) old.remove();
        queue.rows.delete(id);
        updateQueueSummary();
      }
    }
  }
}

function toast(text, cls, href) {
  const t = el("a", { class: "toast " + (cls || ""), href: href || "#/cases", role: "status" }, text);
  $("#toasts").append(t);
  setTimeout(() => t.remove(), 10000);
}

// ---- Overview counts ----

async function loadCaseCounts() {
  const page = await call("GET", "/api/v1/cases?limit=500&state=" + OPEN_STATES);
  const count = (f) => page.cases.filter(f).length + (page.next ? "+" : "");
  const tiles = [
    ["red", "红 red", count((c) => c.colour === "red"), "colour=red"],
    ["orange", "橙 orange", count((c) => c.colour === "orange"), "colour=orange"],
    ["yellow", "黄 yellow", count((c) => c.colour === "yellow"), "colour=yellow"],
    ["none", "未研判 unassessed", count((c) => !c.colour), "state=registered"],
    ["late", "超期 overdue", count((c) => c.overdue), "overdue=true"],
  ];
  $("#case-counts").replaceChildren(...tiles.map(([cls, name, n, q]) =>
    el("a", { class: "tile count count-" + cls, href: `#/cases?state=${OPEN_STATES}&${q}` },
      el("div", { class: "name" }, name), el("div", { class: "state" }, String(n)))));
  $("#case-counts-box").hidden = false;
}

// ---- The case page ----

let current = null; // the case shown (GET /api/v1/cases/{id})
let openForm = null; // the action whose form is open
let openPreset = null; // and what it was opened with (a task, a merge target)

async function loadCase(id) {
  const root = $("#case");
  if (!current || current.id !== id) {
    root.replaceChildren(el("p", { class: "muted" }, "Loading… 载入中"));
    openForm = null;
  }
  let d;
  try {
    [d] = await Promise.all([call("GET", "/api/v1/cases/" + encodeURIComponent(id)), loadRef()]);
  } catch (e) {
    current = null;
    root.replaceChildren(el("p", { class: "error" }, e.status === 404 ? `No such case in your region 无此案件: ${id}` : e.message));
    return;
  }
  current = d;
  colourSeen.set(d.id, d.colour || "");
  renderCase(d);
}

// caseChanged: someone else changed the case shown. Reload at once unless
// a form is being filled in; then say so and let the user reload.
function caseChanged(u) {
  if (!openForm) {
    loadCase(current.id);
    return;
  }
  const note = $("#case-note");
  note.className = "notice";
  note.replaceChildren(`${u.actor || "someone"} changed this case (${ACTION_CN[u.action] || ""} ${u.action}) 案件已被更新 `,
    el("button", { class: "link", onclick: () => { openForm = null; loadCase(current.id); } }, "Reload 刷新"));
  note.hidden = false;
}

function fact(k, ...v) {
  return [el("dt", {}, k), el("dd", {}, ...v)];
}

function renderCase(d) {
  const pb = playbook(d.category);
  const co = (d.co_departments || []).map(deptName).join("、");
  const badges = [colourBadge(d.colour), stateBadge(d.state)];
  if (d.overdue) badges.push(overdueBadge());
  badges.push(el("span", { class: "badge" }, bi(LEVEL_CN[d.level] || d.level, d.level)));
  if (d.supervised) badges.push(el("span", { class: "badge flag" }, bi("督办", "supervised")));
  if (d.risk_warned) badges.push(el("span", { class: "badge flag" }, bi("已发风险提示", "leaders warned")));
  const facts = [
    ...fact("Risk 风险", d.colour ? `${d.risk} / 100` : "not assessed 未研判", d.colour_reason ? el("div", { class: "muted small" }, d.colour_reason) : ""),
    ...fact("Deadline 时限", d.deadline ? countdown(d.deadline) : "—", d.deadline ? el("span", { class: "muted small" }, " " + fmtTime(d.deadline)) : ""),
    ...fact("Category 类别", `${catName(d.category)} `, el("span", { class: "muted small" }, d.category)),
    ...fact("Source 来源", `${SOURCE_CN[d.source] || ""} ${d.source}`, d.rule ? el("span", { class: "muted small" }, ` rule ${d.rule}`) : ""),
    ...fact("Region 区域", regionText(d)),
    ...fact("Department 责任单位", d.department ? deptName(d.department) : "not dispatched 未交办", co ? el("div", { class: "muted small" }, "协办 co: " + co) : ""),
    ...fact("Counts 计数", `告警 alerts ${d.alert_count} · 催办 urged ${d.urge_count} · 提级 escalated ${d.escalations}`),
    ...fact("Created 登记", fmtTime(d.created), el("span", { class: "muted small" }, ` · updated 更新 ${fmtTime(d.updated)} · v${d.version}`)),
  ];
  if (d.reporter) facts.push(...fact("Reporter 反映人", [d.reporter.name, d.reporter.phone].filter(Boolean).join(" · ") || "—"));
  if (d.camera) facts.push(...fact("Camera 摄像机", el("a", { href: "/play/" + encodeURIComponent(d.camera), target: "_blank" }, `${d.camera} · live 实时画面`)));
  if (d.device) facts.push(...fact("Device 设备", d.device));
  if (d.merged_into) facts.push(...fact("Merged into 已并入", el("a", { href: caseHref(d.merged_into) }, d.merged_into)));
  if (d.merged && d.merged.length) facts.push(...fact("Merged here 并入本案", ...d.merged.map((id) => el("a", { href: caseHref(id), class: "sep" }, id))));
  if (d.outcome) facts.push(...fact("Outcome 办结方式", `${OUTCOME_CN[d.outcome] || ""} ${d.outcome}`, d.result ? el("div", {}, d.result) : ""));
  if (d.satisfaction) facts.push(...fact("Follow-up 回访", `${SATISFACTION_CN[d.satisfaction] || ""} ${d.satisfaction}`));

  // The server lists what this user may do now, the loop's next step first.
  const offered = (d.allowed_actions || []).filter((a) => !a.startsWith("task_"));
  const actions = offered.map((a, i) => el("button", {
    class: "act" + (i === 0 && !["comment", "attach", "reopen", "unmerge"].includes(a) ? " primary" : " ghost") + (openForm === a ? " open" : ""),
    "data-action": a, onclick: () => showActionForm(a),
  }, `${ACTION_CN[a] || a} ${a.replace("_", " ")}`));

  // An action's confirmation outlives a reload of the same case: the
  // update the action itself causes often reloads the page just after.
  const root = $("#case");
  const prevNote = $("#case-note");
  const note = prevNote && prevNote.classList.contains("ok") && root.dataset.caseId === d.id
    ? prevNote : el("p", { id: "case-note", class: "notice", hidden: "" });
  root.dataset.caseId = d.id;
  root.replaceChildren(
    el("div", { class: "case-head" },
      el("h1", {}, el("span", { class: "case-no" }, d.number), " ", el("span", { id: "case-title" }, d.title)),
      el("div", { class: "badges" }, ...badges)),
    note,
    el("div", { class: "case-actions" }, ...actions),
    el("div", { id: "case-form" }),
    el("div", { class: "case-body" },
      el("div", { class: "col" },
        el("div", { class: "card" }, el("dl", { class: "facts" }, ...facts)),
        d.description ? el("div", { class: "card" }, el("h2", {}, "Description 情况描述"), el("p", { class: "pre" }, d.description)) : "",
        elementsCard(d, pb),
        el("div", { class: "card" }, el("h2", {}, "Timeline 办理过程"), timeline(d.history || []))),
      el("div", { class: "col" },
        el("div", { class: "card" }, el("h2", {}, `Evidence 证据 (${(d.evidence || []).length})`), evidenceList(d.evidence || [])),
        tasksCard(d),
        timersCard(d.timers || []),
        candidatesCard(d.merge_candidates || []))));
  if (openForm) showActionForm(openForm, openPreset);
}

function elementsCard(d, pb) {
  const e = d.elements || {};
  const required = pb && pb.required && pb.required.length ? pb.required : ELEMENTS.map(([k]) => k);
  const missing = ELEMENTS.filter(([k]) => !(e[k] || "").trim()).map(([k]) => k);
  const blocking = missing.filter((k) => required.includes(k));
  const status = blocking.length
    ? el("span", { class: "missing small" }, ` dispatch needs 交办还缺 ${blocking.length}: ${blocking.join(", ")}`)
    : el("span", { class: "ready small" }, ` complete for dispatch 要素齐全${missing.length ? ` (${missing.length} optional missing 选填未填)` : ""}`);
  return el("div", { class: "card" },
    el("h2", {}, "Seven elements 七要素（七何）", status),
    el("dl", { class: "facts elements-list" }, ...ELEMENTS.flatMap(([k, cn]) => {
      const v = (e[k] || "").trim();
      const need = required.includes(k);
      return [el("dt", {}, `${cn} ${k}`),
        el("dd", { class: v ? "" : "missing", "data-element": k },
          v || (need ? "未填 missing — needed for dispatch 交办必填" : "未填 missing"))];
    })));
}

function dataText(data) {
  if (!data) return "";
  return Object.entries(data).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ");
}

function timeline(history) {
  if (!history.length) return el("p", { class: "muted" }, "—");
  return el("ol", { class: "timeline" }, ...history.map((h) => el("li", {},
    el("div", { class: "when muted small" }, fmtTime(h.at), ` · ${h.actor}${h.role ? " (" + h.role + ")" : ""}`),
    el("div", {}, el("strong", {}, `${ACTION_CN[h.action] || ""} `), el("span", { class: "en" }, h.action),
      h.to ? el("span", { class: "muted" }, ` ${h.from ? (STATE_CN[h.from] || h.from) + " → " : "→ "}${STATE_CN[h.to] || h.to}`) : ""),
    h.note ? el("div", { class: "pre" }, h.note) : "",
    h.data ? el("div", { class: "muted small" }, dataText(h.data)) : "")));
}

// evidenceRef shows an evidence reference: a link when it is a live view
// (/play/{camera}) or a web address, the picture when it is a snapshot a
// camera's detectors stored (camera: the camera of its event), its text
// otherwise (a blob key).
function evidenceRef(e, camera) {
  const r = e.ref || "";
  if (/^\/play\/[^/?#]+$/.test(r)) return el("a", { href: r, target: "_blank" }, `Live view 实时画面 ${decodeURIComponent(r.slice(6))}`);
  if (e.kind === "url" && /^https?:\/\//i.test(r)) return el("a", { href: r, target: "_blank", rel: "noopener noreferrer" }, r);
  if (e.kind === "readings") return ""; // shown by readingsView
  const blob = /^blob:sha256:([0-9a-f]{64})$/.exec(r);
  if (e.kind === "snapshot" && blob && camera) {
    const src = `/api/v1/cameras/${encodeURIComponent(camera)}/snapshots/${blob[1]}`;
    return el("a", { href: src, target: "_blank" }, el("img", { class: "snapshot", src, alt: `Snapshot 抓拍 ${camera}`, loading: "lazy" }));
  }
  return el("code", { class: "ref" }, r);
}

// eventCameras maps each event id of the evidence to its camera, when a
// camera was its source.
function eventCameras(evs) {
  const m = {};
  for (const e of evs) {
    const src = (e.data && e.data.source) || "";
    if (e.kind === "event" && e.event_id && src.startsWith("camera:")) m[e.event_id] = src.slice(7);
  }
  return m;
}

function evidenceList(evs) {
  if (!evs.length) return el("p", { class: "muted" }, "None yet 暂无");
  const cams = eventCameras(evs);
  return el("ul", { class: "evidence" }, ...evs.map((e) => el("li", {},
    el("span", { class: "badge" }, bi(EVIDENCE_CN[e.kind] || "", e.kind)), " ", evidenceRef(e, cams[e.event_id]),
    el("div", { class: "muted small" }, [
      e.content_type, e.captured ? "captured 采集 " + fmtTime(e.captured) : "",
      `attached 附加 ${fmtTime(e.attached)} by ${e.attached_by}`, e.event_id ? "event " + e.event_id : "",
      e.sha256 ? "sha256 " + e.sha256.slice(0, 12) + "…" : ""].filter(Boolean).join(" · ")),
    e.kind === "readings" && e.data ? readingsView(e.data) : e.data ? el("div", { class: "muted small" }, dataText(e.data)) : "")));
}

// readingsView shows the sensor readings around an alert: per device, each
// numeric reading's range and last value over a small line of its points.
function readingsView(d) {
  const rows = (d.devices || []).map((dev) => {
    const pts = dev.points || [];
    const names = [...new Set(pts.flatMap((p) => Object.keys(p.v || {}).filter((k) => typeof p.v[k] === "number")))];
    return el("tr", {},
      el("td", {}, dev.name || dev.source, dev.alerting ? el("span", { class: "badge colour colour-red" }, "告警 alerting") : ""),
      el("td", { class: "muted" }, dev.device_kind || ""),
      el("td", {}, `${pts.length}${dev.found > pts.length ? " / " + dev.found : ""}`),
      el("td", {}, ...names.slice(0, 4).map((k) => {
        const vs = pts.map((p) => p.v && p.v[k]).filter((v) => typeof v === "number");
        const lo = Math.min(...vs), hi = Math.max(...vs);
        return el("div", { class: "reading" }, el("span", { class: "en" }, k + " "), sparkline(vs, lo, hi),
          ` ${lo}–${hi}, last ${vs[vs.length - 1]}`);
      })));
  });
  return el("div", {},
    el("div", { class: "muted small" }, `${fmtTime(d.from)} – ${fmtTime(d.to)} · grid 网格 ${d.grid || "—"} · ${d.readings} of ${d.readings_found} readings 读数`),
    el("table", { class: "readings" }, el("thead", {}, el("tr", {}, el("th", {}, "Device 设备"), el("th", {}, "Kind 类型"),
      el("th", {}, "Points 点数"), el("th", {}, "Readings 读数"))), el("tbody", {}, ...rows)));
}

// sparkline draws values (lo..hi) as a small SVG line.
function sparkline(vs, lo, hi) {
  const ns = "http://www.w3.org/2000/svg", w = 80, h = 18;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.setAttribute("class", "spark");
  if (vs.length > 1) {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", vs.map((v, i) => `${(i * (w - 2)) / (vs.length - 1) + 1},${hi === lo ? h / 2 : h - 1 - ((v - lo) * (h - 2)) / (hi - lo)}`).join(" "));
    svg.append(line);
  }
  return svg;
}

function tasksCard(d) {
  const tasks = d.tasks || [];
  if (!tasks.length) return "";
  const canTask = (d.allowed_actions || []).some((a) => a.startsWith("task_"));
  return el("div", { class: "card" }, el("h2", {}, "Tasks 子任务"),
    el("table", { class: "tasks" }, el("thead", {}, el("tr", {}, el("th", {}, "Task 任务"), el("th", {}, "State 状态"), el("th", {}, "Deadline 时限"), el("th", {}))),
      el("tbody", {}, ...tasks.map((k) => el("tr", {},
        el("td", {}, el("div", {}, k.title), el("div", { class: "muted small" }, deptName(k.department)), k.outcome ? el("div", { class: "small" }, k.outcome) : ""),
        el("td", {}, el("span", { class: "badge task-" + k.state }, bi(TASK_CN[k.state] || "", k.state))),
        el("td", {}, k.state === "done" ? "—" : countdown(k.deadline)),
        el("td", {}, k.state === "open" && canTask ? el("button", { class: "ghost small-btn", onclick: () => showActionForm("task_accept", { task: k.id }) }, "签收 accept") : "",
          k.state !== "done" && canTask ? el("button", { class: "ghost small-btn", onclick: () => showActionForm("task_done", { task: k.id }) }, "办结 done") : ""))))));
}

function timersCard(timers) {
  const up = timers.filter((t) => !t.fired && !t.cancelled).sort((a, b) => new Date(a.due) - new Date(b.due));
  const shown = 5;
  const more = up.length > shown ? el("li", {}, el("button", { class: "link", onclick: (ev) => {
    for (const li of ev.target.closest("ul").querySelectorAll("li[hidden]")) li.hidden = false;
    ev.target.closest("li").remove();
  } }, `+${up.length - shown} more 更多`)) : "";
  return el("div", { class: "card" }, el("h2", {}, "Upcoming timers 时限提醒"),
    up.length ? el("ul", { class: "timers" }, ...up.map((t, i) => el("li", { hidden: i >= shown ? "" : undefined },
      el("strong", {}, `${TIMER_CN[t.kind] || ""} `), el("span", { class: "en" }, t.kind),
      el("span", { class: "muted" }, ` · ${STAGE_CN[t.stage] || ""} ${t.stage}${t.step ? " #" + t.step : ""} · `),
      countdown(t.due), el("span", { class: "muted small" }, " " + fmtTime(t.due)))), more)
      : el("p", { class: "muted" }, "None 无"));
}

function candidatesCard(cands) {
  if (!cands.length) return "";
  return el("div", { class: "card" }, el("h2", {}, "Possibly the same matter 疑似同案"),
    el("ul", { class: "candidates" }, ...cands.map((k) => el("li", {},
      el("a", { href: caseHref(k.id), class: "case-no" }, k.number), " ", k.title, " ", stateBadge(k.state),
      el("div", { class: "muted small" }, [k.why, k.grid ? "grid " + k.grid : "", k.distance_m != null ? `${Math.round(k.distance_m)} m` : ""].filter(Boolean).join(" · ")),
      el("button", { class: "ghost small-btn", onclick: () => showActionForm("merge", { into: k.id }) }, "Merge into 并入此案")))));
}

// ---- Action forms ----

const noteField = (required, label) => ({ name: "note", label: label || "Note 说明", type: "textarea", required });

function actionFields(a, d, preset) {
  const pb = playbook(d.category);
  const depts = deptOptions();
  const e = d.elements || {};
  switch (a) {
    case "assess": return [
      { name: "risk", label: "Risk score 风险分 (0–100)", type: "number", min: 0, max: 100, value: d.risk || "", required: true },
      { name: "colour", label: "Colour 预警颜色", type: "select", options: [["", "By score 按分值"], ...COLOURS.map(([c, cn]) => [c, `${cn} ${c}`])] },
      { name: "reason", label: "Reason 理由 (needed when the colour differs from the score's 与分值不符时必填)", type: "textarea" }];
    case "dispatch": return [
      { name: "department", label: "Lead department 牵头单位", type: "select", options: depts, value: pb && pb.lead },
      { name: "co_departments", label: "Co-departments 协办单位", type: "checks", options: depts, value: (pb && pb.co) || [] },
      { name: "deadline", label: "Deadline 办理时限 (empty: the playbook's 按类案标准)", type: "datetime" }];
    case "reassign": return [
      { name: "department", label: "New lead department 新牵头单位", type: "select", options: depts.filter(([id]) => id !== d.department), required: true },
      { name: "co_departments", label: "Co-departments 协办单位", type: "checks", options: depts, value: d.co_departments || [] },
      noteField(false)];
    case "resolve": return [
      { name: "outcome", label: "Outcome 办结方式", type: "select", required: true, options: ((ref && ref.outcomes) || Object.keys(OUTCOME_CN)).map((o) => [o, `${OUTCOME_CN[o] || ""} ${o}`]) },
      { name: "result", label: "Result 办理结果", type: "textarea", required: true }];
    case "follow_up": return [
      { name: "satisfaction", label: "Satisfaction 满意度", type: "select", required: true, options: ((ref && ref.satisfactions) || Object.keys(SATISFACTION_CN)).map((o) => [o, `${SATISFACTION_CN[o] || ""} ${o}`]) },
      noteField(false, "Note 回访记录")];
    case "dismiss": return [noteField(true, "Why 核销理由 (false alert 误报, duplicate 重复…)")];
    case "reopen": return [noteField(true, "Why 重新办理理由")];
    case "unmerge": case "urge": case "supervise": case "escalate": return [noteField(a === "unmerge")];
    case "comment": return [noteField(true, "Comment 备注")];
    case "edit": return [
      { name: "title", label: "Title 标题", value: d.title, required: true, keep: true },
      { name: "category", label: "Category 类别", type: "select", value: d.category, options: ((ref && ref.playbooks) || []).map((p) => [p.category, p.name]) },
      { name: "description", label: "Description 情况描述", type: "textarea", value: d.description || "", keep: true },
      ...ELEMENTS.map(([k, cn]) => ({ name: "elements." + k, label: `${cn} ${k}`, value: e[k] || "", keep: true }))];
    case "merge": return [
      { name: "into", label: "Merge into case 并入案件", type: "select", value: preset && preset.into,
        options: [["", "— choose 请选择 —"], ...(d.merge_candidates || []).map((k) => [k.id, `${k.number} ${k.title}`])], free: true },
      noteField(false)];
    case "split": return [{ name: "tasks", type: "tasks" }];
    case "task_accept": return [{ name: "task", type: "hidden", value: preset && preset.task }];
    case "task_done": return [{ name: "task", type: "hidden", value: preset && preset.task },
      { name: "result", label: "Result 办理结果", type: "textarea", required: true }];
    case "attach": return [
      { name: "evidence.kind", label: "Kind 类型", type: "select", value: "photo", options: Object.entries(EVIDENCE_CN).map(([k, cn]) => [k, `${cn} ${k}`]) },
      { name: "evidence.ref", label: "Reference 引用 (blob key, /play/{camera} or https://…)", required: true },
      { name: "evidence.content_type", label: "Content type 类型 (e.g. image/jpeg)" },
      { name: "evidence.note", label: "Note 说明", type: "textarea" }];
  }
  return [];
}

function fieldEl(f) {
  const attrs = { name: f.name, required: f.required ? "" : undefined };
  let input;
  switch (f.type) {
    case "hidden":
      return el("input", { type: "hidden", name: f.name, value: f.value || "" });
    case "textarea":
      input = el("textarea", { ...attrs, rows: 3 }, f.value || "");
      break;
    case "number":
      input = el("input", { ...attrs, type: "number", min: f.min, max: f.max, value: f.value });
      break;
    case "datetime":
      input = el("input", { ...attrs, type: "datetime-local" });
      break;
    case "select":
      input = el("select", attrs, ...(f.required && !f.value ? [el("option", { value: "" }, "— choose 请选择 —")] : []),
        ...f.options.map(([v, label]) => el("option", { value: v }, label)));
      if (f.value) input.value = f.value;
      if (f.free) {
        // Also any case id typed in.
        return el("label", {}, f.label, input, el("input", { name: f.name + ".typed", placeholder: "or a case id 或输入案件 ID" }));
      }
      break;
    case "checks":
      return el("fieldset", { class: "checks", "data-name": f.name }, el("legend", {}, f.label),
        ...f.options.map(([v, label]) => el("label", { class: "check" },
          el("input", { type: "checkbox", name: f.name, value: v, checked: (f.value || []).includes(v) ? "" : undefined }), label)));
    case "tasks":
      return tasksField();
    default:
      input = el("input", { ...attrs, value: f.value || "" });
  }
  return el("label", { class: f.type === "textarea" ? "wide" : "" }, f.label, input);
}

function taskRow() {
  return el("div", { class: "task-row" },
    el("select", { name: "task.department", required: "" }, ...deptOptions().map(([v, l]) => el("option", { value: v }, l))),
    el("input", { name: "task.title", placeholder: "task 任务内容", required: "" }),
    el("input", { name: "task.deadline", type: "datetime-local", title: "deadline 时限 (empty: the playbook's)" }),
    el("button", { type: "button", class: "link", onclick: (ev) => ev.target.closest(".task-row").remove() }, "✕"));
}

function tasksField() {
  const rows = el("div", { class: "task-rows" }, taskRow(), taskRow());
  return el("fieldset", { class: "wide", "data-name": "tasks" }, el("legend", {}, "Tasks 子任务 (one department each 一单位一任务)"), rows,
    el("button", { type: "button", class: "link", onclick: () => rows.append(taskRow()) }, "+ Add task 添加任务"));
}

const isoOf = (local) => (local ? new Date(local).toISOString() : undefined);

function setPath(o, path, v) {
  const keys = path.split(".");
  let cur = o;
  for (const k of keys.slice(0, -1)) cur = cur[k] = cur[k] || {};
  cur[keys[keys.length - 1]] = v;
}

// actionBody reads an action form into the API's body.
function actionBody(form, fields) {
  const body = { version: current.version };
  for (const f of fields) {
    if (f.type === "tasks") {
      body.tasks = [...form.querySelectorAll(".task-row")].map((r) => ({
        department: r.querySelector("[name='task.department']").value,
        title: r.querySelector("[name='task.title']").value,
        deadline: isoOf(r.querySelector("[name='task.deadline']").value),
      }));
      continue;
    }
    if (f.type === "checks") {
      body[f.name] = [...form.querySelectorAll(`input[name='${f.name}']:checked`)].map((i) => i.value);
      continue;
    }
    let v = form.elements[f.name].value;
    if (f.free && form.elements[f.name + ".typed"].value.trim()) v = form.elements[f.name + ".typed"].value.trim();
    if (f.type === "number") v = v === "" ? undefined : Number(v);
    else if (f.type === "datetime") v = isoOf(v);
    else if (v === "" && !f.keep) v = undefined;
    if (v !== undefined) setPath(body, f.name, v);
  }
  if (body.department && body.co_departments) body.co_departments = body.co_departments.filter((x) => x !== body.department);
  return body;
}

function showActionForm(a, preset) {
  const d = current;
  openForm = a;
  openPreset = preset || null;
  for (const b of document.querySelectorAll(".case-actions button")) b.classList.toggle("open", b.dataset.action === a);
  const fields = actionFields(a, d, preset);
  const err = el("p", { class: "error form-error wide", role: "alert" });
  const form = el("form", { class: "card form action-form", "data-action": a },
    el("h2", { class: "wide" }, `${ACTION_CN[a] || ""} `, el("span", { class: "en" }, a.replace("_", " ")), ` · ${d.number}`),
    ...fields.map(fieldEl),
    el("div", { class: "wide actions" },
      el("button", { type: "submit" }, `${ACTION_CN[a] || a} Confirm 确认`), " ",
      el("button", { type: "button", class: "link", onclick: closeActionForm }, "Cancel 取消")),
    err);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    const done = $("#case-note"); // an earlier action's confirmation
    if (done && done.classList.contains("ok")) { done.className = "notice"; done.hidden = true; }
    for (const i of form.querySelectorAll(".invalid")) i.classList.remove("invalid");
    const btn = form.querySelector("button[type=submit]");
    btn.disabled = true;
    try {
      await call("POST", `/api/v1/cases/${encodeURIComponent(d.id)}/actions/${a}`, actionBody(form, fields));
      openForm = null;
      await loadCase(d.id);
      const note = $("#case-note");
      note.textContent = `${ACTION_CN[a] || ""} ${a}: done 已完成`;
      note.className = "notice ok";
      note.hidden = false;
    } catch (e) {
      btn.disabled = false;
      if (e.status === 412) {
        // Someone acted first: show the case as it is now, keep what was typed.
        const typed = [...new FormData(form)];
        await loadCase(d.id);
        const again = $("#case-form form");
        if (again) {
          for (const [k, v] of typed) {
            const i = again.querySelector(`[name='${CSS.escape(k)}']:not([type=checkbox])`);
            if (i && i.type !== "hidden") i.value = v;
          }
          again.querySelector(".form-error").textContent = "The case changed meanwhile; it has been reloaded — check it and confirm again. 案件已被他人更新，已重新载入，请核对后再提交。";
        }
        return;
      }
      err.textContent = (e.status ? `${e.status} · ` : "") + e.message;
      markInvalid(form, e.field);
    }
  });
  $("#case-form").replaceChildren(form);
  const first = form.querySelector("input:not([type=hidden]), select, textarea");
  if (first) first.focus();
}

// markInvalid highlights the input the server's error names (field
// "elements", "tasks[1].title", "evidence.ref"…).
function markInvalid(form, field) {
  if (!field) return;
  const m = field.match(/^tasks\[(\d+)\]\.(\w+)$/);
  let target = null;
  if (m) {
    const row = form.querySelectorAll(".task-row")[Number(m[1])];
    target = row && row.querySelector(`[name='task.${m[2]}']`);
  } else {
    target = form.querySelector(`[name='${CSS.escape(field)}'], [data-name='${CSS.escape(field)}']`) ||
      form.querySelector(`[name^='${CSS.escape(field)}.']`);
  }
  if (field === "elements") for (const dd of document.querySelectorAll(".elements-list dd.missing")) dd.classList.add("invalid");
  if (target) {
    target.classList.add("invalid");
    if (target.focus) target.focus();
  }
}

function closeActionForm() {
  openForm = null;
  $("#case-form").replaceChildren();
  for (const b of document.querySelectorAll(".case-actions button")) b.classList.remove("open");
}

// ---- Manual intake ----

async function loadCaseNew() {
  const form = $("#case-new-form");
  $("#case-new-error").textContent = "";
  try {
    await loadRef();
  } catch (e) {
    $("#case-new-error").textContent = e.status === 404 ? "The case workflow does not run on this node. 本节点未运行案件服务。" : e.message;
    return;
  }
  const cat = form.elements.category;
  if (!cat.options.length) {
    cat.append(el("option", { value: "" }, "— choose 请选择 —"), ...ref.playbooks.map((p) => el("option", { value: p.category }, p.name)));
  }
  const box = $("#case-new-elements");
  if (!box.children.length) {
    box.append(...ELEMENTS.map(([k, cn]) => el("label", {}, `${cn} ${k}`,
      el("input", { name: "elements." + k, placeholder: k === "when" ? "empty: now 空则为登记时间" : "" }))));
  }
  form.elements.region.placeholder = me.region || "county/township/village (empty: whole jurisdiction 全辖区)";
  if (me.role === "grid_worker") form.elements.source.value = "grid";
}

async function submitCaseNew(ev) {
  ev.preventDefault();
  const form = ev.target;
  const err = $("#case-new-error");
  err.textContent = "";
  for (const i of form.querySelectorAll(".invalid")) i.classList.remove("invalid");
  const body = {};
  for (const [k, v] of new FormData(form)) if (v.trim() !== "") setPath(body, k, v.trim());
  const btn = form.querySelector("button[type=submit]");
  btn.disabled = true;
  try {
    const c = await call("POST", "/api/v1/cases", body);
    form.reset();
    location.hash = caseHref(c.id);
  } catch (e) {
    err.textContent = (e.status ? `${e.status} · ` : "") + e.message;
    const f = e.field && (form.querySelector(`[name='${CSS.escape(e.field)}']`) || form.querySelector(`[name^='${CSS.escape(e.field)}']`));
    if (f) {
      f.classList.add("invalid");
      f.focus();
    }
  } finally {
    btn.disabled = false;
  }
}

function setupCases() {
  $("#case-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (location.hash !== "#/cases") location.hash = "#/cases"; // drops a preset; route() reloads
    else loadCases();
  });
  $("#case-filter").addEventListener("change", (ev) => {
    if (ev.target.name !== "q") ev.target.form.requestSubmit();
  });
  $("#cases-more").addEventListener("click", moreCases);
  $("#case-new-form").addEventListener("submit", submitCaseNew);
  setInterval(tickCountdowns, 1000);
}

// ---- Analytics 研判分析: charts and tables over /api/v1/analytics ----
//
// Every question is asked in parallel and each card fills in when its
// answer comes; the charts are SVG drawn here (no library: the dispatch
// room is offline).

const AN = "/api/v1/analytics/";
const TARGET_ONLINE = 0.98, TARGET_INTACT = 0.95; // analytics.targets defaults
const RISK_COLOURS = [["red", "红 red", "#e5484d"], ["orange", "橙 orange", "#f08c2e"], ["yellow", "黄 yellow", "#e8c33a"], ["", "未研判 unassessed", "#5b6b86"]];
const LINE_COLOURS = ["#3d8bfd", "#2fbf71", "#b07cf7", "#f08c2e", "#e8c33a", "#4fc3d9"];
const OTHER_COLOUR = "#8ea0bd";
const EVENT_CN = {
  motion: "移动侦测", "detection.person": "人员检测", "detection.vehicle": "车辆检测", "camera.offline": "摄像机离线",
  "camera.online": "摄像机上线", "camera.tamper": "遮挡破坏", telemetry: "传感读数", "device.offline": "设备离线",
  "device.online": "设备上线", alarm: "报警", other: "其他",
};
const COL_CN = {
  bucket: "Date 日期", day: "Date 日期", count: "Count 数量", type: "Type 类型", severity: "Severity 级别", colour: "Colour 颜色",
  category: "Category 类别", source: "Source 来源", region: "Region 区域", grid: "Grid 网格", camera: "Camera 摄像机",
  department: "Department 责任单位", rule: "Rule 规则", state: "State 状态", vendor: "Vendor 厂商", device: "Device 设备",
  total: "Total 合计", opened: "Opened 受理", open: "Open 在办", closed: "Closed 办结", on_time: "On time 按时",
  late: "Late 超时", on_time_rate: "On-time rate 按时办结率", dispatch_median_s: "Dispatch, median 交办用时中位",
  dispatch_p90_s: "Dispatch, p90 交办用时P90", accept_median_s: "Accept, median 签收用时中位", accept_p90_s: "Accept, p90 签收用时P90",
  resolve_median_s: "Resolve, median 办结用时中位", resolve_p90_s: "Resolve, p90 办结用时P90", urges: "Urges 催办",
  escalations: "Escalations 提级", satisfied: "Satisfied 满意", basically: "Basically 基本满意", dissatisfied: "Dissatisfied 不满意",
  satisfaction_rate: "Satisfaction 满意率", cameras: "Cameras 摄像机数", minutes: "Minutes 分钟数", online_rate: "Online 在线率",
  intact_rate: "Intact 完好率", online_ok: "Online target 在线达标", intact_ok: "Intact target 完好达标",
  top_fault: "Top fault 主要故障", top_fault_minutes: "Fault minutes 故障分钟", this_week: "This week 本周",
  last_week: "Last week 上周", this_period: "This period 本期", previous_period: "Previous 上期", rise: "Rise 上升",
  rise_pct: "Rise % 升幅", change: "Change 变化", change_pct: "Change % 变幅", cases: "Cases 案件", alerts: "Alerts 告警",
  alerts_per_case: "Alerts per case 告警/案件", unsubstantiated: "False alerts 不属实", false_rate: "False-alert rate 误报率",
  offline: "Offline 离线次数", online: "Online 上线次数", last: "Last status 最后状态", last_time: "Last seen 最后时间",
  silent: "Silent 离线", flapping: "Flapping 频繁掉线",
};
const SECTION_CN = {
  cases_by_category_colour: "Cases by category and colour 案件类别与颜色", cases_by_source: "Cases by source 案件来源",
  performance_total: "Performance, total 办理情况总览", performance_by_department: "Performance by department 各单位办理情况",
  hot_grids: "Hot grids 热点网格", cameras_by_region: "Cameras by region 各区域摄像机", worst_cameras: "Worst cameras 问题摄像机",
  rules: "Alert rules 告警规则", compare_by_category: "Compared with the previous period 与上期对比",
};
const STAGE_TIME = { dispatch: "Dispatch 交办用时", accept: "Accept 签收用时", resolve: "Resolve 办结用时" };
const REPORTS = [["daily", "日汇总", "daily"], ["weekly", "周研判", "weekly"], ["monthly", "月通报", "monthly"]];

// Dates are YYYY-MM-DD strings; the API reads them in its own zone.
const pad2 = (n) => String(n).padStart(2, "0");
const ymd = (d) => `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
function addDays(day, n) {
  const d = new Date(day + "T12:00:00");
  d.setDate(d.getDate() + n);
  return ymd(d);
}
function daysFrom(from, to) {
  const out = [];
  for (let d = from; d < to && out.length < 1000; d = addDays(d, 1)) out.push(d);
  return out;
}
const dayOf = (t) => String(t).slice(0, 10); // the API's times carry its zone: the date is the server's

const fmtInt = (n) => (n == null ? "—" : Number(n).toLocaleString("en-US"));
const fmtPct = (r, digits = 1) => (r == null || !isFinite(r) ? "—" : (100 * r).toFixed(digits) + " %");
function fmtDur(s) {
  if (s == null || !isFinite(s)) return "—";
  s = Math.round(s);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m` : `${s}s`;
}
const eventName = (t) => (EVENT_CN[t] ? `${EVENT_CN[t]} ${t}` : t);
const catShort = (c) => (c === "other" ? "其他 other" : c ? catName(c).replace(/（.*$/, "") : "未分类 none");
const deptLabel = (d) => (d === "(total)" ? "合计 Total" : d ? deptName(d) : "未交办 not dispatched");
const colLabel = (c) => COL_CN[c] || c;

// ---- SVG charts ----

const SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}
const tip = (text) => svg("title", {}, text);

// niceTicks: 0 to at least max in 3 to 6 round steps.
function niceTicks(max, integer = true) {
  if (!(max > 0)) return [0, 1];
  const raw = max / 4, p = Math.pow(10, Math.floor(Math.log10(raw)));
  let step = [1, 2, 2.5, 5, 10].map((k) => k * p).find((s) => s >= raw);
  if (integer) step = Math.max(1, Math.round(step));
  const out = [];
  for (let v = 0; v < max + step; v += step) out.push(+v.toFixed(6));
  return out;
}
const fmtTick = (v) => (v >= 10000 ? (v / 1000).toFixed(v % 1000 ? 1 : 0) + "k" : String(v));

// timeFrame draws a chart's frame over days: gridlines, the count axis on
// the left, a date label every few days. It returns what the marks need.
function timeFrame(days, max, unit) {
  const W = 640, H = 250, m = { l: 46, r: 20, t: 26, b: 28 };
  const ticks = niceTicks(max), top = ticks[ticks.length - 1];
  const pw = W - m.l - m.r, ph = H - m.t - m.b, bw = pw / days.length;
  const y = (v) => m.t + ph - (v / top) * ph;
  const x = (i) => m.l + (i + 0.5) * bw;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  const grid = svg("g", { class: "axis" });
  for (const t of ticks) {
    grid.append(svg("line", { x1: m.l, x2: W - m.r, y1: y(t), y2: y(t), class: t ? "grid" : "base" }),
      svg("text", { x: m.l - 6, y: y(t) + 4, "text-anchor": "end" }, fmtTick(t)));
  }
  grid.append(svg("text", { x: 4, y: 12, class: "unit" }, unit));
  const every = Math.ceil(days.length / 9);
  days.forEach((d, i) => {
    if ((days.length - 1 - i) % every) return; // keep the last day labelled
    grid.append(svg("line", { x1: x(i), x2: x(i), y1: m.t + ph, y2: m.t + ph + 4, class: "base" }),
      svg("text", { x: x(i), y: H - 8, "text-anchor": "middle" }, d.slice(5)));
  });
  root.append(grid);
  return { root, x, y, bw, base: y(0) };
}

function legend(items) {
  return el("div", { class: "legend" }, ...items.map(([name, colour, dashed]) =>
    el("span", { class: "key" }, el("i", { style: `background:${colour}`, class: dashed ? "dashed" : "" }), name)));
}

// stackedBars: one bar per day, stacked by series ({name, colour, values}).
function stackedBars(days, series, unit) {
  const totals = days.map((_, i) => series.reduce((s, x) => s + x.values[i], 0));
  const f = timeFrame(days, Math.max(...totals), unit);
  const w = Math.max(1, f.bw * 0.72);
  const bars = svg("g", { class: "bars" });
  days.forEach((d, i) => {
    let acc = 0;
    for (const s of series) {
      const v = s.values[i];
      if (!v) continue;
      const y0 = f.y(acc), y1 = f.y(acc + v);
      acc += v;
      bars.append(svg("rect", { x: f.x(i) - w / 2, y: y1, width: w, height: Math.max(0.5, y0 - y1), fill: s.colour, class: "bar" },
        tip(`${d} · ${s.name}: ${v} (of 共 ${totals[i]})`)));
    }
  });
  f.root.append(bars);
  return f.root;
}

// lines: one line per series ({name, colour, values, dashed}) over the days.
function lines(days, series, unit) {
  const f = timeFrame(days, Math.max(0, ...series.flatMap((s) => s.values)), unit);
  const r = days.length > 40 ? 1.6 : 2.6;
  for (const s of series) {
    const g = svg("g", { class: "series" });
    g.append(svg("polyline", { points: s.values.map((v, i) => `${f.x(i).toFixed(1)},${f.y(v).toFixed(1)}`).join(" "),
      stroke: s.colour, class: "line" + (s.dashed ? " dashed" : "") }, tip(s.name)));
    s.values.forEach((v, i) => g.append(svg("circle", { cx: f.x(i), cy: f.y(v), r, fill: s.colour, class: "dot" }, tip(`${days[i]} · ${s.name}: ${fmtInt(v)}`))));
    f.root.append(g);
  }
  return f.root;
}

// hbars: one horizontal bar per row ({label, value, colour, title}).
function hbars(rows, unit) {
  const W = 640, rowH = 27, m = { l: 150, r: 48, t: 8, b: 26 };
  const H = m.t + m.b + rows.length * rowH;
  const ticks = niceTicks(Math.max(0, ...rows.map((r) => r.value))), top = ticks[ticks.length - 1];
  const pw = W - m.l - m.r, x = (v) => m.l + (v / top) * pw;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  const axis = svg("g", { class: "axis" });
  for (const t of ticks) {
    axis.append(svg("line", { x1: x(t), x2: x(t), y1: m.t, y2: H - m.b, class: t ? "grid" : "base" }),
      svg("text", { x: x(t), y: H - 8, "text-anchor": "middle" }, fmtTick(t)));
  }
  axis.append(svg("text", { x: m.l - 8, y: H - 8, "text-anchor": "end", class: "unit" }, unit));
  root.append(axis);
  rows.forEach((r, i) => {
    const yc = m.t + i * rowH + rowH / 2;
    const label = r.label.length > 11 ? r.label.slice(0, 10) + "…" : r.label;
    root.append(svg("text", { x: m.l - 8, y: yc + 4, "text-anchor": "end", class: "label" }, label, tip(r.label)),
      svg("rect", { x: m.l, y: yc - 9, width: Math.max(1, x(r.value) - m.l), height: 18, rx: 2, fill: r.colour || LINE_COLOURS[0], class: "bar" },
        tip(r.title || `${r.label}: ${fmtInt(r.value)}`)),
      svg("text", { x: x(r.value) + 5, y: yc + 4, class: "value" }, fmtInt(r.value)));
  });
  return root;
}

// ---- Tables ----

function csvLink(path) {
  return el("a", { class: "csv", href: path + (path.includes("?") ? "&" : "?") + "format=csv", download: "", title: "Download CSV 下载" }, "CSV");
}

// tableCSV is a table as the API's CSV writes it (a BOM for Excel, CRLF).
function tableCSV(t) {
  const q = (v) => {
    const s = v == null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return "\uFEFF" + [t.columns, ...t.rows].map((r) => r.map(q).join(",")).join("\r\n") + "\r\n";
}

// csvSave offers a table already fetched (a report's section, a query's
// result) as a CSV file.
function csvSave(name, t) {
  return el("a", { class: "csv", href: "#", title: "Download CSV 下载", onclick: (ev) => {
    ev.preventDefault();
    const url = URL.createObjectURL(new Blob([tableCSV(t)], { type: "text/csv;charset=utf-8" }));
    const a = el("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } }, "CSV");
}

function bar(rate, cls) {
  const pct = rate == null ? 0 : Math.max(0, Math.min(100, 100 * rate));
  return el("span", { class: "minibar " + (cls || "") }, el("i", { style: `width:${pct.toFixed(1)}%` }));
}
const rateCell = (rate, cls) => el("span", { class: "rate" }, bar(rate, cls), fmtPct(rate));

// regionCell shows a region below the scope shown (the whole path on hover).
function regionCell(r) {
  const scope = an.scope;
  const shown = scope && r.startsWith(scope + "/") ? "…/" + r.slice(scope.length + 1) : r || "—";
  return el("span", { class: "region", title: r }, shown);
}

// placeCell is an id with its region beneath.
const placeCell = (id, region) => el("div", {}, el("code", {}, id), el("div", {}, regionCell(region)));

// fmtShort is a time as YYYY-MM-DD HH:MM, local.
function fmtShort(t) {
  if (!t) return "—";
  const d = new Date(t);
  return `${ymd(d)} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

// cell shows one value of an answer, by its column's name.
function cell(col, v) {
  if (v === null || v === undefined) return el("span", { class: "muted" }, "—");
  if (typeof v === "boolean") return el("span", { class: v ? "yes" : "no" }, v ? "✓ yes 是" : "✗ no 否");
  if (col.endsWith("_rate")) return fmtPct(v);
  if (col.endsWith("_pct")) return (v > 0 ? "+" : "") + v.toFixed(1) + " %";
  if (col.endsWith("_s")) return fmtDur(v);
  if (col === "department") return deptLabel(v);
  if (col === "category") return catShort(v);
  if (col === "colour") return colourBadge(v);
  if (col === "source" && SOURCE_CN[v]) return `${SOURCE_CN[v]} ${v}`;
  if (col === "type" || col === "last") return eventName(v);
  if (col === "region") return regionCell(v);
  if (v === "(total)") return el("strong", {}, "合计 Total");
  if (typeof v === "string" && /^\d{4}-\d\d-\d\dT/.test(v)) return v.includes("T00:00:00") && !v.includes(".") ? dayOf(v) : fmtShort(v);
  if (typeof v === "number") return Number.isInteger(v) ? fmtInt(v) : v.toFixed(2);
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

// table renders rows under headers: cols are [header, render(row), class].
function table(cols, rows, opts = {}) {
  return el("div", { class: "tscroll" }, el("table", { class: "an-table " + (opts.class || "") },
    el("thead", {}, el("tr", {}, ...cols.map(([h, , cls]) => el("th", { class: cls || "" }, h)))),
    el("tbody", {}, ...rows.map((r) => el("tr", { class: opts.rowClass ? opts.rowClass(r) : "" },
      ...cols.map(([, f, cls]) => el("td", { class: cls || "" }, f(r))))))));
}

// answerTable renders any answer ({columns, rows}) column by column.
function answerTable(t, empty) {
  if (!t.rows.length) return el("p", { class: "muted empty" }, empty || "No rows 无数据");
  const num = (i) => (t.rows.some((r) => typeof r[i] === "number") ? "num" : "");
  const cols = [];
  t.columns.forEach((c, i) => {
    const stage = c.match(/^(\w+)_median_s$/);
    const p90 = stage ? t.columns.indexOf(stage[1] + "_p90_s") : -1;
    if (p90 >= 0) {
      cols.push([`${STAGE_TIME[stage[1]] || stage[1]} median · p90`, (r) => `${fmtDur(r[i])} · ${fmtDur(r[p90])}`, "num"]);
    } else if (!/_p90_s$/.test(c) || !t.columns.includes(c.replace("_p90_s", "_median_s"))) {
      cols.push([colLabel(c), (r) => cell(c, r[i]), num(i)]);
    }
  });
  const out = [table(cols, t.rows, { rowClass: (r) => (r[0] === "(total)" ? "total" : "") })];
  if (t.truncated) out.push(el("p", { class: "muted small" }, "Cut at the row limit 结果已截断 (query.max_rows)"));
  return out;
}

// ---- The view ----

const an = { built: false, gen: 0, cards: {}, scope: "", q: null, hotSubject: "events" };

function anCard(id, title, opts = {}) {
  const tools = el("span", { class: "tools" });
  const body = el("div", { class: "body" }, el("p", { class: "muted loading" }, "Loading… 载入中"));
  const root = el("div", { class: "card an-card" + (opts.wide ? " wide" : ""), id: "an-" + id }, el("h2", {}, title, tools), body);
  an.cards[id] = { root, tools, body };
  return root;
}

function errorText(e) {
  return el("p", { class: "error" }, "⚠ ", (e.status ? `${e.status} · ` : "") + e.message);
}

// fill shows a card's answer when it comes (unless a newer load began).
async function fill(id, gen, answer, render) {
  const c = an.cards[id];
  c.body.replaceChildren(el("p", { class: "muted loading" }, "Loading… 载入中"));
  let nodes;
  try {
    const data = await answer;
    if (gen !== an.gen) return;
    nodes = render(data);
  } catch (e) {
    if (gen !== an.gen) return;
    if (e.message !== "not logged in") console.error(e);
    nodes = errorText(e);
  }
  c.body.replaceChildren(...[nodes].flat());
}

function buildAnalytics() {
  an.built = true;
  an.hotSubject = "events";
  const sql = ["admin", "analyst"].includes(me.role) && !me.region;
  $("#an-cards").replaceChildren(
    anCard("cases", "Cases per day by risk colour 每日案件（按风险颜色）"),
    anCard("events", "Events per day by type 每日事件（按类型）"),
    anCard("categories", "Cases by category 案件类别"),
    anCard("rules", "Alert rules 告警规则"),
    anCard("performance", "Performance by department 各单位办理情况", { wide: true }),
    anCard("fleet", "Camera fleet by region 摄像机在线率与完好率"),
    anCard("worst", "Worst 10 cameras 问题摄像机 Top 10"),
    anCard("hotspots", "Hot grids, week over week 热点网格（周环比上升）"),
    anCard("devices", "Devices silent or flapping 离线与频繁掉线设备"),
    anCard("reports", "Reports 研判报告", { wide: true }),
    ...(sql ? [anCard("sql", "SQL 自定义查询", { wide: true })] : []));
  const subj = el("select", { class: "small-select", "aria-label": "Count 统计对象", onchange: (ev) => {
    an.hotSubject = ev.target.value;
    loadHotspots(an.gen);
  } }, el("option", { value: "events" }, "events 事件"), el("option", { value: "cases" }, "cases 案件"));
  an.cards.hotspots.tools.append(subj, el("span", { class: "csv-slot" }));
  buildReports();
  if (sql) buildSQL();
}

// anQuery is the query string of a question, with the period and region.
function anQuery(extra, period = true) {
  const q = new URLSearchParams(extra);
  if (period) {
    q.set("from", an.q.from);
    q.set("to", an.q.to);
  }
  if (an.q.region) q.set("region", an.q.region);
  return q.toString();
}

const anGet = (path, extra, period) => {
  const url = AN + path + "?" + anQuery(extra, period);
  return { url, answer: call("GET", url) };
};

function setCSV(id, url, slot) {
  const tools = an.cards[id].tools;
  const at = slot ? tools.querySelector(".csv-slot") : tools;
  at.replaceChildren(csvLink(url));
}

async function loadAnalytics(_, params) {
  if (!an.built) buildAnalytics();
  await loadRef().catch(() => {}); // names of departments and categories, when this node runs the case workflow
  const form = $("#an-form");
  let days = Number(params && params.get("days"));
  if (![7, 30, 90].includes(days)) days = 30;
  const region = ((params && params.get("region")) || "").trim().replace(/\/+$/, "");
  form.elements.days.value = String(days);
  form.elements.region.value = region;
  form.elements.region.placeholder = me.region ? `${me.region} (your region 本辖区)` : "Region 区域 (empty: all 全部)";
  const err = $("#an-error");
  err.textContent = "";
  if (region && me.region && region !== me.region && !region.startsWith(me.region + "/")) {
    err.textContent = `${region} lies outside your region ${me.region}. 超出本人辖区。`;
    return;
  }
  const to = addDays(ymd(new Date()), 1), from = addDays(to, -days);
  an.q = { days, region, from, to, dayList: daysFrom(from, to) };
  an.scope = region || me.region || "";
  $("#an-scope").textContent = an.scope || "whole jurisdiction 全辖区";
  $("#an-period").textContent = `${from} – ${addDays(to, -1)}`;
  const gen = ++an.gen;
  an.regions = new Set();
  loadSeries(gen);
  loadPerformance(gen);
  loadFleet(gen);
  loadHotspots(gen);
  loadRules(gen);
  loadDevices(gen);
  const rep = $("#an-report");
  if (rep && rep.dataset.kind) showReport(rep.dataset.kind); // the report shown, for the region now chosen
}

const emptyNote = (text) => el("p", { class: "muted empty" }, text);

// seriesDays spreads a series' rows ([bucket, key, count]) over the days.
function seriesDays(t, keyOf) {
  const idx = new Map(an.q.dayList.map((d, i) => [d, i]));
  const out = new Map();
  for (const [b, k, n] of t.rows) {
    const key = keyOf ? keyOf(k) : k;
    if (!out.has(key)) out.set(key, an.q.dayList.map(() => 0));
    if (idx.has(dayOf(b))) out.get(key)[idx.get(dayOf(b))] += n;
  }
  return out;
}

function loadSeries(gen) {
  const days = an.q.dayList;
  const cases = anGet("series", { subject: "cases", bucket: "day", by: "colour" });
  setCSV("cases", cases.url);
  fill("cases", gen, cases.answer, (t) => {
    if (!t.rows.length) return emptyNote("No cases opened in this period. 本期无新受理案件。");
    const known = new Set(RISK_COLOURS.map(([k]) => k));
    const per = seriesDays(t, (k) => (known.has(k) ? k : ""));
    const series = RISK_COLOURS.filter(([k]) => per.has(k)).map(([k, name, colour]) => ({ name, colour, values: per.get(k) }));
    const total = t.rows.reduce((a, r) => a + r[2], 0);
    return [stackedBars(days, series, "cases 件"), legend(series.map((s) => [s.name, s.colour])),
      el("p", { class: "muted small" }, `${fmtInt(total)} cases opened 新受理案件 · by the colour they were registered with 按受理时风险颜色`)];
  });

  const events = anGet("series", { subject: "events", bucket: "day", by: "type", limit: 5 });
  setCSV("events", events.url);
  fill("events", gen, events.answer, (t) => {
    if (!t.rows.length) return emptyNote("No events in this period. 本期无事件。");
    const per = seriesDays(t);
    const keys = [...per.keys()].sort((a, b) => (a === "other") - (b === "other"));
    const series = keys.map((k, i) => ({ name: eventName(k), values: per.get(k), dashed: k === "other",
      colour: k === "other" ? OTHER_COLOUR : LINE_COLOURS[i % LINE_COLOURS.length] }));
    const total = t.rows.reduce((a, r) => a + r[2], 0);
    return [lines(days, series, "events 条"), legend(series.map((s) => [s.name, s.colour, s.dashed])),
      el("p", { class: "muted small" }, `${fmtInt(total)} events 事件 · the 5 commonest types and the rest 前5类及其他`)];
  });

  const cats = anGet("series", { subject: "cases", bucket: "month", by: "category" });
  setCSV("categories", cats.url);
  fill("categories", gen, cats.answer, (t) => {
    const sums = new Map();
    for (const [, k, n] of t.rows) sums.set(k, (sums.get(k) || 0) + n);
    if (!sums.size) return emptyNote("No cases opened in this period. 本期无新受理案件。");
    const rows = [...sums].sort((a, b) => b[1] - a[1]).map(([k, n]) => ({ label: catShort(k), value: n, title: `${catName(k)} ${k}: ${n}` }));
    return hbars(rows, "cases 件");
  });
}

function kpi(name, value, note, cls) {
  return el("div", { class: "tile kpi " + (cls || "") }, el("div", { class: "name" }, name),
    el("div", { class: "state" }, value), el("div", { class: "note muted small" }, note || "\u00a0"));
}

function kpiGroup(id) {
  let g = document.getElementById(id);
  if (!g) {
    g = el("div", { id, class: "kpi-group" });
    $("#an-kpis").append(g);
  }
  return g;
}

// tiles fills a row of KPI tiles when its answer comes.
async function tiles(id, gen, answer, render) {
  const g = kpiGroup(id);
  g.replaceChildren(kpi("…", el("span", { class: "muted loading" }, "Loading… 载入中"), ""));
  try {
    const t = await answer;
    if (gen === an.gen) g.replaceChildren(...render(t));
  } catch (e) {
    if (gen === an.gen) g.replaceChildren(errorText(e));
  }
}

const colIndex = (t) => Object.fromEntries(t.columns.map((k, j) => [k, j]));

function loadPerformance(gen) {
  const perf = anGet("performance", { by: "department" });
  setCSV("performance", perf.url);
  tiles("an-kpi-cases", gen, perf.answer, (t) => {
    const i = colIndex(t), r = t.rows.find((x) => x[0] === "(total)") || [];
    const v = (k) => r[i[k]];
    const answered = (v("satisfied") || 0) + (v("basically") || 0) + (v("dissatisfied") || 0);
    return [
      kpi("Cases opened 受理案件", fmtInt(v("opened") || 0), `${fmtInt(v("open") || 0)} still open 仍在办`),
      kpi("Closed 办结销号", fmtInt(v("closed") || 0), v("opened") ? `${fmtPct(v("closed") / v("opened"), 0)} of opened 占受理` : ""),
      kpi("On-time rate 按时办结率", fmtPct(v("on_time_rate")), `${fmtInt(v("on_time") || 0)} on time 按时 · ${fmtInt(v("late") || 0)} late 超时`),
      kpi("Median time to resolve 办结用时中位数", fmtDur(v("resolve_median_s")), v("resolve_p90_s") != null ? `p90 ${fmtDur(v("resolve_p90_s"))}` : ""),
      kpi("Satisfaction 满意率", fmtPct(v("satisfaction_rate")), `${fmtInt(answered)} followed up 回访`),
    ];
  });
  fill("performance", gen, perf.answer, (t) => {
    if (!t.rows.some((r) => r[0] !== "(total)")) return emptyNote("No cases opened in this period. 本期无新受理案件。");
    return [perfTable(t), el("p", { class: "muted small" },
      "Times from registration, median (p90 on hover) 自受理起用时，中位数（悬停看P90） · cases opened in the period 本期受理案件")];
  });
}

// perfTable shows how cases were handled (a performance answer), most
// cases first, the total last.
function perfTable(t) {
  const i = colIndex(t);
  const rows = t.rows.filter((r) => r[0] !== "(total)").sort((a, b) => b[i.opened] - a[i.opened]);
  rows.push(...t.rows.filter((r) => r[0] === "(total)"));
  const dur = (k) => (r) => el("span", { title: `p90 ${fmtDur(r[i[k.replace("median", "p90")]])}` }, fmtDur(r[i[k]]));
  const sat = (r) => el("span", { title: `满意 satisfied ${r[i.satisfied]} · 基本满意 basically ${r[i.basically]} · 不满意 dissatisfied ${r[i.dissatisfied]}` },
    fmtPct(r[i.satisfaction_rate]));
  const key = t.columns[0];
  return table([
    [colLabel(key), (r) => (key === "department" ? deptLabel(r[0]) : cell(key, r[0]))],
    ["Opened 受理", (r) => fmtInt(r[i.opened]), "num"],
    ["Open 在办", (r) => fmtInt(r[i.open]), "num"],
    ["Closed 办结", (r) => fmtInt(r[i.closed]), "num"],
    ["On-time rate 按时办结率", (r) => rateCell(r[i.on_time_rate]), "ratecol"],
    ["Late 超时", (r) => fmtInt(r[i.late]), "num"],
    ["Dispatch 交办", dur("dispatch_median_s"), "num"],
    ["Accept 签收", dur("accept_median_s"), "num"],
    ["Resolve 办结", dur("resolve_median_s"), "num"],
    ["Urges 催办", (r) => fmtInt(r[i.urges]), "num"],
    ["Escalations 提级", (r) => fmtInt(r[i.escalations]), "num"],
    ["Satisfaction 满意率", sat, "num"],
  ], rows, { class: "perf", rowClass: (r) => (r[0] === "(total)" ? "total" : "") });
}

// fleetDepth: the regions one level below the scope (townships when the
// scope is the whole jurisdiction of one county).
const fleetDepth = () => Math.min(8, an.scope ? an.scope.split("/").length + 1 : 2);

// fleetTable lists online and intact rates against their targets.
function fleetTable(t, keyHeader, key) {
  const i = colIndex(t);
  const met = (r) => r[i.online_ok] && r[i.intact_ok];
  return table([
    [keyHeader, key],
    ["Cameras 路数", (r) => fmtInt(r[i.cameras]), "num"],
    ["Online 在线率", (r) => rateCell(r[i.online_rate], r[i.online_ok] ? "good" : "poor"), "ratecol"],
    ["Intact 完好率", (r) => rateCell(r[i.intact_rate], r[i.intact_ok] ? "good" : "poor"), "ratecol"],
    ["Target 达标", (r) => el("span", { class: "badge " + (met(r) ? "ok" : "off"),
      title: `online 在线 ${r[i.online_ok] ? "✓" : "✗"} · intact 完好 ${r[i.intact_ok] ? "✓" : "✗"}` }, met(r) ? "✓ met 达标" : "✗ below 未达标")],
  ], t.rows, { class: "fleet", rowClass: (r) => (met(r) ? "" : "miss") });
}

function worstTable(t) {
  const i = colIndex(t);
  return table([
    ["Camera · region 摄像机·区域", (r) => el("span", { title: `${fmtInt(r[i.minutes])} minutes reported 分钟` }, placeCell(r[0], r[i.region]))],
    ["Vendor 厂商", (r) => r[i.vendor] || "—"],
    ["Online 在线率", (r) => rateCell(r[i.online_rate], r[i.online_rate] >= TARGET_ONLINE ? "good" : "poor"), "ratecol"],
    ["Intact 完好率", (r) => rateCell(r[i.intact_rate], r[i.intact_rate] >= TARGET_INTACT ? "good" : "poor"), "ratecol"],
    ["Top fault 主要故障", (r) => (r[i.top_fault] ? `${r[i.top_fault]} · ${fmtInt(r[i.top_fault_minutes])} min` : el("span", { class: "muted" }, "—"))],
  ], t.rows, { class: "worst" });
}

function loadFleet(gen) {
  const fleet = anGet("cameras", { by: "region", region_depth: fleetDepth() });
  setCSV("fleet", fleet.url);
  tiles("an-kpi-fleet", gen, fleet.answer, (t) => {
    const i = colIndex(t);
    let minutes = 0, online = 0, intact = 0, cameras = 0;
    for (const r of t.rows) {
      const m = r[i.minutes] || 0;
      minutes += m;
      online += (r[i.online_rate] || 0) * m;
      intact += (r[i.intact_rate] || 0) * m;
      cameras += r[i.cameras] || 0;
    }
    const rate = (x) => (minutes ? x / minutes : null);
    const tile = (name, r, target) => kpi(name, fmtPct(r), r == null ? "no health data yet 暂无巡检数据" : `target 目标 ${fmtPct(target, 0)} · ${fmtInt(cameras)} cameras 路`,
      r == null ? "" : r >= target ? "ok" : "bad");
    return [tile("Camera online rate 摄像机在线率", rate(online), TARGET_ONLINE), tile("Camera intact rate 摄像机完好率", rate(intact), TARGET_INTACT)];
  });
  const vendorBox = el("div", { class: "vendors" });
  fill("fleet", gen, fleet.answer, (t) => {
    addRegions(t.rows.map((r) => r[0]));
    if (!t.rows.length) return emptyNote("No camera health in this period. 本期无摄像机巡检数据。");
    return [fleetTable(t, "Region 区域", (r) => regionCell(r[0])), vendorBox];
  });

  const worst = anGet("cameras/worst", { limit: 10 });
  setCSV("worst", worst.url);
  fill("worst", gen, worst.answer, (t) => {
    const i = colIndex(t);
    addRegions(t.rows.map((r) => r[i.region]));
    if (!t.rows.length) return emptyNote("No camera health in this period. 本期无摄像机巡检数据。");
    return worstTable(t);
  });

  // By vendor once the region and worst-camera questions are answered:
  // each reads every health minute, and on the embedded store three at
  // once can run past the query timeout.
  Promise.allSettled([fleet.answer, worst.answer]).then(async ([f]) => {
    if (gen !== an.gen || f.status !== "fulfilled" || !f.value.rows.length) return;
    const vendors = anGet("cameras", { by: "vendor" });
    const head = el("h3", { class: "sub" }, "By vendor 按厂商 ", csvLink(vendors.url));
    vendorBox.replaceChildren(head, el("p", { class: "muted loading" }, "Loading… 载入中"));
    try {
      const v = await vendors.answer;
      if (gen === an.gen) vendorBox.replaceChildren(head, fleetTable(v, "Vendor 厂商", (r) => r[0] || "—"));
    } catch (e) {
      if (gen === an.gen) vendorBox.replaceChildren(head, errorText(e));
    }
  });
}

function loadHotspots(gen) {
  const hot = anGet("hotspots", { subject: an.hotSubject, limit: 10 }, false);
  setCSV("hotspots", hot.url, true);
  fill("hotspots", gen, hot.answer, (t) => {
    const i = colIndex(t);
    addRegions(t.rows.map((r) => r[i.region]));
    if (!t.rows.length) return emptyNote("No grid rose this week. 本周无上升网格。");
    return [table([
      ["Grid · region 网格·区域", (r) => placeCell(r[0], r[i.region])],
      ["This week 本周", (r) => fmtInt(r[i.this_week]), "num"],
      ["Last week 上周", (r) => fmtInt(r[i.last_week]), "num"],
      ["Rise 上升", (r) => el("span", { class: "rise" }, `↑ ${fmtInt(r[i.rise])}`), "num"],
      ["%", (r) => (r[i.rise_pct] == null ? el("span", { class: "rise", title: "none last week 上周为零" }, "new 新增") : el("span", { class: "rise" }, `↑ ${r[i.rise_pct].toFixed(0)} %`)), "num"],
    ], t.rows, { class: "hot" }), el("p", { class: "muted small" }, "The last 7 days against the 7 before 近7天与前7天对比")];
  });
}

function loadRules(gen) {
  const rules = anGet("rules");
  setCSV("rules", rules.url);
  fill("rules", gen, rules.answer, (t) => {
    const i = colIndex(t);
    if (!t.rows.length) return emptyNote("No cases opened by alert rules in this period. 本期无告警规则生成的案件。");
    return [rulesTable(t), el("p", { class: "muted small" }, "False alert: the case closed as unsubstantiated 误报：案件以“不属实”办结")];
  });
}

function rulesTable(t) {
  const i = colIndex(t);
  return table([
    ["Rule 规则", (r) => el("code", {}, r[0])],
    ["Alerts 告警", (r) => fmtInt(r[i.alerts]), "num"],
    ["Cases 案件", (r) => fmtInt(r[i.cases]), "num"],
    ["Per case 告警/案件", (r) => (r[i.alerts_per_case] == null ? "—" : r[i.alerts_per_case].toFixed(1)), "num"],
    ["False 不属实", (r) => fmtInt(r[i.unsubstantiated]), "num"],
    ["False-alert rate 误报率", (r) => rateCell(r[i.false_rate], "warn"), "ratecol"],
  ], t.rows, { class: "rules" });
}

function loadDevices(gen) {
  const dev = anGet("devices");
  setCSV("devices", dev.url);
  fill("devices", gen, dev.answer, (t) => {
    const i = colIndex(t);
    if (!t.rows.length) return emptyNote("No device went silent or flapped. 无离线或频繁掉线设备。");
    return [table([
      ["Device · region 设备·区域", (r) => placeCell(r[0], r[i.region])],
      ["Offline 离线", (r) => `${fmtInt(r[i.offline])}×`, "num"],
      ["Last status 最后状态", (r) => el("span", {}, eventName(r[i.last]), el("div", { class: "muted small" }, fmtShort(r[i.last_time])))],
      ["", (r) => el("span", { class: "badges" }, r[i.silent] ? el("span", { class: "badge off" }, "离线 silent") : "", " ",
        r[i.flapping] ? el("span", { class: "badge flag" }, "频繁掉线 flapping") : "")],
    ], t.rows.slice(0, 15), { class: "devices" }),
    t.rows.length > 15 ? el("p", { class: "muted small" }, `${t.rows.length - 15} more in the CSV 其余 ${t.rows.length - 15} 台见 CSV`) : ""];
  });
}

// addRegions offers the regions seen (and those above them, within the
// user's region) in the region field.
function addRegions(list) {
  for (const r of list) {
    if (!r) continue;
    const parts = r.split("/");
    for (let n = 1; n <= parts.length; n++) {
      const p = parts.slice(0, n).join("/");
      if (!me.region || p === me.region || p.startsWith(me.region + "/")) an.regions.add(p);
    }
  }
  $("#an-regions").replaceChildren(...[...an.regions].sort().slice(0, 300).map((r) => el("option", { value: r })));
}

// ---- Reports ----

function buildReports() {
  const date = el("input", { type: "date", name: "date", value: addDays(ymd(new Date()), -1), "aria-label": "Date 日期" });
  const buttons = REPORTS.map(([kind, cn, en]) => el("button", { type: "button", class: "ghost", "data-report": kind, onclick: () => showReport(kind) }, `${cn} ${en}`));
  an.cards.reports.body.replaceChildren(
    el("div", { class: "inline report-bar" }, ...buttons,
      el("label", { class: "check" }, "Date 日期", date),
      el("span", { class: "muted small" }, "the day, week (from Monday) or month holding it 所在日、周（周一起）或月")),
    el("div", { id: "an-report" }, el("p", { class: "muted" }, "Choose a report. 请选择报告。")));
  an.reportDate = date;
}

async function showReport(kind) {
  const box = $("#an-report");
  box.dataset.kind = kind;
  for (const b of document.querySelectorAll("[data-report]")) b.classList.toggle("open", b.dataset.report === kind);
  const q = new URLSearchParams();
  if (an.reportDate.value) q.set("date", an.reportDate.value);
  if (an.q && an.q.region) q.set("region", an.q.region);
  const url = AN + "reports/" + kind + (q.toString() ? "?" + q : "");
  box.replaceChildren(el("p", { class: "muted loading" }, "Loading… 载入中"));
  const gen = an.gen;
  let rep;
  try {
    rep = await call("GET", url);
  } catch (e) {
    box.replaceChildren(errorText(e));
    return;
  }
  if (gen !== an.gen || box.dataset.kind !== kind) return;
  const [cn, en] = REPORTS.find(([k]) => k === kind).slice(1);
  const from = dayOf(rep.from), last = addDays(dayOf(rep.to), -1);
  box.replaceChildren(
    el("h3", { class: "report-head" }, `${cn} `, el("span", { class: "en" }, `${en} report`),
      ` · ${from}${last !== from ? " – " + last : ""} · ${rep.region || "全辖区 whole jurisdiction"} `, csvLink(url)),
    el("div", { class: "sections" }, ...rep.sections.map((s) => el("div", { class: "section", "data-section": s.name },
      el("h4", {}, SECTION_CN[s.name] || s.name, " ", csvSave(`report-${kind}-${from}-${s.name}.csv`, s)),
      ...[sectionTable(s)].flat()))));
}

// sectionTable shows a report's section as the view shows the same answer.
function sectionTable(s) {
  if (!s.rows.length) return answerTable(s);
  switch (s.name) {
    case "performance_total": case "performance_by_department": return perfTable(s);
    case "cameras_by_region": return fleetTable(s, "Region 区域", (r) => regionCell(r[0]));
    case "worst_cameras": return worstTable(s);
    case "rules": return rulesTable(s);
  }
  return answerTable(s);
}

// ---- Raw SQL ----

function buildSQL() {
  const c = an.cards.sql;
  const text = el("textarea", { name: "query", rows: 7, spellcheck: "false", class: "sql" },
    "SELECT type, count() AS n\nFROM events\nWHERE time >= now() - INTERVAL 7 DAY\nGROUP BY type\nORDER BY n DESC\nLIMIT 20");
  const out = el("div", { id: "an-sql-result" });
  const run = el("button", { type: "submit" }, "Run 运行");
  const form = el("form", { class: "sql-form" }, text, el("div", { class: "inline" }, run,
    el("span", { class: "muted small" }, "Read-only, ClickHouse only; every region 只读，仅 ClickHouse；不限区域")), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    run.disabled = true;
    out.replaceChildren(el("p", { class: "muted loading" }, "Running… 运行中"));
    try {
      const t = await call("POST", AN + "sql", { query: text.value });
      out.replaceChildren(el("p", { class: "small muted" }, `${fmtInt(t.rows.length)} rows 行 `, csvSave("sql-result.csv", t)), ...[answerTable(t)].flat());
    } catch (e) {
      out.replaceChildren(errorText(e));
    } finally {
      run.disabled = false;
    }
  });
  c.body.replaceChildren(form);
}

function setupAnalytics() {
  $("#an-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const q = new URLSearchParams({ days: f.elements.days.value });
    const region = f.elements.region.value.trim();
    if (region) q.set("region", region);
    const hash = "#/analytics?" + q;
    if (location.hash !== hash) location.hash = hash;
    else loadAnalytics(null, q);
  });
  $("#an-form").addEventListener("change", (ev) => {
    if (ev.target.name === "days") ev.target.form.requestSubmit();
  });
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
  setupCases();
  setupAnalytics();
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
