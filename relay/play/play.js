// Sharpeye live camera page: log in if needed, then play one camera over
// WHEP (an SDP offer POSTed once ICE gathering is complete: no trickle).
'use strict';

const camera = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
const $ = (id) => document.getElementById(id);
let pc = null;
let session = null; // the WHEP session URL (Location)
let statsTimer = null;
let last = null;    // previous inbound-rtp report, for rates

async function errorMessage(res) {
  try {
    const body = await res.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (e) { /* not JSON */ }
  return `HTTP ${res.status}`;
}

async function boot() {
  $('camera').textContent = camera;
  document.title = `${camera} · Sharpeye`;
  const res = await fetch('/api/v1/auth/me', { credentials: 'same-origin' });
  if (res.status === 401) {
    $('login').hidden = false;
    $('login').elements.username.focus();
    return;
  }
  if (!res.ok) {
    showPlayer();
    $('error').textContent = await errorMessage(res);
    return;
  }
  showPlayer();
  play();
}

function showPlayer() {
  $('login').hidden = true;
  $('player').hidden = false;
}

$('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const f = ev.target;
  $('login-error').textContent = '';
  const res = await fetch('/api/v1/auth/login', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: f.elements.username.value, password: f.elements.password.value }),
  });
  if (!res.ok) {
    $('login-error').textContent = await errorMessage(res);
    return;
  }
  f.elements.password.value = '';
  showPlayer();
  play();
});

$('retry').addEventListener('click', () => { stop(); play(); });

function setState(text, live) {
  $('state').textContent = text;
  $('state').classList.toggle('live', !!live);
}

// gathered resolves when ICE gathering is complete, or after a bound (the
// host candidates come first; a slow STUN server must not hold us up).
function gathered(pc, ms) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    const done = () => { clearTimeout(t); pc.removeEventListener('icegatheringstatechange', check); resolve(); };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const t = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

async function play() {
  $('error').textContent = '';
  $('retry').hidden = true;
  setState('connecting 连接中…');
  pc = new RTCPeerConnection();
  const mine = pc;
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.ontrack = (ev) => {
    $('video').srcObject = ev.streams[0] || new MediaStream([ev.track]);
  };
  pc.onconnectionstatechange = () => {
    if (pc !== mine) return;
    const s = pc.connectionState;
    if (s === 'connected') setState('live 直播', true);
    else if (s === 'failed' || s === 'closed') fail('connection lost 连接已断开');
    else setState(s);
  };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 2000);
    const res = await fetch(`/api/v1/cameras/${encodeURIComponent(camera)}/whep`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/sdp' },
      body: pc.localDescription.sdp,
    });
    if (res.status === 401) { stop(); location.reload(); return; }
    if (!res.ok) { fail(await errorMessage(res)); return; }
    session = res.headers.get('Location');
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    statsTimer = setInterval(showStats, 1000);
  } catch (e) {
    fail(String(e));
  }
}

function fail(msg) {
  setState('stopped 已停止');
  $('error').textContent = msg;
  $('retry').hidden = false;
  stop();
}

async function showStats() {
  if (!pc) return;
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
    let kbps = '';
    if (last && s.timestamp > last.timestamp) {
      kbps = ` · ${Math.round((s.bytesReceived - last.bytesReceived) * 8 / (s.timestamp - last.timestamp))} kbit/s`;
    }
    last = s;
    const size = s.frameWidth ? `${s.frameWidth}×${s.frameHeight}` : '–';
    const fps = s.framesPerSecond ? `${Math.round(s.framesPerSecond)} fps` : '– fps';
    const mb = (s.bytesReceived / 1048576).toFixed(1);
    $('stats').textContent = `${size} · ${fps}${kbps} · ${mb} MiB · lost ${s.packetsLost || 0}`;
  });
}

// stop ends the WHEP session (keepalive: it also runs while the page
// unloads) and closes the peer connection.
function stop() {
  clearInterval(statsTimer);
  statsTimer = null;
  last = null;
  if (session) {
    fetch(session, { method: 'DELETE', credentials: 'same-origin', keepalive: true }).catch(() => {});
    session = null;
  }
  if (pc) {
    const old = pc;
    pc = null;
    old.close();
  }
}

window.addEventListener('pagehide', stop);
boot().catch((e) => { showPlayer(); $('error').textContent = String(e); });
