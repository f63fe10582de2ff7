// Daily usage page: reads the portal feed and draws an SVG bar chart. No build step;
// the page's scripts share one scope, loaded in order: session, app, markers, extras, main.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

const state = {
  meters: [],
  defaultChannel: null,
  meterId: null,
  days: 30,
  daily: null, // last daily response rendered
  dailyKey: "", // JSON of it, to skip redraws when a refresh brings nothing new
  range: null, // [first, last] local days of the rendered chart
  activeDate: null, // the day whose tooltip is showing
  seq: 0, // number of the latest daily request; older answers are dropped
  markers: [], // the usage markers of the days shown
  geometry: null, // where the last chart put its days (for the marker overlay)
};

// ---------------------------------------------------------------- dates (YYYY-MM-DD)

function todayIn(timeZone, at = new Date()) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone, year: "numeric", month: "2-digit", day: "2-digit",
  }).formatToParts(at);
  const get = (type) => parts.find((p) => p.type === type).value;
  return `${get("year")}-${get("month")}-${get("day")}`;
}

function addDays(iso, n) {
  const [y, m, d] = iso.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
}

function daysBetween(first, last) {
  const out = [];
  for (let d = first; d <= last; d = addDays(d, 1)) out.push(d);
  return out;
}

// Date-only strings are formatted as UTC so no browser timezone can shift them a day.
const asUTC = (iso) => new Date(`${iso}T00:00:00Z`);
const fmtShort = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
const fmtLong = new Intl.DateTimeFormat("en-US", {
  weekday: "short", month: "short", day: "numeric", year: "numeric", timeZone: "UTC",
});
const fmtRangeEnd = new Intl.DateTimeFormat("en-US", {
  month: "short", day: "numeric", year: "numeric", timeZone: "UTC",
});

// ---------------------------------------------------------------- numbers

// kWh arrive as exact decimal strings; only the chart geometry uses them as numbers.
function groupDigits(decimal) {
  const [whole, frac] = decimal.split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return frac === undefined ? grouped : `${grouped}.${frac}`;
}

const kwhText = (day) => (day.value_kwh !== null ? `${groupDigits(day.value_kwh)} kWh`
  : `${day.value} ${day.unit}`);
const amountText = (value, valueKwh, unit) => (valueKwh !== null ? `${groupDigits(valueKwh)} kWh`
  : `${value} ${unit}`);

function niceScale(max, count = 5) {
  if (!(max > 0)) return { top: 1, step: 0.2 };
  const rough = max / count;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const norm = rough / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag;
  return { top: Math.ceil(max / step - 1e-9) * step, step };
}

