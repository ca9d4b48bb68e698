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

// Draws `series` ([{name, points: [[x, y]]}]) on a canvas with axes.
function plot(canvas, title, series, { log = false, percent = false } = {}) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 58, R = 12, T = 22, B = 26;
  ctx.clearRect(0, 0, W, H);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#16202b";
  ctx.fillText(title, L, 14);
  const pts = series.flatMap((s) => s.points).filter(([, y]) => isFinite(y) && (!log || y > 0));
  canvas.dataset.points = String(pts.length);
  if (!pts.length) return;
  const f = log ? Math.log10 : (y) => y;
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => f(p[1]))), Math.max(...pts.map((p) => f(p[1])))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (y) => T + (1 - (f(y) - y0) / (y1 - y0)) * (H - T - B);
  ctx.strokeStyle = "#ccc"; ctx.lineWidth = 1; ctx.fillStyle = "#5c6670";
  for (let i = 0; i <= 4; i++) {
    const v = y0 + ((y1 - y0) * i) / 4, y = T + (1 - i / 4) * (H - T - B);
    ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(W - R, y); ctx.stroke();
    const shown = log ? 10 ** v : v;
    const label = percent ? `${(shown * 100).toFixed(1)}%` : shown.toPrecision(3);
    ctx.fillText(label, 2, y + 4);
  }
  for (let i = 0; i <= 4; i++) {
    const v = x0 + ((x1 - x0) * i) / 4;
    ctx.fillText(Number.isInteger(v) ? String(v) : v.toFixed(2), X(v) - 10, H - 8);
  }
  series.forEach((s, k) => {
    const p = s.points.filter(([, y]) => isFinite(y) && (!log || y > 0));
    ctx.strokeStyle = ctx.fillStyle = COLOURS[k % COLOURS.length];
    ctx.lineWidth = 2;
    ctx.beginPath();
    p.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
    ctx.stroke();
    if (p.length === 1) ctx.fillRect(X(p[0][0]) - 2, Y(p[0][1]) - 2, 4, 4);
    ctx.fillText(s.name, W - R - 150, T + 14 + 14 * k);
  });
}

function showCurves() {
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
  grid.replaceChildren(...d.digits.map((digit, i) => {
    const cell = document.createElement("div");
    cell.className = "digit";
    const c = document.createElement("canvas");
    c.width = c.height = d.side;
    const img = c.getContext("2d").createImageData(d.side, d.side);
    for (let p = 0; p < d.side * d.side; p++) {
      const v = parseInt(digit.pixels.substr(2 * p, 2), 16);
      img.data.set([v, v, v, 255], 4 * p);
    }
    c.getContext("2d").putImageData(img, 0, 0);
    c.setAttribute("aria-label", `a ${digit.label}`);
    const answer = document.createElement("span");
    answer.id = `answer-${i}`;
    cell.append(c, answer);
    return cell;
  }));
}

function showLook() {
  const look = watch.look, d = watch.digits;
  if (!look) return;
  $("units-iter").textContent = `(step ${look.iter})`;
  $("units").replaceChildren(...look.units.map((label, b) => {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = `/units?branch=${b}&iter=${look.iter}`;
    img.alt = `the ${label} units' weights at step ${look.iter}`;
    const cap = document.createElement("figcaption");
    cap.textContent = label;
    fig.append(img, cap);
    return fig;
  }));
  if (d) {
    let wrong = 0;
    look.answers.forEach((a, i) => {
      const span = $(`answer-${i}`);
      if (!span) return;
      span.textContent = String(a);
      const bad = a !== d.digits[i].label;
      wrong += bad;
      span.parentElement.classList.toggle("wrong", bad);
    });
    $("wrong").textContent = `${wrong} of ${look.answers.length} wrong at step ${look.iter}.`;
  }
  const m = look.confusion, n = m.length;
  const most = Math.max(1, ...m.flatMap((row, i) => row.filter((_, j) => j !== i)));
  const rows = [`<tr><th></th>${m.map((_, j) => `<th>${j}</th>`).join("")}</tr>`];
  m.forEach((row, i) => {
    const cells = row.map((v, j) => {
      const shade = i === j ? "#e4eef6" : `rgba(179, 38, 30, ${(0.6 * v) / most})`;
      return `<td style="background:${shade}">${v}</td>`;
    });
    rows.push(`<tr><th>${i}</th>${cells.join("")}</tr>`);
  });
  $("confusion").innerHTML = rows.join("");
  $("confusion").dataset.classes = String(n);
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
  showStatus();
  if (p.loss != null) showCurves();
});
on("eval", (r) => { watch.evals.push(r); showCurves(); });
on("digits", (d) => { watch.digits = d; showDigits(); showLook(); });
on("look", (l) => { watch.look = l; showLook(); });
on("end", (e) => { watch.end = e; showEnd(); });

$("by-epoch").addEventListener("change", showCurves);
$("log").addEventListener("change", showCurves);
$("stop").addEventListener("click", async () => {
  $("stop").disabled = true;
  const r = await fetch("/stop", { method: "POST", headers: { "X-Watch-Token": token } });
  $("outcome").textContent = r.ok
    ? "Stopping after the step under way: the checkpoint and model are being saved…"
    : `Stop was refused: ${(await r.json()).error}`;
});
