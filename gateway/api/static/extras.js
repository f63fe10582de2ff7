// Around the daily chart: the monthly totals, the intervals of one day (drill-down) and
// the Green Button download. Loaded after app.js.
"use strict";

const extras = { monthlyKey: "", day: null, daySeq: 0 };

const fmtMonth = new Intl.DateTimeFormat("en-US", { month: "short", timeZone: "UTC" });
const fmtMonthLong = new Intl.DateTimeFormat("en-US", { month: "long", year: "numeric", timeZone: "UTC" });
const fmtHour = (tz) => new Intl.DateTimeFormat("en-US", {
  hour: "2-digit", minute: "2-digit", hour12: false, timeZone: tz, timeZoneName: "short",
});

function hideMeterExtras() {
  $("monthly-card").hidden = true;
  $("download-card").hidden = true;
  $("markers-card").hidden = true;
  $("alerts-card").hidden = true;
  extras.monthlyKey = "";
  closeDay();
}

async function refreshMeterExtras(meter, first, last) {
  $("download-card").hidden = false;
  setDownloadRange(meter, first, last);
  await Promise.all([loadMonthly(meter), loadAlerts(meter)]);
}

// The frame of the monthly and the intervals charts: an svg with its value axis, grid
// and unit; gives the svg and the value-to-y mapping.
function smallChart(id, labelledBy, { width, height, m, max, unit }) {
  const plotH = height - m.top - m.bottom;
  const { top, step } = niceScale(max);
  const y = (v) => m.top + plotH - (v / top) * plotH;
  const svg = el("svg", {
    id, viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-labelledby": labelledBy,
  });
  const grid = el("g", { class: "grid" }, svg);
  const axis = el("g", { class: "axis y" }, svg);
  for (let v = 0; v <= top + step / 2; v += step) {
    el("line", { x1: m.left, x2: width - m.right, y1: y(v), y2: y(v) }, grid);
    text(axis, m.left - 8, y(v) + 4, tickLabel(v, step), { "text-anchor": "end" });
  }
  text(axis, m.left - 8, m.top - 12, unit, { class: "axis-title", "text-anchor": "end" });
  return { svg, y };
}

// ---------------------------------------------------------------- months

const monthOf = (iso) => iso.slice(0, 7);
function addMonths(month, n) {
  const [y, m] = month.split("-").map(Number);
  const d = new Date(Date.UTC(y, m - 1 + n, 1));
  return d.toISOString().slice(0, 7);
}

// Twelve months up to this one; for a customer only whole months their account holds
// (the API refuses a month it holds only in part, rather than showing half of it).
function monthRange(meter) {
  const today = todayIn(meter.timezone);
  let last = monthOf(today);
  let first = addMonths(last, -11);
  const win = viewWindow(meter.meter_id, today);
  if (win) {
    const own = win.first.endsWith("-01") ? monthOf(win.first) : addMonths(monthOf(win.first), 1);
    if (own > first) first = own;
    if (win.last !== null) {
      const end = addDays(win.last, 1).endsWith("-01") ? monthOf(win.last) : addMonths(monthOf(win.last), -1);
      if (end < last) last = end;
    }
  }
  return first <= last ? [first, last] : null;
}

async function loadMonthly(meter) {
  const range = monthRange(meter);
  const card = $("monthly-card");
  card.hidden = false;
  if (range === null) {
    extras.monthlyKey = "";
    $("monthly-plot").replaceChildren();
    $("monthly-summary").textContent = "Monthly totals appear here after your account's first whole month.";
    $("monthly-table").tBodies[0].replaceChildren();
    card.dataset.state = "empty";
    return;
  }
  const params = new URLSearchParams({ from: range[0], to: range[1] });
  if (!tariffsOf(meter).length) params.set("channel", channelOf(meter));
  const monthly = await api(`${API}/meters/${encodeURIComponent(meter.meter_id)}/monthly?${params}`);
  const key = JSON.stringify(monthly);
  if (key === extras.monthlyKey) return;
  extras.monthlyKey = key;
  renderMonthly(monthly);
}