function tickLabel(v, step) {
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return v.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

// ---------------------------------------------------------------- quality

// The one mark a bar carries (most severe first) and every note its tooltip gives.
function markOf(q) {
  if (q.questionable > 0) return "questionable";
  if (q.estimated > 0) return "estimated";
  if (!q.complete) return "incomplete";
  return "ok";
}

function notesOf(q) {
  const notes = [];
  if (q.questionable > 0) notes.push(["questionable", `${q.questionable} questionable reading${q.questionable > 1 ? "s" : ""}`]);
  if (q.estimated > 0) notes.push(["estimated", `${q.estimated} estimated reading${q.estimated > 1 ? "s" : ""}`]);
  if (!q.complete) notes.push(["incomplete", `Incomplete: ${q.missing} of ${q.expected} readings missing`]);
  if (q.edited > 0) notes.push(["edited", `${q.edited} edited reading${q.edited > 1 ? "s" : ""}`]);
  if (notes.length === 0) notes.push(["ok", `All ${q.present} readings measured`]);
  return notes;
}

const qualityText = (q) => notesOf(q).map(([, text]) => text).join("; ");

// Daily usage checks (VEE, judged by the gateway on complete days): what each one means.
const CHECKS = {
  daily_high: "Usage check: above the daily high limit",
  daily_low: "Usage check: below the daily low limit",
  daily_history_high: "Usage check: far above the usual for recent days",
  daily_history_low: "Usage check: far below the usual for recent days",
};
const checksOf = (day) => day.checks || [];
const checkNotes = (day) => checksOf(day).map((name) => ["check", CHECKS[name] || `Usage check: ${name}`]);

// Every note of a day: its quality, its usage checks, a total register that disagrees.
function dayNotes(day) {
  const notes = [...notesOf(day.quality), ...checkNotes(day)];
  const reg = day.total_register;
  if (reg && reg.mismatch !== null && reg.mismatch !== 0) {
    notes.push(["mismatch", `Total register differs from the sum of the rates by ${reg.mismatch} ${day.unit}`]);
  }
  return notes;
}
const dayNotesText = (day) => dayNotes(day).map(([, text]) => text).join("; ");

// ---------------------------------------------------------------- data

const currentMeter = () => state.meters.find((m) => m.meter_id === state.meterId) || null;

// A two-rate meter keeps its tariff registers (1.0.1.8.1.255 day, 1.0.1.8.2.255 night)
// beside the total channel: the total's OBIS code with the tariff group (the fifth) 1-63.
function tariffsOf(meter) {
  const base = (state.defaultChannel || "").split(".");
  if (base.length !== 6) return [];
  return meter.channels.map((c) => c.channel).filter((name) => {
    const parts = name.split(".");
    const tariff = Number(parts[4]);
    return parts.length === 6 && parts.slice(0, 4).join(".") === base.slice(0, 4).join(".")
      && parts[5] === base[5] && Number.isInteger(tariff) && tariff >= 1 && tariff <= 63;
  });
}

function channelOf(meter) {
  const names = meter.channels.map((c) => c.channel);
  if (names.includes(state.defaultChannel)) return state.defaultChannel;
  const energy = meter.channels.find((c) => c.unit === "Wh");
  return energy ? energy.channel : null;
}

// ---------------------------------------------------------------- svg helpers

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, content, attrs = {}) {
  const node = el("text", { x, y, ...attrs }, parent);
  node.textContent = content;
  return node;
}

// Marker shapes, centred on (cx, cy) with half-size r; the legend uses the same ones.
function marker(kind, cx, cy, r, parent) {
  if (kind === "estimated") {
    return el("path", { class: "mark-estimated", d: `M${cx} ${cy - r} L${cx + r} ${cy} L${cx} ${cy + r} L${cx - r} ${cy} Z` }, parent);
  }
  if (kind === "questionable") {
    return el("path", { class: "mark-questionable", d: `M${cx} ${cy - r} L${cx + r * 1.1} ${cy + r * 0.9} L${cx - r * 1.1} ${cy + r * 0.9} Z` }, parent);
  }
  if (kind === "check") {
    return el("rect", { class: "mark-check", x: cx - r * 0.8, y: cy - r * 0.8, width: r * 1.6, height: r * 1.6 }, parent);
  }
  return el("circle", { class: "mark-incomplete", cx, cy, r: r * 0.8 }, parent);
}

// The rates' legend entries (colour swatch and name), shown for a two-rate meter.
function renderRateLegend(daily) {
  const legend = $("legend");
  legend.querySelectorAll(".legend-rate").forEach((n) => n.remove());
  const stacked = Array.isArray(daily.rates);
  $("legend-measured").hidden = stacked;
  if (!stacked) return;
  const items = daily.rates.map((rate, i) => {
    const li = document.createElement("li");
    li.className = "legend-rate";
    li.dataset.channel = rate.channel;
    const svg = el("svg", { class: "swatch", viewBox: "0 0 22 14", "aria-hidden": "true" });
    el("rect", { class: `seg seg-${i % 4}`, x: 1, y: 1, width: 20, height: 12 }, svg);
    li.append(svg, document.createTextNode(
      `${rate.label} (${amountText(rate.total, rate.total_kwh, daily.unit)})`));
    return li;
  });
  const total = document.createElement("li");
  total.className = "legend-rate legend-total";
  total.textContent = `Total: ${amountText(daily.total, daily.total_kwh, daily.unit)}`;
  legend.prepend(...items, total);
}

