// The kiosk / WebXR page of `voice-tutor serve`.
//
// One websocket to the XR bridge (protocol: xr_bridge/PROTOCOL.md): it joins the
// room named in the page's token, streams the microphone as 16-bit PCM frames
// (push-to-talk or hands-free), plays the tutor's voice as it streams, shows live
// captions and the session's state, and hands scene and simulation messages to
// the 3D view (scene.js, three.js from npm).  Nothing is fetched from elsewhere.
//
// URL: /?room=ROOM&role=learner|teacher|observer&name=NAME&token=TOKEN[&handsfree=0 for push-to-talk]
// (room, role and name default to the token's claims).
//
// Kiosk mode, /?kiosk=KEY (`voice-tutor serve --kiosk` prints it): a sign-in screen; the server
// issues the learner's token (/api/kiosk/signin).  When the session ends (idle timeout, a teacher,
// sign-out, the next sign-in) the server says so (a `notice` of level `session_ended`, then close
// 4010) and the page forgets everything of that learner and shows the sign-in screen again.  A
// reload keeps the learner signed in (sessionStorage) and rejoins the same session; a lost
// microphone is shown and retried.
//
// Feedback: a learner rates each finished tutor reply (thumbs up/down: `rate_turn`; a later click
// replaces the earlier rating) and, on Finish (a kiosk's Sign out), answers a short survey that is
// sent (`survey`) and echoed back by the room before the page leaves.  A recorded session (a
// `notice` of level `recording`) shows a Recording indicator until it ends.

const PROTOCOL_VERSION = 1;
const AUDIO_HEADER = 12;
const AUDIO_KIND = { learner: 1, tutor: 2 };
const FRAME_S = 0.04; // microphone frames of 40 ms (the protocol asks for 20-100 ms)
const PLAYBACK_LEAD_S = 0.04; // tutor audio is scheduled this far ahead after a gap (the server sends 150 ms ahead)
const FLUSH_TIMEOUT_MS = 1000; // a push-to-talk release waits for the worklet's flush at most this long
const SPEECH_LEVEL_MIN = 0.006; // frame RMS (about -44 dBFS) below which nothing counts as speech
const SPEECH_OVER_NOISE = 3; // ...and speech stands this far (about 10 dB) above the room's noise floor
const NOISE_RISE = 0.004; // per frame: the noise floor follows a steady sound up in about 10 s
const PRE_ROLL_FRAMES = 8; // 320 ms kept while quiet, so hands-free does not clip the first word
const HANDS_FREE_TAIL_S = 2.0; // sent after the last loud frame: the tutor's longest end-of-turn wait is 1.2 s
const NUDGE_AFTER_S = 0.4; // this much speech while push-to-talk is idle brings the how-to-talk hint
const NUDGE_EVERY_S = 15;
const NUDGE_SHOWN_S = 8;
const SOUND_LOG_MAX = 6000; // frames kept in page.soundLog (about 4 min of microphone frames)
const MAX_CAPTION_LINES = 60;
const NO_RETRY = new Set([4001, 4002, 4004, 4010]);
const CLOSE_SESSION_ENDED = 4010;
const SESSION_ENDED = "session_ended"; // notice.level
const KIOSK_STORE = "voice-tutor-kiosk-learner";
const MIC_RETRY_S = 2;
const RECORDING = "recording"; // notice.level: the learner's spoken turns are recorded
// A thumb (drawn here: no icon font or emoji font needed); turned upside down for thumbs down.
const THUMB_SVG = '<svg class="icon" viewBox="0 0 24 24" aria-hidden="true"><g><rect x="2" y="10" width="4" height="11" rx="1"/>'
  + '<path d="M8 10 12 3c1-1.2 3.3-.6 3 1.6L14.3 9H20c1.3 0 2.2 1.1 1.9 2.3l-1.6 8C20.1 20.3 19.3 21 18.3 21H8z"/></g></svg>';
const SURVEY_WAIT_S = 5; // how long Finish waits for the room to echo the survey before leaving anyway
// The store's SURVEY_QUESTIONS (voice_tutor/store/records.py), each answered 1 (not at all) to 5 (very).
const SURVEY_QUESTIONS = {
  helpful: "How much did the tutor help you today?",
  clear: "How clear were the tutor's explanations?",
  pace: "Was the pace right for you?",
  enjoyed: "How much did you enjoy the session?",
};

const $ = (id) => document.getElementById(id);

// --- what the page knows (also read by tests and by anyone debugging at the console) -----------

const page = (window.tutorPage = {
  state: "idle",
  joined: null,
  members: new Map(),
  lastSeq: null,
  received: {},
  errors: [],
  audio: { chunks: 0, samples: 0, scheduled: 0, played: 0, playedSeconds: 0 },
  mic: { frames: 0, bytes: 0, rate: 0, level: 0, peak: 0, flushAcks: 0, flushTimeouts: 0 },
  nudges: { count: 0, lastAt: -Infinity },
  // When each microphone frame was sent and each tutor audio chunk arrived, with its RMS level:
  // [performance.now() ms, level], and for a chunk how long until it plays (ms, when scheduled).
  // benchmarks/browser_latency.py reads latency from these.
  soundLog: { sent: [], received: [] },
  scene: { ready: false, error: null },
  kiosk: null, // kiosk mode: { signedIn, sessionsEnded, lastEnd }
  ratings: {}, // turn id -> the rating the room echoed back (+1 / -1)
  recording: false,
  survey: null, // "open", then "answered" or "skipped"
  surveysEchoed: 0,
  finished: false,
  lesson: null, // the room's lesson id (of the latest "lesson" message)
  debug: {},
});

function claimsOf(token) {
  try {
    const part = token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0))));
  } catch {
    return {};
  }
}

const query = new URLSearchParams(location.search);
const kioskKey = query.get("kiosk") || "";
let token = query.get("token") || "";
const claims = claimsOf(token);
const me = {
  room: query.get("room") || claims.room || "",
  role: kioskKey ? "learner" : query.get("role") || claims.role || "learner",
  name: query.get("name") || claims.name || "",
};