function renderMonthly(monthly) {
  const card = $("monthly-card");
  card.dataset.state = "ready";
  card.dataset.meter = monthly.meter_id;
  const unit = monthly.total_kwh !== null ? "kWh" : monthly.unit;
  const amount = (m) => (m.value_kwh !== null ? groupDigits(m.value_kwh) : String(m.value));
  $("monthly-summary").textContent = `${monthly.months.length} month${monthly.months.length === 1 ? "" : "s"}, ${groupDigits(monthly.total_kwh ?? String(monthly.total))} ${unit} in all.`
    + " Months not yet complete are drawn lighter.";

  const width = Math.max(320, $("monthly-plot").clientWidth || 800);
  const height = 220;
  const m = { top: 26, right: 12, bottom: 34, left: 58 };
  const plotW = width - m.left - m.right;
  const band = plotW / monthly.months.length;
  const barW = Math.min(band * 0.66, 56);
  const max = Math.max(...monthly.months.map((x) => Number(x.value_kwh ?? x.value)), 0);
  const { svg, y } = smallChart("monthly-chart", "monthly-title monthly-summary",
    { width, height, m, max: max * 1.05, unit });
  const bars = el("g", { class: "month-bars" }, svg);
  monthly.months.forEach((month, i) => {
    const value = Math.max(Number(month.value_kwh ?? month.value), 0);
    const cx = m.left + band * (i + 0.5);
    const barTop = Math.min(y(value), y(0) - (value > 0 ? 1.5 : 0));
    el("rect", {
      class: `month-bar${month.complete ? "" : " partial"}`, x: cx - barW / 2, y: barTop, width: barW,
      height: y(0) - barTop, "data-month": month.month, "data-kwh": month.value_kwh ?? "",
    }, bars);
    text(svg, cx, height - m.bottom + 18, fmtMonth.format(new Date(`${month.month}-01T00:00:00Z`)),
      { "text-anchor": "middle", class: "axis-label" });
  });
  $("monthly-plot").replaceChildren(svg);

  const rows = [...monthly.months].reverse().map((month) => {
    const tr = document.createElement("tr");
    tr.dataset.month = month.month;
    const notes = [];
    if (month.missing_days) notes.push(`${month.missing_days} days without data`);
    if (month.estimated_days) notes.push(`${month.estimated_days} days with estimates`);
    if (!notes.length) notes.push(month.complete ? "Complete" : "In progress");
    for (const [content, cls] of [[fmtMonthLong.format(new Date(`${month.month}-01T00:00:00Z`)), ""],
      [amount(month), "num"], [`${month.days_with_data} of ${month.days}`, "num"], [notes.join("; "), ""]]) {
      const td = document.createElement("td");
      td.textContent = content;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    return tr;
  });
  $("monthly-unit").textContent = `Usage (${unit})`;
  $("monthly-table").tBodies[0].replaceChildren(...rows);
}

// ---------------------------------------------------------------- one day's intervals

// The UTC instant of a local midnight: the zone's offset read twice, so a day that
// starts next to a DST change lands on the right side of it.
function offsetMinutes(instant, timeZone) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(instant);
  const get = (type) => Number(parts.find((p) => p.type === type).value);
  const wall = Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"), get("minute"), get("second"));
  return Math.round((wall - instant.getTime()) / 60000);
}

function localMidnight(iso, timeZone) {
  const [y, m, d] = iso.split("-").map(Number);
  const guess = Date.UTC(y, m - 1, d);
  let at = guess - offsetMinutes(new Date(guess), timeZone) * 60000;
  at = guess - offsetMinutes(new Date(at), timeZone) * 60000;
  return new Date(at);
}

async function openDay(date) {
  const meter = currentMeter();
  if (!meter || !date) return;
  const seq = ++extras.daySeq;
  const card = $("day-card");
  card.hidden = false;
  card.dataset.state = "loading";
  card.dataset.date = date;
  extras.day = date;
  $("day-title").textContent = `Intervals of ${fmtLong.format(asUTC(date))}`;
  const channel = tariffsOf(meter).length ? state.defaultChannel : channelOf(meter);
  const params = new URLSearchParams({
    from: localMidnight(date, meter.timezone).toISOString(),
    to: localMidnight(addDays(date, 1), meter.timezone).toISOString(),
    channel,
  });
  try {
    const answer = await api(`${API}/meters/${encodeURIComponent(meter.meter_id)}/intervals?${params}`);
    if (seq !== extras.daySeq) return;
    renderDay(answer, meter);
  } catch (error) {
    if (seq !== extras.daySeq) return;
    card.dataset.state = "error";
    $("day-summary").textContent = `Could not load the intervals: ${error.message}`;
  }
  card.scrollIntoView({ block: "nearest" });
}

