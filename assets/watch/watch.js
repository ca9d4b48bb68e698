// The live page of `scratchnet train --watch`: one EventSource; the server
// sends the history first, so a late or returning page misses nothing.
"use strict";

const $ = (id) => document.getElementById(id);
const token = document.querySelector('meta[name="watch-token"]').content;
// Everything heard so far (read by the browser test as `window.watch`).
const watch = { plan: null, evals: [], steps: [], progress: null, digits: null, look: null, end: null };
window.watch = watch;

const COLOURS = ["#2f6f9f", "#d9822b", "#3c8d40", "#8e44ad"];

function clock(s) {
  if (!isFinite(s)) return "–";
  s = Math.round(s);
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  return h ? `${h} h ${m % 60} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

function showStatus() {
  const p = watch.progress, plan = watch.plan;
  if (!plan) return;
  const step = p ? p.step : plan.done;
  $("progress").value = step / Math.max(plan.total_steps, 1);
  if (!p) { $("status").textContent = `step ${step} of ${plan.total_steps}`; return; }
  const rate = p.images_per_s >= 1e3 ? `${(p.images_per_s / 1e3).toFixed(1)}k` : p.images_per_s.toFixed(0);
  const eta = watch.end ? "" : `, about ${clock(p.eta_s)} to go`;
  $("status").textContent =
    `step ${p.step} of ${plan.total_steps} (epoch ${p.epoch.toFixed(2)}), ${rate} images/s, ${clock(p.elapsed_s)} elapsed${eta}`;
}

// Round values from `lo` to `hi`, about `n` of them (steps of 1, 2 or 5
// times a power of ten), with the decimals that tell them apart.
function ticks(lo, hi, n = 5) {
  const span = hi - lo, mag = 10 ** Math.floor(Math.log10(span / n));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= n);
  const values = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) values.push(v);
  return { values, decimals: Math.max(0, Math.ceil(-Math.log10(step) - 1e-9)) };
}

// Draws `series` ([{name, points: [[x, y]]}]) on a canvas with axes; the
// legend names the series that have points.
function plot(canvas, title, series, { log = false, percent = false } = {}) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 58, R = 12, T = 36, B = 24;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#16202b";
  ctx.fillText(title, L, 14);
  const shown = series
    .map((s, k) => ({ ...s, colour: COLOURS[k % COLOURS.length],
                      points: s.points.filter(([, y]) => isFinite(y) && (!log || y > 0)) }))
    .filter((s) => s.points.length);
  const pts = shown.flatMap((s) => s.points);
  canvas.dataset.points = String(pts.length);
  if (!pts.length) return;
  const f = log ? Math.log10 : (y) => y;
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (const [x, y] of pts) {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x);
    y0 = Math.min(y0, f(y)); y1 = Math.max(y1, f(y));
  }
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { const d = Math.abs(y0) * 0.1 || 0.5; y0 -= d; y1 += d; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  ctx.strokeStyle = "#ddd"; ctx.lineWidth = 1; ctx.fillStyle = "#5c6670";
  const across = ticks(y0, y1, 4);
  for (const v of across.values) {
    ctx.beginPath(); ctx.moveTo(L, Y(v)); ctx.lineTo(W - R, Y(v)); ctx.stroke();
    const label = log ? (10 ** v).toPrecision(2)
      : percent ? `${(v * 100).toFixed(Math.max(0, across.decimals - 2))}%`
      : v.toFixed(across.decimals);
    ctx.fillText(label, 4, Y(v) + 4);
  }
  const along = ticks(x0, x1, 6);
  for (const v of along.values) {
    const label = v.toFixed(along.decimals), w = ctx.measureText(label).width;
    ctx.fillText(label, Math.min(X(v) - w / 2, W - w - 2), H - 6);
  }
  let legend = L;
  shown.forEach((s) => {
    ctx.strokeStyle = ctx.fillStyle = s.colour;
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.points.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(f(y))) : ctx.moveTo(X(x), Y(f(y)))));
    ctx.stroke();
    if (s.points.length === 1) ctx.fillRect(X(s.points[0][0]) - 2, Y(f(s.points[0][1])) - 2, 4, 4);
    ctx.fillRect(legend, 22, 14, 3);
    ctx.fillText(s.name, legend + 18, 27);
    legend += 26 + ctx.measureText(s.name).width;
  });
}

// What changed is drawn at the next frame, once, however many events
// arrived (a reconnection replays the whole history at once).
const due = new Set();
function later(draw) {
  if (!due.size) requestAnimationFrame(() => { const now = [...due]; due.clear(); now.forEach((f) => f()); });
  due.add(draw);
}
const showCurves = () => later(drawCurves);

function drawCurves() {
  const byEpoch = $("by-epoch").checked;
  const x = (r) => (byEpoch ? r.epoch : r.iter);
  const line = (name, key) => ({ name, points: watch.evals.map((r) => [x(r), r[key] ?? NaN]) });
  const unit = byEpoch ? "epochs" : "steps";
  const running = {
    name: "train (running)",
    points: watch.steps.filter((p) => p.loss != null).map((p) => [byEpoch ? p.epoch : p.step, p.loss]),
  };
  plot($("loss"), `loss against ${unit}`,
    [line("train (since last eval)", "J"), line("validation", "val_loss"), running],
    { log: $("log").checked });
  plot($("accuracy"), `accuracy against ${unit}`, [line("train", "train_acc"), line("validation", "val_acc")],
    { percent: true });
  plot($("lr"), `learning rate against ${unit}`, [line("learning rate", "lr")]);
}

function showDigits() {
  const d = watch.digits;
  if (!d) return;
  $("split").textContent = d.split;
  const grid = $("digits");
  // Drawn once on a canvas, shown as images: a hundred canvases would be a
  // hundred layers for the browser to compose at every change of the page.
  const c = document.createElement("canvas");
  c.width = c.height = d.side;
  const ctx = c.getContext("2d");
  grid.replaceChildren(...d.digits.map((digit, i) => {
    const cell = document.createElement("div");
    cell.className = "digit";
    const pixels = ctx.createImageData(d.side, d.side);
    for (let p = 0; p < d.side * d.side; p++) {
      const v = parseInt(digit.pixels.substr(2 * p, 2), 16);
      pixels.data.set([v, v, v, 255], 4 * p);
    }
    ctx.putImageData(pixels, 0, 0);
    const img = document.createElement("img");
    img.src = c.toDataURL();
    img.alt = `a ${digit.label}`;
    const answer = document.createElement("span");
    answer.id = `answer-${i}`;
    cell.append(img, answer);
    return cell;
  }));
}

// The first layer's pictures: each branch's next one is fetched and
// decoded off screen, then put in place; while one is on its way, newer
// evaluations wait for it (the page never queues pictures).
const pictures = [];
function showUnits(look) {
  const box = $("units");
  look.units.forEach((label, b) => {
    let p = pictures[b];
    if (!p) {
      const fig = document.createElement("figure");
      const cap = document.createElement("figcaption");
      cap.textContent = label;
      fig.append(document.createElement("img"), cap);
      box.append(fig);
      p = pictures[b] = { fig, loading: false, wanted: null };
    }
    p.wanted = look.iter;
    if (p.loading) return;
    const load = (iter) => {
      p.loading = true;
      const img = new Image();
      img.src = `/units?branch=${b}&iter=${iter}`;
      img.alt = `the ${label} units' weights at step ${iter}`;
      img.decode().then(() => p.fig.firstChild.replaceWith(img), () => {}).finally(() => {
        p.loading = false;
        if (p.wanted !== iter) load(p.wanted);
      });
    };
    load(p.wanted);
  });
}

