// dermaseg review desk: paint a class-id mask over the photo, save it, and the server plans again.
// Plain JavaScript, no build step. The mask is a Uint8Array of class ids at the photo's size.
"use strict";

const MAX_UNDO = 40;
const UNDO_BYTES = 400e6; // fewer undo steps for very large photos
const state = {
  photos: [], stem: null, details: null, classes: [], mask: null, w: 0, h: 0,
  tool: "brush", cls: 1, size: 12, zoom: 1, panX: 0, panY: 0,
  undo: [], redo: [], dirty: false, painting: false, panning: null, space: false, last: null,
  image: null, lut: null,
};
const $ = (id) => document.getElementById(id);

function status(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.style.color = isError ? "#b00020" : "#1b1b1b";
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message + " (" + response.status + ")");
  }
  return response;
}

// a photo's endpoint: /api/photo[/what]?stem=STEM (STEM may be SUB/NAME)
function photoUrl(what, stem, extra) {
  return "/api/photo" + (what ? "/" + what : "") + "?stem=" + encodeURIComponent(stem) + (extra || "");
}

function el(tag, props, children) {
  const node = document.createElement(tag);
  Object.entries(props || {}).forEach(([k, v]) => {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  });
  (children || []).forEach((c) => node.appendChild(c));
  return node;
}

// ---- photo list -------------------------------------------------------------------------------

async function loadList() {
  const data = await (await api("/api/photos")).json();
  state.photos = data.photos;
  state.metaFields = data.meta_fields;
  $("folder").textContent = data.folder;
  const list = $("list");
  list.textContent = "";
  data.photos.forEach((p) => {
    const badges = el("div");
    if (p.needs_review) badges.appendChild(el("span", { class: "badge review", text: "needs review" }));
    if (p.corrected) badges.appendChild(el("span", { class: "badge corrected", text: "corrected" }));
    const info = el("div", {}, [
      el("div", { class: "name", text: p.photo }),
      badges,
      el("div", { class: "small muted", text: [p.procedure, p.sessions ? p.sessions + " sessions" : "", p.treatable].filter(Boolean).join(" · ") }),
    ]);
    const thumb = el("img", { src: photoUrl("thumb", p.stem), alt: "" });
    const item = el("li", { "data-stem": p.stem, tabindex: "0" }, [thumb, info]);
    item.addEventListener("click", () => openPhoto(p.stem));
    item.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openPhoto(p.stem); });
    list.appendChild(item);
  });
  markCurrent();
}

function markCurrent() {
  document.querySelectorAll("#list li").forEach((li) => {
    li.setAttribute("aria-current", li.dataset.stem === state.stem ? "true" : "false");
  });
}

// ---- one photo --------------------------------------------------------------------------------

async function openPhoto(stem) {
  if (state.dirty && !window.confirm("Discard the unsaved changes to this mask?")) return;
  status("Loading " + stem + "…");
  try {
    await loadPhoto(stem);
    status("");
  } catch (e) {
    status("Cannot open " + stem + ": " + e.message, true);
  }
}

async function loadPhoto(stem) {
  const [details, maskResponse] = await Promise.all([
    api(photoUrl("", stem)).then((r) => r.json()), api(photoUrl("mask", stem)),
  ]);
  if (!details.has_photo) {
    throw new Error(stem + ".photo.jpg is missing: plan the photo again with this version of dermaseg");
  }
  const w = parseInt(maskResponse.headers.get("x-width"), 10);
  const h = parseInt(maskResponse.headers.get("x-height"), 10);
  const mask = new Uint8Array(await maskResponse.arrayBuffer());
  const image = new Image();
  image.src = photoUrl("file", stem, "&kind=photo");
  await image.decode();
  Object.assign(state, { stem, details, w, h, mask, image, undo: [], redo: [], dirty: false });
  state.classes = details.classes;
  if (state.cls >= state.classes.length) state.cls = 1;
  buildLut();
  const photo = $("photo"), maskCanvas = $("mask");
  [photo, maskCanvas].forEach((c) => { c.width = w; c.height = h; c.style.width = w + "px"; c.style.height = h + "px"; });
  photo.getContext("2d").drawImage(image, 0, 0, w, h);
  state.maskImage = maskCanvas.getContext("2d").createImageData(w, h);
  renderMask(0, 0, w, h);
  $("empty").style.display = "none";
  fit();
  showDetails();
  buildClasses();
  markCurrent();
  updateButtons();
}

