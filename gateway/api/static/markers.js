// Usage markers: drawn on the daily chart, listed, added and edited from the page, and
// the before/after comparison around one. Loaded after app.js.
"use strict";

const CATEGORY_NAMES = {
  appliance: "New appliance",
  efficiency: "Efficiency upgrade",
  occupancy: "Occupancy change",
  solar: "Solar",
  ev: "Electric vehicle",
  heating_cooling: "Heating or cooling",
  other: "Other",
};

const markerState = {
  editing: null, // the marker being edited, or null when the form adds one
  comparing: null, // id of the marker whose comparison is shown
  seq: 0,
};

const markerPath = (meterId, suffix = "") =>
  `${API}/meters/${encodeURIComponent(meterId)}/markers${suffix}`;

async function loadMarkers(meter, first, last) {
  detectMarkers();
  if (!session.markers) return [];
  const answer = await api(`${markerPath(meter.meter_id)}?${new URLSearchParams({ from: first, to: last })}`);
  return answer.markers.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.id - b.id));
}

function markerDays(m) {
  return m.kind === "range" ? `${dayText(m.start)} to ${dayText(m.end)}` : dayText(m.start);
}

// ---------------------------------------------------------------- on the chart

// A point marker is a line through its day with a numbered flag above the plot; a range
// is a shaded band over its days, flagged at its first day shown. The numbers are the
// ones of the list below the chart, which carries the same markers for screen readers.
function drawMarkers(overlay, svg, geo) {
  overlay.replaceChildren();
  const flags = el("g", { class: "marker-flags", "aria-hidden": "true" });
  state.markers.forEach((m, k) => {
    const first = m.start < geo.first ? geo.first : m.start;
    const lastDay = m.kind === "range" ? m.end : m.start;
    const last = lastDay > geo.last ? geo.last : lastDay;
    const x0 = geo.x(first);
    const x1 = geo.x(last);
    if (x0 === null || x1 === null) return;
    const active = markerState.comparing === m.id ? " active" : "";
    const g = el("g", { class: `usage-marker ${m.kind}${active}`, "data-marker-id": m.id }, overlay);
    if (m.kind === "range") {
      el("rect", {
        class: "marker-band", x: x0 - geo.band / 2, y: geo.top, width: x1 - x0 + geo.band,
        height: geo.bottom - geo.top,
      }, g);
    }
    el("line", { class: "marker-line", x1: x0, x2: x0, y1: geo.top - 14, y2: geo.bottom }, g);
    const flag = el("g", { class: `marker-flag${active}`, "data-marker-id": m.id }, flags);
    el("circle", { cx: x0, cy: geo.top - 24, r: 9 }, flag);
    text(flag, x0, geo.top - 20, String(k + 1), { "text-anchor": "middle" });
  });
  svg.appendChild(flags);
}

// ---------------------------------------------------------------- the list

function renderMarkerList(meter, first, last) {
  const card = $("markers-card");
  card.hidden = !session.markers; // without sign-in, markers take the operator token
  $("markers-off").hidden = session.markers;
  $("marker-add").hidden = !session.markers;
  $("markers-range").textContent = `${dayText(first)} to ${dayText(last)}`;
  const items = state.markers.map((m, k) => {
    const li = document.createElement("li");
    li.className = `marker-item${markerState.comparing === m.id ? " active" : ""}`;
    li.dataset.markerId = m.id;
    const num = document.createElement("span");
    num.className = "marker-num";
    num.setAttribute("aria-hidden", "true");
    num.textContent = String(k + 1);
    const body = document.createElement("div");
    body.className = "marker-body";
    const title = document.createElement("strong");
    title.textContent = m.label;
    const meta = document.createElement("span");
    meta.className = "marker-meta";
    meta.textContent = ` · ${CATEGORY_NAMES[m.category] || m.category} · ${markerDays(m)}`;
    body.append(title, meta);
    if (m.note) {
      const note = document.createElement("p");
      note.className = "marker-note";
      note.textContent = m.note;
      body.appendChild(note);
    }
    const actions = document.createElement("div");
    actions.className = "marker-actions";
    const button = (label, aria, handler) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = label;
      b.setAttribute("aria-label", `${aria} “${m.label}”`);
      b.addEventListener("click", handler);
      actions.appendChild(b);
      return b;
    };
    button("Compare before and after", "Compare usage before and after", () => openComparison(m));
    button("Edit", "Edit marker", () => editMarker(m));
    button("Delete", "Delete marker", () => deleteMarker(m));
    li.append(num, body, actions);
    return li;
  });
  $("markers-list").replaceChildren(...items);
  $("markers-empty").hidden = items.length > 0 || !session.markers;
  if (markerState.comparing !== null && !state.markers.some((m) => m.id === markerState.comparing)) {
    closeComparison();
  }
  limitMarkerDates(meter, last);
}

