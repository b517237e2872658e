// tokrec web page: search titles, pick items, POST /recommend {history[, rerank]}, show recommendations + reasons.
"use strict";
const $ = (id) => document.getElementById(id);
const liked = new Map(); // item_id -> label, in pick order

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
  return data;
}

let searchSeq = 0;
async function search() {
  const q = $("search").value.trim();
  const seq = ++searchSeq;
  const ul = $("results");
  if (!q) { ul.replaceChildren(); return; }
  try {
    const data = await api("/items?limit=15&q=" + encodeURIComponent(q));
    if (seq !== searchSeq) return; // a newer search is on its way
    ul.replaceChildren(...data.items.map((it) => el("li", { "data-item-id": it.item_id },
      el("span", {}, it.label),
      el("button", { type: "button", class: "add", onclick: () => pick(it.item_id, it.label) }, liked.has(it.item_id) ? "added" : "add"))));
    if (!data.items.length) ul.replaceChildren(el("li", { class: "muted" }, "no title contains “" + q + "”"));
  } catch (err) { showError(err); }
}

function pick(id, label) { liked.set(id, label); renderLiked(); search(); }
function unpick(id) { liked.delete(id); renderLiked(); search(); }

function renderLiked() {
  $("liked").replaceChildren(...[...liked].map(([id, label]) => el("li", { "data-item-id": id },
    el("span", {}, label), el("button", { type: "button", class: "remove", onclick: () => unpick(id) }, "remove"))));
  $("count").textContent = "(" + liked.size + ")";
  $("go").disabled = liked.size === 0;
}

// one reason as text; ofUser: the list is for a user id (their history), not the items picked here
function reasonText(b, ofUser) {
  if (b.kind === "similar_item") return "like " + b.label + " (" + b.similarity.toFixed(2) + ")";
  if (b.kind === "attribute") return b.attribute + ": " + b.value + " (" + b.count + (ofUser ? " of the user's items)" : " of your picks)");
  if (b.kind === "explore") return b.label || "exploration";
  if (b.kind === "peers") return b.label;
  return b.kind;
}

let maxK = 1000; // the server's limit, from /health

function readK() {
  const raw = $("k").value.trim();
  const k = Number(raw);
  if (!/^[0-9]+$/.test(raw) || k < 1 || k > maxK) throw new Error("How many must be a whole number from 1 to " + maxK);
  return k;
}

// the re-ranker chosen on the page (tokrec.rerank), as a spec: "tail:0.3"; "" for the model's own order
function readRerank() {
  const name = $("rerank").value;
  if (!name) return "";
  const raw = $("weight").value.trim();
  const w = Number(raw);
  if (raw === "" || !Number.isFinite(w) || w < 0 || w > 1) throw new Error("The weight must be a number from 0 to 1");
  return name + ":" + w;
}

async function recommend(query) {
  $("message").className = "muted";
  $("message").textContent = "…";
  try {
    const rerank = readRerank(); // named: the server gives it without exploration (the request's choice wins)
    const ofUser = "user_id" in query;
    const body = Object.assign({ k: readK() }, query, rerank ? { rerank } : {});
    const data = await api("/recommend", body);
    $("recs").replaceChildren(...data.items.map((it) => el("li", { class: "rec", "data-item-id": it.item_id },
      el("span", { class: "title" }, it.label), el("span", { class: "score" }, "score " + it.score.toFixed(3)),
      el("div", { class: "because" }, "because: ", ...(it.because.length ? it.because.map((b) => el("span", { class: "tag" }, reasonText(b, ofUser))) : ["popular"])))));
    $("message").textContent = (data.items.length ? data.items.length + " recommendations" : "nothing to recommend")
      + (rerank ? ", re-ranked by " + rerank : "");
  } catch (err) { $("recs").replaceChildren(); showError(err); } // never a stale list beside an error
}

function showError(err) { $("message").className = "error"; $("message").textContent = "error: " + err.message; }

function recommendForUser() {
  const user = $("user").value.trim();
  if (!user) { $("recs").replaceChildren(); showError(new Error("give a user id")); return; }
  recommend({ user_id: user });
}

// "age=22, gender=F" -> {age: 22, gender: "F"} (numbers as numbers), the request's attributes of a new visitor
function readAbout() {
  const out = {};
  for (const part of $("about").value.split(",")) {
    if (!part.trim()) continue;
    const eq = part.indexOf("=");
    if (eq < 1) throw new Error("describe the visitor as name=value, separated by commas");
    const key = part.slice(0, eq).trim(), raw = part.slice(eq + 1).trim();
    out[key] = raw !== "" && Number.isFinite(Number(raw)) ? Number(raw) : raw;
  }
  return out;
}

function recommendForVisitor() {
  let attributes;
  try { attributes = readAbout(); } catch (err) { $("recs").replaceChildren(); showError(err); return; }
  recommend({ history: [], attributes });
}

let timer = null;
$("search").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 150); });
$("go").addEventListener("click", () => recommend({ history: [...liked.keys()] }));
$("go-user").addEventListener("click", recommendForUser);
$("go-about").addEventListener("click", recommendForVisitor);
$("about").addEventListener("keydown", (e) => { if (e.key === "Enter") recommendForVisitor(); });
$("user").addEventListener("keydown", (e) => { if (e.key === "Enter") recommendForUser(); });
$("clear").addEventListener("click", () => { liked.clear(); renderLiked(); $("recs").replaceChildren(); $("message").textContent = "Pick at least one item."; search(); });
api("/health").then((h) => {
  $("status").textContent = h.model + " · " + h.n_items + " items · " + h.retrieval + " retrieval";
  maxK = h.max_k; $("k").max = String(h.max_k);
})
  .catch((err) => { $("status").textContent = "server unreachable: " + err.message; });