// ---------------------------------------------------------------- chart

function showEmpty(title, detail) {
  const plot = $("plot");
  plot.replaceChildren();
  const box = document.createElement("div");
  box.className = "empty";
  const strong = document.createElement("strong");
  strong.textContent = title;
  const p = document.createElement("p");
  p.textContent = detail;
  box.append(strong, p);
  plot.appendChild(box);
  $("chart").dataset.state = "empty";
  $("legend").hidden = true;
  $("table-box").hidden = true;
  hideTooltip();
}

function render(daily, first, last) {
  const meter = currentMeter();
  const range = `${fmtShort.format(asUTC(first))} – ${fmtRangeEnd.format(asUTC(last))}`;
  const byDate = new Map(daily.days.map((d) => [d.date, d]));
  $("chart").dataset.meter = daily.meter_id;
  $("chart-title").textContent = daily.days.length
    ? `Meter ${daily.meter_id} · ${range} · ${groupDigits(daily.total_kwh ?? String(daily.total))} ${daily.total_kwh !== null ? "kWh" : daily.unit} total`
    : `Meter ${daily.meter_id} · ${range}`;
  renderTable(daily, range);
  if (!daily.days.length) {
    $("chart-summary").textContent = "";
    showEmpty("No readings yet", `Meter ${meter ? meter.meter_id : ""} has no daily usage for ${range}. `
      + "This page refreshes by itself as readings arrive.");
    return;
  }
  $("chart-summary").textContent = summaryText(daily);
  $("legend").hidden = false;
  $("table-box").hidden = false;
  renderRateLegend(daily);
  const stacked = Array.isArray(daily.rates);

  const dates = daysBetween(first, last);
  const width = Math.max(320, $("plot").clientWidth || 800);
  const height = 320;
  // Room above the plot for the usage markers' flags when there are any.
  const m = { top: state.markers.length ? 44 : 26, right: 12, bottom: 44, left: 58 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const band = plotW / dates.length;
  const barW = Math.max(2, Math.min(band * 0.74, 46));
  const max = Math.max(...daily.days.map((d) => Number(d.value_kwh ?? d.value)));
  const { top, step } = niceScale(max * 1.08); // headroom for the markers above the bars
  const y = (v) => m.top + plotH - (v / top) * plotH;

  const svg = el("svg", {
    id: "usage-chart", viewBox: `0 0 ${width} ${height}`, width, height,
    role: "group", "aria-labelledby": "chart-title", "aria-describedby": "chart-summary",
  });
  const grid = el("g", { class: "grid", "aria-hidden": "true" }, svg);
  const yAxis = el("g", { class: "axis y", "aria-hidden": "true" }, svg);
  for (let v = 0; v <= top + step / 2; v += step) {
    el("line", { x1: m.left, x2: width - m.right, y1: y(v), y2: y(v) }, grid);
    text(yAxis, m.left - 8, y(v) + 4, tickLabel(v, step), { "text-anchor": "end" });
  }
  text(yAxis, m.left - 8, m.top - 12, daily.total_kwh !== null ? "kWh" : daily.unit,
    { class: "axis-title", "text-anchor": "end" });
  el("line", { x1: m.left, x2: width - m.right, y1: y(0), y2: y(0) }, yAxis);

  // Date labels: about one per 60 px, counted back from the last day so it is labelled.
  const xAxis = el("g", { class: "axis x", "aria-hidden": "true" }, svg);
  const every = [1, 2, 3, 7, 14, 28].find((k) => k * band >= 60) || 28;
  dates.forEach((d, i) => {
    if ((dates.length - 1 - i) % every !== 0) return;
    const cx = m.left + band * (i + 0.5);
    el("line", { x1: cx, x2: cx, y1: y(0), y2: y(0) + 5 }, xAxis);
    text(xAxis, cx, y(0) + 19, fmtShort.format(asUTC(d)), { "text-anchor": "middle" });
  });

  const overlay = el("g", { class: "usage-markers", "aria-hidden": "true" }, svg);
  const bands = el("g", { class: "bands", "aria-hidden": "true" }, svg);
  const segments = el("g", { class: "segments", "aria-hidden": "true" }, svg);
  const bars = el("g", {
    class: "bars", role: "group",
    "aria-label": "Daily usage bars. Use the arrow keys to move between days.",
  }, svg);
  const marks = el("g", { class: "marks", "aria-hidden": "true" }, svg);
  const withData = dates.filter((d) => byDate.has(d));
  const focusDate = withData.includes(state.activeDate) ? state.activeDate : withData[withData.length - 1];
  dates.forEach((d, i) => {
    const day = byDate.get(d);
    if (!day) return;
    const kwh = Math.max(Number(day.value_kwh ?? day.value), 0);
    const x = m.left + band * (i + 0.5) - barW / 2;
    const barTop = Math.min(y(kwh), y(0) - 1.5); // a zero day still shows a sliver
    const mark = markOf(day.quality);
    if (stacked) { // each rate's share, bottom up, in the order of the legend
      let base = 0;
      day.rates.forEach((rate, k) => {
        const share = Math.max(Number(rate.value_kwh ?? rate.value), 0);
        if (share <= 0) return;
        const top = y(base + share);
        el("rect", {
          class: `seg seg-${k % 4}`, "data-date": d, "data-channel": rate.channel,
          x, y: top, width: barW, height: Math.max(y(base) - top, 0),
        }, segments);
        base += share;
      });
    }
    // The whole column answers the pointer: thin bars in a 90-day view are hard to hit.
    const column = el("rect", { class: "day-band", "data-date": d, x: m.left + band * i, y: m.top, width: band, height: plotH }, bands);
    const rateText = stacked ? ` total: ${day.rates.map((rate, k) => `${daily.rates[k].label} ${amountText(rate.value, rate.value_kwh, day.unit)}`).join(", ")}` : "";
    const bar = el("rect", {
      class: `bar bar-${mark}${stacked ? " bar-stack" : ""}`, x, y: barTop, width: barW,
      height: y(0) - barTop, tabindex: d === focusDate ? 0 : -1, role: "img",
      "data-date": d, "data-mark": mark, "data-kwh": day.value_kwh ?? "",
      "data-checks": checksOf(day).join(" "),
      "aria-label": `${fmtLong.format(asUTC(d))}: ${kwhText(day)}${rateText}. ${dayNotesText(day)}.`,
    }, bars);
    bar.addEventListener("mouseenter", () => showTooltip(d));
    bar.addEventListener("mouseleave", () => { if (document.activeElement !== bar) hideTooltip(); });
    bar.addEventListener("focus", () => showTooltip(d));
    bar.addEventListener("blur", hideTooltip);
    bar.addEventListener("click", () => { bar.focus(); openDay(d); });
    column.addEventListener("click", () => { bar.focus(); openDay(d); });
    column.addEventListener("mouseenter", () => showTooltip(d));
    column.addEventListener("mouseleave", (event) => { if (event.relatedTarget !== bar) hideTooltip(); });
    // Markers stack above the bar: the day's severest note first.
    const r = Math.max(3.2, Math.min(6, barW / 2.2));
    let cy = barTop - r - 4;
    for (const [kind] of [...notesOf(day.quality), ...checkNotes(day).slice(0, 1)]) {
      if (!["questionable", "estimated", "incomplete", "check"].includes(kind)) continue;
      marker(kind, m.left + band * (i + 0.5), cy, r, marks).setAttribute("data-date", d);
      cy -= 2 * r + 3;
    }
  });
  bars.addEventListener("keydown", onBarKey);
  state.geometry = {
    first, last, dates, top: m.top, bottom: y(0), left: m.left, right: width - m.right,
    x: (date) => { const i = dates.indexOf(date); return i < 0 ? null : m.left + band * (i + 0.5); },
    band,
  };
  drawMarkers(overlay, svg, state.geometry);

  const hadFocus = document.activeElement && document.activeElement.classList
    && document.activeElement.classList.contains("bar");
  $("plot").replaceChildren(svg);
  $("chart").dataset.state = "ready";
  $("chart").dataset.bars = String(withData.length);
  // A refresh must not steal or drop the reader's place.
  if (hadFocus && focusDate) barFor(focusDate).focus();
  else if (state.activeDate && byDate.has(state.activeDate)) showTooltip(state.activeDate);
  else hideTooltip();
}

function summaryText(daily) {
  const n = daily.days.length;
  const avgWh = Math.round(daily.total / n);
  const flagged = daily.days.filter((d) => ["estimated", "questionable"].includes(markOf(d.quality))).length;
  const incomplete = daily.days.filter((d) => !d.quality.complete).length;
  const parts = [`${n} day${n > 1 ? "s" : ""} with readings`];
  if (daily.total_kwh !== null) parts.push(`average ${(Math.round(avgWh / 100) / 10).toFixed(1)} kWh a day`);
  parts.push(flagged ? `${flagged} day${flagged > 1 ? "s" : ""} with estimated or questionable readings`
    : "no estimated or questionable readings");
  if (incomplete) parts.push(`${incomplete} incomplete day${incomplete > 1 ? "s" : ""}`);
  const checked = daily.days.filter((d) => checksOf(d).length).length;
  if (checked) parts.push(`${checked} day${checked > 1 ? "s" : ""} failing a usage check`);
  if (Array.isArray(daily.rates)) {
    parts.push(daily.rates.map((r) => `${r.label} ${amountText(r.total, r.total_kwh, daily.unit)}`).join(", "));
  }
  return `${parts.join(" · ")}.`;
}

function renderTableHead(daily) {
  const unit = daily.total_kwh !== null ? "kWh" : daily.unit;
  const heads = [["Date", ""]];
  if (Array.isArray(daily.rates)) {
    for (const rate of daily.rates) heads.push([`${rate.label} (${unit})`, "num"]);
    heads.push([`Total (${unit})`, "num"]);
  } else {
    heads.push([`Usage (${unit})`, "num"]);
  }
  heads.push(["Readings", "num"], ["Quality", ""]);
  const tr = document.createElement("tr");
  for (const [content, cls] of heads) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = content;
    if (cls) th.className = cls;
    tr.appendChild(th);
  }
  $("table").tHead.replaceChildren(tr);
}