// The form's dates stay within the customer's days and up to the last day shown.
function limitMarkerDates(meter, last) {
  const win = viewWindow(meter.meter_id, todayIn(meter.timezone));
  for (const id of ["marker-start", "marker-end"]) {
    const input = $(id);
    if (win) input.min = win.first; else input.removeAttribute("min");
    input.max = win && win.last !== null && win.last < last ? win.last : last;
  }
}

// ---------------------------------------------------------------- the form

function markerKind() {
  return document.querySelector('input[name="marker-kind"]:checked').value;
}

function syncKind() {
  const range = markerKind() === "range";
  $("marker-end-field").hidden = !range;
  $("marker-end").required = range;
  $("marker-start-label").textContent = range ? "First day" : "Day";
}

function openMarkerForm(start = null) {
  const box = $("marker-add");
  box.open = true;
  if (start) $("marker-start").value = start;
  $("marker-label").focus();
}

function editMarker(m) {
  markerState.editing = m;
  const form = $("marker-form");
  form.querySelector(`input[name="marker-kind"][value="${m.kind}"]`).checked = true;
  $("marker-start").value = m.start;
  $("marker-end").value = m.end || "";
  $("marker-label").value = m.label;
  $("marker-category").value = m.category;
  $("marker-note").value = m.note;
  $("marker-submit").textContent = "Save changes";
  $("marker-cancel").hidden = false;
  $("marker-form-title").textContent = `Edit “${m.label}”`;
  syncKind();
  openMarkerForm();
}

function resetMarkerForm() {
  markerState.editing = null;
  $("marker-form").reset();
  $("marker-submit").textContent = "Add marker";
  $("marker-cancel").hidden = true;
  $("marker-form-title").textContent = "Add a marker";
  syncKind();
}

async function onMarkerSubmit(event) {
  event.preventDefault();
  const meter = currentMeter();
  if (!meter) return;
  const form = event.target;
  const range = markerKind() === "range";
  const body = {
    kind: markerKind(), start: $("marker-start").value, end: range ? $("marker-end").value : null,
    label: $("marker-label").value, category: $("marker-category").value, note: $("marker-note").value,
  };
  if (range && body.end && body.end < body.start) {
    say("marker-message", "The last day is before the first day.");
    $("marker-end").focus();
    return;
  }
  const editing = markerState.editing;
  busy(form, true);
  say("marker-message", "");
  try {
    const saved = editing
      ? await api(markerPath(meter.meter_id, `/${editing.id}`), { method: "PUT", body })
      : await api(markerPath(meter.meter_id), { method: "POST", body });
    busy(form, false);
    resetMarkerForm();
    say("marker-message", editing ? `Saved “${saved.label}”.` : `Added “${saved.label}” on ${markerDays(saved)}.`, "info");
    await refresh();
    if (markerState.comparing === saved.id || !editing) openComparison(saved);
  } catch (error) {
    say("marker-message", error.message);
  } finally {
    busy(form, false);
  }
}

async function deleteMarker(m) {
  const meter = currentMeter();
  if (!meter || !window.confirm(`Delete the marker “${m.label}”?`)) return;
  try {
    await api(markerPath(meter.meter_id, `/${m.id}`), { method: "DELETE" });
    if (markerState.comparing === m.id) closeComparison();
    say("marker-message", `Deleted “${m.label}”.`, "info");
    await refresh();
    $("markers-title").focus();
  } catch (error) {
    say("marker-message", error.message);
  }
}

// ---------------------------------------------------------------- the comparison

const perDay = (w, unit) => (w.average_kwh !== null ? `${groupDigits(w.average_kwh)} kWh a day`
  : w.average !== null ? `${w.average} ${unit} a day` : "no data");

function windowText(w) {
  const data = w.days_with_data === w.days ? "" : `, ${w.days_with_data} with data`;
  return `${dayText(w.first)} to ${dayText(w.last)} (${w.days} days${data})`;
}