// --- audio frames (see "Audio frames" in PROTOCOL.md) ---------------------------------------------

function encodeAudio(samples, sampleRate, seq) {
  const buffer = new ArrayBuffer(AUDIO_HEADER + samples.byteLength);
  const view = new DataView(buffer);
  view.setUint8(0, 0x58); // "X"
  view.setUint8(1, 0x41); // "A"
  view.setUint8(2, 1); // audio format version
  view.setUint8(3, AUDIO_KIND.learner);
  view.setUint32(4, sampleRate, true);
  view.setUint32(8, seq >>> 0, true);
  new Int16Array(buffer, AUDIO_HEADER).set(samples);
  return buffer;
}

function decodeAudio(buffer) {
  if (buffer.byteLength <= AUDIO_HEADER) return null;
  const view = new DataView(buffer);
  if (view.getUint8(0) !== 0x58 || view.getUint8(1) !== 0x41 || view.getUint8(2) !== 1) return null;
  return {
    kind: view.getUint8(3),
    sampleRate: view.getUint32(4, true),
    seq: view.getUint32(8, true),
    samples: new Int16Array(buffer.slice(AUDIO_HEADER)),
  };
}

// --- the tutor's voice: each chunk scheduled right after the previous one -------------------------

class TutorVoice {
  constructor() {
    this.context = null;
    this.next = 0;
    this.sources = new Set();
    this.muted = false; // after a barge-in, until the next reply starts: late chunks of the cut one are dropped
    this.onIdle = () => {};
  }

  async unlock() {
    this.context ??= new AudioContext({ latencyHint: "interactive" });
    await this.context.resume();
  }

  play({ samples, sampleRate }) {
    page.audio.chunks += 1;
    page.audio.samples += samples.length;
    const context = this.context;
    if (!context || this.muted) return logSound("received", rmsOf(samples) / 32768, null);
    const buffer = context.createBuffer(1, samples.length, sampleRate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < samples.length; i++) channel[i] = samples[i] / 32768;
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    const now = context.currentTime;
    if (this.next < now + 0.01) this.next = now + PLAYBACK_LEAD_S;
    source.start(this.next);
    logSound("received", rmsOf(samples) / 32768, (this.next - now) * 1000);
    this.next += buffer.duration;
    page.audio.scheduled += 1;
    this.sources.add(source);
    source.onended = () => {
      this.sources.delete(source);
      page.audio.played += 1;
      page.audio.playedSeconds += buffer.duration;
      if (!this.sources.size) this.onIdle();
    };
  }

  /** Barge-in: silence what is queued at once. */
  stop({ mute = false } = {}) {
    this.muted ||= mute;
    for (const source of this.sources) {
      source.onended = null;
      try {
        source.stop();
      } catch {
        /* not started yet */
      }
    }
    this.sources.clear();
    this.next = 0;
  }

  get playing() {
    return this.sources.size > 0;
  }
}

// --- the microphone: an AudioWorklet at 16 kHz, 16-bit frames -------------------------------------

class Microphone {
  constructor(onFrame, onLevel, onStatus = () => {}) {
    this.onFrame = onFrame;
    this.onLevel = onLevel;
    this.onStatus = onStatus; // ("ok" | "lost", detail)
    this.lostAt = null;
    this.stream = null;
    this.context = null;
    this.node = null;
    this.rate = 0;
    this.acks = new Map();
    this.nextAck = 1;
  }

  async start() {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    this.stream = stream;
    for (const track of stream.getAudioTracks()) track.addEventListener("ended", () => this.lost("the microphone stopped"));
    // 16 kHz is what the recogniser takes; the browser resamples.  Where a context at another
    // rate than the device cannot take a microphone (Firefox), send at the device's rate instead.
    let context = new AudioContext({ sampleRate: 16000, latencyHint: "interactive" });
    let input;
    try {
      input = context.createMediaStreamSource(stream);
    } catch {
      await context.close();
      context = new AudioContext({ latencyHint: "interactive" });
      input = context.createMediaStreamSource(stream);
    }
    await context.audioWorklet.addModule("mic-worklet.js");
    this.rate = context.sampleRate;
    page.mic.rate = this.rate;
    this.node = new AudioWorkletNode(context, "mic-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCount: 1,
      channelCountMode: "explicit",
      processorOptions: { frameSamples: Math.round(this.rate * FRAME_S) },
    });
    this.node.port.onmessage = ({ data }) => {
      if (data.pcm) {
        this.onFrame(new Int16Array(data.pcm), this.rate, data.level);
        this.onLevel(data.level);
      }
      if (data.ack) this.acks.get(data.ack)?.();
    };
    const mute = context.createGain(); // keeps the worklet pulled without playing the microphone back
    mute.gain.value = 0;
    input.connect(this.node).connect(mute).connect(context.destination);
    await context.resume();
    this.context = context;
  }

  get ready() {
    return this.node !== null;
  }

  /** The device went away (unplugged, taken by another app, a failed start): say so and retry. */
  lost(reason) {
    if (this.lostAt !== null) return;
    this.lostAt = performance.now();
    page.mic.lost = (page.mic.lost ?? 0) + 1;
    this.node?.disconnect();
    this.node = null;
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.context?.close().catch(() => {});
    this.context = null;
    this.onStatus("lost", reason);
    this.retry();
  }

  async retry() {
    while (this.lostAt !== null) {
      await new Promise((resolve) => setTimeout(resolve, MIC_RETRY_S * 1000));
      try {
        await this.start();
        this.lostAt = null;
        page.mic.recovered = (page.mic.recovered ?? 0) + 1;
        this.onStatus("ok");
      } catch (error) {
        this.onStatus("lost", error.message);
      }
    }
  }

  /** Hand over the partial frame now; resolves when the worklet says it has (after that frame). */
  flush() {
    if (!this.node) return Promise.resolve();
    const ack = this.nextAck++;
    return new Promise((resolve) => {
      const done = (answered) => {
        if (!this.acks.delete(ack)) return;
        page.mic[answered ? "flushAcks" : "flushTimeouts"] += 1;
        resolve();
      };
      this.acks.set(ack, () => done(true));
      setTimeout(() => done(false), FLUSH_TIMEOUT_MS); // only if the worklet died mid-release
      this.node.port.postMessage({ flush: true, ack });
    });
  }
}

