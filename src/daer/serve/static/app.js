// daer search page: query -> grid of renders; click a result -> one heat map per word.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { query: "" };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

// With a key configured on the server every /api/ call needs it: the page sends the key field's value
// (kept for this tab only) as X-API-Key, and loads images through fetch so they carry it too.
function keyHeaders() {
  const key = $("apikey").value.trim();
  return key ? { "X-API-Key": key } : {};
}

async function apiFetch(url, options = {}) {
  return fetch(url, { ...options, headers: { ...(options.headers || {}), ...keyHeaders() } });
}

function apiImage(url, attrs) {
  const img = el("img", attrs);
  apiFetch(url)
    .then(async (res) => {
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      img.src = URL.createObjectURL(await res.blob());
      img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });
    })
    .catch(() => { img.alt = `${attrs.alt || "image"} (not loaded)`; });
  return img;
}

async function openImage(ev, url) {
  ev.preventDefault();
  const res = await apiFetch(url);
  if (res.ok) window.open(URL.createObjectURL(await res.blob()), "_blank", "noopener");
}

async function getJSON(url, options) {
  const res = await apiFetch(url, options);
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) throw new Error((body && body.error) || `HTTP ${res.status}`);
  return body;
}

function setStatus(text, isError = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", isError);
}

function attrText(attrs) {
  return Object.entries(attrs || {}).map(([k, v]) => `${k}: ${v}`).join(" · ");
}

async function search(q, k) {
  state.query = q;
  setStatus("Searching…");
  $("results").replaceChildren();
  $("explain").hidden = true;
  try {
    const body = await getJSON(`/api/search?${new URLSearchParams({ q, k })}`);
    setStatus(`${body.results.length} results in ${body.latency_ms.toFixed(1)} ms`);
    body.results.forEach((r, i) => $("results").append(card(r, i)));
  } catch (e) {
    setStatus(e.message, true);
  }
}

function card(r, rank) {
  const img = apiImage(r.render_url, { alt: `render of ${r.id}`, width: 256, height: 256 });
  const node = el(
    "button",
    { class: "card", type: "button", dataset: { id: r.id }, title: "show which part each word matched" },
    img,
    el("div", { class: "row" }, el("span", { class: "cat" }, `${rank + 1}. ${r.category}`),
       el("span", { class: "score" }, r.score.toFixed(3))),
    el("p", { class: "caption" }, r.caption),
    el("p", { class: "attrs" }, attrText(r.attributes)),
  );
  node.addEventListener("click", () => explain(r));
  return node;
}

async function explain(r) {
  const panel = $("explain");
  panel.hidden = false;
  $("explain-title").textContent = `"${state.query}" on ${r.id}`;
  $("explain-meta").textContent = "Explaining…";
  $("words").replaceChildren();
  document.querySelectorAll(".card.selected").forEach((c) => c.classList.remove("selected"));
  const selected = document.querySelector(`.card[data-id="${CSS.escape(r.id)}"]`);
  if (selected) selected.classList.add("selected");
  try {
    const body = await getJSON(`/api/explain?${new URLSearchParams({ q: state.query, id: r.id, format: "json", top: 5 })}`);
    const levels = body.level_scores.map((s) => s.toFixed(3)).join(" / ");
    $("explain-meta").textContent =
      `${r.category} · score ${body.score.toFixed(3)} · level scores ${levels} · ${r.caption}`;
    for (const w of body.words) $("words").append(wordCard(w));
    const all = el("a", { href: body.image_url, target: "_blank", rel: "noopener" }, "all words as one PNG");
    all.addEventListener("click", (ev) => openImage(ev, body.image_url));
    $("explain-meta").append(" · ", all);
    panel.scrollIntoView({ behavior: "smooth", block: "start" });
  } catch (e) {
    $("explain-meta").textContent = e.message;
  }
}

function wordCard(w) {
  const pts = el("ol", { class: "pts" });
  for (const p of w.top_points) {
    pts.append(el("li", {}, `#${p.index} (${p.xyz.map((c) => c.toFixed(2)).join(", ")}) ×${p.attention.toFixed(2)}`));
  }
  return el(
    "figure",
    { class: "word" },
    apiImage(w.image_url, { alt: `attention of "${w.word}"`, width: 160, height: 186 }),
    el("figcaption", {}, el("strong", {}, w.word), ` peak ×${w.peak.toFixed(2)} · weight ${w.weight.toFixed(3)}`),
    pts,
  );
}

async function classify(ev) {
  ev.preventDefault();
  const out = $("classify-out");
  out.replaceChildren();
  $("classify-up").textContent = "";
  const file = $("file").files[0];
  if (!file) { out.append(el("li", { class: "error" }, "choose a file first")); return; }
  const form = new FormData();
  form.append("file", file);
  if ($("labels").value.trim()) form.append("labels", $("labels").value);
  if ($("up").value) form.append("up", $("up").value);
  try {
    const body = await getJSON("/api/classify", { method: "POST", body: form });
    for (const p of body.labels.slice(0, 5)) {
      out.append(el("li", {}, el("strong", {}, p.label), ` p ${p.prob.toFixed(3)} (score ${p.score.toFixed(3)})`));
    }
    $("classify-up").textContent = `read with ${body.up} up`;
  } catch (e) {
    out.append(el("li", { class: "error" }, e.message));
  }
}

$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = $("q").value.trim();
  if (q) search(q, $("k").value);
});
$("explain-close").addEventListener("click", () => { $("explain").hidden = true; });
$("classify-form").addEventListener("submit", classify);

$("apikey").value = sessionStorage.getItem("daer-api-key") || "";
$("apikey").addEventListener("change", () => sessionStorage.setItem("daer-api-key", $("apikey").value.trim()));

const initial = new URLSearchParams(location.search).get("q");
if (initial) { $("q").value = initial; search(initial, $("k").value); }
