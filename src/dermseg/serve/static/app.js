// dermseg serve: upload one image, draw the five predicted structures over it on a canvas.
// The server sends the masks as 0/255 PNGs; each is turned once into a coloured layer here,
// so toggling a structure or moving the opacity only recomposes the canvas (no request).
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  info: null,        // GET api/info
  result: null,      // the last POST api/predict answer
  base: null,        // the displayed image (HTMLImageElement)
  fills: new Map(),  // attribute -> canvas with the mask in its colour
  edges: new Map(),  // attribute -> canvas with the mask's outline in its colour
  shown: new Set(),  // attributes drawn
  opacity: 0.45,
  outlines: true,
  request: 0,        // number of the latest upload: answers to older ones are dropped
};

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function setBusy(text) {
  $("status").hidden = !text;
  $("status-text").textContent = text || "";
  $("drop").setAttribute("aria-busy", text ? "true" : "false");
}

function megabytes(bytes) {
  return `${(bytes / 1e6).toPrecision(3).replace(/\.?0+$/, "")} MB`;
}

function formatArea(percent) {
  if (percent === 0) return "0 %";
  if (percent < 0.01) return "<0.01 %";
  return `${percent.toFixed(percent < 10 ? 2 : 1)} %`;
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`could not load ${url}`));
    img.src = url;
  });
}

// ---- page set-up from api/info -------------------------------------------------------------

function buildLegend(info) {
  const body = $("legend").querySelector("tbody");
  body.replaceChildren();
  for (const attr of info.attributes) {
    const row = document.createElement("tr");
    row.dataset.attribute = attr.name;
    const colour = `rgb(${attr.colour.join(",")})`;

    const toggle = document.createElement("td");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.id = `toggle-${attr.name}`;
    box.checked = true;
    box.dataset.attribute = attr.name;
    box.addEventListener("change", () => setShown(attr.name, box.checked));
    toggle.append(box);

    const name = document.createElement("td");
    name.className = "name";
    const label = document.createElement("label");
    label.htmlFor = box.id;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour;
    label.append(swatch, document.createTextNode(attr.display_name));
    name.append(label);

    const presence = document.createElement("td");
    presence.className = "num presence";
    presence.textContent = "–";
    const area = document.createElement("td");
    area.className = "num area";
    area.textContent = "–";

    row.append(toggle, name, presence, area);
    body.append(row);
    state.shown.add(attr.name);
  }
}

function buildModelPanel(info) {
  const list = $("model");
  list.replaceChildren();
  for (const [label, value] of info.model.fields) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }
  const thresholds = $("thresholds");
  thresholds.replaceChildren();
  for (const attr of info.attributes) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${attr.colour.join(",")})`;
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = info.model.thresholds[attr.name].toFixed(2);
    item.append(swatch, document.createTextNode(attr.display_name), value);
    thresholds.append(item);
  }
}

// ---- layers and drawing --------------------------------------------------------------------

// A mask PNG (any size) -> a fill layer and an outline layer of width x height in `colour`.
function makeLayers(mask, width, height, colour) {
  const fill = document.createElement("canvas");
  fill.width = width;
  fill.height = height;
  const fctx = fill.getContext("2d", { willReadFrequently: true });
  fctx.drawImage(mask, 0, 0, width, height);
  const pixels = fctx.getImageData(0, 0, width, height);
  const data = pixels.data;
  const on = new Uint8Array(width * height);
  for (let i = 0, p = 0; p < on.length; i += 4, p += 1) {
    const value = data[i];  // grey level of the mask, smoothed where it was scaled down
    on[p] = value > 127 ? 1 : 0;
    data[i] = colour[0];
    data[i + 1] = colour[1];
    data[i + 2] = colour[2];
    data[i + 3] = value;
  }
  fctx.putImageData(pixels, 0, 0);

  // Outline: "on" pixels with an "off" pixel r steps away along a row or column.
  const edge = document.createElement("canvas");
  edge.width = width;
  edge.height = height;
  const ectx = edge.getContext("2d");
  const out = ectx.createImageData(width, height);
  const r = Math.max(1, Math.round(Math.max(width, height) / 700));
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const p = y * width + x;
      if (!on[p]) continue;
      const border =
        x < r || y < r || x >= width - r || y >= height - r ||
        !on[p - r] || !on[p + r] || !on[p - r * width] || !on[p + r * width];
      if (border) {
        out.data.set([colour[0], colour[1], colour[2], 255], p * 4);
      }
    }
  }
  ectx.putImageData(out, 0, 0);
  return { fill, edge };
}

function draw() {
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  if (!state.base) return;
  ctx.globalAlpha = 1;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(state.base, 0, 0, canvas.width, canvas.height);
  for (const attr of state.info.attributes) {
    if (!state.shown.has(attr.name) || !state.fills.has(attr.name)) continue;
    ctx.globalAlpha = state.opacity;
    ctx.drawImage(state.fills.get(attr.name), 0, 0);
    if (state.outlines) {
      ctx.globalAlpha = 1;
      ctx.drawImage(state.edges.get(attr.name), 0, 0);
    }
  }
  ctx.globalAlpha = 1;
}

function setShown(name, on) {
  if (on) state.shown.add(name);
  else state.shown.delete(name);
  const box = $(`toggle-${name}`);
  if (box) box.checked = on;
  const row = document.querySelector(`#legend tr[data-attribute="${name}"]`);
  if (row) row.classList.toggle("off", !on);
  draw();
}

// ---- results -------------------------------------------------------------------------------

