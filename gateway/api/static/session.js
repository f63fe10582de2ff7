// Who is looking: a customer's session (bearer token), the accounts it holds, and the
// forms to sign in, create a login and link a billing account. Loaded before app.js.
"use strict";

const API = "/api/v1";
const $ = (id) => document.getElementById(id);
const SESSION_KEY = "ami-gateway-session";

// The token lives in sessionStorage: it survives a reload, not the closing of the tab,
// and is never put in a cookie (so no other site can make the browser send it).
const session = {
  mode: "unknown", // "open": no sign-in on this gateway; "customer": sign-in required
  token: null,
  email: null,
  accounts: [], // the login's linked billing accounts
  markers: false, // may this viewer read and write usage markers?
};

function loadSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    if (saved && saved.token && Date.parse(saved.expires_at) > Date.now()) {
      session.token = saved.token;
      session.email = saved.email;
    }
  } catch { /* a damaged entry is the same as none */ }
}

function saveSession(token, email, expiresAt) {
  session.token = token;
  session.email = email;
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({ token, email, expires_at: expiresAt }));
}

function dropSession() {
  session.token = null;
  session.email = null;
  session.accounts = [];
  sessionStorage.removeItem(SESSION_KEY);
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function problemText(body, response) {
  const detail = body && body.detail;
  if (Array.isArray(detail)) return detail.map((d) => d.msg).join("; ");
  return detail || `${response.status} ${response.statusText}`;
}

// Every call of the page goes through here: the bearer token when there is one, and a
// 401 (an expired or revoked session) sends the reader back to the sign-in form.
async function api(path, { method = "GET", body = undefined, raw = false } = {}) {
  const headers = { Accept: raw ? "*/*" : "application/json" };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (raw && response.ok) return response;
  const parsed = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401 && session.mode === "customer" && session.token) {
      dropSession();
      showSignIn("Your session has ended: please sign in again.");
    }
    throw new ApiError(response.status, problemText(parsed, response));
  }
  return parsed;
}

const getJSON = (path) => api(path);

// ---------------------------------------------------------------- windows

// The local days an account holds its meter: valid_from inclusive, valid_to exclusive.
function windowsOf(meterId) {
  return session.accounts.filter((a) => a.meter_id === meterId)
    .map((a) => ({ first: a.valid_from, last: a.valid_to ? addDays(a.valid_to, -1) : null }))
    .sort((a, b) => (a.first < b.first ? -1 : 1));
}

// The window the page shows for a meter: the one holding `today`, else the latest.
function viewWindow(meterId, today) {
  if (session.mode !== "customer") return null;
  const all = windowsOf(meterId);
  if (!all.length) return null;
  return all.find((w) => w.first <= today && (w.last === null || today <= w.last))
    || all[all.length - 1];
}

// [first, last] cut to the window; null when nothing of it is left.
function clipToWindow(first, last, win) {
  if (!win) return [first, last];
  const lo = first < win.first ? win.first : first;
  const hi = win.last !== null && last > win.last ? win.last : last;
  return lo <= hi ? [lo, hi] : null;
}

// ---------------------------------------------------------------- forms

function say(id, message, kind = "error") {
  const box = $(id);
  box.textContent = message;
  box.dataset.kind = kind;
  box.hidden = !message;
}

function busy(form, on) {
  for (const control of form.querySelectorAll("button, input, select, textarea")) {
    control.disabled = on;
  }
  form.setAttribute("aria-busy", on ? "true" : "false");
}

function showSignIn(message = "") {
  document.body.dataset.view = "signin";
  $("signin").hidden = false;
  $("portal").hidden = true;
  $("who").hidden = true;
  say("signin-message", message, message ? "info" : "error");
  const email = $("signin-email");
  if (email) email.focus();
}

function showPortal() {
  document.body.dataset.view = "portal";
  $("signin").hidden = true;
  $("portal").hidden = false;
  $("who").hidden = session.mode !== "customer";
  $("who-email").textContent = session.email || "";
  $("accounts-card").hidden = session.mode !== "customer";
}

async function signIn(email, password) {
  const answer = await api(`${API}/sessions`, { method: "POST", body: { email, password } });
  saveSession(answer.token, email.trim().toLowerCase(), answer.expires_at);
}