// --- the connection ------------------------------------------------------------------------------

class Bridge {
  constructor(handlers) {
    this.handlers = handlers;
    this.ws = null;
    this.joined = false;
    this.resumeId = null;
    this.retry = 0;
    this.audioSeq = 0;
    this.stopped = false;
  }

  /** Close for good (the kiosk's session ended): no reconnect. */
  stop() {
    this.stopped = true;
    this.joined = false;
    this.ws?.close(1000);
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.joined = false;
    this.handlers.status("Connecting…");
    ws.onopen = () => this.sendJson({ type: "hello", versions: [PROTOCOL_VERSION], client: "voice-tutor-page/1" });
    ws.onmessage = (event) => {
      if (typeof event.data === "string") this.onText(JSON.parse(event.data));
      else {
        const chunk = decodeAudio(event.data);
        if (chunk && chunk.kind === AUDIO_KIND.tutor) this.handlers.audio(chunk);
      }
    };
    ws.onclose = (event) => {
      this.joined = false;
      if (this.stopped || this.ws !== ws) return;
      this.handlers.closed?.(event.code, event.reason);
      if (NO_RETRY.has(event.code)) {
        this.handlers.status(`Disconnected: ${event.reason || event.code}`);
        return;
      }
      const delay = Math.min(10, 0.5 * 2 ** this.retry++);
      this.handlers.status(`Connection lost; reconnecting in ${delay.toFixed(1)} s…`);
      setTimeout(() => this.connect(), delay * 1000);
    };
  }

  onText(message) {
    if (message.type === "welcome") {
      const join = { type: "join", token, role: me.role, name: me.name };
      if (this.resumeId) Object.assign(join, { resume: this.resumeId, last_seq: page.lastSeq ?? 0 });
      this.sendJson(join);
      return;
    }
    if (message.type === "joined") {
      this.joined = true;
      this.retry = 0;
      this.resumeId = message.resume_id;
    }
    if (typeof message.seq === "number" && message.type !== "room_state") page.lastSeq = message.seq;
    if (message.type === "room_state") page.lastSeq = message.seq;
    this.handlers.message(message);
  }

  sendJson(message) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  send(message) {
    if (this.joined) this.sendJson(message);
  }

  sendAudio(samples, rate) {
    if (!this.joined || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(encodeAudio(samples, rate, this.audioSeq++));
    return true;
  }
}

// --- captions -------------------------------------------------------------------------------------

class Captions {
  constructor(element) {
    this.element = element;
    this.partials = new Map(); // utterance id -> line
    this.tutorLines = new Map(); // turn id -> line
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
    this.element.append(line);
    while (this.element.childElementCount > MAX_CAPTION_LINES) this.element.firstElementChild.remove();
    this.element.scrollTop = this.element.scrollHeight;
    return line;
  }

  partial(utteranceId, who, text) {
    let line = this.partials.get(utteranceId);
    if (!line) {
      line = this.line("learner partial", who, text);
      this.partials.set(utteranceId, line);
    }
    line.querySelector(".text").textContent = text;
    this.element.scrollTop = this.element.scrollHeight;
  }

  final(utteranceId, who, text) {
    const line = this.partials.get(utteranceId);
    this.partials.delete(utteranceId);
    if (line) {
      line.className = "line learner final";
      line.querySelector(".who").textContent = who;
      line.querySelector(".text").textContent = text;
      return line;
    }
    return this.line("learner final", who, text);
  }

  tutor(turnId, piece) {
    let line = this.tutorLines.get(turnId);
    if (!line) {
      line = this.line("tutor", "Tutor", "");
      line.dataset.turn = turnId;
      this.tutorLines.set(turnId, line);
      while (this.tutorLines.size > MAX_CAPTION_LINES) this.tutorLines.delete(this.tutorLines.keys().next().value);
    }
    const text = line.querySelector(".text");
    text.textContent = (text.textContent + piece).replace(/^\s+/, "");
    this.element.scrollTop = this.element.scrollHeight;
  }

  tutorEnded(turnId, heard, cut) {
    const line = this.tutorLines.get(turnId);
    if (line && cut) {
      line.classList.add("cut");
      line.querySelector(".text").textContent = heard;
    } else if (!line && heard) {
      const added = this.line(`tutor${cut ? " cut" : ""}`, "Tutor", heard);
      added.dataset.turn = turnId;
      this.tutorLines.set(turnId, added);
    }
  }

  restoredTutor(turnId, line) {
    line.dataset.turn = turnId;
    this.tutorLines.set(turnId, line);
  }

  /** Thumbs up and down on a finished reply of the tutor. */
  rateable(turnId, onRate) {
    const line = this.tutorLines.get(turnId);
    if (!line || line.querySelector(".rate")) return;
    const box = document.createElement("span");
    box.className = "rate";
    for (const [rating, label] of [[1, "That helped"], [-1, "That did not help"]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = `thumb ${rating > 0 ? "up" : "down"}`;
      button.dataset.rating = String(rating);
      button.title = label;
      button.setAttribute("aria-label", label);
      button.setAttribute("aria-pressed", "false");
      button.innerHTML = rating > 0 ? THUMB_SVG : THUMB_SVG.replace("<g>", '<g transform="rotate(180 12 12)">');
      button.addEventListener("click", () => onRate(turnId, rating));
      box.append(button);
    }
    line.append(box);
  }

  showRating(turnId, rating) {
    for (const button of this.tutorLines.get(turnId)?.querySelectorAll(".thumb") ?? []) {
      button.setAttribute("aria-pressed", String(Number(button.dataset.rating) === rating));
    }
  }

  clear() {
    this.element.replaceChildren();
    this.partials.clear();
    this.tutorLines.clear();
  }

  get lastText() {
    const last = this.element.lastElementChild;
    return last ? last.querySelector(".text").textContent : "";
  }
}

// --- labels drawn over the 3D view (or listed, without one) --------------------------------------

class LabelLayer {
  constructor(element) {
    this.element = element;
    this.items = new Map();
    this.timers = new Map();
  }

