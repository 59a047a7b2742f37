// The teacher dashboard of `voice-tutor serve` (/dashboard.html).
//
// Log in with the teacher password (`--teacher-password`, or the `#key=` of the printed link):
// /api/teacher/rooms lists the live rooms with a teacher token for each; the page joins every
// room over the XR bridge's websocket as a teacher (protocol: xr_bridge/PROTOCOL.md) and shows
// its live captions, its alerts (safety, repeated wrong answers, stuck on a skill) and mastery,
// sends hints and messages into it (`teacher_message`), and ends its session
// (/api/teacher/end).  The password travels only in an Authorization header.

const PROTOCOL_VERSION = 1;
const POLL_MS = 1500;
const MAX_LINES = 200;
const PASSWORD_STORE = "voice-tutor-teacher";

const $ = (id) => document.getElementById(id);

const board = (window.dashboard = { loggedIn: false, rooms: {}, alerts: 0, polls: 0, errors: [] });
let password = "";
let pollTimer = null;
const views = new Map(); // room id -> RoomView

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${password}` }, cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(body.error || `HTTP ${response.status}`), { status: response.status });
  return body;
}

class RoomView {
  constructor(info) {
    this.id = info.room;
    this.token = info.token;
    this.members = new Map();
    this.tutorLines = new Map();
    this.alertKeys = new Set();
    this.mastery = new Map();
    this.ws = null;
    this.closed = false;
    this.state = (board.rooms[this.id] = { joined: false, captions: 0, alerts: [], hints: 0, ended: 0, learners: [] });
    const card = $("room-card").content.firstElementChild.cloneNode(true);
    card.dataset.room = this.id;
    card.querySelector(".room-name").textContent = `Room ${this.id}${info.kiosk ? " (kiosk)" : ""}`;
    this.card = card;
    this.captions = card.querySelector(".captions");
    this.alerts = card.querySelector(".alerts");
    card.querySelector(".send").addEventListener("submit", (event) => this.send(event));
    card.querySelector(".end").addEventListener("click", () => this.end());
    $("rooms").append(card);
    this.update(info);
    this.connect();
  }

  update(info) {
    this.token = info.token;
    this.state.learners = info.learners;
    this.card.querySelector(".learners").textContent = info.learners.length
      ? `Learners: ${info.learners.join(", ")}`
      : "No learner in the room";
    for (const alert of info.alerts) this.alert(alert);
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "hello", versions: [PROTOCOL_VERSION], client: "teacher-dashboard/1" }));
    ws.onmessage = (event) => {
      if (typeof event.data === "string") this.onMessage(JSON.parse(event.data));
    };
    ws.onclose = (event) => {
      this.state.joined = false;
      if (this.closed || this.ws !== ws) return;
      this.card.querySelector(".room-state").textContent = `Disconnected (${event.code}); reconnecting…`;
      setTimeout(() => !this.closed && this.connect(), event.code === 4001 ? POLL_MS * 2 : 1000);
    };
  }

  onMessage(message) {
    switch (message.type) {
      case "welcome":
        this.ws.send(JSON.stringify({ type: "join", token: this.token, role: "teacher", name: "Teacher" }));
        break;
      case "joined":
        this.state.joined = true;
        this.clientId = message.client_id;
        this.members = new Map(message.members.map((m) => [m.client_id, m]));
        this.card.querySelector(".room-state").textContent = "Live";
        break;
      case "room_state":
        this.captions.replaceChildren();
        this.tutorLines.clear();
        for (const caption of message.captions) {
          const who = { learner: "Learner", tutor: "Tutor", teacher: "Teacher" }[caption.speaker];
          this.line(caption.speaker, who, caption.text);
        }
        break;
      case "member_joined":
        this.members.set(message.client_id, message);
        if (message.role === "learner") this.line("system", "", `${message.name} joined.`);
        break;
      case "member_left":
        if (this.members.get(message.client_id)?.role === "learner") this.line("system", "", `${message.name} left (${message.reason.replace(/_/g, " ")}).`);
        break;
      case "final_transcript":
        this.line("learner", this.members.get(message.sender)?.name ?? "Learner", message.text);
        break;
      case "tutor_text": {
        let line = this.tutorLines.get(message.turn_id);
        if (!line) {
          line = this.line("tutor", "Tutor", "");
          this.tutorLines.set(message.turn_id, line);
        }
        const text = line.querySelector(".text");
        text.textContent = (text.textContent + message.text).replace(/^\s+/, "");
        break;
      }
      case "tutor_speech_ended":
        if (message.cut && this.tutorLines.has(message.turn_id)) {
          this.tutorLines.get(message.turn_id).querySelector(".text").textContent = `${message.heard} … (cut)`;
        }
        break;
      case "teacher_message":
        if (message.kind === "hint") this.state.hints += 1;
        this.line("teacher", message.kind === "hint" ? "You (hint)" : "You", message.text);
        break;
      case "alert":
        this.alert(message);
        break;
      case "mastery_update": {
        // Per learner and skill: mastery, and what their answers were (right, first try, hints).
        const who = this.members.get(message.sender)?.name ?? "Learner";
        const key = `${who}: ${message.skill}`;
        const seen = this.mastery.get(key) ?? { answers: 0, right: 0, firstTry: 0, hints: 0 };
        seen.value = message.mastery;
        if (message.correct !== null && message.correct !== undefined) {
          seen.answers += 1;
          seen.right += message.correct ? 1 : 0;
          seen.firstTry += message.correct && message.first_try && !message.hints_used ? 1 : 0;
          seen.hints += message.hints_used ?? 0;
        }
        this.mastery.set(key, seen);
        this.card.querySelector(".mastery").textContent = [...this.mastery]
          .map(([label, s]) => `${label}: ${Math.round(s.value * 100)}%` +
            (s.answers ? ` (${s.right}/${s.answers} right, ${s.firstTry} first try, ${s.hints} hints)` : ""))
          .join(" · ");
        break;
      }
      case "notice":
        if (message.level === "session_ended") {
          this.state.ended += 1;
          this.mastery.clear();
          this.card.querySelector(".mastery").textContent = "";
          this.tutorLines.clear();
        }
        this.line("system", "", message.message);
        break;
      case "error":
        board.errors.push(message);
        this.line("system", "", `Error: ${message.message}`);
        break;
    }
  }

  line(kind, who, text) {
    const line = document.createElement("p");
    line.className = `line ${kind}`;
    const whoEl = document.createElement("span");
    whoEl.className = "who";
    whoEl.textContent = who;
    const textEl = document.createElement("span");
    textEl.className = "text";
    textEl.textContent = text;
    line.append(whoEl, textEl);
    this.captions.append(line);
    while (this.captions.childElementCount > MAX_LINES) this.captions.firstElementChild.remove();
    this.captions.scrollTop = this.captions.scrollHeight;
    if (kind === "learner" || kind === "tutor") this.state.captions += 1;
    return line;
  }

  alert(message) {
    const key = `${message.session_id}/${message.seq ?? message.t}/${message.code ?? ""}`;
    if (this.alertKeys.has(key)) return;
    this.alertKeys.add(key);
    const item = document.createElement("li");
    item.className = `alert ${message.severity}`;
    item.dataset.code = message.code ?? "";
    item.textContent = `${message.severity === "critical" ? "⚠ " : ""}${message.message}`;
    this.alerts.prepend(item);
    this.card.classList.add("has-alert");
    this.state.alerts.push({ severity: message.severity, code: message.code ?? null, message: message.message });
    board.alerts += 1;
    $("alert-count").hidden = false;
    $("alert-count").textContent = `${board.alerts} alert${board.alerts === 1 ? "" : "s"}`;
  }

  send(event) {
    event.preventDefault();
    const input = this.card.querySelector(".message");
    const text = input.value.trim();
    if (!text || this.ws?.readyState !== WebSocket.OPEN) return;
    const kind = event.submitter?.value === "message" ? "message" : "hint";
    this.ws.send(JSON.stringify({ type: "teacher_message", kind, text }));
    input.value = "";
  }

  async end() {
    const button = this.card.querySelector(".end");
    button.disabled = true;
    try {
      await api(`/api/teacher/end?${new URLSearchParams({ room: this.id })}`);
    } catch (error) {
      this.line("system", "", `Could not end the session: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  close() {
    this.closed = true;
    this.ws?.close(1000);
    this.card.classList.add("closed");
    this.card.querySelector(".room-state").textContent = "Closed";
    this.card.remove();
    delete board.rooms[this.id];
  }
}