function renderTable(daily, range) {
  $("table-caption").textContent = `Daily usage of meter ${daily.meter_id}, ${range} (${daily.timezone} days)`;
  renderTableHead(daily);
  const figure = (value, valueKwh) => (valueKwh !== null ? groupDigits(valueKwh) : `${value} ${daily.unit}`);
  const rows = [...daily.days].reverse().map((day) => {
    const tr = document.createElement("tr");
    const cells = [[fmtLong.format(asUTC(day.date)), ""]];
    if (Array.isArray(daily.rates)) {
      for (const rate of day.rates) cells.push([figure(rate.value, rate.value_kwh), "num"]);
    }
    cells.push(
      [figure(day.value, day.value_kwh), "num"],
      [`${day.quality.present} of ${day.quality.expected}`, "num"],
      [dayNotesText(day), ""],
    );
    for (const [content, cls] of cells) {
      const td = document.createElement("td");
      td.textContent = content;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    tr.dataset.mark = markOf(day.quality);
    tr.dataset.checks = checksOf(day).join(" ");
    return tr;
  });
  $("table").tBodies[0].replaceChildren(...rows);
}

// ---------------------------------------------------------------- tooltip and keys

const barFor = (date) => document.querySelector(`#usage-chart .bar[data-date="${date}"]`);

function showTooltip(date) {
  const bar = barFor(date);
  const day = state.daily && state.daily.days.find((d) => d.date === date);
  if (!bar || !day) return;
  state.activeDate = date;
  document.querySelectorAll("#usage-chart .active").forEach((n) => n.classList.remove("active"));
  bar.classList.add("active");
  const bandRect = document.querySelector(`#usage-chart .day-band[data-date="${date}"]`);
  if (bandRect) bandRect.classList.add("active");

  const tip = $("tooltip");
  const stacked = Array.isArray(state.daily.rates);
  const rows = [["tt-date", fmtLong.format(asUTC(date))],
    ["tt-value", stacked ? `${kwhText(day)} total` : kwhText(day)]];
  if (stacked) {
    day.rates.forEach((rate, k) => rows.push([`tt-rate rate-${k % 4}`,
      `${state.daily.rates[k].label}: ${amountText(rate.value, rate.value_kwh, day.unit)}`]));
  }
  for (const [kind, note] of dayNotes(day)) rows.push([`tt-note ${kind}`, note]);
  tip.replaceChildren(...rows.map(([cls, content]) => {
    const div = document.createElement("div");
    div.className = cls;
    div.textContent = content;
    return div;
  }));
  tip.dataset.date = date;
  tip.hidden = false;

  placeTooltip(tip, bar);
}

// Beside the bar (right, or left near the edge), and below the tops of the bars it
// covers, so no covered day loses its quality marker; above them if there is no room.
function placeTooltip(tip, bar) {
  const box = $("chart").getBoundingClientRect();
  const b = bar.getBoundingClientRect();
  const w = tip.offsetWidth;
  const h = tip.offsetHeight;
  const gap = 10;
  let left = b.right - box.left + gap;
  if (left + w > box.width) left = b.left - box.left - gap - w;
  left = Math.max(left, 0);
  let lowestTop = b.top;
  let highestMark = b.top;
  for (const node of document.querySelectorAll("#usage-chart .bar, #usage-chart .marks > *")) {
    const r = node.getBoundingClientRect();
    if (r.right < box.left + left || r.left > box.left + left + w) continue;
    if (node.classList.contains("bar")) lowestTop = Math.max(lowestTop, r.top);
    highestMark = Math.min(highestMark, r.top);
  }
  let top = lowestTop + 8;
  if (top + h > b.bottom) top = highestMark - h - 8;
  tip.style.left = `${left}px`;
  tip.style.top = `${Math.min(Math.max(top - box.top, 0), box.height - h)}px`;
}

function hideTooltip() {
  state.activeDate = null;
  $("tooltip").hidden = true;
  document.querySelectorAll("#usage-chart .active").forEach((n) => n.classList.remove("active"));
}

// One tab stop for the chart; arrows move between days (a roving tabindex).
function onBarKey(event) {
  const bars = [...document.querySelectorAll("#usage-chart .bar")];
  const i = bars.indexOf(event.target);
  if (i < 0) return;
  const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: bars.length - 1 };
  if (event.key === "Escape") { hideTooltip(); return; }
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    openDay(event.target.dataset.date);
    return;
  }
  if (!(event.key in moves)) return;
  event.preventDefault();
  const next = bars[Math.min(Math.max(moves[event.key], 0), bars.length - 1)];
  bars.forEach((b) => b.setAttribute("tabindex", b === next ? "0" : "-1"));
  next.focus();
}