  show(id, text, durationS) {
    clearTimeout(this.timers.get(id));
    if (!text) return this.remove(id);
    let el = this.items.get(id);
    if (!el) {
      el = document.createElement("div");
      el.className = "scene-label";
      el.dataset.labelId = id;
      el.setAttribute("role", "note");
      this.element.append(el);
      this.items.set(id, el);
    }
    el.textContent = text;
    if (durationS) this.timers.set(id, setTimeout(() => this.remove(id), durationS * 1000));
  }

  remove(id) {
    this.items.get(id)?.remove();
    this.items.delete(id);
    clearTimeout(this.timers.get(id));
    this.timers.delete(id);
  }

  clear() {
    for (const id of [...this.items.keys()]) this.remove(id);
  }

  place(id, x, y, visible) {
    const el = this.items.get(id);
    if (!el) return;
    el.style.left = `${x}px`;
    el.style.top = `${y}px`;
    el.hidden = !visible;
  }

  set static(on) {
    this.element.classList.toggle("static", on);
  }
}

/** The scene without WebGL (or before three.js loads): labels as a list, the scene's name. */
class TextScene {
  constructor(labels, status) {
    this.labels = labels;
    this.status = status;
    this.log = []; // replayed into the 3D view when it arrives
    this.sims = new Map();
    labels.static = true;
  }
  apply(message) {
    if (message.type === "load_scene") this.log = [];
    this.log.push(message);
    if (message.type === "load_scene") {
      this.labels.clear();
      this.status.textContent = `Scene: ${message.scene}`;
    } else if (message.type === "show_label") this.labels.show(message.label_id, message.text, message.duration_s);
  }
  simulation(message) {
    if (message.type === "stop_simulation") this.sims.delete(message.sim_id);
    else if (message.type === "sim_state") this.sims.set(message.sim_id, message);
  }
  reset() {
    this.labels.clear();
    this.log = [];
    this.sims.clear();
  }
  setCaption() {}
  replayInto(other) {
    this.labels.clear();
    for (const command of this.log) other.apply(command);
    for (const state of this.sims.values()) other.simulation(state);
  }
}

// --- the page --------------------------------------------------------------------------------------

const captions = new Captions($("captions"));
const labels = new LabelLayer($("labels"));
const voice = new TutorVoice();
const isLearner = me.role === "learner";
let scene = new TextScene(labels, $("scene-status"));
let microphone = null;
let handsFree = false;
let holding = false;
const simParams = new Map();

const STATE_TEXT = { idle: "Press Start", ready: "Ready", listening: "Listening", thinking: "Thinking", speaking: "Speaking" };

function setState(state, detail = "") {
  if (state !== page.state) earcon(state);
  page.state = state;
  document.body.dataset.state = state;
  $("state-text").textContent = detail ? `${STATE_TEXT[state]} ${detail}` : STATE_TEXT[state];
}

function restingState() {
  if (holding) return setState("listening");
  setState(voice.playing ? "speaking" : "ready");
}

function memberName(clientId, fallback = "Learner") {
  return page.members.get(clientId)?.name ?? fallback;
}

function earcon(kind) {
  // The state, heard as well as seen (kiosk): a rising blip when it listens, a low one when it thinks.
  const context = voice.context;
  if (!kioskKey || !context || context.state !== "running") return;
  const tones = { listening: [520, 780], thinking: [440, 330] }[kind];
  if (!tones) return;
  const oscillator = context.createOscillator();
  const gain = context.createGain();
  const at = context.currentTime;
  oscillator.frequency.setValueAtTime(tones[0], at);
  oscillator.frequency.linearRampToValueAtTime(tones[1], at + 0.12);
  gain.gain.setValueAtTime(0.0001, at);
  gain.gain.exponentialRampToValueAtTime(0.15, at + 0.02);
  gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.16);
  oscillator.connect(gain).connect(context.destination);
  oscillator.start(at);
  oscillator.stop(at + 0.18);
  page.earcons = (page.earcons ?? 0) + 1;
}

function systemLine(text, level = "info") {
  captions.line(`system ${level}`, level === "info" ? "" : level, text);
}

function onMessage(message) {
  page.received[message.type] = (page.received[message.type] ?? 0) + 1;
  switch (message.type) {
    case "joined":
      page.joined = message;
      page.members = new Map(message.members.map((m) => [m.client_id, m]));
      $("connection").textContent = `${message.name} · ${message.role} · room ${message.room}`;
      setState("ready");
      enableControls();
      break;
    case "room_state":
      rebuild(message);
      break;
    case "member_joined":
      page.members.set(message.client_id, message);
      break;
    case "member_left":
      break; // keep the name: captions still refer to it
    case "learner_speech_started":
      voice.stop({ mute: true }); // the tutor yields to anyone who speaks (the session cuts its reply)
      setState("listening", message.sender && message.sender !== page.joined?.client_id ? `to ${memberName(message.sender)}` : "");
      break;
    case "partial_transcript":
      captions.partial(message.utterance_id, memberName(message.sender), message.text);
      break;
    case "final_transcript":
      captions.final(message.utterance_id, memberName(message.sender), message.text);
      scene.setCaption(`${memberName(message.sender)}: ${message.text}`);
      setState("thinking");
      break;
    case "tutor_text":
      captions.tutor(message.turn_id, message.text);
      break;
    case "tutor_speech_started":
      voice.muted = false;
      setState("speaking");
      break;
    case "tutor_speech_ended":
      captions.tutorEnded(message.turn_id, message.heard, message.cut);
      if (isLearner) captions.rateable(message.turn_id, rate);
      scene.setCaption(`Tutor: ${message.cut ? message.heard + " …" : message.text}`);
      if (message.cut) voice.stop();
      if (!voice.playing) restingState(); // else when the last scheduled chunk has played
      break;
    case "barge_in":
      voice.stop({ mute: true });
      setState("listening");
      break;
    case "turn_completed":
      break;
    case "mastery_update":
      systemLine(`Mastery of ${message.skill}: ${Math.round(message.mastery * 100)}%`);
      break;
    case "alert":
      if (me.role !== "learner") systemLine(message.message, message.severity === "info" ? "info" : "warning");
      break;
    case "notice":
      if (message.level === SESSION_ENDED) {
        showRecording(false);
        if (kioskKey) sessionEnded(message.message);
        else {
          if (isLearner) captions.clear(); // nothing of the ended session stays on a learner's screen
          systemLine(message.message);
        }
      } else if (message.level === RECORDING) showRecording(true, message.message);
      else systemLine(message.message, message.level);
      break;
    case "rate_turn":
      page.ratings[message.turn_id] = message.rating;
      captions.showRating(message.turn_id, message.rating);
      break;
    case "survey":
      if (message.sender === page.joined?.client_id) {
        page.surveysEchoed += 1;
        surveyEchoed?.();
      }
      break;
    case "lesson":
      showLesson(message);
      break;
    case "choose_lesson":
      break; // the tutor answers with the new lesson's "lesson" message and opening
    case "teacher_message":
      if (message.kind === "hint") captions.line("teacher hint", isLearner ? "Hint from your teacher" : "Teacher (hint)", message.text);
      else captions.line("teacher", "Teacher", message.text);
      break;
    case "ptt_start":
      if (message.sender !== page.joined?.client_id) setState("listening", `to ${memberName(message.sender)}`);
      break;
    case "load_scene": case "highlight": case "show_label": case "spawn_object": case "move_object": case "remove_object":
      scene.apply(message);
      break;
    case "start_simulation": case "stop_simulation": case "set_sim_param": case "sim_state":
      if (message.type === "sim_state") simParams.set(message.sim_id, message.params);
      if (message.type === "stop_simulation") simParams.delete(message.sim_id);
      scene.simulation(message);
      break;
    case "error":
      page.errors.push(message);
      systemLine(`${message.message}`, "warning");
      break;
  }
}

function rebuild(state) {
  // The scene and simulations come whole; the conversation too on a fresh join, while a resumed
  // connection keeps its captions and catches up with the events it missed.
  scene.reset();
  for (const command of state.scene) scene.apply(command);
  for (const sim of state.simulations) scene.simulation(sim);
  if (!page.joined?.resumed) {
    captions.clear();
    for (const caption of state.captions) {
      const who = caption.speaker === "tutor" ? "Tutor" : caption.speaker === "teacher" ? "Teacher" : "Learner";
      const line = captions.line(`${caption.speaker}${caption.cut ? " cut" : ""}`, who, caption.text);
      if (caption.turn_id == null) continue;
      captions.restoredTutor(caption.turn_id, line); // after a reload, replies can still be rated
      if (isLearner) captions.rateable(caption.turn_id, rate);
      if (caption.rating) {
        page.ratings[caption.turn_id] = caption.rating;
        captions.showRating(caption.turn_id, caption.rating);
      }
    }
  }
  if (state.gap) systemLine("Some of the conversation was missed while disconnected.");
  for (const missed of state.missed ?? []) onMessage(missed);
}

voice.onIdle = () => {
  if (page.state === "speaking") restingState();
};

const bridgeHandlers = {
  message: onMessage,
  audio: (chunk) => {
    voice.play(chunk);
    if (page.state !== "speaking" && page.state !== "listening") setState("speaking");
  },
  status: (text) => {
    $("connection").textContent = text;
  },
  closed: (code) => {
    // A kiosk learner whose session ended (or whose saved token no longer joins): back to sign-in.
    if (kioskKey && (code === CLOSE_SESSION_ENDED || code === 4001)) sessionEnded(code === 4001 ? "Please sign in again." : "");
  },
};
let bridge = new Bridge(bridgeHandlers);

// --- feedback: ratings, the recording indicator, the end-of-session survey -------------------------

function rate(turnId, rating) {
  if (!bridge.joined) return;
  bridge.send({ type: "rate_turn", turn_id: turnId, rating });
  captions.showRating(turnId, rating); // at once; the room's echo confirms it
}

function showRecording(on, message = "") {
  page.recording = on;
  $("recording").hidden = !on;
  $("recording").title = on ? message : "";
}

let surveyDone = null;
let surveyEchoed = null;

function buildSurvey() {
  const box = $("survey-questions");
  for (const [key, question] of Object.entries(SURVEY_QUESTIONS)) {
    const set = document.createElement("fieldset");
    const legend = document.createElement("legend");
    legend.textContent = question;
    const scale = document.createElement("div");
    scale.className = "scale";
    for (let value = 1; value <= 5; value++) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      Object.assign(input, { type: "radio", name: `survey-${key}`, value: String(value) });
      input.setAttribute("aria-label", `${question} ${value} of 5`);
      const number = document.createElement("span");
      number.textContent = String(value);
      label.append(input, number);
      scale.append(label);
    }
    set.append(legend, scale);
    box.append(set);
  }
  $("survey").addEventListener("submit", (event) => {
    event.preventDefault();
    closeSurvey(readSurvey());
  });
  $("survey-skip").addEventListener("click", () => closeSurvey(null));
}

