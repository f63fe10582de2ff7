// A customer's login: a forgotten password (a reset link from the mail opens the page at
// /#reset=<token>), the password change, and the signed-in sessions. Loaded after
// session.js.
"use strict";

const fmtWhen = new Intl.DateTimeFormat("en-US", { dateStyle: "medium", timeStyle: "short" });

// ---------------------------------------------------------------- forgotten password

async function onForgot(event) {
  event.preventDefault();
  const form = event.target;
  busy(form, true);
  say("forgot-message", "");
  try {
    await api(`${API}/password-resets`, { method: "POST", body: { email: $("forgot-email").value } });
    say("forgot-message", "If a login has this address, a mail with a reset link is on its way. "
      + "The link works once, for 30 minutes.", "info");
  } catch (error) {
    say("forgot-message", error.status === 503
      ? "This portal cannot send mail: ask your utility to reset your password."
      : error.message);
  } finally {
    busy(form, false);
  }
}

// The token arrives after "#", which the browser never sends anywhere; it is taken off
// the address at once, so it is not left in the history.
function resetToken() {
  const match = location.hash.match(/^#reset=([A-Za-z0-9_\-%.~]+)$/);
  if (!match) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return decodeURIComponent(match[1]);
}

function showReset(token) {
  document.body.dataset.view = "reset";
  $("reset").hidden = false;
  $("signin").hidden = true;
  $("portal").hidden = true;
  $("reset-form").dataset.token = token;
  $("reset-password").focus();
}

async function onReset(event) {
  event.preventDefault();
  const form = event.target;
  const password = $("reset-password").value;
  if (password !== $("reset-again").value) {
    say("reset-message", "The two passwords differ.");
    $("reset-again").focus();
    return;
  }
  busy(form, true);
  say("reset-message", "");
  try {
    await api(`${API}/password-resets/confirm`, {
      method: "POST", body: { token: form.dataset.token, password },
    });
    delete form.dataset.token;
    form.reset();
    $("reset").hidden = true;
    dropSession();
    showSignIn("Your password is changed, and every session signed out: sign in with the new one.");
  } catch (error) {
    say("reset-message", error.status === 400
      ? "This link is used or has expired: ask for a new one from the sign-in page."
      : error.message);
  } finally {
    busy(form, false);
  }
}

// ---------------------------------------------------------------- password change

async function onPasswordChange(event) {
  event.preventDefault();
  const form = event.target;
  const fresh = $("new-password").value;
  if (fresh !== $("new-again").value) {
    say("password-message", "The two new passwords differ.");
    $("new-again").focus();
    return;
  }
  busy(form, true);
  say("password-message", "");
  try {
    await api(`${API}/me/password`, {
      method: "PUT", body: { current_password: $("current-password").value, new_password: fresh },
    });
    form.reset();
    say("password-message", "Password changed. Your other sessions are signed out.", "info");
    await loadSessions();
  } catch (error) {
    say("password-message", error.status === 403 ? "The current password is wrong." : error.message);
  } finally {
    busy(form, false);
  }
}

// ---------------------------------------------------------------- sessions

async function loadSessions() {
  if (session.mode !== "customer" || !$("settings").open) return;
  const { sessions } = await api(`${API}/me/sessions`);
  const items = sessions.map((s) => {
    const li = document.createElement("li");
    li.dataset.sessionId = s.id;
    const what = document.createElement("span");
    const used = s.last_used_at ? ` · last used ${fmtWhen.format(new Date(s.last_used_at))}` : "";
    what.textContent = `${s.current ? "This browser" : "Another browser"} · signed in `
      + `${fmtWhen.format(new Date(s.created_at))}${used} · ends ${fmtWhen.format(new Date(s.expires_at))}`;
    li.appendChild(what);
    if (!s.current) {
      const end = document.createElement("button");
      end.type = "button";
      end.className = "quiet";
      end.textContent = "Sign it out";
      end.setAttribute("aria-label", `Sign out the session signed in ${fmtWhen.format(new Date(s.created_at))}`);
      end.addEventListener("click", async () => {
        try {
          await api(`${API}/me/sessions/${s.id}`, { method: "DELETE" });
          say("password-message", "That session is signed out.", "info");
        } catch (error) {
          say("password-message", error.message);
        }
        await loadSessions();
        $("sessions-title").focus();
      });
      li.appendChild(end);
    }
    return li;
  });
  $("sessions-list").replaceChildren(...items);
}

function startSettings() {
  $("show-forgot").addEventListener("click", () => {
    $("forgot-box").hidden = false;
    $("show-forgot").setAttribute("aria-expanded", "true");
    $("forgot-email").value = $("signin-email").value;
    $("forgot-email").focus();
  });
  $("forgot-form").addEventListener("submit", onForgot);
  $("reset-form").addEventListener("submit", onReset);
  $("password-form").addEventListener("submit", onPasswordChange);
  $("settings").addEventListener("toggle", () => { loadSessions().catch(() => {}); });
}
