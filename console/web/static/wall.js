// Sharpeye console: the video wall. Each tile plays one camera over WHEP
// (an SDP offer POSTed once ICE gathering is complete), ends its session
// (DELETE) when it changes camera or the wall is left, and reconnects by
// itself when its stream drops: a wall runs for days. The layout and the
// cameras stay in this browser (localStorage); #/wall?layout=3&cams=a,b
// opens a given wall.
"use strict";

const WALL_LAYOUTS = [1, 2, 3, 4]; // tiles per side
const WALL_KEY = "sharpeye.wall";
const WALL_RETRY_MS = 3000;

const wall = { side: 2, cams: [], tiles: [], cameras: [], focus: -1 };

views.wall = loadWall;

async function loadWall(_arg, params) {
  const saved = wallSaved();
  const side = Number(params.get("layout")) || saved.side || 2;
  wall.side = WALL_LAYOUTS.includes(side) ? side : 2;
  wall.cams = params.has("cams") ? params.get("cams").split(",").map((c) => c.trim()) : saved.cams || [];
  $("#wall-layouts").replaceChildren(...WALL_LAYOUTS.map((n) =>
    el("button", { type: "button", class: "ghost small-btn", "data-side": n, onclick: () => setWallSide(n) }, `${n}×${n}`)));
  $("#wall-clear").onclick = () => { wall.cams = []; buildWall(); };
  try {
    wall.cameras = (await call("GET", "/api/v1/cameras")).cameras;
  } catch (e) {
    stopWall();
    wall.tiles = [];
    $("#wall").replaceChildren();
    $("#wall-summary").textContent = `cameras unavailable 无法获取摄像机: ${e.message}`;
    return;
  }
  buildWall();
}

function wallSaved() {
  try {
    return JSON.parse(localStorage.getItem(WALL_KEY)) || {};
  } catch {
    return {};
  }
}

function saveWall() {
  try {
    localStorage.setItem(WALL_KEY, JSON.stringify({ side: wall.side, cams: wall.cams }));
  } catch { /* private mode: the wall is not kept */ }
}

function setWallSide(n) {
  wall.side = n;
  buildWall();
}

// buildWall (re)makes every tile: the players of the old tiles end first.
function buildWall() {
  stopWall();
  const n = wall.side * wall.side;
  wall.cams = wall.cams.slice(0, n);
  wall.focus = -1;
  for (const b of document.querySelectorAll("#wall-layouts button")) b.classList.toggle("open", Number(b.dataset.side) === wall.side);
  const grid = $("#wall");
  grid.style.setProperty("--side", wall.side);
  grid.classList.remove("focused");
  wall.tiles = [];
  for (let i = 0; i < n; i++) wall.tiles.push(wallTile(i));
  grid.replaceChildren(...wall.tiles.map((t) => t.root));
  for (const t of wall.tiles) if (wall.cams[t.index]) t.play(wall.cams[t.index]);
  saveWall();
  wallSummary();
}

function wallSummary() {
  const live = wall.tiles.filter((t) => t.live).length;
  const chosen = wall.tiles.filter((t) => t.camera).length;
  $("#wall-summary").textContent = `${live} live 直播 / ${chosen} chosen 已选 / ${wall.tiles.length} tiles 格`;
}