function buildLut() {
  state.lut = state.classes.map((c) => (c.id === 0 ? [0, 0, 0, 0] : [c.color[0], c.color[1], c.color[2], 255]));
}

function renderMask(x0, y0, x1, y1) {
  x0 = Math.max(0, Math.floor(x0)); y0 = Math.max(0, Math.floor(y0));
  x1 = Math.min(state.w, Math.ceil(x1)); y1 = Math.min(state.h, Math.ceil(y1));
  if (x1 <= x0 || y1 <= y0) return;
  const data = state.maskImage.data, mask = state.mask, lut = state.lut, w = state.w;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const i = y * w + x, rgba = lut[mask[i]] || [255, 0, 255, 255], o = i * 4;
      data[o] = rgba[0]; data[o + 1] = rgba[1]; data[o + 2] = rgba[2]; data[o + 3] = rgba[3];
    }
  }
  $("mask").getContext("2d").putImageData(state.maskImage, 0, 0, x0, y0, x1 - x0, y1 - y0);
}

function showDetails() {
  const d = state.details;
  $("title").textContent = d.photo + (d.corrected ? " (corrected)" : "");
  const review = $("review");
  review.textContent = "";
  const reasons = (d.review && d.review.needs_review)
    ? (d.review.reasons || []).map((r) => (typeof r === "string" ? r : (r.text || r.message || r.code)))
    : [];
  if (reasons.length || (d.review && d.review.needs_review)) {
    review.appendChild(el("strong", { text: "Needs review" }));
    review.appendChild(el("ul", {}, reasons.map((r) => el("li", { text: r }))));
  }
  const p = d.procedure || {};
  const area = d.treatable.area_mm2 != null
    ? (d.treatable.area_mm2 / 100).toFixed(2) + " cm²" : d.treatable.area_px.toLocaleString() + " px";
  const rows = [
    ["Procedure", p.title || "—"],
    ["Sessions", p.sessions ? p.sessions.low + "–" + p.sessions.high : "—"],
    ["Area to treat", area],
    ["Patches", String(d.patches)],
    ["Calibration", d.calibration],
    ["Mask", d.corrected ? "corrected by a person" : "the model's"],
    ["Warnings", (d.warnings || []).join("; ") || "—"],
  ];
  const summary = $("summary");
  summary.textContent = "";
  rows.forEach(([k, v]) => { summary.appendChild(el("dt", { text: k })); summary.appendChild(el("dd", { text: v })); });
  $("report").href = photoUrl("file", d.stem, "&kind=report");
  buildMeta();
}

function buildMeta() {
  const form = $("meta");
  form.textContent = "";
  (state.metaFields || []).forEach((f) => {
    const id = "meta-" + f.key;
    form.appendChild(el("label", { for: id, text: f.label }));
    const input = el(f.key === "notes" ? "textarea" : "input", { id, name: f.key, maxlength: "2000" });
    input.value = (state.details.meta || {})[f.key] || "";
    form.appendChild(input);
  });
  const button = el("button", { type: "submit", id: "save-meta", text: "Save details" });
  form.appendChild(button);
}

async function saveMeta(ev) {
  ev.preventDefault();
  if (!state.stem) return;
  const values = {};
  new FormData($("meta")).forEach((v, k) => { values[k] = v; });
  try {
    const r = await api(photoUrl("meta", state.stem), {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(values),
    });
    state.details = await r.json();
    showDetails();
    status("Details saved; report updated");
  } catch (e) { status("Details not saved: " + e.message, true); }
}