// ---------------------------------------------------------------- status and controls

function relative(iso) {
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (s < 90) return "just now";
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString("en-US", { dateStyle: "medium" });
}

function renderStatus() {
  const meter = currentMeter();
  const line = $("meter-status");
  line.replaceChildren();
  if (!meter) return;
  const badge = document.createElement("span");
  badge.className = `badge ${meter.status}`;
  badge.textContent = { ok: "● Reading", failing: "▲ Not reading", unknown: "○ Not read yet" }[meter.status];
  const parts = [];
  if (meter.last_read_at) parts.push(`last read ${relative(meter.last_read_at)}`);
  if (meter.status === "failing" && meter.last_error) parts.push(`last error: ${meter.last_error}`);
  parts.push(`days in ${meter.timezone} time`);
  line.append(badge, document.createTextNode(parts.join(" · ")));
}

function renderMeterOptions() {
  const select = $("meter");
  const ids = state.meters.map((m) => m.meter_id);
  const shown = [...select.options].map((o) => o.value);
  if (ids.length === 0) {
    select.replaceChildren(new Option("No meters yet", ""));
    select.disabled = true;
    return;
  }
  if (ids.join("\n") !== shown.join("\n")) {
    select.replaceChildren(...state.meters.map((m) => new Option(
      m.profile ? `${m.meter_id} (${m.profile})` : m.meter_id, m.meter_id)));
  }
  if (!ids.includes(state.meterId)) state.meterId = ids[0];
  select.value = state.meterId;
  select.disabled = false;
}