async function poll() {
  try {
    const { rooms } = await api("/api/teacher/rooms");
    board.polls += 1;
    $("status").textContent = `Logged in · ${rooms.length} live room${rooms.length === 1 ? "" : "s"}`;
    const listed = new Set(rooms.map((room) => room.room));
    for (const info of rooms) {
      if (views.has(info.room)) views.get(info.room).update(info);
      else views.set(info.room, new RoomView(info));
    }
    for (const [id, view] of views) {
      if (!listed.has(id)) {
        view.close();
        views.delete(id);
      }
    }
    $("no-rooms").hidden = rooms.length > 0;
  } catch (error) {
    if (error.status === 401) return logout("The password is no longer accepted.");
    $("status").textContent = `Cannot reach the server (${error.message}); retrying…`;
  }
}

async function login(given) {
  password = given;
  try {
    await api("/api/teacher/rooms");
  } catch (error) {
    password = "";
    $("login-error").textContent = error.status === 401 ? "Wrong password." : `Cannot log in: ${error.message}`;
    return false;
  }
  sessionStorage.setItem(PASSWORD_STORE, given);
  board.loggedIn = true;
  $("login").hidden = true;
  $("rooms").hidden = false;
  $("logout").hidden = false;
  $("login-error").textContent = "";
  await poll();
  pollTimer = setInterval(poll, POLL_MS);
  return true;
}

function logout(reason = "") {
  clearInterval(pollTimer);
  for (const view of views.values()) view.close();
  views.clear();
  password = "";
  sessionStorage.removeItem(PASSWORD_STORE);
  board.loggedIn = false;
  $("login").hidden = false;
  $("rooms").hidden = true;
  $("logout").hidden = true;
  $("status").textContent = "Not logged in";
  $("login-error").textContent = reason;
}

function init() {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    login($("password").value);
    $("password").value = "";
  });
  $("logout").addEventListener("click", () => logout());
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromLink) history.replaceState(null, "", location.pathname); // keep the password off the screen
  const saved = fromLink || sessionStorage.getItem(PASSWORD_STORE);
  if (saved) login(saved);
}

init();