function fillLegend(result) {
  const presenceHelp = state.info.help.presence;
  for (const attr of result.attributes) {
    const row = document.querySelector(`#legend tr[data-attribute="${attr.name}"]`);
    if (!row) continue;
    row.classList.toggle("absent", !attr.detected);
    const presence = row.querySelector(".presence");
    const bar = document.createElement("span");
    bar.className = "bar";
    const level = document.createElement("span");
    level.style.width = `${Math.round(attr.presence * 100)}%`;
    bar.append(level);
    presence.replaceChildren(bar, document.createTextNode(attr.presence.toFixed(2)));
    presence.title = `${attr.display_name}: highest pixel probability ${attr.presence.toFixed(3)}` +
      ` (threshold ${state.info.model.thresholds[attr.name].toFixed(2)}). ${presenceHelp}`;
    const area = row.querySelector(".area");
    area.textContent = formatArea(attr.area_percent);
    area.title = attr.detected
      ? `${attr.area_percent.toFixed(4)} % of the image's pixels`
      : "not detected: the mask is empty";
  }
}

async function showResult(result, request) {
  const base = await loadImage(result.image_url);
  const width = base.naturalWidth;
  const height = base.naturalHeight;
  const masks = await Promise.all(result.attributes.map((attr) => loadImage(attr.mask_url)));
  if (request !== state.request) return;  // a newer upload has started meanwhile
  state.fills.clear();
  state.edges.clear();
  result.attributes.forEach((attr, k) => {
    const { fill, edge } = makeLayers(masks[k], width, height, attr.colour);
    state.fills.set(attr.name, fill);
    state.edges.set(attr.name, edge);
  });
  state.result = result;
  state.base = base;
  const canvas = $("canvas");
  canvas.width = width;
  canvas.height = height;
  $("stage").hidden = false;
  $("caption").textContent = `${result.filename || result.stem} · ${result.width} × ${result.height} px`;
  fillLegend(result);
  const link = $("download");
  link.href = result.zip_url;
  link.download = result.zip_name;
  link.classList.remove("disabled");
  link.setAttribute("aria-disabled", "false");
  $("save-view").disabled = false;
  $("drop").classList.add("compact");
  $("drop-label").textContent = "Drop another image here";
  draw();
  document.body.dataset.state = "ready";
  document.body.dataset.result = result.id;
}

async function upload(file) {
  const request = ++state.request;
  clearError();
  if (!state.info) {
    showError("The page could not reach the dermseg server; reload it once the server runs.");
    return;
  }
  if (file.size > state.info.max_upload_bytes) {
    showError(
      `${file.name} is ${megabytes(file.size)}, larger than the upload limit of ${state.info.max_upload}.`,
    );
    return;
  }
  document.body.dataset.state = "busy";
  setBusy(`Analysing ${file.name}…`);
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    let response;
    try {
      response = await fetch("api/predict", { method: "POST", body: form });
    } catch (err) {
      throw new Error(
        `The upload of ${file.name} failed (${err.message}). ` +
        `Is the server still running, and is the file under ${state.info.max_upload}?`,
      );
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (request !== state.request) return;
    if (!response.ok) {
      throw new Error(body && body.error ? body.error : `The server answered ${response.status} ${response.statusText}.`);
    }
    await showResult(body, request);
  } catch (err) {
    if (request !== state.request) return;
    showError(err.message);
    document.body.dataset.state = "error";
  } finally {
    if (request === state.request) setBusy("");
  }
}

function handleFiles(files) {
  if (!files || files.length === 0) return;
  upload(files[0]);
}

function saveView() {
  if (!state.result) return;
  $("canvas").toBlob((blob) => {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `${state.result.stem}_overlay.png`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }, "image/png");
}

// ---- wiring --------------------------------------------------------------------------------

function wire() {
  const input = $("file");
  input.addEventListener("change", () => {
    handleFiles(input.files);
    input.value = "";  // choosing the same file again analyses it again
  });

  const drop = $("drop");
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  // The whole window accepts a dropped file (and the browser never navigates to it).
  let depth = 0;
  window.addEventListener("dragenter", (event) => {
    event.preventDefault();
    depth += 1;
    drop.classList.add("dragging");
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) drop.classList.remove("dragging");
  });
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    drop.classList.remove("dragging");
    handleFiles(event.dataTransfer && event.dataTransfer.files);
  });

  const slider = $("opacity");
  const onOpacity = () => {
    state.opacity = Number(slider.value) / 100;
    $("opacity-value").textContent = `${slider.value}%`;
    draw();
  };
  slider.addEventListener("input", onOpacity);
  slider.addEventListener("change", onOpacity);
  $("outlines").addEventListener("change", (event) => {
    state.outlines = event.target.checked;
    draw();
  });
  $("all-on").addEventListener("click", () => state.info.attributes.forEach((a) => setShown(a.name, true)));
  $("all-off").addEventListener("click", () => state.info.attributes.forEach((a) => setShown(a.name, false)));
  $("save-view").addEventListener("click", saveView);
}

async function init() {
  wire();
  try {
    const response = await fetch("api/info");
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    state.info = await response.json();
  } catch (err) {
    showError(`The page could not reach the dermseg server (${err.message}); reload it once the server runs.`);
    return;
  }
  const info = state.info;
  $("limit").textContent = info.max_upload;
  $("notice").textContent = info.notice;
  $("presence-help").title = info.help.presence;
  $("area-help").title = info.help.area;
  if (info.texts && info.labels.name !== "isic2018_task2") {  // another label set: a lesion, ...
    $("subtitle").textContent = info.texts.subtitle;
    $("structures-title").textContent = info.texts.heading;
    $("download-help").textContent = info.texts.download_help;
  }
  buildLegend(info);
  buildModelPanel(info);
  state.opacity = Number($("opacity").value) / 100;
  document.body.dataset.state = "idle";
}

document.addEventListener("DOMContentLoaded", init);