async function loadMeters() {
  const list = await getJSON(`${API}/meters`);
  state.meters = list.meters;
  state.defaultChannel = list.default_channel;
  renderMeterOptions();
  renderStatus();
}

// The local days the chart shows: the period up to today, or up to the day of the last
// read when that is later (a gateway whose clock runs ahead, such as the accelerated
// demo); for a customer, only days their account holds the meter.
function shownRange(meter) {
  const today = todayIn(meter.timezone);
  const lastRead = meter.last_read_at ? todayIn(meter.timezone, new Date(meter.last_read_at)) : today;
  const last = lastRead > today ? lastRead : today;
  return clipToWindow(addDays(last, 1 - state.days), last, viewWindow(meter.meter_id, today));
}

async function loadDaily({ announce = false } = {}) {
  const meter = currentMeter();
  if (!meter) {
    state.daily = null;
    $("chart-title").textContent = session.mode === "customer" ? "No meters on your accounts yet"
      : "No meters yet";
    $("chart-summary").textContent = "";
    showEmpty("No readings yet", session.mode === "customer"
      ? "Link a billing account above to see its meter's usage."
      : "Meters appear here once the gateway has read them.");
    hideMeterExtras();
    return;
  }
  const channel = channelOf(meter);
  if (!channel && !tariffsOf(meter).length) {
    $("chart-title").textContent = `Meter ${meter.meter_id}`;
    showEmpty("No energy readings", "This meter has no energy channel to chart.");
    hideMeterExtras();
    return;
  }
  const range = shownRange(meter);
  if (range === null) {
    const win = viewWindow(meter.meter_id, todayIn(meter.timezone));
    $("chart-title").textContent = `Meter ${meter.meter_id}`;
    showEmpty("Nothing in this period", `Your account holds this meter from ${dayText(win.first)}`
      + `${win.last ? ` to ${dayText(win.last)}` : ""}: choose a longer period.`);
    hideMeterExtras();
    return;
  }
  const [first, last] = range;
  const seq = ++state.seq;
  const path = `${API}/meters/${encodeURIComponent(meter.meter_id)}/daily`;
  // A two-rate meter: each rate stacked under the day's total.
  const [daily, markers] = await Promise.all([
    tariffsOf(meter).length
      ? getJSON(`${path}/rates?${new URLSearchParams({ from: first, to: last, channel: state.defaultChannel })}`)
      : getJSON(`${path}?${new URLSearchParams({ from: first, to: last, channel })}`),
    loadMarkers(meter, first, last),
  ]);
  if (seq !== state.seq) return; // a newer request (another meter or period) is on its way
  const key = JSON.stringify([first, last, daily, markers]);
  if (key !== state.dailyKey) {
    state.daily = daily;
    state.markers = markers;
    state.dailyKey = key;
    state.range = [first, last];
    render(daily, first, last);
    renderMarkerList(meter, first, last);
  }
  await refreshMeterExtras(meter, first, last);
  if (announce) $("announce").textContent = `${$("chart-title").textContent}. ${$("chart-summary").textContent}`;
}