/** Show the survey; resolves with { answers, comment? }, or null when skipped (or left empty). */
function askSurvey() {
  $("survey").reset();
  $("survey-overlay").hidden = false;
  page.survey = "open";
  setTimeout(() => $("survey-send").focus(), 0);
  return new Promise((resolve) => {
    surveyDone = resolve;
  });
}

function closeSurvey(survey) {
  if (!surveyDone) return;
  $("survey-overlay").hidden = true;
  page.survey = survey ? "answered" : "skipped";
  const done = surveyDone;
  surveyDone = null;
  done(survey);
}

function readSurvey() {
  const answers = {};
  for (const key of Object.keys(SURVEY_QUESTIONS)) {
    const checked = document.querySelector(`input[name="survey-${key}"]:checked`);
    if (checked) answers[key] = Number(checked.value);
  }
  const comment = $("survey-comment").value.trim();
  if (!Object.keys(answers).length && !comment) return null;
  return comment ? { answers, comment } : { answers };
}

/** Send the survey; resolves once the room echoes it (the session has it), or after SURVEY_WAIT_S. */
function sendSurvey(survey) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      surveyEchoed = null;
      resolve(false);
    }, SURVEY_WAIT_S * 1000);
    surveyEchoed = () => {
      clearTimeout(timer);
      surveyEchoed = null;
      resolve(true);
    };
    bridge.send({ type: "survey", ...survey });
  });
}

