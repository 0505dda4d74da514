// synapse-p2p dashboard: a snapshot, then coalesced deltas over one WebSocket; no polling.
"use strict";

const LIMITS = { peers: 500, conversations: 100, timeline: 200, cards: 40, flows: 60, links: 1000 };
const COLUMNS = ["offered", "claimed", "granted", "in progress", "re-offered", "done", "failed"];
const token = () => new URLSearchParams(location.hash.slice(1)).get("token");

const model = {
  self: null, observer: null, allowAsk: false, eventsSeen: 0,
  peers: new Map(), conversations: new Map(), asks: new Map(), tasks: new Map(),
  links: new Map(), selected: null, timeline: [],
};
const dirty = new Set();
let socket = null, retry = 500, frame = 0;
// Counters for whoever wants to know how the page keeps up (benchmarks, the browser console).
window.dashboardStats = { messages: 0, bytes: 0, renders: 0, renderMs: 0, maxRenderMs: 0 };

const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}
function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}
const nameOf = (id) => {
  if (id === model.self) return (model.observer && model.observer.name) || "dashboard";
  const p = model.peers.get(id);
  return p ? (p.name || id.slice(0, 8)) : (id || "?").slice(0, 8);
};
function ago(seconds) {
  if (!seconds) return "—";
  const d = Math.max(0, Date.now() / 1000 - seconds);
  if (d < 60) return `${Math.round(d)} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  return `${Math.round(d / 3600)} h ago`;
}
const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString([], { hour12: false }) : "—");

// -- the feed ------------------------------------------------------------------------------

function connect() {
  socket = new WebSocket(`ws://${location.host}/ws`);
  socket.onopen = () => { retry = 500; setLink(true); };
  socket.onclose = () => { setLink(false); setTimeout(connect, retry); retry = Math.min(retry * 2, 8000); };
  socket.onmessage = (message) => {
    let data;
    window.dashboardStats.messages += 1; window.dashboardStats.bytes += message.data.length;
    try { data = JSON.parse(message.data); } catch (e) { return; }
    handle(data);
  };
}
function send(request) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(request));
}
function setLink(up) {
  const link = $("link");
  link.textContent = up ? "live" : "reconnecting";
  link.className = `pill ${up ? "up" : "down"}`;
  link.dataset.state = up ? "live" : "down";
}

function upsert(map, items) { for (const item of items || []) map.set(item.id, item); }
function setLinks(items) {  // newest last; the oldest go past LIMITS.links
  for (const l of items || []) { const key = `${l.a} ${l.b}`; model.links.delete(key); model.links.set(key, l); }
  for (const key of model.links.keys()) {
    if (model.links.size <= LIMITS.links) break;
    model.links.delete(key);
  }
}
const seenCells = new Map();  // peer id -> its "last seen" cell
function seen(updates) {  // heartbeats: only "last seen" changes, in place
  for (const [id, t] of Object.entries(updates || {})) {
    const p = model.peers.get(id), td = seenCells.get(id);
    if (p) p.last_seen = t;
    if (td) { td.dataset.seen = t; td.textContent = ago(t); }
  }
}

function handle(data) {
  if (data.type === "snapshot") {
    model.self = data.self; model.observer = data.observer; model.allowAsk = data.allow_ask;
    for (const key of ["peers", "conversations", "asks", "tasks", "links"]) model[key].clear();
    upsert(model.peers, data.peers); upsert(model.conversations, data.conversations);
    upsert(model.asks, data.asks); upsert(model.tasks, data.tasks);
    setLinks(data.links);
    model.eventsSeen = data.events_seen;
    ["peers", "graph", "conversations", "board", "header", "progress"].forEach((d) => dirty.add(d));
    if (model.selected) send({ op: "timeline", id: model.selected });
  } else if (data.type === "delta") {
    upsert(model.peers, data.peers);
    for (const id of data.peers_removed) model.peers.delete(id);
    upsert(model.conversations, data.conversations);
    for (const id of data.conversations_removed) {
      model.conversations.delete(id); model.asks.delete(id); model.tasks.delete(id);
    }
    upsert(model.asks, data.asks); upsert(model.tasks, data.tasks);
    for (const [a, b] of data.links_removed || []) model.links.delete(`${a} ${b}`);
    setLinks(data.links);
    seen(data.seen);
    model.eventsSeen = data.events_seen;
    if (data.peers.length || data.peers_removed.length) { dirty.add("peers"); dirty.add("graph"); }
    if (data.links.length || (data.links_removed || []).length) dirty.add("links");
    if (data.conversations.length || data.conversations_removed.length) dirty.add("conversations");
    if (data.tasks.length) dirty.add("board");
    if (data.asks.some((a) => a.id === model.selected)) dirty.add("progress");
    dirty.add("header");
    flows(data.flows);
  } else if (data.type === "events" && data.id === model.selected) {
    const known = new Set(model.timeline.map((r) => r.id));
    const fresh = data.events.filter((r) => !known.has(r.id)).sort(byTime);
    const last = model.timeline[model.timeline.length - 1];
    if (last && fresh.length && byTime(fresh[0], last) < 0) timelineRedraw = true;  // out of order
    model.timeline.push(...fresh); timelineFresh.push(...fresh);
    dirty.add("timeline");
  } else if (data.type === "timeline" && data.id === model.selected) {
    model.timeline = data.events; timelineRedraw = true; dirty.add("timeline");
  } else if (data.type === "card") {
    showCard(data);
  } else if (data.type === "ask-result") {
    $("ask-status").textContent = data.ok ? `asked: ${data.id}` : `refused: ${data.error}`;
    $("ask-status").dataset.ok = data.ok ? "yes" : "no";
    if (data.ok) select(data.id);
  } else if (data.type === "error") {
    if (data.op === "card") showCard({ peer: null, card: data.error, methods: "" });
  }
  schedule();
}