async function openComparison(m) {
  const meter = currentMeter();
  if (!meter) return;
  markerState.comparing = m.id;
  const seq = ++markerState.seq;
  const box = $("comparison");
  box.hidden = false;
  box.dataset.state = "loading";
  box.dataset.markerId = m.id;
  $("comparison-title").textContent = `Before and after “${m.label}”`;
  $("comparison-result").textContent = "Comparing…";
  document.querySelectorAll(".marker-item").forEach((li) =>
    li.classList.toggle("active", Number(li.dataset.markerId) === m.id));
  document.querySelectorAll("#usage-chart .usage-marker, #usage-chart .marker-flag").forEach((g) =>
    g.classList.toggle("active", Number(g.dataset.markerId) === m.id));
  const days = $("comparison-days").value;
  try {
    const c = await api(`${markerPath(meter.meter_id, `/${m.id}/comparison`)}?${new URLSearchParams({ days })}`);
    if (seq !== markerState.seq) return;
    renderComparison(c);
  } catch (error) {
    if (seq !== markerState.seq) return;
    box.dataset.state = "error";
    $("comparison-result").textContent = `Could not compare: ${error.message}`;
    $("comparison-detail").replaceChildren();
  }
}

function renderComparison(c) {
  const box = $("comparison");
  box.dataset.state = "ready";
  box.dataset.verdict = c.verdict;
  const detail = $("comparison-detail");
  detail.replaceChildren();
  if (c.verdict === "unavailable" || !c.before || !c.after
      || c.before.average === null || c.after.average === null) {
    $("comparison-result").textContent = "Not enough data on both sides of this marker yet.";
    detail.appendChild(noteList(c.quality));
    return;
  }
  const change = Number(c.change);
  const amount = c.change_kwh !== null ? `${groupDigits(c.change_kwh.replace("-", ""))} kWh`
    : `${Math.abs(change)} ${c.unit}`;
  const pct = c.change_percent !== null ? ` (${c.change_percent.startsWith("-") ? "−" : "+"}${c.change_percent.replace("-", "")} %)` : "";
  $("comparison-result").textContent = change === 0 ? "Average daily usage did not change."
    : `Average daily usage ${change < 0 ? "fell" : "rose"} by ${amount} a day${pct}.`;

  // Two bars on one scale: before and after, each with its average written out.
  const rows = [["Before", c.before, "cmp-before"], ["After", c.after, "cmp-after"]];
  const max = Math.max(c.before.average, c.after.average, 1);
  const dl = document.createElement("dl");
  dl.className = "cmp-rows";
  for (const [name, w, cls] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = `${name}: ${windowText(w)}`;
    const dd = document.createElement("dd");
    const track = document.createElement("span");
    track.className = "cmp-track";
    track.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.className = `cmp-fill ${cls}`;
    fill.style.width = `${Math.max(1, (w.average / max) * 100)}%`;
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "cmp-value";
    value.textContent = perDay(w, c.unit);
    dd.append(track, value);
    dd.dataset.window = name.toLowerCase();
    dl.append(dt, dd);
  }
  detail.appendChild(dl);
  if (c.verdict === "poor") {
    const warn = document.createElement("p");
    warn.className = "cmp-poor";
    warn.textContent = "⚠ Poor data: many days in these windows are estimated or missing, "
      + "so take this comparison with care.";
    detail.appendChild(warn);
  }
  if (c.quality.length) detail.appendChild(noteList(c.quality));
}

function noteList(notes) {
  const ul = document.createElement("ul");
  ul.className = "cmp-notes";
  for (const note of notes) {
    const li = document.createElement("li");
    li.textContent = note.charAt(0).toUpperCase() + note.slice(1);
    ul.appendChild(li);
  }
  return ul;
}

function closeComparison() {
  markerState.comparing = null;
  markerState.seq += 1;
  $("comparison").hidden = true;
  document.querySelectorAll(".marker-item.active, #usage-chart .active.usage-marker, #usage-chart .marker-flag.active")
    .forEach((n) => n.classList.remove("active"));
}

function startMarkers() {
  const select = $("marker-category");
  select.replaceChildren(...Object.entries(CATEGORY_NAMES).map(([value, name]) => new Option(name, value)));
  for (const radio of document.querySelectorAll('input[name="marker-kind"]')) {
    radio.addEventListener("change", syncKind);
  }
  $("marker-form").addEventListener("submit", onMarkerSubmit);
  $("marker-cancel").addEventListener("click", () => { resetMarkerForm(); say("marker-message", ""); });
  $("comparison-close").addEventListener("click", () => {
    const id = markerState.comparing;
    closeComparison();
    const button = document.querySelector(`.marker-item[data-marker-id="${id}"] button`);
    if (button) button.focus();
  });
  $("comparison-days").addEventListener("change", () => {
    const m = state.markers.find((x) => x.id === markerState.comparing);
    if (m) openComparison(m);
  });
  syncKind();
}