function showError(error) {
  $("updated").textContent = `Could not refresh: ${error.message}. Retrying every ${refreshSeconds()} s…`;
  $("chart").dataset.error = error.message;
  if (!state.daily) { // nothing drawn yet: say why instead of "Loading…" for ever
    $("chart-title").textContent = "Readings are not available right now";
    showEmpty("Could not load readings", error.message);
  }
}

async function refresh(opts) {
  if (document.body.dataset.view !== "portal") return;
  try {
    await loadMeters();
    await loadDaily(opts);
    delete $("chart").dataset.error;
    $("updated").textContent = `Updated ${new Date().toLocaleTimeString("en-US")} · refreshes every ${refreshSeconds()} s`;
  } catch (error) {
    if (error.status === 401 && session.mode === "customer") return; // back at sign-in
    showError(error);
  }
}

// After signing out: nothing of the last customer's meters stays on the page.
function resetPortal() {
  Object.assign(state, {
    meters: [], meterId: null, daily: null, dailyKey: "", range: null, activeDate: null,
    markers: [], geometry: null,
  });
  state.seq += 1;
  $("meter").replaceChildren(new Option("Loading meters…", ""));
  $("plot").replaceChildren();
  $("chart-title").textContent = "Loading…";
  $("chart-summary").textContent = "";
  $("accounts-list").replaceChildren();
  $("sessions-list").replaceChildren();
  $("alerts-list").replaceChildren();
  $("settings").open = false;
  $("alert-address").value = "";
  Object.assign(alerts, { meterId: null, key: "" });
  hideTooltip();
  hideMeterExtras();
}