function schedule() { if (!frame) frame = requestAnimationFrame(render); }
function render() {
  frame = 0;
  const started = performance.now();
  if (dirty.has("header")) renderHeader();
  if (dirty.has("peers")) renderPeers();
  if (dirty.has("graph")) renderGraph();
  else if (dirty.has("links")) renderLinks();
  if (dirty.has("conversations")) renderConversations();
  if (dirty.has("timeline")) renderTimeline();
  if (dirty.has("progress")) renderProgress();
  if (dirty.has("board")) renderBoard();
  dirty.clear();
  const stats = window.dashboardStats, took = performance.now() - started;
  stats.renders += 1; stats.renderMs += took; stats.maxRenderMs = Math.max(stats.maxRenderMs, took);
}

// -- header and peers ----------------------------------------------------------------------

function renderHeader() {
  const o = model.observer;
  if (o) $("swarm-title").textContent = `${o.swarm || "(no swarm)"}${o.team && o.team !== "default" ? " / " + o.team : ""}`;
  const counts = { alive: 0, suspect: 0, offline: 0 };
  for (const p of model.peers.values()) counts[p.status] = (counts[p.status] || 0) + 1;
  for (const k of Object.keys(counts)) $(`count-${k}`).textContent = counts[k];
  $("count-events").textContent = model.eventsSeen;
  $("ask-form").hidden = !(model.allowAsk && token());
}

const ORDER = { alive: 0, suspect: 1, offline: 2 };
function sortedPeers() {
  return [...model.peers.values()].sort((a, b) =>
    (ORDER[a.status] - ORDER[b.status]) || (a.name || a.id).localeCompare(b.name || b.id));
}
function renderPeers() {
  const body = $("peers").tBodies[0];
  seenCells.clear();
  const rows = sortedPeers().slice(0, LIMITS.peers).map((p) => {
    const caps = el("td", { title: p.capabilities.join(", ") }, ...p.capabilities.slice(0, 4).map((c) => el("span", { class: "tag" }, c)));
    const verified = p.verified == null ? "unknown" : p.verified ? "yes" : "no";
    const path = p.path === null ? "unknown" : p.path;
    const tr = el("tr", { "data-peer": p.id, "data-status": p.status, title: `${p.id}\n${p.address}` },
      el("td", { class: "name" }, p.name || p.id.slice(0, 8)),
      el("td", {}, p.role === null ? "…" : (p.role || "—")),
      caps,
      el("td", { class: `status ${p.status}` }, p.status),
      el("td", { class: "muted" }, verified),
      el("td", { class: "muted" }, path),
      el("td", { class: "muted", "data-seen": p.last_seen }, ago(p.last_seen)));
    seenCells.set(p.id, tr.lastChild);
    tr.addEventListener("click", () => openCard(p.id));
    return tr;
  });
  body.replaceChildren(...rows);
}

// -- the picture ---------------------------------------------------------------------------