/** Finish (a kiosk's Sign out): the survey first, then leave. */
async function finish() {
  const button = $("signout");
  button.disabled = true;
  try {
    if (isLearner && bridge.joined) {
      const survey = await askSurvey();
      if (survey && bridge.joined) await sendSurvey(survey);
    }
  } finally {
    button.disabled = false;
  }
  if (kioskKey) {
    if (page.kiosk.signedIn) await signOut();
  } else finished();
}

/** A learner's own page after Finish: disconnected, with a thank-you. */
function finished() {
  page.finished = true;
  bridge.stop();
  voice.stop();
  if (holding) talkStop();
  if (handsFree) setHandsFree(false);
  showRecording(false);
  $("signout").hidden = true;
  $("talk").disabled = true;
  $("handsfree").disabled = true;
  setState("idle");
  $("state-text").textContent = "Finished";
  $("connection").textContent = "Finished";
  $("start-intro").textContent = "Thank you! Your session is finished; you can close this page.";
  $("start").hidden = true;
  $("start-overlay").hidden = false;
}

// --- the lesson and its picker ------------------------------------------------------------------
// The room says its lesson (and the lessons a learner may switch to) in a "lesson" message; a learner
// picks another one here, which the tutor takes as if they had asked for it aloud.

function showLesson(message) {
  page.lesson = message.lesson_id;
  $("lesson-title").textContent = message.title;
  const picker = $("lesson-picker");
  if (message.available.length) {
    picker.replaceChildren(...message.available.map((entry) => {
      const option = new Option(entry.level ? `${entry.title} (${entry.level})` : entry.title, entry.id);
      option.selected = entry.id === message.lesson_id;
      return option;
    }));
  }
  const choosing = isLearner && message.available.length > 1; // learners switch here; others see the lesson
  picker.hidden = !choosing;
  $("lesson-title").hidden = choosing;
  $("lesson-choice").hidden = false;
}

function chooseLesson() {
  const lessonId = $("lesson-picker").value;
  if (lessonId && lessonId !== page.lesson) bridge.send({ type: "choose_lesson", lesson_id: lessonId });
}

// --- talking ---------------------------------------------------------------------------------------

// What the microphone sends.  Push-to-talk: every frame from press to release.  Hands-free: from
// just before the learner's sound starts until HANDS_FREE_TAIL_S after it stops (the tutor needs
// that silence to end the turn), never pure silence forever.  Speech heard while push-to-talk is
// idle brings a hint, on screen and in the tutor's voice, on how to talk.

class SoundGate {
  constructor() {
    this.noise = SPEECH_LEVEL_MIN / SPEECH_OVER_NOISE; // the room's noise floor (frame RMS)
    this.open = false; // hands-free frames are being sent
    this.lastLoudAt = -Infinity;
    this.loudRunS = 0; // speech heard while push-to-talk is idle, so far
    this.preRoll = [];
  }

  /** Whether a frame of this RMS level sounds like speech; follows the noise floor (down at once, up slowly). */
  loud(level) {
    this.noise = level < this.noise ? level : this.noise + (level - this.noise) * NOISE_RISE;
    return level >= Math.max(SPEECH_LEVEL_MIN, this.noise * SPEECH_OVER_NOISE);
  }

  keep(frame) {
    this.preRoll.push(frame);
    if (this.preRoll.length > PRE_ROLL_FRAMES) this.preRoll.shift();
  }
}

const gate = new SoundGate();
let pttSending = false; // from press until the worklet has flushed the release's last frame

function rmsOf(samples) {
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return Math.sqrt(sum / Math.max(1, samples.length));
}

function logSound(kind, level, playsInMs = null) {
  const log = page.soundLog[kind];
  log.push(playsInMs === null ? [performance.now(), level] : [performance.now(), level, playsInMs]);
  if (log.length > SOUND_LOG_MAX) log.splice(0, log.length - SOUND_LOG_MAX);
}

function sendFrame(samples, rate, level) {
  if (bridge.sendAudio(samples, rate)) {
    page.mic.frames += 1;
    page.mic.bytes += samples.byteLength;
    logSound("sent", level);
  }
}

function onMicFrame(samples, rate, level) {
  const loud = gate.loud(level);
  const now = performance.now() / 1000;
  if (loud) gate.lastLoudAt = now;
  if (pttSending) return sendFrame(samples, rate, level);
  if (handsFree) {
    if (loud && !gate.open) {
      gate.open = true;
      for (const kept of gate.preRoll.splice(0)) sendFrame(...kept);
    }
    if (gate.open) {
      sendFrame(samples, rate, level);
      gate.open = now - gate.lastLoudAt < HANDS_FREE_TAIL_S;
      return;
    }
  } else if (isLearner) noticeUnheardSpeech(loud);
  gate.keep([samples, rate, level]);
}

/** Speech while push-to-talk is idle (and the tutor quiet, so it is not its own echo): say how to talk. */
function noticeUnheardSpeech(loud) {
  gate.loudRunS = loud && !voice.playing ? gate.loudRunS + FRAME_S : 0;
  if (gate.loudRunS < NUDGE_AFTER_S || !bridge.joined) return;
  gate.loudRunS = 0;
  const now = performance.now();
  if (now - page.nudges.lastAt < NUDGE_EVERY_S * 1000) return;
  page.nudges.lastAt = now;
  page.nudges.count += 1;
  const hint = $("talk-hint");
  hint.hidden = false;
  clearTimeout(noticeUnheardSpeech.timer);
  noticeUnheardSpeech.timer = setTimeout(() => (hint.hidden = true), NUDGE_SHOWN_S * 1000);
  bridge.send({ type: "unheard_speech" }); // the tutor says it too
}

