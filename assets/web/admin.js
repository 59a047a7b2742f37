// The admin page of `voice-tutor serve` (/admin.html).
//
// Log in with the admin password (`--admin-password`, or the `#key=` of the printed admin link).
// The page lists the learner database's learners (sessions, last seen, classes), downloads one
// learner's data as JSON, deletes a learner after a confirmation, creates classes and puts
// learners in them or takes them out, and runs the retention purge — all through the server's
// /api/admin/... routes (see Admin in xr_bridge/serve.py).  The password travels only in an
// Authorization header and is kept in this tab's sessionStorage, like the teacher dashboard's;
// "Teacher dashboard" hands it to /dashboard.html in the same tab (an admin may do what a
// teacher may).

const PASSWORD_STORE = "voice-tutor-admin";
const TEACHER_STORE = "voice-tutor-teacher"; // the dashboard's key (dashboard.js)

const $ = (id) => document.getElementById(id);

const admin = (window.admin = { loggedIn: false, learners: [], classes: [], errors: [] });
let password = "";

async function api(path, params = {}) {
  const query = new URLSearchParams(params).toString();
  const response = await fetch(query ? `${path}?${query}` : path, {
    headers: { Authorization: `Bearer ${password}` },
    cache: "no-store",
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw Object.assign(new Error(body.error || `HTTP ${response.status}`), { status: response.status });
  }
  return body;
}

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").classList.toggle("error", isError);
  if (isError) admin.errors.push(text);
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "never";
}

function button(label, className, onClick, accessibleName) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = label;
  if (className) element.className = className;
  if (accessibleName) element.setAttribute("aria-label", accessibleName);
  element.addEventListener("click", onClick);
  return element;
}

function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  row.append(td);
  return td;
}

// A yes/no question in the page's <dialog>; resolves true when the danger button was chosen.
function confirmAction(title, text, okLabel) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
  });
}

// An action's errors: a refused password logs out, anything else is shown.
async function act(work) {
  try {
    await work();
  } catch (error) {
    if (error.status === 401) return logout("The password is no longer accepted.");
    say(error.message, true);
  }
}

function renderLearners(learners) {
  admin.learners = learners;
  const body = $("learners").querySelector("tbody");
  body.replaceChildren();
  for (const learner of learners) {
    const row = document.createElement("tr");
    row.dataset.learner = learner.name;
    const name = cell(row, learner.name);
    if (learner.live_in) {
      const live = document.createElement("span");
      live.className = "live";
      live.textContent = ` (live in room ${learner.live_in})`;
      name.append(live);
    }
    cell(row, learner.level);
    cell(row, String(learner.sessions));
    cell(row, when(learner.last_seen));
    cell(row, learner.classes.join(", ") || "—");
    const actions = document.createElement("div");
    actions.className = "row";
    actions.append(
      button("Export", "export", () => act(() => exportLearner(learner.name)), `Export ${learner.name}'s data`),
      button("Delete", "delete danger", () => act(() => deleteLearner(learner.name)), `Delete ${learner.name}`),
    );
    cell(row, actions);
    body.append(row);
  }
  $("learners").hidden = learners.length === 0;
  $("no-learners").hidden = learners.length > 0;
  $("learner-names").replaceChildren(
    ...learners.map((learner) => Object.assign(document.createElement("option"), { value: learner.name })),
  );
}

function renderClasses(classes) {
  admin.classes = classes;
  const body = $("classes").querySelector("tbody");
  body.replaceChildren();
  for (const room of classes) {
    const row = document.createElement("tr");
    row.dataset.class = room.name;
    cell(row, room.name);
    cell(row, room.teacher || "—");
    const members = document.createElement("div");
    for (const name of room.learners) {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.append(
        name,
        button("×", "remove", () => act(() => removeFromClass(room.name, name)), `Take ${name} out of ${room.name}`),
      );
      members.append(chip);
    }
    if (!room.learners.length) members.textContent = "—";
    cell(row, members);
    body.append(row);
  }
  $("classes").hidden = classes.length === 0;
  $("no-classes").hidden = classes.length > 0;
  const select = $("add-class");
  const chosen = select.value;
  select.replaceChildren(
    ...classes.map((room) =>
      Object.assign(document.createElement("option"), { value: room.name, textContent: room.name }),
    ),
  );
  if (classes.some((room) => room.name === chosen)) select.value = chosen;
}