const positions = new Map();
function layout() {
  positions.clear();
  positions.set(model.self, [0, 0]);
  const peers = sortedPeers().slice(0, LIMITS.peers).sort((a, b) => a.id.localeCompare(b.id));
  const n = peers.length, radius = n > 60 ? 250 : 215;
  peers.forEach((p, i) => {
    const angle = (2 * Math.PI * i) / Math.max(1, n) - Math.PI / 2;
    positions.set(p.id, [radius * Math.cos(angle), radius * Math.sin(angle)]);
  });
  return peers;
}
const linkLines = new Map();  // link key -> its line, updated in place
function renderLinks() {  // who answered whom: redrawn alone when only the links changed
  const layer = $("graph-links"), keep = new Set();
  for (const [key, l] of model.links) {
    const a = positions.get(l.a), b = positions.get(l.b);
    if (!a || !b) continue;
    const attrs = { x1: a[0], y1: a[1], x2: b[0], y2: b[1], "stroke-width": Math.min(4, 1 + Math.log2(l.count)) };
    let line = linkLines.get(key);
    if (!line) { line = svg("line", { stroke: "#4a5d8a" }); linkLines.set(key, line); layer.append(line); }
    for (const [k, v] of Object.entries(attrs)) if (line.getAttribute(k) !== String(v)) line.setAttribute(k, v);
    keep.add(key);
  }
  for (const [key, line] of linkLines) if (!keep.has(key)) { line.remove(); linkLines.delete(key); }
}
function renderGraph() {
  const peers = layout();
  const small = peers.length <= 40;
  const spokes = [];
  for (const p of peers) {
    const [x, y] = positions.get(p.id);
    if (p.status !== "offline") spokes.push(svg("line", { x1: 0, y1: 0, x2: x, y2: y, "stroke-opacity": 0.25 }));
  }
  $("graph-spokes").replaceChildren(...spokes);
  renderLinks();
  const nodes = [svg("circle", { cx: 0, cy: 0, r: 13, class: "node observer" })];
  for (const p of peers) {
    const [x, y] = positions.get(p.id);
    const c = svg("circle", { cx: x, cy: y, r: small ? 10 : 6, class: `node ${p.status}`, "data-node": p.id });
    const title = svg("title", {}); title.textContent = `${p.name || p.id.slice(0, 8)} (${p.status})`;
    c.append(title);
    c.addEventListener("click", () => openCard(p.id));
    nodes.push(c);
    if (small) {
      const t = svg("text", { x: x * 1.1, y: y * 1.1 + 3, "text-anchor": x < -5 ? "end" : x > 5 ? "start" : "middle" });
      t.textContent = p.name || p.id.slice(0, 8);
      nodes.push(t);
    }
  }
  $("graph-nodes").replaceChildren(...nodes);
}
const FLOW_COLOURS = { ack: "#3ccf7e", reply: "#4fd1e0", error: "#ef5b5b", grant: "#f2b84b" };
function flows(list) {
  const layer = $("graph-flows");
  for (const f of list || []) {
    if (layer.childElementCount >= LIMITS.flows) break;
    const a = positions.get(f.to), b = positions.get(f.from);  // from the responder to the asker
    if (!a || !b) continue;
    const dot = svg("circle", { cx: a[0], cy: a[1], r: 4, fill: FLOW_COLOURS[f.kind] || "#c48af5", class: "flow" });
    layer.append(dot);
    const dx = b[0] - a[0], dy = b[1] - a[1];
    dot.animate([{ transform: "translate(0px, 0px)" }, { transform: `translate(${dx}px, ${dy}px)` }],
      { duration: 700, easing: "steps(7)" }).onfinish = () => dot.remove();
  }
}

// -- conversations, timeline, ask progress -------------------------------------------------