async function talkStart() {
  if (handsFree || holding || !microphone?.ready || !bridge.joined) return;
  holding = pttSending = true;
  gate.preRoll = [];
  $("talk-hint").hidden = true;
  $("talk").classList.add("active");
  $("talk-label").textContent = "Listening… release to send";
  voice.stop({ mute: true }); // the learner wants the floor: stop the tutor here at once
  bridge.send({ type: "ptt_start" });
  setState("listening");
}

async function talkStop() {
  if (!holding) return;
  holding = false;
  $("talk").classList.remove("active");
  $("talk-label").textContent = "Hold to talk";
  await microphone.flush(); // the last frame goes out before the release
  pttSending = false;
  bridge.send({ type: "ptt_stop" });
  setState("thinking");
}

async function setHandsFree(on) {
  if (!microphone?.ready) return;
  if (holding) await talkStop();
  handsFree = on;
  gate.open = false;
  $("talk-hint").hidden = true;
  $("handsfree").setAttribute("aria-pressed", String(on));
  $("handsfree").textContent = on ? "Hands-free: on" : "Hands-free: off";
  $("talk").disabled = on;
  $("talk-label").textContent = on ? "Just talk" : "Hold to talk";
}

function enableControls() {
  if (isLearner && microphone?.ready) {
    $("talk").disabled = handsFree;
    $("handsfree").disabled = false;
  }
}

function wireControls() {
  $("lesson-picker").addEventListener("change", chooseLesson);
  const talk = $("talk");
  talk.addEventListener("pointerdown", (event) => {
    talk.setPointerCapture?.(event.pointerId);
    talkStart();
  });
  for (const kind of ["pointerup", "pointercancel", "lostpointercapture"]) talk.addEventListener(kind, talkStop);
  talk.addEventListener("contextmenu", (event) => event.preventDefault());
  // The space bar talks while the page (or the talk button) has the focus; elsewhere it keeps its usual job.
  const spaceTalks = (event) =>
    event.code === "Space" && isLearner && bridge.joined && !handsFree && (event.target === document.body || event.target === talk);
  document.addEventListener("keydown", (event) => {
    if (!spaceTalks(event)) return;
    event.preventDefault();
    if (!event.repeat) talkStart();
  });
  document.addEventListener("keyup", (event) => {
    if (!spaceTalks(event) && !holding) return;
    if (event.code !== "Space") return;
    event.preventDefault();
    talkStop();
  });
  $("handsfree").addEventListener("click", () => setHandsFree(!handsFree));

  const form = $("teacher-controls");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("teacher-text").value.trim();
    if (!text) return;
    bridge.send({ type: "teacher_message", kind: event.submitter?.value === "hint" ? "hint" : "message", text });
    $("teacher-text").value = "";
  });
  $("sim-start").addEventListener("click", () =>
    bridge.send({ type: "start_simulation", sim_id: "pendulum", model: "pendulum", params: { length: 1.0, angle: 0.3 } }));
  $("sim-longer").addEventListener("click", () => {
    const length = simParams.get("pendulum")?.length ?? 1.0;
    bridge.send({ type: "set_sim_param", sim_id: "pendulum", name: "length", value: Math.min(100, +(length * 1.5).toFixed(3)) });
  });
  $("sim-stop").addEventListener("click", () => bridge.send({ type: "stop_simulation", sim_id: "pendulum" }));
}

// --- the 3D view -----------------------------------------------------------------------------------

async function loadScene() {
  try {
    const { LessonScene } = await import("./scene.js");
    const lesson = new LessonScene({
      container: $("scene-view"),
      labels,
      readout: $("sim-readout"),
      onSelect: (objectId) => isLearner && bridge.send({ type: "select_object", object_id: objectId }),
      onTalk: (on) => isLearner && (on ? talkStart() : talkStop()),
    });
    labels.static = false;
    scene.replayInto(lesson);
    scene = lesson;
    page.scene.ready = true;
    $("scene-status").textContent = "";
    const modes = await lesson.xrModes();
    for (const mode of modes) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = mode === "immersive-ar" ? "Enter AR" : "Enter VR";
      button.addEventListener("click", () => lesson.enterXR(mode).catch((error) => systemLine(`${button.textContent}: ${error.message}`, "warning")));
      $("xr-buttons").append(button);
    }
  } catch (error) {
    page.scene.error = String(error?.message ?? error);
    $("scene-status").textContent = `3D view unavailable (${page.scene.error}); labels are listed instead.`;
  }
}

// --- start -----------------------------------------------------------------------------------------

function onMicStatus(status, detail) {
  const banner = $("mic-status");
  if (status === "ok") {
    banner.hidden = true;
    page.mic.status = "ok";
    enableControls();
    return;
  }
  page.mic.status = "lost";
  banner.hidden = false;
  banner.textContent = `Microphone lost${detail ? ` (${detail})` : ""}: retrying…`;
  if (holding) talkStop();
  $("talk").disabled = true;
}