function refreshSeconds() {
  const asked = Number(new URLSearchParams(location.search).get("refresh"));
  return asked > 0 ? asked : Number(document.body.dataset.refreshS) || 10;
}

// ?meter=...&days=90 open a given view and are kept current, so a view can be linked.
function readLocation() {
  const params = new URLSearchParams(location.search);
  state.meterId = params.get("meter");
  const days = Number(params.get("days"));
  if ([30, 90, 365].includes(days)) state.days = days;
  const radio = document.querySelector(`input[name="days"][value="${state.days}"]`);
  if (radio) radio.checked = true;
}

function writeLocation() {
  const params = new URLSearchParams(location.search);
  params.set("meter", state.meterId);
  params.set("days", String(state.days));
  history.replaceState(null, "", `?${params}`);
}

function startChart() {
  readLocation();
  $("meter").addEventListener("change", (event) => {
    state.meterId = event.target.value;
    state.activeDate = null;
    writeLocation();
    renderStatus();
    closeDay();
    closeComparison();
    refresh({ announce: true });
  });
  for (const radio of document.querySelectorAll('input[name="days"]')) {
    radio.addEventListener("change", () => {
      state.days = Number(radio.value);
      writeLocation();
      refresh({ announce: true });
    });
  }
  $("controls").addEventListener("submit", (event) => event.preventDefault());
  let width = $("plot").clientWidth;
  new ResizeObserver(() => {
    const now = $("plot").clientWidth;
    if (state.daily && state.range && Math.abs(now - width) > 8) {
      width = now; // geometry depends on the width: draw again
      render(state.daily, ...state.range);
    }
  }).observe($("plot"));
  setInterval(() => { if (!document.hidden) refresh(); }, refreshSeconds() * 1000);
}