function renderConversations() {
  const items = [...model.conversations.values()].sort((a, b) => b.last_at - a.last_at).slice(0, LIMITS.conversations);
  $("conversations").replaceChildren(...items.map((c) => {
    const li = el("li", { "data-conversation": c.id, class: c.id === model.selected ? "selected" : "" },
      el("span", { class: `kind ${c.kind}` }, c.kind),
      el("span", { class: "title", title: c.title }, c.title || c.id),
      el("span", { class: "muted" }, `${c.count} · ${clock(c.last_at)}`));
    li.addEventListener("click", () => select(c.id));
    return li;
  }));
}
function select(id) {
  model.selected = id; model.timeline = []; timelineRedraw = true;
  send({ op: "timeline", id });
  ["conversations", "timeline", "progress"].forEach((d) => dirty.add(d));
  schedule();
}
const byTime = (a, b) => a.at - b.at || a.id.localeCompare(b.id);
let timelineRedraw = true;  // the next render draws the whole timeline...
const timelineFresh = [];  // ...or only appends these rows (arrived in order) and drops the oldest
function timelineRow(r) {
  return el("li", { "data-kind": r.kind, "data-label": r.label },
    el("span", { class: "muted" }, clock(r.at)),
    el("span", { class: `label ${r.label}`, title: r.kind }, r.label === "event" || r.label === "task" ? r.kind : r.label),
    el("span", { class: "text" }, el("b", {}, r.who), " ", r.text));
}
function renderTimeline() {
  const c = model.conversations.get(model.selected);
  $("timeline-title").textContent = c ? `Timeline · ${c.title || c.id}`.slice(0, 90) : "Timeline";
  const list = $("timeline");
  const nearBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 30;
  const extra = Math.max(0, model.timeline.length - LIMITS.timeline);
  if (timelineRedraw) {
    model.timeline.sort(byTime).splice(0, extra);
    list.replaceChildren(...model.timeline.map(timelineRow));
  } else {
    list.append(...timelineFresh.map(timelineRow));
    model.timeline.splice(0, extra);
    for (let i = 0; i < extra && list.firstElementChild; i++) list.firstElementChild.remove();
  }
  timelineRedraw = false; timelineFresh.length = 0;
  if (nearBottom) list.scrollTop = list.scrollHeight;
}
function renderProgress() {
  const box = $("ask-progress");
  const ask = model.asks.get(model.selected);
  box.hidden = !ask;
  if (!ask) return;
  const group = (key, label, ids) => el("div", { class: "group", "data-progress": key },
    el("b", { class: "count" }, ask.counts ? ask.counts[key] : ids.length), ` ${label} `,
    el("div", { class: "who", title: ids.slice(0, 50).map(nameOf).join(", ") },
      ids.slice(0, 12).map(nameOf).join(", ") + (ask.counts[key] > 12 ? " …" : "")));
  box.replaceChildren(group("acked", "ACKed", ask.acked), group("replied", "replied", ask.replied),
    group("working", "still working", ask.working), group("errors", "errors", ask.errors));
}

// -- team board ----------------------------------------------------------------------------

function renderBoard() {
  const byStatus = new Map(COLUMNS.map((c) => [c, []]));
  for (const t of model.tasks.values()) (byStatus.get(t.status) || byStatus.get("offered")).push(t);
  $("board").replaceChildren(...COLUMNS.map((name) => {
    const tasks = byStatus.get(name).sort((a, b) => b.updated - a.updated);
    const cards = tasks.slice(0, LIMITS.cards).map((t) => {
      const lines = [`attempt ${t.attempt}`];
      if (t.worker_name || t.worker) lines.push(`worker ${t.worker_name || nameOf(t.worker)}`);
      if (t.lease_until && !["done", "failed"].includes(t.status)) lines.push(`lease until ${clock(t.lease_until)}`);
      const card = el("div", { class: "taskcard", "data-task": t.id, "data-status": t.status },
        el("div", { class: "t" }, t.title || t.id.slice(0, 8)),
        el("div", { class: "m" }, lines.join(" · ")));
      const note = t.status === "done" ? t.result : t.status === "failed" ? t.error : t.progress;
      if (note) card.append(el("div", { class: "m note" }, note));
      card.addEventListener("click", () => select(t.id));
      return card;
    });
    if (tasks.length > LIMITS.cards) cards.push(el("div", { class: "muted" }, `+${tasks.length - LIMITS.cards} more`));
    return el("div", { class: "column", "data-column": name }, el("h3", {}, `${name} `, el("b", {}, tasks.length)), ...cards);
  }));
}

// -- agent card on demand ------------------------------------------------------------------

function openCard(id) {
  $("card").hidden = false;
  $("card-title").textContent = nameOf(id);
  $("card-body").replaceChildren(el("div", { class: "muted" }, "asking the node…"));
  send({ op: "card", peer: id });
}
function showCard(data) {
  const pretty = (v) => (typeof v === "string" ? v : JSON.stringify(v, null, 2));
  const methods = Array.isArray(data.methods)
    ? el("ul", {}, ...data.methods.map((m) => el("li", {}, el("b", {}, m.name), m.description ? ` — ${m.description}` : "")))
    : el("div", { class: "muted" }, pretty(data.methods));
  $("card-body").replaceChildren(el("h3", {}, "Agent card"), el("pre", { "data-card": "" }, pretty(data.card)),
    el("h3", {}, "Endpoints"), methods);
}

document.addEventListener("DOMContentLoaded", () => {
  $("card-close").addEventListener("click", () => { $("card").hidden = true; });
  $("ask-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("ask-text").value.trim();
    if (!text) return;
    $("ask-status").textContent = "sending…"; delete $("ask-status").dataset.ok;
    send({ op: "ask", task: text, context: {}, token: token() });
    $("ask-text").value = "";
  });
  setInterval(() => {  // refresh "last seen" ages without re-rendering the table
    for (const td of document.querySelectorAll("td[data-seen]")) td.textContent = ago(Number(td.dataset.seen));
  }, 2000);
  window.addEventListener("hashchange", () => { dirty.add("header"); schedule(); });
  connect();
});