async function start() {
  const button = $("start");
  button.disabled = true;
  $("start-error").textContent = "";
  try {
    await voice.unlock();
  } catch (error) {
    $("start-error").textContent = `Sound is unavailable: ${error.message}`;
  }
  if (isLearner && !microphone) {
    const mic = new Microphone(onMicFrame, (level) => {
      page.mic.level = level;
      page.mic.peak = Math.max(page.mic.peak, level);
      $("level").value = Math.min(1, level * 4);
    }, onMicStatus);
    try {
      await mic.start();
      microphone = mic;
      page.mic.status = "ok";
    } catch (error) {
      if (kioskKey) {
        microphone = mic; // a kiosk keeps trying: the page says so until a microphone works
        mic.lost(error.message);
      } else systemLine(`No microphone (${error.message}): you can listen and watch, but not talk.`, "warning");
    }
  }
  $("start-overlay").hidden = true;
  if (kioskKey) {
    bridge = new Bridge(bridgeHandlers);
    page.kiosk.signedIn = me.name;
    $("signout").hidden = false;
  } else if (isLearner) $("signout").hidden = false; // "Finish"
  bridge.connect();
  // Hands-free unless the link asks for push-to-talk (?handsfree=0): the lessons greet with
  // "answer out loud whenever you're ready", and a child at a kiosk should be able to just talk.
  if (isLearner && query.get("handsfree") !== "0") {
    const ready = setInterval(() => {
      if (bridge.joined) {
        clearInterval(ready);
        setHandsFree(true);
      }
    }, 100);
  }
}

// --- kiosk: sign-in, end of session, reload ---------------------------------------------------------

function savedLearner() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KIOSK_STORE) || "null");
    return saved?.token && saved?.name ? saved : null;
  } catch {
    return null;
  }
}

function showSignIn(message) {
  const saved = savedLearner();
  $("start-overlay").hidden = false;
  $("signin").hidden = false;
  $("start").hidden = !saved;
  $("start").disabled = false;
  $("start").textContent = saved ? `Continue as ${saved.name}` : "Start";
  $("start-intro").textContent = message || (saved
    ? `Welcome back, ${saved.name}! Continue where you left off, or sign in as someone else.`
    : "Hello! Type your name or your code to start talking with your tutor.");
  $("signin-button").disabled = false;
  setTimeout(() => $("signin-name").focus(), 0);
}

async function signIn(event) {
  event.preventDefault();
  const name = $("signin-name").value.trim();
  if (!name) return;
  $("signin-button").disabled = true;
  $("start-error").textContent = "";
  try {
    const response = await fetch(`/api/kiosk/signin?${new URLSearchParams({ name })}`, {
      headers: { Authorization: `Bearer ${kioskKey}` },
      cache: "no-store",
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `sign-in failed (${response.status})`);
    sessionStorage.setItem(KIOSK_STORE, JSON.stringify({ token: body.token, name: body.name, room: body.room }));
    useLearner(body);
    $("signin-name").value = "";
    await start();
  } catch (error) {
    $("start-error").textContent = error.message;
    $("signin-button").disabled = false;
  }
}

function useLearner({ token: learnerToken, name, room }) {
  token = learnerToken;
  Object.assign(me, { name, room, role: "learner" });
  $("title").textContent = `Voice tutor · ${name}`;
}

async function continueSaved() {
  const saved = savedLearner();
  if (!saved) return showSignIn();
  useLearner(saved);
  await start();
}

/** The learner's session is over: nothing of it stays on the screen, and the next learner signs in. */
function sessionEnded(reason = "") {
  if (!kioskKey || !page.kiosk.signedIn) return;
  page.kiosk.signedIn = null;
  page.kiosk.sessionsEnded += 1;
  page.kiosk.lastEnd = reason;
  sessionStorage.removeItem(KIOSK_STORE);
  bridge.stop();
  voice.stop();
  voice.muted = false;
  if (holding) talkStop();
  if (handsFree) setHandsFree(false);
  closeSurvey(null); // the session ended under an open survey (idle): it goes unanswered
  showRecording(false);
  captions.clear();
  labels.clear();
  scene.reset();
  simParams.clear();
  Object.assign(page, { joined: null, lastSeq: null, received: {}, errors: [], ratings: {}, survey: null });
  page.members = new Map();
  token = "";
  me.name = "";
  $("title").textContent = "Voice tutor";
  $("connection").textContent = "Not signed in";
  $("signout").hidden = true;
  $("talk").disabled = true;
  $("handsfree").disabled = true;
  setState("idle");
  $("state-text").textContent = "Sign in";
  // The reason is the server's ("Ada's session ended (idle).") and names the learner: not shown.
  const why = /signed out/i.test(reason) ? "You signed out. " : /sign in again/i.test(reason) ? "Please sign in again. " : "The session has ended. ";
  showSignIn(`Goodbye! ${why}Next learner: type your name or code.`);
}

async function signOut() {
  $("signout").disabled = true;
  try {
    await fetch("/api/kiosk/signout", { headers: { Authorization: `Bearer ${kioskKey}` }, cache: "no-store" });
  } finally {
    $("signout").disabled = false;
    sessionEnded("You signed out.");
  }
}

function initKiosk() {
  document.body.classList.add("kiosk");
  page.kiosk = { signedIn: null, sessionsEnded: 0, lastEnd: "" };
  page.debug.dropMicrophone = () => microphone?.lost("dropped for a test");
  $("learner-controls").hidden = false;
  $("teacher-controls").hidden = true;
  $("connection").textContent = "Not signed in";
  $("state-text").textContent = "Sign in";
  $("signin").addEventListener("submit", signIn);
  $("start").addEventListener("click", continueSaved);
  $("signout").addEventListener("click", finish);
  buildSurvey();
  wireControls();
  loadScene();
  showSignIn();
}

function init() {
  if (kioskKey) return initKiosk();
  if (!token) {
    $("start-intro").textContent = "This page needs a join link (…/?room=…&token=…): ask your teacher for one.";
    $("start").disabled = true;
    return;
  }
  $("title").textContent = me.room ? `Voice tutor · ${me.room}` : "Voice tutor";
  $("learner-controls").hidden = !isLearner;
  $("teacher-controls").hidden = me.role !== "teacher";
  $("start").textContent = isLearner ? "Start" : "Join";
  if (!isLearner) $("start-intro").textContent = `Join room ${me.room} as ${me.role}: you will see and hear the session.`;
  $("start").addEventListener("click", start);
  if (isLearner) {
    $("signout").textContent = "Finish";
    $("signout").addEventListener("click", finish);
    buildSurvey();
  }
  wireControls();
  loadScene();
}

init();