// wallTile is one tile: its elements and its player.
function wallTile(index) {
  const video = el("video", { muted: "", autoplay: "", playsinline: "" });
  video.muted = true;
  const state = el("span", { class: "wall-state" }, "");
  const stats = el("span", { class: "wall-stats muted" }, "");
  const select = el("select", { "aria-label": `camera of tile ${index + 1}` },
    el("option", { value: "" }, "— choose a camera 选择摄像机 —"),
    ...wall.cameras.map((c) => el("option", { value: c.id }, `${c.name || c.id}${["online", "idle"].includes(c.status.state) ? "" : " (" + c.status.state + ")"}`)));
  const head = el("div", { class: "wall-head" }, select, state);
  const root = el("div", { class: "wall-tile", "data-index": index }, head, video, el("div", { class: "wall-foot" }, stats));
  const t = {
    index, root, video, camera: "", live: false, pc: null, session: "", timer: null, retry: null, last: null,
    play(id) {
      this.end();
      this.camera = id;
      select.value = id;
      if (select.value !== id) { // not a camera this user may see (or gone)
        this.camera = "";
        setState(`unknown camera 未知摄像机 ${id}`, "bad");
        return;
      }
      this.connect();
    },
    async connect() {
      clearTimeout(this.retry);
      setState("connecting 连接中…");
      const pc = new RTCPeerConnection();
      this.pc = pc;
      pc.addTransceiver("video", { direction: "recvonly" });
      pc.ontrack = (ev) => { video.srcObject = ev.streams[0] || new MediaStream([ev.track]); };
      pc.onconnectionstatechange = () => {
        if (this.pc !== pc) return;
        const s = pc.connectionState;
        if (s === "connected") {
          this.live = true;
          setState("live 直播", "live");
          wallSummary();
        } else if (s === "failed" || s === "closed" || s === "disconnected") {
          this.drop(`stream lost 断流 (${s})`);
        }
      };
      try {
        await pc.setLocalDescription(await pc.createOffer());
        await wallGathered(pc, 2000);
        if (this.pc !== pc) return;
        const res = await fetch(`/api/v1/cameras/${encodeURIComponent(this.camera)}/whep`, {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp,
        });
        if (this.pc !== pc) { // changed or stopped meanwhile: end what was made
          const loc = res.headers.get("Location");
          if (res.ok && loc) fetch(loc, { method: "DELETE", credentials: "same-origin", keepalive: true }).catch(() => {});
          return;
        }
        if (res.status === 401) { showLogin(); return; } // which stops the wall
        if (!res.ok) {
          const body = await res.json().catch(() => null);
          this.drop((body && body.error && body.error.message) || `HTTP ${res.status}`);
          return;
        }
        this.session = res.headers.get("Location") || "";
        await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
        this.timer = setInterval(() => this.stats(), 2000);
      } catch (e) {
        if (this.pc === pc) this.drop(String(e));
      }
    },
    // drop ends the session after a failure and tries the camera again
    // shortly.
    drop(why) {
      const id = this.camera;
      this.end();
      setState(`${why} · retrying 重连中`, "bad");
      this.retry = setTimeout(() => { if (this.camera === id && view.name === "wall" && me) this.connect(); }, WALL_RETRY_MS);
    },
    // end ends the session (DELETE) and the peer connection, keeping the
    // camera chosen.
    end() {
      clearTimeout(this.retry);
      clearInterval(this.timer);
      this.timer = null;
      this.last = null;
      if (this.session) {
        fetch(this.session, { method: "DELETE", credentials: "same-origin", keepalive: true }).catch(() => {});
        this.session = "";
      }
      if (this.pc) {
        const old = this.pc;
        this.pc = null;
        old.close();
      }
      video.srcObject = null;
      if (this.live) {
        this.live = false;
        wallSummary();
      }
      stats.textContent = "";
    },
    // stop ends the session and leaves the tile empty.
    stop() {
      this.end();
      this.camera = "";
      setState("");
    },
    async stats() {
      if (!this.pc) return;
      (await this.pc.getStats()).forEach((s) => {
        if (s.type !== "inbound-rtp" || s.kind !== "video") return;
        let kbps = "";
        if (this.last && s.timestamp > this.last.timestamp) {
          kbps = ` · ${Math.round((s.bytesReceived - this.last.bytesReceived) * 8 / (s.timestamp - this.last.timestamp))} kbit/s`;
        }
        this.last = s;
        const size = s.frameWidth ? `${s.frameWidth}×${s.frameHeight}` : "–";
        const fps = s.framesPerSecond ? `${Math.round(s.framesPerSecond)} fps` : "– fps";
        stats.textContent = `${size} · ${fps}${kbps}`;
      });
    },
  };
  function setState(text, cls) {
    state.textContent = text;
    state.className = "wall-state" + (cls ? " " + cls : "");
  }
  select.addEventListener("change", () => {
    wall.cams[index] = select.value;
    saveWall();
    if (select.value) t.play(select.value);
    else t.stop();
  });
  root.addEventListener("dblclick", (ev) => {
    if (ev.target === select) return;
    const grid = $("#wall");
    const focused = wall.focus === index;
    wall.focus = focused ? -1 : index;
    grid.classList.toggle("focused", !focused);
    for (const x of wall.tiles) x.root.classList.toggle("focus", x.index === wall.focus);
  });
  return t;
}

// wallGathered resolves when ICE gathering is complete, or after a bound.
function wallGathered(pc, ms) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const done = () => { clearTimeout(timer); pc.removeEventListener("icegatheringstatechange", check); resolve(); };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, ms);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

// stopWall ends every tile's session (leaving the wall, the page, or
// logging out): the cameras are not watched for nothing.
function stopWall() {
  for (const t of wall.tiles) t.stop();
}

window.addEventListener("hashchange", () => { if (!location.hash.startsWith("#/wall")) stopWall(); });
window.addEventListener("pagehide", stopWall);