// The confusion matrix: its cells made once, their numbers and shades
// changed in place.
function showConfusion(m) {
  const table = $("confusion");
  if (table.rows.length !== m.length + 1) {
    const head = `<tr><th></th>${m.map((_, j) => `<th>${j}</th>`).join("")}</tr>`;
    const rows = m.map((row, i) => `<tr><th>${i}</th>${row.map(() => "<td></td>").join("")}</tr>`);
    table.innerHTML = head + rows.join("");
  }
  let most = 1;
  m.forEach((row, i) => row.forEach((v, j) => { if (i !== j) most = Math.max(most, v); }));
  m.forEach((row, i) => row.forEach((v, j) => {
    const cell = table.rows[i + 1].cells[j + 1];
    const shade = i === j ? "#e4eef6" : `rgba(179, 38, 30, ${((0.6 * v) / most).toFixed(2)})`;
    if (cell.textContent !== String(v)) cell.textContent = String(v);
    if (cell.dataset.shade !== shade) cell.style.background = cell.dataset.shade = shade;
  }));
  table.dataset.classes = String(m.length);
}

function showLook() {
  const look = watch.look, d = watch.digits;
  if (!look) return;
  $("units-iter").textContent = `(step ${look.iter})`;
  showUnits(look);
  if (d) {
    let wrong = 0;
    look.answers.forEach((a, i) => {
      const span = $(`answer-${i}`);
      if (!span) return;
      if (span.textContent !== String(a)) span.textContent = String(a);
      const bad = a !== d.digits[i].label;
      wrong += bad;
      if (span.parentElement.classList.contains("wrong") !== bad) {
        span.parentElement.classList.toggle("wrong", bad);
      }
    });
    $("wrong").textContent = `${wrong} of ${look.answers.length} wrong at step ${look.iter}.`;
  }
  showConfusion(look.confusion);
}

function showEnd() {
  const e = watch.end;
  if (!e) return;
  $("stop").disabled = true;
  $("outcome").textContent = e.message;
  if (e.pad) {
    $("pad-section").hidden = false;
    if ($("pad").getAttribute("src") !== "/pad") $("pad").setAttribute("src", "/pad");
  }
  showStatus();
}

const events = new EventSource("/events");
const on = (kind, f) => events.addEventListener(kind, (m) => f(JSON.parse(m.data)));
on("start", (plan) => {
  // A reconnection replays the history: start again from nothing.
  Object.assign(watch, { plan, evals: [], steps: [], progress: null, look: null, end: null });
  $("network").textContent = plan.network;
  $("stop").disabled = false;
  showStatus();
  showCurves();
});
on("progress", (p) => {
  watch.progress = p;
  watch.steps.push(p);
  later(showStatus);
  if (p.loss != null) showCurves();
});
on("eval", (r) => { watch.evals.push(r); showCurves(); });
on("digits", (d) => { watch.digits = d; showDigits(); showLook(); });
on("look", (l) => { watch.look = l; later(showLook); });
on("end", (e) => { watch.end = e; showEnd(); });

$("by-epoch").addEventListener("change", showCurves);
$("log").addEventListener("change", showCurves);
$("stop").addEventListener("click", async () => {
  $("stop").disabled = true;
  try {
    const r = await fetch("/stop", { method: "POST", headers: { "X-Watch-Token": token } });
    $("outcome").textContent = r.ok
      ? "Stopping after the step under way: the checkpoint is being written…"
      : `Stop was refused: ${(await r.json()).error}`;
  } catch (e) {
    $("outcome").textContent = `Stop did not reach the run: ${e}`;
    $("stop").disabled = false;
  }
});
