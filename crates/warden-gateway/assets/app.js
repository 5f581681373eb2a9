// Warden dashboard: plain DOM, no framework, nothing fetched from elsewhere. Every value from the
// server is put in the page as text (never as HTML). Views: #approvals, #sessions,
// #session/<id>, #alerts, #audit, #policy. Live updates arrive over SSE (/ui/api/events).
"use strict";

const state = { me: null, approvalCards: new Map(), seenPending: new Set(), refreshTimer: null };

/** Replace an element's children (nested arrays flattened, null and false left out). */
function fill(el, ...children) {
  el.replaceChildren();
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Make an element: h("p", {class: "x"}, "text", child, ...). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function when(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  return d.toLocaleString();
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function pretty(v) {
  return typeof v === "string" ? v : JSON.stringify(v, null, 2);
}

class ApiFailure extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// Going to the sign-in page happens once: several requests in flight can each learn that the
// sign-in ended, and a second navigation would abort the first.
let leaving = false;
function toLogin() {
  if (leaving) return;
  leaving = true;
  location.assign("/ui/login");
}

async function api(path, options = {}) {
  const init = { credentials: "same-origin", headers: {}, ...options };
  if (init.method && init.method !== "GET") {
    init.headers["X-Warden-CSRF"] = state.me ? state.me.csrf : "";
    if (init.body !== undefined) init.headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) {
    toLogin();
    throw new ApiFailure(401, "signed out");
  }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    throw new ApiFailure(resp.status, (body.error && body.error.message) || ("HTTP " + resp.status));
  }
  return body;
}

function announce(text) {
  const el = document.getElementById("announcer");
  el.textContent = "";
  // A fresh node so screen readers speak it again even if the text repeats.
  setTimeout(() => { el.textContent = text; }, 50);
}

function verdictBadge(verdict) {
  return h("span", { class: "badge v-" + verdict }, verdict);
}

function statusBadge(status) {
  return h("span", { class: "badge s-" + status }, status);
}

function main() { return document.getElementById("main"); }

function setView(title, ...content) {
  const m = main();
  fill(m, h("h1", {}, title), ...content);
  document.title = title + " — Warden";
}

function route() {
  const hash = location.hash.replace(/^#/, "") || "approvals";
  const [view, ...rest] = hash.split("/");
  return { view, arg: rest.length ? decodeURIComponent(rest.join("/")) : null };
}

function markNav(view) {
  for (const a of document.querySelectorAll("nav a[data-view]")) {
    const current = a.dataset.view === view || (view === "session" && a.dataset.view === "sessions");
    if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
}

// ---- Approvals ----

function approvalCard(a) {
  const titleId = "approval-title-" + a.id.replace(/[^A-Za-z0-9_-]/g, "_");
  const reasons = Array.isArray(a.reasons) ? a.reasons : [];
  const card = h("article", { class: "card held", "data-approval-id": a.id, "aria-labelledby": titleId },
    h("h3", { id: titleId }, "Held call to ", h("code", {}, a.tool)),
    h("dl", { class: "meta" },
      h("dt", {}, "Session"), h("dd", {}, h("a", { href: "#session/" + encodeURIComponent(a.session) }, a.session), " · step #" + a.seq),
      h("dt", {}, "Held"), h("dd", {}, h("time", { datetime: new Date(a.created_ms).toISOString() }, ago(a.created_ms)))),
    h("h4", {}, "Arguments"),
    h("pre", {}, pretty(a.args)),
    h("h4", {}, "Why it was held"),
    h("ul", {}, reasons.map((r) => h("li", {}, h("code", {}, r.policy), ": ", r.message))));
  if (state.me.may_approve) {
    const commentId = "comment-" + titleId;
    const comment = h("textarea", { id: commentId, name: "comment", placeholder: "What you checked (recorded in the audit log)" });
    const error = h("p", { class: "error", role: "alert" });
    const decide = async (decision, button) => {
      for (const b of card.querySelectorAll("button")) b.disabled = true;
      error.textContent = "";
      try {
        const done = await api("/ui/api/approvals/" + a.id, {
          method: "POST",
          body: JSON.stringify({ decision, comment: comment.value }),
        });
        announce("Call to " + a.tool + " " + done.status + " by " + done.approver);
        card.remove();
        state.approvalCards.delete(a.id);
        refreshPendingCount();
        renderDecided();
      } catch (e) {
        error.textContent = e.message;
        for (const b of card.querySelectorAll("button")) b.disabled = false;
        button.focus();
      }
    };
    const approve = h("button", { type: "button", class: "approve" }, "Approve");
    const deny = h("button", { type: "button", class: "deny" }, "Deny");
    approve.addEventListener("click", () => decide("approve", approve));
    deny.addEventListener("click", () => decide("deny", deny));
    card.append(h("label", { for: commentId }, "Comment"), comment, h("div", { class: "actions" }, approve, deny), error);
  } else {
    card.append(h("p", { class: "muted" }, "You are signed in as a viewer: you can see held calls but not approve or deny them."));
  }
  return card;
}

async function renderApprovals() {
  const list = h("div", { id: "approval-list" });
  const empty = h("p", { id: "no-approvals", class: "muted" }, "No held calls are waiting.");
  const decided = h("section", { id: "decided", "aria-labelledby": "decided-title" });
  setView("Held calls", h("p", { class: "help" }, "Calls Warden held for a person's decision. New ones appear here as they happen."), empty, list, decided);
  state.approvalCards = new Map();
  await updateApprovals();
  await renderDecided();
}

/** Add cards for new pending approvals and drop decided ones, keeping what a person is typing. */
async function updateApprovals() {
  const list = document.getElementById("approval-list");
  if (!list) return;
  const { approvals } = await api("/ui/api/approvals?status=pending");
  const ids = new Set(approvals.map((a) => a.id));
  for (const [id, card] of state.approvalCards) {
    if (!ids.has(id)) { card.remove(); state.approvalCards.delete(id); }
  }
  // Newest first, as the server lists them.
  for (const a of [...approvals].reverse()) {
    if (state.approvalCards.has(a.id)) continue;
    const card = approvalCard(a);
    state.approvalCards.set(a.id, card);
    list.prepend(card);
  }
  document.getElementById("no-approvals").hidden = approvals.length > 0;
}

async function renderDecided() {
  const section = document.getElementById("decided");
  if (!section) return;
  const { approvals } = await api("/ui/api/approvals?status=all");
  const rows = approvals.filter((a) => a.status !== "pending").slice(0, 20);
  fill(section, h("h2", { id: "decided-title" }, "Recently decided"),
    rows.length === 0 ? h("p", { class: "muted" }, "Nothing decided yet.") :
      h("table", {},
        h("thead", {}, h("tr", {}, ["Call", "Session", "Outcome", "By", "Comment", "When"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows.map((a) => h("tr", { "data-approval-id": a.id },
          h("td", {}, h("code", {}, a.tool)),
          h("td", {}, h("a", { href: "#session/" + encodeURIComponent(a.session) }, a.session)),
          h("td", {}, statusBadge(a.status)),
          h("td", {}, a.approver || "—"),
          h("td", {}, a.comment || ""),
          h("td", {}, when(a.decided_ms)))))));
}

async function refreshPendingCount() {
  const { approvals } = await api("/ui/api/approvals?status=pending");
  document.getElementById("pending-count").textContent = String(approvals.length);
  for (const a of approvals) {
    if (!state.seenPending.has(a.id)) {
      state.seenPending.add(a.id);
      if (state.started) announce("New held call: " + a.tool + " in session " + a.session + " needs a decision.");
    }
  }
}

// ---- Sessions ----

async function renderSessions() {
  const params = new URLSearchParams(sessionStorage.getItem("warden.filters") || "");
  const q = h("input", { id: "f-q", type: "search", name: "q", value: params.get("q") || "" });
  const st = h("select", { id: "f-state", name: "state" },
    ["all", "live", "past"].map((v) => h("option", { value: v, selected: (params.get("state") || "all") === v }, v)));
  const pending = h("input", { id: "f-pending", type: "checkbox", name: "pending", checked: params.get("pending") === "true" });
  const form = h("form", { class: "filters card", role: "search" },
    h("div", {}, h("label", { for: "f-q" }, "Search"), q),
    h("div", {}, h("label", { for: "f-state" }, "State"), st),
    h("label", { class: "inline", for: "f-pending" }, pending, "Only with held calls"),
    h("button", { type: "submit" }, "Filter"));
  const results = h("div", { id: "session-results", "aria-live": "polite" });
  form.addEventListener("submit", (e) => { e.preventDefault(); loadSessions(); });
  setView("Sessions", h("p", { class: "help" }, "Live sessions are held in this server's memory; past ones are read from the store."), form, results);
  await loadSessions();
}

async function loadSessions() {
  const results = document.getElementById("session-results");
  if (!results) return;
  const params = new URLSearchParams();
  const q = document.getElementById("f-q").value.trim();
  if (q) params.set("q", q);
  params.set("state", document.getElementById("f-state").value);
  if (document.getElementById("f-pending").checked) params.set("pending", "true");
  sessionStorage.setItem("warden.filters", params.toString());
  const { sessions } = await api("/ui/api/sessions?" + params.toString());
  fill(results, sessions.length === 0 ? h("p", { class: "muted" }, "No sessions match.") :
    h("table", {},
      h("caption", { class: "visually-hidden" }, sessions.length + " sessions"),
      h("thead", {}, h("tr", {}, ["Session", "Principal", "Agent", "Profile", "Instruction", "Opened", "State"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, sessions.map((s) => h("tr", {},
        h("td", {}, h("a", { href: "#session/" + encodeURIComponent(s.id) }, s.id)),
        h("td", {}, s.principal), h("td", {}, s.agent), h("td", {}, s.profile || "—"),
        h("td", {}, (s.instruction || "").slice(0, 140)),
        h("td", {}, when(s.opened_at_ms)),
        h("td", {}, s.live ? "live" : "past", s.pending ? h("span", { class: "badge v-hold" }, s.pending + " held") : null))))));
}

// ---- One session's timeline ----

function stepTitle(s) {
  switch (s.kind) {
    case "call": return ["Call ", h("code", {}, s.tool), " ", verdictBadge(s.verdict), s.shadow ? h("span", { class: "badge" }, "shadow") : null];
    case "result": return ["Result of ", h("code", {}, s.tool), " ",
      h("span", { class: "badge label-" + s.integrity }, s.integrity), " ", h("span", { class: "badge" }, s.confidentiality)];
    case "user_message": return ["User message"];
    case "system_message": return ["System prompt"];
    case "agent_reasoning": return ["Agent reasoning (never trusted)"];
    default: return [s.kind];
  }
}

function focusStep(seq) {
  const li = document.getElementById("step-" + seq);
  if (!li) return;
  li.scrollIntoView({ block: "center" });
  li.focus();
  li.classList.add("highlight");
  setTimeout(() => li.classList.remove("highlight"), 2000);
}

function provenanceList(s) {
  const prov = s.provenance || {};
  const items = [];
  for (const [arg, p] of Object.entries(prov)) {
    const sources = (p && p.sources) || [];
    if (sources.length === 0) continue;
    const trust = p.untrusted_only ? "untrusted only" : (p.all_trusted ? "trusted" : (p.untrusted ? "partly untrusted" : "trusted"));
    items.push(h("li", {}, h("code", {}, arg), " came from ",
      sources.map((seq, i) => [i ? ", " : "", h("button", { type: "button", class: "quiet", onclick: () => focusStep(seq) }, "step #" + seq)]),
      " (" + trust + (p.sink ? ", " + p.sink + " sink" : "") + ")"));
  }
  return items.length ? [h("h4", {}, "Provenance of the arguments"), h("ul", { class: "prov" }, items)] : [];
}

function stepItem(s, sessionId) {
  const li = h("li", { id: "step-" + s.seq, tabindex: "-1", "data-kind": s.kind, "data-seq": s.seq },
    h("div", { class: "step-head" }, h("span", { class: "seq" }, "#" + s.seq), h("h3", {}, ...stepTitle(s)),
      s.time_ms ? h("span", { class: "muted" }, when(s.time_ms)) : null,
      s.audit_index !== undefined && s.audit_index !== null ? h("span", { class: "muted" }, "audit entry " + s.audit_index) : null));
  if (s.error) li.append(h("p", { class: "error" }, s.error));
  if (s.kind === "call") {
    li.append(h("pre", {}, pretty(s.args)));
    const reasons = Array.isArray(s.reasons) ? s.reasons : [];
    if (reasons.length) li.append(h("h4", {}, "Reasons"), h("ul", {}, reasons.map((r) => h("li", {}, h("code", {}, r.policy), ": ", r.message))));
    li.append(...provenanceList(s));
    if (s.approval) {
      const a = s.approval;
      li.append(h("p", { class: "approval" }, "Approval: ", statusBadge(a.status),
        a.approver ? " by " + a.approver : "", a.comment ? " — “" + a.comment + "”" : "",
        a.status === "pending" ? [" ", h("a", { href: "#approvals" }, "decide")] : null));
    }
  } else if (s.kind === "result") {
    li.append(h("pre", {}, s.result));
  } else if (s.text !== undefined) {
    li.append(h("pre", {}, s.text));
  }
  return li;
}

/** Draw a curve in the left gutter from each source step to the call whose argument it fed. */
function drawLinks(svg, steps) {
  fill(svg);
  const wrap = svg.parentElement;
  const top = wrap.getBoundingClientRect().top;
  const ns = "http://www.w3.org/2000/svg";
  let lane = 0;
  for (const s of steps) {
    if (s.kind !== "call" || !s.provenance) continue;
    const target = document.getElementById("step-" + s.seq);
    for (const [arg, p] of Object.entries(s.provenance)) {
      for (const seq of (p && p.sources) || []) {
        const source = document.getElementById("step-" + seq);
        if (!source || !target) continue;
        const y1 = source.getBoundingClientRect().top - top + 18;
        const y2 = target.getBoundingClientRect().top - top + 18;
        const x = 50 - 8 * (lane++ % 5) - 12;
        const path = document.createElementNS(ns, "path");
        path.setAttribute("d", `M56 ${y1} C ${x} ${y1}, ${x} ${y2}, 56 ${y2}`);
        path.setAttribute("class", "link-line" + (p.untrusted_only ? "" : " trusted"));
        const title = document.createElementNS(ns, "title");
        title.textContent = `${arg} ← step #${seq}`;
        path.append(title);
        svg.append(path);
      }
    }
  }
}

async function renderSession(id) {
  const view = await api("/ui/api/sessions/" + encodeURIComponent(id));
  const s = view.session;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("aria-hidden", "true");
  const list = h("ol", { class: "timeline", "aria-label": "Timeline" },
    h("li", { id: "step-0", tabindex: "-1", "data-kind": "instruction" },
      h("div", { class: "step-head" }, h("span", { class: "seq" }, "#0"), h("h3", {}, "Instruction (trusted)")),
      h("pre", {}, s.instruction || "(none)"),
      Object.keys(s.task || {}).length ? h("pre", {}, "task: " + pretty(s.task)) : null),
    view.steps.map((step) => stepItem(step, s.id)));
  const wrap = h("div", { class: "timeline-wrap" }, svg, list);
  const audit = view.audit || [];
  setView("Session " + s.id,
    h("dl", { class: "meta card" },
      h("dt", {}, "Principal"), h("dd", {}, s.principal),
      h("dt", {}, "Agent"), h("dd", {}, s.agent),
      h("dt", {}, "Profile"), h("dd", {}, s.profile || "—"),
      h("dt", {}, "Channel"), h("dd", {}, s.channel),
      h("dt", {}, "Opened"), h("dd", {}, when(s.opened_at_ms)),
      h("dt", {}, "State"), h("dd", {}, view.live ? "live" : "past")),
    h("p", { class: "help" }, "Lines on the left join each tool result to the call arguments its values reached (red: only untrusted content)."),
    wrap,
    h("section", { id: "audit-trail", "aria-labelledby": "audit-trail-title" },
      h("h2", { id: "audit-trail-title" }, "Audit trail: approvals and alerts"),
      audit.length === 0 ? h("p", { class: "muted" }, "None.") :
        h("table", {},
          h("thead", {}, h("tr", {}, ["Entry", "Kind", "What", "When"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, audit.map((e) => h("tr", { "data-kind": e.kind },
            h("td", {}, String(e.index)), h("td", {}, e.kind),
            h("td", {}, e.kind === "approval" ?
              [statusBadge(e.body.decision), " ", e.body.decision_id, e.body.approver ? " by " + e.body.approver : "", e.body.comment ? " — “" + e.body.comment + "”" : ""] :
              ["score " + e.body.score + " ≥ " + e.body.threshold + ": " + (e.body.reasons || []).join("; ")]),
            h("td", {}, when(e.time_ms))))))));
  requestAnimationFrame(() => drawLinks(svg, view.steps));
}

// ---- Alerts, audit, policy ----

async function renderAlerts() {
  const { alerts } = await api("/ui/api/alerts");
  // A tool whose definition changed (or appeared) since Warden pinned its upstream's tools is
  // no session's: it names the upstream and the tool, and how to accept the change.
  const pinning = (e) => e.body.detector === "pinning";
  setView("Alerts", h("p", { class: "help" }, "Calls whose behaviour score passed the alert threshold, and tools whose definition changed since Warden pinned it (their calls are held until an operator runs warden tools accept). Alerts inform; policies decide."),
    alerts.length === 0 ? h("p", { class: "muted" }, "No alerts.") :
      h("table", {},
        h("thead", {}, h("tr", {}, ["When", "Session", "Step", "Score", "Why"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, [...alerts].reverse().map((e) => h("tr", {},
          h("td", {}, when(e.time_ms)),
          h("td", {}, pinning(e) ? "tool " + e.body.upstream + " / " + e.body.tool
            : h("a", { href: "#session/" + encodeURIComponent(e.session) }, e.session)),
          h("td", {}, pinning(e) ? "—" : "#" + e.body.seq),
          h("td", {}, pinning(e) ? "—" : String(e.body.score)),
          h("td", {}, (e.body.reasons || []).join("; ") + (pinning(e) && e.body.what === "changed"
            ? " (review, then: warden tools accept " + e.body.upstream + " " + e.body.tool + " --by NAME, or accept it on the Tools page)" : "")))))));
}

// ---- Pinned tools ----

async function renderTools() {
  const { pins } = await api("/ui/api/tools/pins");
  const admin = state.me.role === "admin";
  const definitions = (p) => h("details", {},
    h("summary", {}, "Pinned and new definitions"),
    h("p", {}, "Pinned:"), h("pre", { tabindex: "0" }, p.definition),
    h("p", {}, "Now listed:"), h("pre", { tabindex: "0" }, p.seen.definition));
  setView("Tools", h("p", { class: "help" }, "The tool definitions Warden pinned: the first it saw of each tool of each server, or the one an operator accepted. A tool whose server now describes it otherwise is held at every call until an admin accepts the new definition here or with warden tools accept."),
    pins.length === 0 ? h("p", { class: "muted" }, "No tools are pinned yet.") :
      h("table", {},
        h("thead", {}, h("tr", {}, ["Server", "Tool", "Pinned", "Status", "Action"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, pins.map((p) => h("tr", {},
          h("td", {}, p.upstream),
          h("td", {}, h("code", {}, p.tool)),
          h("td", {}, when(p.pinned_at_ms)),
          h("td", {}, p.seen ? [h("strong", {}, "Changed: "), p.change, definitions(p)] : "Pinned"),
          h("td", {}, p.seen && admin
            ? h("button", { type: "button", onclick: () => acceptTool(p) }, "Accept the new definition of " + p.tool)
            : "—"))))));
}

async function acceptTool(p) {
  await api("/ui/api/tools/accept", { method: "POST", body: JSON.stringify({ upstream: p.upstream, tool: p.tool }) });
  await renderTools();
}

async function renderAudit() {
  const status = await api("/ui/api/audit");
  if (!status.enabled) { setView("Audit log", h("p", {}, "This server keeps no audit log.")); return; }
  const cp = status.latest_checkpoint;
  const result = h("div", { id: "verify-result", role: "status" });
  const button = h("button", { type: "button", id: "verify" }, "Verify the whole log now");
  button.addEventListener("click", async () => {
    button.disabled = true;
    fill(result, h("p", {}, "Verifying…"));
    try {
      const r = await api("/ui/api/audit/verify", { method: "POST" });
      fill(result, h("p", { class: r.ok ? "" : "error" }, h("span", { class: "badge " + (r.ok ? "v-allow" : "v-deny") }, r.ok ? "verified" : "problems"), " ", r.message,
        " (" + r.entries + " entries, " + r.checkpoints_checked + " signed checkpoints, " + r.took_ms + " ms)"),
        r.problems.length ? h("ul", {}, r.problems.map((p) => h("li", {}, (p.index !== null ? "entry " + p.index + ": " : "") + p.message))) : null);
    } catch (e) {
      fill(result, h("p", { class: "error" }, e.message));
    }
    button.disabled = false;
  });
  setView("Audit log",
    h("dl", { class: "meta card" },
      h("dt", {}, "Entries"), h("dd", { id: "audit-entries" }, String(status.entries)),
      h("dt", {}, "Last signed checkpoint"), h("dd", {}, cp ? "covers " + cp.size + " entries, signed " + when(cp.time_ms) : "none yet"),
      h("dt", {}, "Public key"), h("dd", {}, h("code", {}, status.public_key))),
    cp ? [h("h2", {}, "Checkpoint (C2SP signed note)"), h("pre", {}, cp.note)] : null,
    h("h2", {}, "Verification"), button, result);
}

async function renderPolicy() {
  const p = await api("/ui/api/policy");
  setView("Policy in force",
    h("dl", { class: "meta card" },
      h("dt", {}, "Digest"), h("dd", {}, h("code", {}, p.digest)),
      h("dt", {}, "Mode"), h("dd", {}, p.shadow ? "shadow (decides and logs, enforces nothing)" : "enforcing"),
      h("dt", {}, "Policies"), h("dd", {}, String(p.policies.length)),
      h("dt", {}, "Hold timeout (MCP)"), h("dd", {}, p.hold_timeout_secs + " s")),
    h("h2", {}, "Cedar policies"),
    p.policies.map((pol) => h("details", { class: "card" }, h("summary", {}, h("code", {}, pol.id)), h("pre", { tabindex: "0" }, pol.text))),
    h("h2", {}, "Task profiles"),
    Object.keys(p.profiles).length ? h("pre", { tabindex: "0" }, pretty(p.profiles)) : h("p", { class: "muted" }, "None."),
    h("h2", {}, "Tools the operator described"),
    Object.keys(p.tools).length ? h("pre", { tabindex: "0" }, pretty(p.tools)) : h("p", { class: "muted" }, "None."));
}

// ---- Routing and live updates ----

async function render() {
  const { view, arg } = route();
  markNav(view);
  try {
    switch (view) {
      case "sessions": await renderSessions(); break;
      case "session": await renderSession(arg); break;
      case "alerts": await renderAlerts(); break;
      case "tools": await renderTools(); break;
      case "audit": await renderAudit(); break;
      case "policy": await renderPolicy(); break;
      default: await renderApprovals();
    }
  } catch (e) {
    if (e.status !== 401) setView("Something went wrong", h("p", { class: "error", role: "alert" }, e.message));
  }
}

/** Re-read what the current view shows (a change arrived). */
async function refresh(change) {
  const { view, arg } = route();
  try {
    await refreshPendingCount();
    if (view === "approvals" || view === "") { await updateApprovals(); await renderDecided(); }
    else if (view === "session" && (!change || change.session === arg)) await renderSession(arg);
    else if (view === "sessions") await loadSessions();
    else if (view === "alerts" && (!change || change.kind === "alert")) await renderAlerts();
  } catch (e) {
    console.warn("refresh failed", e);
  }
}

function scheduleRefresh(change) {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => refresh(change), 100);
}

function listen() {
  const status = document.getElementById("live-status");
  const events = new EventSource("/ui/api/events");
  events.addEventListener("hello", () => {
    status.textContent = "Live";
    document.body.dataset.live = "true";
    scheduleRefresh(null);
  });
  events.addEventListener("change", (e) => {
    let change = null;
    try { change = JSON.parse(e.data); } catch (_) { /* a malformed event: re-read all */ }
    scheduleRefresh(change);
  });
  events.addEventListener("resync", () => scheduleRefresh(null));
  events.addEventListener("error", () => {
    status.textContent = "Reconnecting…";
    document.body.dataset.live = "false";
    // Signed out elsewhere (another tab, a restart): `api` sends the page to the sign-in. A
    // stream the server refused is not retried by the browser: open a new one.
    api("/ui/api/me").then(() => {
      if (events.readyState === EventSource.CLOSED) setTimeout(listen, 2000);
    }).catch(() => {});
  });
}

async function start() {
  try {
    state.me = await api("/ui/api/me");
  } catch (e) {
    if (e.status !== 401) fill(main(), h("p", { class: "error", role: "alert" }, "Warden is not answering: " + e.message));
    return;
  }
  document.getElementById("who").textContent = state.me.name + " (" + state.me.role + ")";
  document.getElementById("sign-out").addEventListener("click", async () => {
    await api("/ui/api/logout", { method: "POST" }).catch(() => {});
    toLogin();
  });
  await refreshPendingCount().catch(() => {});
  state.started = true;
  window.addEventListener("hashchange", () => { render().then(() => main().focus()); });
  await render();
  listen();
}

start();
