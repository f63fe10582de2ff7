// Usage alerts by e-mail for the chosen meter: a day above a usage, or no data for some
// days. A new address waits for its owner's confirmation (a mail with a link) before any
// alert goes to it. Loaded after app.js.
"use strict";

const alerts = { meterId: null, key: "" };

const alertPath = (meterId, suffix = "") =>
  `${API}/meters/${encodeURIComponent(meterId)}/notifications${suffix}`;

// "12.5" kWh as whole Wh, exactly (no binary fractions on the way).
function whOf(kwhText) {
  const match = kwhText.trim().match(/^(\d{1,6})(?:[.,](\d{1,3}))?$/);
  if (!match) return null;
  return Number(match[1]) * 1000 + Number((match[2] || "").padEnd(3, "0"));
}

function alertText(n) {
  if (n.kind === "daily_above") {
    return `A day above ${groupDigits((n.threshold_wh / 1000).toFixed(3).replace(/\.?0+$/, ""))} kWh`;
  }
  return `No data for ${n.days} day${n.days === 1 ? "" : "s"}`;
}

async function loadAlerts(meter) {
  const card = $("alerts-card");
  card.hidden = session.mode !== "customer";
  if (card.hidden) return;
  if (alerts.meterId !== meter.meter_id) {
    alerts.meterId = meter.meter_id;
    alerts.key = "";
    if (!$("alert-address").value) $("alert-address").value = session.email || "";
  }
  const { notifications } = await api(alertPath(meter.meter_id));
  const key = JSON.stringify(notifications);
  if (key === alerts.key) return;
  alerts.key = key;
  card.dataset.meter = meter.meter_id;
  const items = notifications.map((n) => {
    const li = document.createElement("li");
    li.className = "alert-item";
    li.dataset.notificationId = n.id;
    li.dataset.status = n.status;
    const what = document.createElement("span");
    what.textContent = `${alertText(n)} → ${n.address}`;
    li.appendChild(what);
    if (n.status === "pending") {
      const badge = document.createElement("span");
      badge.className = "badge pending";
      badge.textContent = "Waiting for the address to be confirmed";
      const again = document.createElement("button");
      again.type = "button";
      again.className = "quiet";
      again.textContent = "Send the confirmation again";
      again.addEventListener("click", () => resendConfirmation(meter, n));
      li.append(badge, again);
    }
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "quiet";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove the alert: ${alertText(n)} to ${n.address}`);
    remove.addEventListener("click", () => removeAlert(meter, n));
    li.appendChild(remove);
    return li;
  });
  $("alerts-list").replaceChildren(...items);
  $("alerts-empty").hidden = items.length > 0;
}

function syncAlertKind() {
  const daily = document.querySelector('input[name="alert-kind"]:checked').value === "daily_above";
  $("alert-threshold-field").hidden = !daily;
  $("alert-threshold").required = daily;
  $("alert-days-field").hidden = daily;
  $("alert-days").required = !daily;
}

async function onAlertSubmit(event) {
  event.preventDefault();
  const meter = currentMeter();
  if (!meter) return;
  const form = event.target;
  const kind = document.querySelector('input[name="alert-kind"]:checked').value;
  const body = { kind, address: $("alert-address").value };
  if (kind === "daily_above") {
    const wh = whOf($("alert-threshold").value);
    if (wh === null) {
      say("alert-message", "Give the daily usage in kWh, e.g. 35 or 35.5.");
      $("alert-threshold").focus();
      return;
    }
    body.threshold_wh = wh;
  } else {
    body.days = Number($("alert-days").value);
  }
  busy(form, true);
  say("alert-message", "");
  try {
    const made = await api(alertPath(meter.meter_id), { method: "POST", body });
    say("alert-message", made.status === "pending"
      ? `Added. We sent a mail to ${made.address}: alerts start once its link is opened.`
      : `Added: alerts go to ${made.address}.`, "info");
    $("alert-threshold").value = "";
    alerts.key = "";
    await loadAlerts(meter);
  } catch (error) {
    say("alert-message", error.status === 429
      ? "Too many confirmation mails to this address today: try again tomorrow."
      : error.message);
  } finally {
    busy(form, false);
  }
}

async function resendConfirmation(meter, n) {
  try {
    await api(alertPath(meter.meter_id, `/${n.id}/confirmation`), { method: "POST" });
    say("alert-message", `A new confirmation mail is on its way to ${n.address}.`, "info");
  } catch (error) {
    say("alert-message", error.status === 429
      ? "Too many confirmation mails to this address today: try again tomorrow."
      : error.message);
  }
}

async function removeAlert(meter, n) {
  try {
    await api(alertPath(meter.meter_id, `/${n.id}`), { method: "DELETE" });
    say("alert-message", "Alert removed.", "info");
    alerts.key = "";
    await loadAlerts(meter);
    $("alerts-title").focus();
  } catch (error) {
    say("alert-message", error.message);
  }
}

function startAlerts() {
  for (const radio of document.querySelectorAll('input[name="alert-kind"]')) {
    radio.addEventListener("change", syncAlertKind);
  }
  $("alert-form").addEventListener("submit", onAlertSubmit);
  syncAlertKind();
}