async function refresh() {
  const [{ learners }, { classes }] = await Promise.all([api("/api/admin/learners"), api("/api/admin/classes")]);
  renderLearners(learners);
  renderClasses(classes);
  $("status").textContent = `Logged in · ${learners.length} learner${learners.length === 1 ? "" : "s"}`;
}

async function exportLearner(name) {
  const data = await api("/api/admin/export", { learner: name });
  const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
  const link = Object.assign(document.createElement("a"), {
    href: url,
    download: `learner-${name.replace(/[^\w.-]+/g, "_")}.json`,
  });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  say(`Exported ${name}'s data.`);
}

async function deleteLearner(name) {
  const sure = await confirmAction(
    `Delete ${name}?`,
    `Everything stored about ${name} (sessions, transcripts, recordings, answers, mastery, classes) is deleted for good.`,
    `Delete ${name}`,
  );
  if (!sure) return say(`${name} was not deleted.`);
  await api("/api/admin/delete", { learner: name, confirm: name });
  say(`Deleted ${name} and everything stored about them.`);
  await refresh();
}

async function removeFromClass(room, name) {
  await api("/api/admin/class/remove", { class: room, learner: name });
  say(`Took ${name} out of ${room}.`);
  await refresh();
}

async function purge(days) {
  const what = days === "" ? "older than the configured retention period" : `older than ${days} days`;
  const text = `Every transcript (and recording) of sessions ${what} is deleted for good.`;
  const sure = await confirmAction("Purge transcripts?", text, "Purge");
  if (!sure) return say("Nothing was purged.");
  const result = await api("/api/admin/purge", days === "" ? { confirm: "purge" } : { days, confirm: "purge" });
  say(`Deleted ${result.deleted_turns} turns of sessions older than ${result.older_than_days} days.`);
  await refresh();
}

async function login(given) {
  password = given;
  try {
    await refresh();
  } catch (error) {
    password = "";
    $("login-error").textContent = error.status === 401 ? "Wrong password." : `Cannot log in: ${error.message}`;
    return false;
  }
  sessionStorage.setItem(PASSWORD_STORE, given);
  admin.loggedIn = true;
  $("login").hidden = true;
  for (const id of ["admin", "logout", "to-dashboard"]) $(id).hidden = false;
  $("login-error").textContent = "";
  return true;
}

function logout(reason = "") {
  password = "";
  sessionStorage.removeItem(PASSWORD_STORE);
  admin.loggedIn = false;
  $("login").hidden = false;
  for (const id of ["admin", "logout", "to-dashboard"]) $(id).hidden = true;
  $("status").textContent = "Not logged in";
  $("login-error").textContent = reason;
  say("");
}

function init() {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    login($("password").value);
    $("password").value = "";
  });
  $("logout").addEventListener("click", () => logout());
  $("to-dashboard").addEventListener("click", () => {
    sessionStorage.setItem(TEACHER_STORE, password); // this tab only; the dashboard logs in with it
    location.assign("dashboard.html");
  });
  $("create-class").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("class-name").value.trim();
    const teacher = $("class-teacher").value.trim();
    act(async () => {
      await api("/api/admin/class/create", teacher ? { class: name, teacher } : { class: name });
      $("class-name").value = "";
      $("class-teacher").value = "";
      say(`Class ${name} is ready.`);
      await refresh();
    });
  });
  $("add-to-class").addEventListener("submit", (event) => {
    event.preventDefault();
    const room = $("add-class").value;
    const name = $("add-learner").value.trim();
    act(async () => {
      await api("/api/admin/class/add", { class: room, learner: name });
      $("add-learner").value = "";
      say(`Put ${name} in ${room}.`);
      await refresh();
    });
  });
  $("purge").addEventListener("submit", (event) => {
    event.preventDefault();
    act(() => purge($("purge-days").value.trim()));
  });
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromLink) history.replaceState(null, "", location.pathname); // keep the password off the screen
  const saved = fromLink || sessionStorage.getItem(PASSWORD_STORE);
  if (saved) login(saved);
}

init();
