// The drawing pad, the answer, and the model's facts. The pad is sent as a
// PNG and prepared on the server exactly as `scratchnet predict` prepares a
// file (one function serves both), so the page shows what the network saw.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("prepared").getContext("2d");
const digitOut = document.getElementById("digit");
const confidence = document.getElementById("confidence");
const bars = document.getElementById("bars");
const source = document.getElementById("source");
const errorOut = document.getElementById("error");

// A stroke about as wide, once the digit is fitted into 20x20, as MNIST's.
const BRUSH = 22;
let drawing = false, dirty = false, last = null, timer = null, inFlight = false;
// Bumped whenever the pad is cleared or replaced: an answer that comes back
// for an earlier picture is not shown.
let picture = 0;

for (let d = 0; d < 10; d++) {
  const li = document.createElement("li");
  li.className = "bar";
  li.innerHTML = `<span>${d}</span><span class="track"><span class="fill"></span></span>` +
    `<span class="value">–</span>`;
  li.setAttribute("aria-label", `${d}: no answer yet`);
  bars.appendChild(li);
}

function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
}

function point(e) {
  const r = pad.getBoundingClientRect();
  return { x: (e.clientX - r.left) * pad.width / r.width, y: (e.clientY - r.top) * pad.height / r.height };
}

function stroke(from, to) {
  ctx.strokeStyle = "#fff";
  ctx.fillStyle = "#fff";
  ctx.lineWidth = BRUSH;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
}

pad.addEventListener("pointerdown", (e) => {
  e.preventDefault();
  pad.setPointerCapture(e.pointerId);
  drawing = true;
  last = point(e);
  stroke(last, last);
  changed("drawn");
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  e.preventDefault();
  const p = point(e);
  stroke(last, p);
  last = p;
  changed("drawn");
});
for (const end of ["pointerup", "pointercancel"]) {
  pad.addEventListener(end, () => {
    if (!drawing) return;
    drawing = false;
    predictPad();
  });
}

// Predictions while drawing, at most every 150 ms.
function changed(what) {
  dirty = true;
  source.textContent = what === "drawn" ? "Your drawing" : source.textContent;
  if (!timer) timer = setTimeout(() => { timer = null; predictPad(); }, 150);
}

function predictPad() {
  if (!dirty || inFlight) return;
  dirty = false;
  inFlight = true;
  // The picture is the one on the pad now; toBlob hands its PNG over later,
  // perhaps after a Clear.
  const asked = picture;
  pad.toBlob((png) => send(png, "image/png", asked).finally(() => {
    inFlight = false;
    if (dirty) predictPad();
  }), "image/png");
}

async function send(body, type, asked) {
  try {
    const r = await fetch("/api/predict", { method: "POST", headers: { "Content-Type": type }, body });
    const answer = await r.json();
    if (!r.ok) throw new Error(answer.error || r.statusText);
    if (asked === picture) show(answer);
  } catch (err) {
    if (asked === picture) showError(err.message);
  }
}

function show(a) {
  errorOut.textContent = "";
  digitOut.textContent = a.digit;
  confidence.textContent = `probability ${(a.probabilities[a.digit] * 100).toFixed(1)}%`;
  bars.querySelectorAll(".bar").forEach((li, d) => {
    const p = a.probabilities[d];
    li.querySelector(".fill").style.width = `${(p * 100).toFixed(1)}%`;
    li.querySelector(".value").textContent = `${(p * 100).toFixed(1)}%`;
    li.classList.toggle("top", d === a.digit);
    li.setAttribute("aria-label", `${d}: ${(p * 100).toFixed(1)} percent`);
  });
  const img = seen.createImageData(28, 28);
  a.prepared.forEach((v, i) => {
    const g = Math.round(v * 255);
    img.data.set([g, g, g, 255], i * 4);
  });
  seen.putImageData(img, 0, 0);
}

function showError(message) {
  errorOut.textContent = message;
  digitOut.textContent = "–";
  confidence.textContent = "";
}

function reset() {
  picture++;
  dirty = false;
  clearTimeout(timer);
  timer = null;
  clearPad();
  seen.fillStyle = "#000";
  seen.fillRect(0, 0, 28, 28);
  digitOut.textContent = "–";
  confidence.textContent = "";
  errorOut.textContent = "";
  source.textContent = "";
  bars.querySelectorAll(".bar").forEach((li, d) => {
    li.querySelector(".fill").style.width = "0";
    li.querySelector(".value").textContent = "–";
    li.classList.remove("top");
    li.setAttribute("aria-label", `${d}: no answer yet`);
  });
}

document.getElementById("clear").addEventListener("click", reset);

document.getElementById("random").addEventListener("click", async () => {
  try {
    const r = await fetch("/api/random");
    const a = await r.json();
    if (!r.ok) throw new Error(a.error || r.statusText);
    // The test image itself on the pad, scaled up.
    picture++;
    clearPad();
    const img = ctx.createImageData(28, 28);
    a.prepared.forEach((v, i) => {
      const g = Math.round(v * 255);
      img.data.set([g, g, g, 255], i * 4);
    });
    const small = document.createElement("canvas");
    small.width = small.height = 28;
    small.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(small, 0, 0, pad.width, pad.height);
    source.textContent = `MNIST test image ${a.index}, labelled ${a.label}`;
    show(a);
  } catch (err) {
    showError(err.message);
  }
});

document.getElementById("upload").addEventListener("click", () => document.getElementById("file").click());

document.getElementById("file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  const asked = ++picture;
  clearPad();
  source.textContent = `Uploaded: ${file.name}`;
  // The picture on the pad, fitted, where the browser can decode it (PGM it cannot).
  try {
    const bitmap = await createImageBitmap(file);
    const k = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    const w = bitmap.width * k, h = bitmap.height * k;
    ctx.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  } catch (_) { /* the answer still shows what the network saw */ }
  await send(file, "application/octet-stream", asked);
  e.target.value = "";
});

async function loadFacts() {
  try {
    const f = await (await fetch("/api/model")).json();
    const rows = [
      ["Architecture", f.architecture],
      ["Parameters", f.parameters.toLocaleString("en")],
      ["Test accuracy", f.test_accuracy == null ? "unknown" : `${(f.test_accuracy * 100).toFixed(2)}%`],
      ["Training steps", f.steps == null ? "unknown" : f.steps.toLocaleString("en")],
      ["scratchnet", f.version || "unknown"],
    ];
    const dl = document.getElementById("facts");
    for (const [k, v] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      dl.append(dt, dd);
    }
    document.getElementById("config").textContent = f.configuration || "not recorded";
  } catch (err) {
    showError(`cannot read the model's facts: ${err.message}`);
  }
}

reset();
loadFacts();