function renderDay(answer, meter) {
  const card = $("day-card");
  const list = answer.intervals;
  card.dataset.state = "ready";
  card.dataset.count = String(list.length);
  const total = list.reduce((sum, iv) => sum + iv.value, 0);
  const flagged = list.filter((iv) => iv.quality.code !== 0).length;
  const unit = list.length && list[0].unit === "Wh" ? "Wh" : (list[0] || {}).unit || "";
  $("day-summary").textContent = list.length
    ? `${list.length} intervals, ${total.toLocaleString("en-US")} ${unit} in all`
      + `${flagged ? `, ${flagged} not measured (estimated or flagged)` : ", all measured"}.`
    : "No intervals stored for this day.";

  const width = Math.max(320, $("day-plot").clientWidth || 800);
  const height = 180;
  const m = { top: 26, right: 12, bottom: 30, left: 58 };
  const plotW = width - m.left - m.right;
  const start = localMidnight(card.dataset.date, meter.timezone).getTime();
  const end = localMidnight(addDays(card.dataset.date, 1), meter.timezone).getTime();
  const x = (t) => m.left + ((t - start) / (end - start)) * plotW;
  const max = Math.max(...list.map((iv) => iv.value), 1);
  const { svg, y } = smallChart("day-chart", "day-title day-summary",
    { width, height, m, max, unit });
  const hours = new Intl.DateTimeFormat("en-US", { hour: "numeric", timeZone: meter.timezone });
  for (let t = start; t < end; t += 3600000) { // a label every three local hours
    const h = Number(new Intl.DateTimeFormat("en-US", { hour: "numeric", hourCycle: "h23", timeZone: meter.timezone }).format(t));
    if (h % 3 === 0) text(svg, x(t), height - 10, hours.format(t), { "text-anchor": "middle", class: "axis-label" });
  }
  const g = el("g", { class: "interval-bars" }, svg);
  for (const iv of list) {
    const t0 = Date.parse(iv.start);
    const t1 = Date.parse(iv.end);
    const w = Math.max(1, x(t1) - x(t0) - 1);
    const kind = iv.quality.code === 0 ? "ok" : iv.quality.name.startsWith("estimated") ? "estimated"
      : "questionable";
    el("rect", {
      class: `iv iv-${kind}`, x: x(t0), y: y(iv.value), width: w, height: Math.max(y(0) - y(iv.value), 0),
      "data-start": iv.start, "data-quality": iv.quality.name,
    }, g);
  }
  $("day-plot").replaceChildren(svg);

  const when = fmtHour(meter.timezone);
  const rows = list.map((iv) => {
    const tr = document.createElement("tr");
    for (const [content, cls] of [[when.format(Date.parse(iv.start)), ""],
      [iv.value.toLocaleString("en-US"), "num"], [iv.quality.name.replaceAll("_", " "), ""]]) {
      const td = document.createElement("td");
      td.textContent = content;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    return tr;
  });
  $("day-unit").textContent = `Usage (${unit})`;
  $("day-table").tBodies[0].replaceChildren(...rows);
  $("day-mark").hidden = !session.markers;
}

function closeDay() {
  extras.day = null;
  extras.daySeq += 1;
  $("day-card").hidden = true;
}

// ---------------------------------------------------------------- Green Button

function setDownloadRange(meter, first, last) {
  $("download-from").value = $("download-from").dataset.touched ? $("download-from").value : first;
  $("download-to").value = $("download-to").dataset.touched ? $("download-to").value : last;
  const win = viewWindow(meter.meter_id, todayIn(meter.timezone));
  for (const id of ["download-from", "download-to"]) {
    const input = $(id);
    if (win) input.min = win.first; else input.removeAttribute("min");
    input.max = win && win.last !== null && win.last < last ? win.last : last;
  }
}

// The file comes through fetch (it needs the session's token), then is handed to the
// browser as a download under the name the gateway gave it.
async function onDownload(event) {
  event.preventDefault();
  const meter = currentMeter();
  if (!meter) return;
  const form = event.target;
  const fmt = form.querySelector('input[name="download-format"]:checked').value;
  const params = new URLSearchParams({ from: $("download-from").value, to: $("download-to").value, format: fmt });
  if (!tariffsOf(meter).length) params.set("channel", channelOf(meter));
  busy(form, true);
  say("download-message", "Preparing your file…", "info");
  try {
    const response = await api(`${API}/meters/${encodeURIComponent(meter.meter_id)}/greenbutton?${params}`, { raw: true });
    const blob = await response.blob();
    const disposition = response.headers.get("Content-Disposition") || "";
    const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || `greenbutton.${fmt}`;
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = name;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    say("download-message", `Downloaded ${name}.`, "info");
  } catch (error) {
    say("download-message", `Could not download: ${error.message}`);
  } finally {
    busy(form, false);
  }
}

function startExtras() {
  $("download-form").addEventListener("submit", onDownload);
  for (const id of ["download-from", "download-to"]) {
    $(id).addEventListener("change", () => { $(id).dataset.touched = "1"; });
  }
  $("day-close").addEventListener("click", () => {
    const date = extras.day;
    closeDay();
    const bar = date && barFor(date);
    if (bar) bar.focus();
  });
  $("day-mark").addEventListener("click", () => {
    if (!extras.day) return;
    resetMarkerForm();
    openMarkerForm(extras.day);
  });
}