function buildClasses() {
  const box = $("classes");
  box.textContent = "";
  state.classes.filter((c) => c.id > 0).forEach((c, i) => {
    const sw = el("span", { class: "swatch" });
    sw.style.background = "rgb(" + c.color.join(",") + ")";
    const b = el("button", { type: "button", "data-class": String(c.id), title: c.name + " (" + (i + 1) + ")" }, [sw]);
    b.appendChild(document.createTextNode(c.name));
    b.addEventListener("click", () => { state.cls = c.id; if (state.tool === "eraser" || state.tool === "pan") state.tool = "brush"; updateButtons(); });
    box.appendChild(b);
  });
}

function updateButtons() {
  document.querySelectorAll("#tools button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.tool === state.tool)));
  document.querySelectorAll("#classes button").forEach((b) => b.setAttribute("aria-pressed", String(Number(b.dataset.class) === state.cls && state.tool !== "eraser")));
  $("undo").disabled = !state.undo.length;
  $("redo").disabled = !state.redo.length;
  $("save").disabled = !state.stem;
  $("revert").disabled = !state.stem || !(state.details && state.details.corrected);
  $("stage").classList.toggle("panning", state.tool === "pan" || state.space);
}

// ---- view: zoom and pan -----------------------------------------------------------------------

function applyView() {
  $("layer").style.transform = "translate(" + state.panX + "px," + state.panY + "px) scale(" + state.zoom + ")";
}

function fit() {
  const r = $("stage").getBoundingClientRect();
  state.zoom = Math.min(r.width / state.w, r.height / state.h) * 0.98;
  state.panX = (r.width - state.w * state.zoom) / 2;
  state.panY = (r.height - state.h * state.zoom) / 2;
  applyView();
}

function zoomAt(factor, cx, cy) {
  const zoom = Math.min(40, Math.max(0.05, state.zoom * factor));
  state.panX = cx - (cx - state.panX) * (zoom / state.zoom);
  state.panY = cy - (cy - state.panY) * (zoom / state.zoom);
  state.zoom = zoom;
  applyView();
}

function toImage(ev) {
  const r = $("stage").getBoundingClientRect();
  return { x: (ev.clientX - r.left - state.panX) / state.zoom, y: (ev.clientY - r.top - state.panY) / state.zoom, sx: ev.clientX - r.left, sy: ev.clientY - r.top };
}

// ---- editing ----------------------------------------------------------------------------------

function pushUndo() {
  state.undo.push(state.mask.slice());
  const limit = Math.max(3, Math.min(MAX_UNDO, Math.floor(UNDO_BYTES / state.mask.length)));
  while (state.undo.length > limit) state.undo.shift();
  state.redo = [];
  state.dirty = true;
  updateButtons();
}

function swapHistory(from, to) {
  if (!from.length) return;
  to.push(state.mask);
  state.mask = from.pop();
  state.dirty = true;
  renderMask(0, 0, state.w, state.h);
  updateButtons();
}

function paintValue() { return state.tool === "eraser" ? 0 : state.cls; }

function stamp(cx, cy) {
  const r = state.size / 2, value = paintValue(), w = state.w, h = state.h, mask = state.mask;
  const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(w - 1, Math.ceil(cx + r));
  const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(h - 1, Math.ceil(cy + r));
  const r2 = r * r;
  for (let y = y0; y <= y1; y++) {
    const dy = y + 0.5 - cy;
    for (let x = x0; x <= x1; x++) {
      const dx = x + 0.5 - cx;
      if (dx * dx + dy * dy <= r2) mask[y * w + x] = value;
    }
  }
  renderMask(x0, y0, x1 + 1, y1 + 1);
}

function strokeTo(p) {
  const from = state.last || p;
  const steps = Math.max(1, Math.ceil(Math.hypot(p.x - from.x, p.y - from.y) / Math.max(1, state.size / 4)));
  for (let i = 1; i <= steps; i++) stamp(from.x + (p.x - from.x) * i / steps, from.y + (p.y - from.y) * i / steps);
  state.last = p;
}

function fill(px, py) {
  const x = Math.floor(px), y = Math.floor(py), w = state.w, h = state.h, mask = state.mask;
  if (x < 0 || y < 0 || x >= w || y >= h) return;
  const target = mask[y * w + x], value = paintValue();
  if (target === value) return;
  pushUndo();
  const stack = [x, y];
  let minX = x, maxX = x, minY = y, maxY = y;
  while (stack.length) {
    const sy = stack.pop(), sx = stack.pop();
    let left = sx;
    while (left > 0 && mask[sy * w + left - 1] === target) left--;
    let right = sx;
    while (right < w - 1 && mask[sy * w + right + 1] === target) right++;
    for (let i = left; i <= right; i++) mask[sy * w + i] = value;
    minX = Math.min(minX, left); maxX = Math.max(maxX, right); minY = Math.min(minY, sy); maxY = Math.max(maxY, sy);
    for (const ny of [sy - 1, sy + 1]) {
      if (ny < 0 || ny >= h) continue;
      let inRun = false;
      for (let i = left; i <= right; i++) {
        const match = mask[ny * w + i] === target;
        if (match && !inRun) stack.push(i, ny);
        inRun = match;
      }
    }
  }
  renderMask(minX, minY, maxX + 1, maxY + 1);
}

function showCursor(p) {
  const c = $("cursor");
  if (!p || !state.stem || state.tool === "pan" || state.tool === "fill") { c.style.display = "none"; return; }
  const d = state.size * state.zoom;
  Object.assign(c.style, { display: "block", width: d + "px", height: d + "px", left: (p.sx - d / 2) + "px", top: (p.sy - d / 2) + "px" });
}

function onDown(ev) {
  if (!state.stem) return;
  const p = toImage(ev);
  $("stage").setPointerCapture(ev.pointerId);
  if (ev.button === 1 || ev.button === 2 || state.tool === "pan" || state.space) {
    state.panning = { x: ev.clientX, y: ev.clientY, panX: state.panX, panY: state.panY };
    return;
  }
  if (ev.button !== 0) return;
  if (state.tool === "fill") { fill(p.x, p.y); return; }
  pushUndo();
  state.painting = true;
  state.last = null;
  strokeTo(p);
}

function onMove(ev) {
  const p = toImage(ev);
  showCursor(p);
  if (state.panning) {
    state.panX = state.panning.panX + ev.clientX - state.panning.x;
    state.panY = state.panning.panY + ev.clientY - state.panning.y;
    applyView();
  } else if (state.painting) {
    strokeTo(p);
  }
}

function onUp() { state.painting = false; state.panning = null; state.last = null; }

async function revertToModel() {
  if (!state.stem) return;
  try {
    const r = await api(photoUrl("mask", state.stem, "&of=model"));
    const model = new Uint8Array(await r.arrayBuffer());
    if (model.length !== state.mask.length) throw new Error("the model's mask has another size");
    pushUndo();
    state.mask = model;
    renderMask(0, 0, state.w, state.h);
    status("The model's mask: save to plan from it again");
  } catch (e) { status("Could not load the model's mask: " + e.message, true); }
}

// ---- saving and exporting ---------------------------------------------------------------------

async function save() {
  if (!state.stem) return;
  const button = $("save");
  button.disabled = true;
  status("Saving and planning again…");
  try {
    const r = await api(photoUrl("mask", state.stem), {
      method: "POST",
      headers: { "content-type": "application/octet-stream", "x-width": String(state.w), "x-height": String(state.h) },
      body: state.mask,
    });
    state.details = await r.json();
    state.dirty = false;
    showDetails();
    await loadList();
    status("Saved; plan and report updated");
  } catch (e) {
    status("Not saved: " + e.message, true);
  } finally {
    button.disabled = false;
  }
}

async function exportCorrections() {
  status("Exporting corrections…");
  try {
    const data = await (await api("/api/export", { method: "POST" })).json();
    status("Exported " + data.photos.length + " corrected photo(s) to " + data.folder);
  } catch (e) { status("Export failed: " + e.message, true); }
}

// ---- wiring -----------------------------------------------------------------------------------

function setTool(tool) { state.tool = tool; updateButtons(); }

function onKey(ev) {
  if (ev.target.closest && ev.target.closest("form")) return;
  const key = ev.key.toLowerCase();
  if ((ev.ctrlKey || ev.metaKey) && key === "z") { ev.preventDefault(); swapHistory(state.undo, state.redo); return; }
  if ((ev.ctrlKey || ev.metaKey) && key === "y") { ev.preventDefault(); swapHistory(state.redo, state.undo); return; }
  if ((ev.ctrlKey || ev.metaKey) && key === "s") { ev.preventDefault(); save(); return; }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (key === " ") { state.space = true; updateButtons(); ev.preventDefault(); }
  else if (key === "b") setTool("brush");
  else if (key === "e") setTool("eraser");
  else if (key === "f") setTool("fill");
  else if (key === "[" || key === "]") { setSize(state.size + (key === "]" ? 2 : -2)); }
  else if (key === "+" || key === "=") zoomCentre(1.25);
  else if (key === "-") zoomCentre(0.8);
  else if (key === "0") fit();
  else if (/^[1-9]$/.test(key) && Number(key) < state.classes.length) { state.cls = Number(key); if (state.tool === "eraser") state.tool = "brush"; updateButtons(); }
}

function zoomCentre(factor) {
  const r = $("stage").getBoundingClientRect();
  zoomAt(factor, r.width / 2, r.height / 2);
}

function setSize(size) {
  state.size = Math.max(1, Math.min(80, size));
  $("size").value = String(state.size);
  $("size-value").textContent = String(state.size);
}

function init() {
  const stage = $("stage");
  stage.addEventListener("pointerdown", onDown);
  stage.addEventListener("pointermove", onMove);
  stage.addEventListener("pointerup", onUp);
  stage.addEventListener("pointercancel", onUp);
  stage.addEventListener("pointerleave", () => showCursor(null));
  stage.addEventListener("contextmenu", (ev) => ev.preventDefault());
  stage.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const p = toImage(ev);
    zoomAt(Math.exp(-ev.deltaY * 0.0015), p.sx, p.sy);
  }, { passive: false });
  document.querySelectorAll("#tools button").forEach((b) => b.addEventListener("click", () => setTool(b.dataset.tool)));
  $("size").addEventListener("input", (ev) => setSize(Number(ev.target.value)));
  $("undo").addEventListener("click", () => swapHistory(state.undo, state.redo));
  $("redo").addEventListener("click", () => swapHistory(state.redo, state.undo));
  $("revert").addEventListener("click", revertToModel);
  $("zoom-in").addEventListener("click", () => zoomCentre(1.25));
  $("zoom-out").addEventListener("click", () => zoomCentre(0.8));
  $("zoom-fit").addEventListener("click", () => state.stem && fit());
  $("overlay").addEventListener("change", (ev) => { $("mask").style.display = ev.target.checked ? "block" : "none"; });
  $("opacity").addEventListener("input", (ev) => { $("mask").style.opacity = String(ev.target.value / 100); });
  $("mask").style.opacity = String($("opacity").value / 100);
  $("save").addEventListener("click", save);
  $("export").addEventListener("click", exportCorrections);
  $("meta").addEventListener("submit", saveMeta);
  document.addEventListener("keydown", onKey);
  document.addEventListener("keyup", (ev) => { if (ev.key === " ") { state.space = false; updateButtons(); } });
  window.addEventListener("beforeunload", (ev) => { if (state.dirty) { ev.preventDefault(); ev.returnValue = ""; } });
  updateButtons();
  loadList().then(() => {
    if (state.photos.length) openPhoto(state.photos[0].stem);
    else status("No plans in this folder");
  }).catch((e) => status(e.message, true));
}

document.addEventListener("DOMContentLoaded", init);