async function onSignIn(event) {
  event.preventDefault();
  const form = event.target;
  const email = $("signin-email").value;
  const password = $("signin-password").value;
  busy(form, true);
  say("signin-message", "");
  try {
    await signIn(email, password);
    $("signin-password").value = "";
    await enterPortal();
  } catch (error) {
    say("signin-message", error.status === 401 ? "Wrong e-mail or password." : error.message);
    $("signin-password").focus();
  } finally {
    busy(form, false);
  }
}

async function onSignUp(event) {
  event.preventDefault();
  const form = event.target;
  const email = $("signup-email").value;
  const password = $("signup-password").value;
  if (password !== $("signup-again").value) {
    say("signup-message", "The two passwords differ.");
    $("signup-again").focus();
    return;
  }
  busy(form, true);
  say("signup-message", "");
  try {
    await api(`${API}/customers`, { method: "POST", body: { email, password } });
    await signIn(email, password);
    form.reset();
    await enterPortal();
  } catch (error) {
    say("signup-message", error.message);
  } finally {
    busy(form, false);
  }
}

async function onSignOut() {
  try {
    await api(`${API}/sessions/current`, { method: "DELETE" });
  } catch { /* an ended session is signed out all the same */ }
  dropSession();
  resetPortal();
  showSignIn("You are signed out.");
}

async function loadAccounts() {
  if (session.mode !== "customer") return;
  session.accounts = (await api(`${API}/me/accounts`)).accounts;
  renderAccounts();
}

const fmtDay = new Intl.DateTimeFormat("en-US", {
  month: "short", day: "numeric", year: "numeric", timeZone: "UTC",
});
const dayText = (iso) => fmtDay.format(new Date(`${iso}T00:00:00Z`));

function renderAccounts() {
  const list = $("accounts-list");
  const items = session.accounts.map((a) => {
    const li = document.createElement("li");
    li.dataset.meter = a.meter_id;
    const held = a.valid_to ? `${dayText(a.valid_from)} to ${dayText(addDays(a.valid_to, -1))}`
      : `since ${dayText(a.valid_from)}`;
    const strong = document.createElement("strong");
    strong.textContent = `Account ${a.account_number}`;
    li.append(strong, document.createTextNode(` · meter ${a.meter_id} · ${held}`));
    return li;
  });
  list.replaceChildren(...items);
  $("accounts-empty").hidden = items.length > 0;
}

async function onLink(event) {
  event.preventDefault();
  const form = event.target;
  busy(form, true);
  say("link-message", "");
  try {
    const answer = await api(`${API}/me/accounts`, {
      method: "POST",
      body: { account_number: $("link-account").value, last_payment: $("link-payment").value },
    });
    session.accounts = answer.accounts;
    renderAccounts();
    form.reset();
    say("link-message", "Account linked.", "info");
    await refresh({ announce: true });
  } catch (error) {
    say("link-message", error.status === 404
      ? "No account matches that number and payment. Check both against your last bill."
      : error.message);
  } finally {
    busy(form, false);
  }
}

// ---------------------------------------------------------------- start

// Which gateway is this? One that asks customers to sign in answers 401 without a token.
async function detectMode() {
  const response = await fetch(`${API}/meters`, {
    headers: session.token ? { Authorization: `Bearer ${session.token}`, Accept: "application/json" }
      : { Accept: "application/json" },
    cache: "no-store",
  });
  if (response.status === 401) {
    session.mode = "customer";
    if (session.token) dropSession(); // the saved session has ended
    return;
  }
  if (!response.ok) throw new ApiError(response.status, problemText(null, response));
  // A token that worked: a customer session (the accounts route exists only then).
  session.mode = session.token ? "customer" : "open";
}

// Markers are open to customers on their meters; on a gateway without sign-in they take
// the operator token, which the page never holds: then the markers card says so.
function detectMarkers() {
  session.markers = session.mode === "customer";
}

async function enterPortal() {
  if (session.mode === "customer" && !session.token) { showSignIn(); return; }
  await loadAccounts();
  showPortal();
  await refresh({ announce: true });
}

function startSession() {
  loadSession();
  $("signin-form").addEventListener("submit", onSignIn);
  $("signup-form").addEventListener("submit", onSignUp);
  $("link-form").addEventListener("submit", onLink);
  $("sign-out").addEventListener("click", onSignOut);
  $("show-signup").addEventListener("click", () => {
    $("signup-box").hidden = false;
    $("show-signup").setAttribute("aria-expanded", "true");
    $("signup-email").focus();
  });
}
