// The terminologist's mapping workbench: work a queue of local codes onto a standard code system
// with the keyboard (Usagi-like, in the browser). Plain ES module, no build step.
//
// Every decision is saved at once through GraphQL (reviewMapping / bulkReviewMappings), one
// request after the other in key order, so "2 then a" always approves candidate 2. The cursor
// moves on without waiting; rows update in place from what the server answers, and decided rows
// stay (marked) until the queue is loaded again.

import { errorMessages, gql, h, readToken, storeToken } from "./client.js";

const PAGE_SIZE = 50;
const PROJECT_KEY = "medshadowMappingProject";
const STATUSES = ["UNREVIEWED", "APPROVED", "REJECTED", "FLAGGED"];
const EQUIVALENCES = ["EQUIVALENT", "EQUAL", "WIDER", "NARROWER", "INEXACT", "UNMATCHED"];
const DECISIONS = {
  a: { status: "APPROVED", verb: "Approved" },
  r: { status: "REJECTED", verb: "Rejected" },
  f: { status: "FLAGGED", verb: "Flagged" },
  u: { status: "UNREVIEWED", verb: "Back to unreviewed:" },
};

// -- GraphQL ------------------------------------------------------------------------------------

const MAPPING_FIELDS = `
fragment MappingFields on Mapping {
  id workspace sourceSystem sourceCode sourceDisplay sourceFrequency targetSystem targetCode
  targetDisplay score method rationale status equivalence comment reviewer reviewedAt updatedAt
  flagReason
  candidates { code display score method rationale features { name value } }
}`;

const PROJECTS_QUERY = `
query MappingProjects {
  mappingProjects { workspace sourceSystem targetSystem unreviewed approved rejected flagged total }
}`;

const QUEUE_QUERY = `
query MappingQueue($source: String, $target: String, $workspace: String!, $status: [MappingStatus!],
                   $text: String, $min: Float, $max: Float, $first: Int!, $after: String) {
  mappings(sourceSystem: $source, targetSystem: $target, workspace: $workspace, status: $status,
           text: $text, minScore: $min, maxScore: $max, first: $first, after: $after) {
    total hasNextPage endCursor
    items { ...MappingFields }
  }
}
${MAPPING_FIELDS}`;

const REVIEW_MUTATION = `
mutation Review($id: ID!, $status: MappingStatus, $equivalence: MapEquivalence,
                $targetCode: String, $comment: String) {
  reviewMapping(id: $id, status: $status, equivalence: $equivalence, targetCode: $targetCode,
                comment: $comment) { ...MappingFields }
}
${MAPPING_FIELDS}`;

const BULK_MUTATION = `
mutation BulkReview($ids: [ID!]!, $status: MappingStatus, $acceptTop: Boolean!) {
  bulkReviewMappings(ids: $ids, status: $status, acceptTop: $acceptTop) { ...MappingFields }
}
${MAPPING_FIELDS}`;

const HISTORY_QUERY = `
query MappingHistory($id: ID!) {
  mapping(id: $id) { id history { at by action before after comment } }
}`;

const PUBLISH_MUTATION = `
mutation Publish($source: String!, $target: String!, $workspace: String!, $name: String) {
  publishConceptMap(sourceSystem: $source, targetSystem: $target, workspace: $workspace, name: $name) {
    name version elements links factsCoded
  }
}`;

const MAPS_QUERY = `
query ConceptMaps($source: String) {
  conceptMaps(sourceSystem: $source) {
    name version sourceSystem targetSystem workspace publishedAt publishedBy elements current
  }
}`;

const EXPORT_QUERY = `
query Export($name: String!, $version: String, $format: ConceptMapFormat!) {
  conceptMapExport(name: $name, version: $version, format: $format)
}`;

const AGREEMENT_QUERY = `
query Agreement($source: String!, $target: String!, $a: String!, $b: String!) {
  mappingAgreement(sourceSystem: $source, targetSystem: $target, workspaceA: $a, workspaceB: $b) {
    codes compared agreed percent kappa onlyA onlyB
    disagreements { sourceCode sourceDisplay decisionA decisionB }
  }
}`;

// -- state --------------------------------------------------------------------------------------

const state = {
  projects: [],
  project: null,
  offset: 0,
  items: [],
  total: 0,
  hasNext: false,
  cursor: -1,
  loadSeq: 0,
  selected: new Set(), // mapping ids chosen with x
  saving: new Map(), // mapping id -> requests in flight
  equivalence: new Map(), // mapping id -> equivalence chosen with e, not yet saved
  historySeq: 0,
};

let saveChain = Promise.resolve(); // decisions go to the server one after the other, in key order
let projectsTimer = 0;
let historyTimer = 0;

const $ = (id) => document.getElementById(id);
let els = null;

// -- formatting ---------------------------------------------------------------------------------

const SYSTEMS = {
  "http://snomed.info/sct": "SNOMED CT",
  "http://loinc.org": "LOINC",
  "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
  "http://hl7.org/fhir/sid/icd-10": "ICD-10",
  "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
  "http://unitsofmeasure.org": "UCUM",
};

function systemLabel(system) {
  if (!system) return "";
  if (SYSTEMS[system]) return SYSTEMS[system];
  const local = /^urn:medshadow:local:(.+):([^:]+)$/.exec(system);
  if (local) return `${local[1]} (${local[2]})`;
  return system;
}

function projectKey(p) {
  return `${p.workspace}|${p.sourceSystem}|${p.targetSystem}`;
}

function projectLabel(p) {
  const counts = [
    `${p.unreviewed} unreviewed`,
    p.flagged ? `${p.flagged} flagged` : null,
    `${p.approved} approved`,
    p.rejected ? `${p.rejected} rejected` : null,
  ].filter(Boolean);
  return `${systemLabel(p.sourceSystem)} → ${systemLabel(p.targetSystem)} · ${p.workspace} — ${counts.join(", ")}`;
}

function fmtScore(score) {
  if (score === null || score === undefined) return "—";
  return Number(score).toFixed(2);
}

function fmtDateTime(iso) {
  if (!iso) return "";
  const s = String(iso);
  return s.length > 16 ? `${s.slice(0, 10)} ${s.slice(11, 16)}` : s;
}

function lower(value) {
  return value ? String(value).toLowerCase() : "";
}

/** Russian (or any Cyrillic) displays are marked as such for screen readers and hyphenation. */
function langOf(text) {
  return text && /[\u0400-\u04FF]/.test(text) ? "ru" : null;
}

function statusBadge(status) {
  const s = lower(status) || "unreviewed";
  return h("span", { class: `mw-badge mw-badge-${s}`, "data-testid": "status-badge" }, s);
}

// -- messages -----------------------------------------------------------------------------------

function announce(text) {
  els.status.textContent = text;
}

function showError(title, error) {
  const messages = error ? errorMessages(error) : [];
  els.error.replaceChildren(
    h("strong", {}, title),
    messages.length ? h("ul", {}, messages.map((m) => h("li", {}, m))) : null,
  );
  els.error.hidden = false;
}

function clearError() {
  els.error.hidden = true;
  els.error.replaceChildren();
}

function isDenied(error) {
  return errorMessages(error).some((m) => m.startsWith("not allowed"));
}

function showAuth(kind, error) {
  els.workbench.hidden = true;
  els.auth.hidden = false;
  els.queueBody.replaceChildren();
  if (kind === "missing") {
    $("mw-auth-title").textContent = "No access token";
    $("mw-auth-detail").replaceChildren(
      "Open the workbench with the link `make demo` prints (…/ui/mapping.html#token=…), or enter a terminologist's token below.",
    );
  } else {
    $("mw-auth-title").textContent = "This token may not curate mappings";
    $("mw-auth-detail").replaceChildren(
      h("ul", {}, errorMessages(error).map((m) => h("li", { "data-testid": "auth-reason" }, m))),
      "The mapping workbench is for terminologists (role terminologist or admin). Enter another token below.",
    );
  }
  announce("");
}

// -- token --------------------------------------------------------------------------------------

/** `#token=...` in the address: keep it in localStorage and take it out of the URL. */
function takeTokenFromFragment() {
  const hash = location.hash.startsWith("#") ? location.hash.slice(1) : "";
  if (!hash) return;
  const params = new URLSearchParams(hash);
  const token = params.get("token");
  if (token === null) return;
  storeToken(token.trim() || null);
  params.delete("token");
  const rest = params.toString();
  history.replaceState(history.state, "", `${location.pathname}${location.search}${rest ? `#${rest}` : ""}`);
}

// -- projects -----------------------------------------------------------------------------------

async function loadProjects({ keep = true } = {}) {
  const data = await gql(PROJECTS_QUERY);
  state.projects = data.mappingProjects;
  const wanted = keep && state.project ? projectKey(state.project) : storedProject();
  const select = els.project;
  select.replaceChildren(
    ...state.projects.map((p) => h("option", { value: projectKey(p) }, projectLabel(p))),
  );
  const workspaces = [...new Set(state.projects.map((p) => p.workspace))].sort();
  $("mw-workspaces").replaceChildren(...workspaces.map((w) => h("option", { value: w })));
  if (!state.projects.length) {
    state.project = null;
    return null;
  }
  let chosen = state.projects.find((p) => projectKey(p) === wanted);
  if (!chosen) chosen = state.projects.find((p) => p.unreviewed + p.flagged > 0) || state.projects[0];
  select.value = projectKey(chosen);
  const changed = !state.project || projectKey(state.project) !== projectKey(chosen);
  state.project = chosen;
  return changed;
}

function storedProject() {
  try {
    return window.localStorage.getItem(PROJECT_KEY);
  } catch {
    return null;
  }
}

function rememberProject(p) {
  try {
    window.localStorage.setItem(PROJECT_KEY, projectKey(p));
  } catch {
    // storage disabled: the default project is picked next time
  }
}

function refreshProjectsSoon() {
  window.clearTimeout(projectsTimer);
  projectsTimer = window.setTimeout(() => {
    loadProjects().catch(() => {}); // counts only; the next real request reports problems
  }, 800);
}

function chooseProject(key) {
  const p = state.projects.find((x) => projectKey(x) === key);
  if (!p) return;
  state.project = p;
  rememberProject(p);
  state.selected.clear();
  state.equivalence.clear();
  $("mw-ws-a").value = p.workspace;
  $("mw-publish-result").replaceChildren();
  $("mw-agreement").replaceChildren();
  loadQueue(0);
  loadMaps();
}

// -- the queue ----------------------------------------------------------------------------------

function filterValues() {
  const statuses = [...els.filters.querySelectorAll('input[name="status"]:checked')].map((i) => i.value);
  const number = (input) => (input.value.trim() === "" ? null : Number(input.value));
  return {
    status: statuses.length ? statuses : null,
    text: $("mw-text").value.trim() || null,
    min: number($("mw-min")),
    max: number($("mw-max")),
  };
}

/** Rows that no longer match the filter (decided here): the next page starts that much earlier. */
function leavingRows() {
  const f = filterValues();
  return state.items.filter(
    (m) =>
      (f.status && !f.status.includes(m.status)) ||
      (f.min !== null && (m.score ?? -1) < f.min) ||
      (f.max !== null && (m.score ?? 2) > f.max),
  ).length;
}

async function loadQueue(offset, { focus = false } = {}) {
  if (!state.project) return;
  const seq = ++state.loadSeq;
  const f = filterValues();
  els.pageInfo.textContent = "Loading…";
  els.queueTable.setAttribute("aria-busy", "true");
  try {
    const data = await gql(QUEUE_QUERY, {
      source: state.project.sourceSystem,
      target: state.project.targetSystem,
      workspace: state.project.workspace,
      status: f.status,
      text: f.text,
      min: Number.isFinite(f.min) ? f.min : null,
      max: Number.isFinite(f.max) ? f.max : null,
      first: PAGE_SIZE,
      after: offset > 0 ? String(offset) : null,
    });
    if (seq !== state.loadSeq) return;
    const page = data.mappings;
    state.offset = offset;
    state.items = page.items;
    state.total = page.total;
    state.hasNext = page.hasNextPage;
    state.cursor = page.items.length ? 0 : -1;
    renderQueue();
    renderDetail();
    if (focus) focusCursor();
  } catch (error) {
    if (seq !== state.loadSeq) return;
    if (isDenied(error)) {
      showAuth("denied", error);
      return;
    }
    els.pageInfo.textContent = "";
    showError("Could not load the queue", error);
  } finally {
    if (seq === state.loadSeq) els.queueTable.removeAttribute("aria-busy");
  }
}

function renderPageInfo() {
  const n = state.items.length;
  const range = n ? `${state.offset + 1}–${state.offset + n} of ${state.total}` : `0 of ${state.total}`;
  const selected = state.selected.size ? ` · ${state.selected.size} selected` : "";
  els.pageInfo.textContent = `${range}${selected}`;
  $("mw-prev").disabled = state.offset === 0;
  $("mw-next").disabled = !state.hasNext;
  $("mw-bulk").disabled = state.selected.size === 0;
}

function renderQueue() {
  const rows = state.items.map((m, i) => fillRow(h("tr", {}), m, i));
  if (!rows.length) {
    rows.push(
      h(
        "tr",
        { "data-testid": "queue-empty" },
        h("td", { colspan: 7, class: "muted" }, "Nothing to review with these filters."),
      ),
    );
  }
  els.queueBody.replaceChildren(...rows);
  renderPageInfo();
}

function rowAt(i) {
  return els.queueBody.querySelector(`tr[data-index="${i}"]`);
}

function matchesFilter(m) {
  const f = filterValues();
  return !f.status || f.status.includes(m.status);
}

function fillRow(tr, m, i) {
  const current = i === state.cursor;
  const selected = state.selected.has(m.id);
  const saving = (state.saving.get(m.id) || 0) > 0;
  const done = !matchesFilter(m);
  tr.className = ["mw-row", current ? "is-current" : "", selected ? "is-selected" : "", saving ? "is-saving" : "", done ? "is-done" : ""]
    .filter(Boolean)
    .join(" ");
  const attrs = {
    "data-testid": "queue-row",
    "data-index": i,
    "data-id": m.id,
    "data-code": m.sourceCode,
    "data-status": lower(m.status),
    "data-target-code": m.targetCode || "",
    tabindex: current ? "0" : "-1",
  };
  for (const [k, v] of Object.entries(attrs)) tr.setAttribute(k, String(v));
  if (current) tr.setAttribute("aria-current", "true");
  else tr.removeAttribute("aria-current");
  if (saving) tr.setAttribute("aria-busy", "true");
  else tr.removeAttribute("aria-busy");
  const hadFocus = tr.contains(document.activeElement) && document.activeElement !== tr;

  const checkbox = h("input", {
    type: "checkbox",
    "data-testid": "row-select",
    "aria-label": `Select ${m.sourceCode} for bulk approval`,
    checked: selected,
    onchange: (event) => setSelected(m.id, event.target.checked),
  });
  tr.replaceChildren(
    h("td", { class: "mw-sel" }, checkbox),
    h("td", { class: "mono", "data-testid": "row-code" }, m.sourceCode),
    h("td", { class: "mw-display", lang: langOf(m.sourceDisplay), "data-testid": "row-display" }, m.sourceDisplay || "—"),
    h("td", { class: "num" }, m.sourceFrequency ?? "—"),
    h(
      "td",
      { "data-testid": "row-target", class: "mw-target" },
      m.targetCode
        ? [h("span", { class: "mono" }, m.targetCode), " ", h("span", { class: "muted" }, m.targetDisplay || "")]
        : h("span", { class: "muted" }, "—"),
    ),
    h("td", { class: "num", "data-testid": "row-score" }, fmtScore(m.score)),
    h(
      "td",
      { class: "mw-status-cell" },
      statusBadge(m.status),
      done ? h("span", { class: "mw-done", title: "No longer matches the filter: leaves when the queue reloads" }, " ✓") : null,
      saving ? h("span", { class: "mw-saving" }, " saving…") : null,
    ),
  );
  tr.onclick = (event) => {
    if (event.target instanceof HTMLInputElement) return;
    setCursor(i, { focus: true });
  };
  if (hadFocus) checkbox.focus();
  return tr;
}

function refreshRow(i) {
  const tr = rowAt(i);
  if (tr && state.items[i]) fillRow(tr, state.items[i], i);
}

function current() {
  return state.cursor >= 0 ? state.items[state.cursor] : null;
}

function setCursor(i, { focus = false } = {}) {
  if (!state.items.length) return;
  const next = Math.max(0, Math.min(state.items.length - 1, i));
  const before = state.cursor;
  state.cursor = next;
  if (before !== next) {
    refreshRow(before);
    refreshRow(next);
    renderDetail();
  }
  if (focus) focusCursor();
}

function focusCursor() {
  const tr = rowAt(state.cursor);
  if (tr) {
    tr.focus({ preventScroll: true });
    tr.scrollIntoView({ block: "nearest" });
  } else {
    els.queueTable.focus();
  }
}

function move(delta) {
  if (!state.items.length) return;
  const target = state.cursor + delta;
  if (target >= state.items.length) {
    announce(state.hasNext ? "Last row of this page: n opens the next page." : "Last row of the queue.");
  } else if (target < 0) {
    announce(state.offset > 0 ? "First row of this page: p opens the previous page." : "First row of the queue.");
  }
  setCursor(target, { focus: true });
}

function setSelected(id, on) {
  if (on) state.selected.add(id);
  else state.selected.delete(id);
  const i = state.items.findIndex((m) => m.id === id);
  if (i >= 0) refreshRow(i);
  renderPageInfo();
}

function nextPage() {
  if (!state.hasNext) {
    announce("This is the last page.");
    return;
  }
  loadQueue(Math.max(0, state.offset + state.items.length - leavingRows()), { focus: true });
}

function prevPage() {
  if (state.offset === 0) {
    announce("This is the first page.");
    return;
  }
  loadQueue(Math.max(0, state.offset - PAGE_SIZE), { focus: true });
}

// -- saving -------------------------------------------------------------------------------------

function replaceMapping(m) {
  const i = state.items.findIndex((x) => x.id === m.id);
  if (i < 0) return;
  state.items[i] = m;
  refreshRow(i);
  if (i === state.cursor) renderDetail();
}

function busy(ids, delta) {
  for (const id of ids) {
    const n = (state.saving.get(id) || 0) + delta;
    if (n > 0) state.saving.set(id, n);
    else state.saving.delete(id);
    const i = state.items.findIndex((x) => x.id === id);
    if (i >= 0) refreshRow(i);
  }
}

/** Queue a mutation behind the ones already sent; `done(data)` runs with the answer. */
function enqueue(ids, run, done, failure) {
  busy(ids, +1);
  saveChain = saveChain.then(async () => {
    try {
      const data = await run();
      clearError();
      done(data);
      refreshProjectsSoon();
    } catch (error) {
      if (isDenied(error)) showAuth("denied", error);
      else showError(failure, error);
      announce(failure);
    } finally {
      busy(ids, -1);
    }
  });
  return saveChain;
}

function review(m, variables, describe) {
  return enqueue(
    [m.id],
    () => gql(REVIEW_MUTATION, { id: m.id, ...variables }),
    (data) => {
      const saved = data.reviewMapping;
      if (variables.equivalence) state.equivalence.delete(saved.id);
      replaceMapping(saved);
      announce(describe(saved));
      if (historyOpen() && current() && current().id === saved.id) loadHistory(saved.id);
    },
    `Could not save ${m.sourceCode}`,
  );
}

function equivalenceOf(m) {
  return state.equivalence.get(m.id) || m.equivalence || "EQUIVALENT";
}

function decide(key) {
  const m = current();
  if (!m) return;
  const { status, verb } = DECISIONS[key];
  const variables = { status };
  if (status === "APPROVED") variables.equivalence = equivalenceOf(m);
  review(m, variables, (saved) => {
    const target = saved.targetCode ? ` → ${saved.targetCode} ${saved.targetDisplay || ""}`.trimEnd() : "";
    const eq = status === "APPROVED" && saved.equivalence ? ` (${lower(saved.equivalence)})` : "";
    return `${verb} ${saved.sourceCode}${status === "APPROVED" ? target : ""}${eq}`;
  });
  move(1);
}

function chooseCandidate(n) {
  const m = current();
  if (!m) return;
  const candidate = m.candidates[n - 1];
  if (!candidate) {
    announce(`${m.sourceCode} has no candidate ${n}.`);
    return;
  }
  if (candidate.code === m.targetCode) {
    announce(`Candidate ${n} (${candidate.code}) is already the target of ${m.sourceCode}.`);
    return;
  }
  review(m, { targetCode: candidate.code }, (saved) => `${saved.sourceCode}: target ${saved.targetCode} ${saved.targetDisplay || ""}`.trimEnd());
}

function cycleEquivalence() {
  const m = current();
  if (!m) return;
  const now = equivalenceOf(m);
  const next = EQUIVALENCES[(EQUIVALENCES.indexOf(now) + 1) % EQUIVALENCES.length];
  setEquivalence(m, next);
}

function setEquivalence(m, value) {
  if (value === (m.equivalence || "EQUIVALENT")) state.equivalence.delete(m.id);
  else state.equivalence.set(m.id, value);
  renderDetail();
  announce(`Equivalence for ${m.sourceCode}: ${lower(value)} (a approves with it)`);
}

function bulkApprove() {
  const ids = state.items.filter((m) => state.selected.has(m.id)).map((m) => m.id);
  if (!ids.length) {
    announce("Nothing selected: x selects rows for a bulk approval.");
    return;
  }
  enqueue(
    ids,
    () => gql(BULK_MUTATION, { ids, status: "APPROVED", acceptTop: true }),
    (data) => {
      for (const m of data.bulkReviewMappings) {
        state.selected.delete(m.id);
        replaceMapping(m);
      }
      renderPageInfo();
      announce(`Approved ${data.bulkReviewMappings.length} mappings with their top candidate.`);
    },
    `Could not approve the ${ids.length} selected mappings`,
  );
}

function saveComment() {
  const m = current();
  const box = $("mw-comment");
  if (!m || !box) return;
  const text = box.value;
  if (text === (m.comment || "")) {
    announce(`The comment on ${m.sourceCode} is unchanged.`);
    focusCursor();
    return;
  }
  review(m, { comment: text }, (saved) => `Comment saved on ${saved.sourceCode}.`);
  focusCursor();
}

// -- detail -------------------------------------------------------------------------------------

function historyOpen() {
  const details = $("mw-history");
  return Boolean(details && details.open);
}

function candidateItem(m, c, n) {
  const chosen = c.code === m.targetCode;
  return h(
    "li",
    {
      class: `mw-cand${chosen ? " is-chosen" : ""}`,
      "data-testid": "candidate",
      "data-code": c.code,
      "data-rank": n,
      "aria-current": chosen ? "true" : null,
    },
    h("span", { class: "mw-key", "aria-hidden": "true" }, n <= 9 ? String(n) : ""),
    h(
      "div",
      { class: "mw-cand-main" },
      h(
        "div",
        { class: "mw-cand-title" },
        h("span", { class: "mw-cand-display", "data-testid": "candidate-display" }, c.display || c.code),
        " ",
        h("span", { class: "mono muted", "data-testid": "candidate-code" }, c.code),
        chosen ? h("span", { class: "mw-chosen-tag" }, "target") : null,
      ),
      h(
        "div",
        { class: "small muted" },
        h("span", { "data-testid": "candidate-method" }, c.method),
        c.rationale ? [" · ", h("span", { class: "mw-rationale", "data-testid": "candidate-rationale" }, c.rationale)] : null,
      ),
      c.features.length
        ? h(
            "ul",
            { class: "mw-features", "aria-label": "Evidence" },
            c.features.map((f) => h("li", {}, h("span", { class: "muted" }, f.name), " ", fmtScore(f.value))),
          )
        : null,
    ),
    h(
      "div",
      { class: "mw-cand-score", "data-testid": "candidate-score", title: "score" },
      h("span", { class: "mw-bar", "aria-hidden": "true", style: { "--score": Math.max(0, Math.min(1, c.score ?? 0)) } }),
      fmtScore(c.score),
    ),
    h(
      "button",
      {
        type: "button",
        class: "btn btn-quiet mw-choose",
        "aria-keyshortcuts": n <= 9 ? String(n) : null,
        "aria-label": `Choose candidate ${n}: ${c.display || ""} ${c.code}`.replace(/\s+/g, " "),
        disabled: chosen,
        onclick: () => {
          chooseCandidate(n);
        },
      },
      chosen ? "Chosen" : "Choose",
    ),
  );
}

function decisionButton(key, label) {
  return h(
    "button",
    { type: "button", class: `btn mw-decide-${key}`, "aria-keyshortcuts": key, "data-testid": `decide-${key}`, onclick: () => decide(key) },
    label,
    " ",
    h("kbd", { "aria-hidden": "true" }, key),
  );
}

function renderDetail() {
  const body = $("mw-detail-body");
  const m = current();
  const commentBox = $("mw-comment");
  const editing = commentBox && document.activeElement === commentBox && commentBox.dataset.id === (m && m.id);
  if (!m) {
    body.replaceChildren(h("p", { class: "state state-empty" }, "Nothing selected."));
    return;
  }
  if (editing) {
    // keep what is being typed: update everything around the comment box
    body.querySelector(".mw-detail-top").replaceWith(detailTop(m));
    return;
  }
  const wasOpen = historyOpen();
  const comment = h("textarea", {
    id: "mw-comment",
    class: "mw-comment",
    rows: 2,
    "data-testid": "comment",
    "data-id": m.id,
    "aria-keyshortcuts": "c",
    "aria-describedby": "mw-comment-hint",
    onkeydown: (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        saveComment();
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.target.value = current() ? current().comment || "" : "";
        announce("Comment not saved.");
        focusCursor();
      }
    },
  });
  comment.value = m.comment || "";
  const history = h(
    "details",
    { id: "mw-history", class: "mw-history", "data-testid": "history", open: wasOpen, ontoggle: () => historyOpen() && loadHistory(current() && current().id) },
    h("summary", { "aria-keyshortcuts": "h" }, "History"),
    h("div", { id: "mw-history-body" }, h("p", { class: "muted small" }, "Loading…")),
  );
  body.replaceChildren(
    detailTop(m),
    h(
      "div",
      { class: "mw-comment-wrap" },
      h("label", { for: "mw-comment" }, "Comment ", h("kbd", {}, "c")),
      comment,
      h(
        "div",
        { class: "mw-comment-bar" },
        h("span", { id: "mw-comment-hint", class: "muted small" }, "Enter saves, Shift+Enter adds a line, Esc leaves without saving"),
        h("button", { type: "button", class: "btn", "data-testid": "comment-save", onclick: saveComment }, "Save comment"),
      ),
    ),
    history,
  );
  if (wasOpen) loadHistorySoon(m.id);
}

function detailTop(m) {
  const eq = equivalenceOf(m);
  const unsaved = state.equivalence.has(m.id);
  const select = h(
    "select",
    {
      id: "mw-equivalence",
      "data-testid": "equivalence",
      "aria-keyshortcuts": "e",
      onchange: (event) => setEquivalence(m, event.target.value),
    },
    EQUIVALENCES.map((v) => h("option", { value: v, selected: v === eq }, lower(v))),
  );
  const targetInCandidates = m.candidates.some((c) => c.code === m.targetCode);
  return h(
    "div",
    { class: "mw-detail-top" },
    h(
      "div",
      { class: "mw-detail-head" },
      h(
        "p",
        { class: "mw-local" },
        h("span", { class: "mono mw-local-code", "data-testid": "detail-code" }, m.sourceCode),
        " ",
        h("span", { class: "mw-local-display", lang: langOf(m.sourceDisplay), "data-testid": "detail-display" }, m.sourceDisplay || "—"),
      ),
      h(
        "p",
        { class: "small muted mw-meta" },
        `${systemLabel(m.sourceSystem)} → ${systemLabel(m.targetSystem)}`,
        m.sourceFrequency !== null && m.sourceFrequency !== undefined ? ` · seen ${m.sourceFrequency}×` : "",
        " · ",
        statusBadge(m.status),
        m.equivalence ? ` ${lower(m.equivalence)}` : "",
        m.reviewer ? ` · by ${m.reviewer}` : "",
        m.reviewedAt ? ` ${fmtDateTime(m.reviewedAt)}` : "",
      ),
    ),
    m.flagReason
      ? h("p", { class: "mw-flag", role: "note", "data-testid": "flag-reason" }, h("strong", {}, "Flagged: "), m.flagReason)
      : null,
    h("h3", { class: "mw-h3" }, "Candidates"),
    m.candidates.length
      ? h("ol", { class: "mw-cands", "data-testid": "candidates" }, m.candidates.map((c, i) => candidateItem(m, c, i + 1)))
      : h("p", { class: "state state-empty", "data-testid": "no-candidates" }, "No candidates: reject, flag, or approve as unmatched."),
    m.targetCode && !targetInCandidates
      ? h(
          "p",
          { class: "small", "data-testid": "manual-target" },
          "Target (chosen by hand): ",
          h("span", { class: "mono" }, m.targetCode),
          " ",
          m.targetDisplay || "",
        )
      : null,
    m.comment ? h("p", { class: "small mw-saved-comment", "data-testid": "saved-comment" }, h("span", { class: "muted" }, "Comment: "), m.comment) : null,
    h(
      "div",
      { class: "mw-decide" },
      h("label", { for: "mw-equivalence" }, "Equivalence ", h("kbd", {}, "e")),
      select,
      unsaved ? h("span", { class: "mw-unsaved small", "data-testid": "equivalence-unsaved" }, "not saved: a approves with it") : null,
      h(
        "div",
        { class: "mw-decide-buttons" },
        decisionButton("a", "Approve"),
        decisionButton("r", "Reject"),
        decisionButton("f", "Flag"),
        decisionButton("u", "Unreviewed"),
      ),
    ),
  );
}

function loadHistorySoon(id) {
  window.clearTimeout(historyTimer);
  historyTimer = window.setTimeout(() => loadHistory(id), 150);
}

function describeChange(change) {
  let before = {};
  let after = {};
  try {
    before = change.before ? JSON.parse(change.before) : {};
    after = change.after ? JSON.parse(change.after) : {};
  } catch {
    return [];
  }
  const keys = Object.keys(after).filter((k) => !["reviewer", "reviewedAt", "updatedAt"].includes(k));
  return keys.map((k) => {
    const was = before[k] === undefined || before[k] === null ? "—" : String(before[k]);
    const now = after[k] === undefined || after[k] === null ? "—" : String(after[k]);
    const short = (s) => (s.length > 80 ? `${s.slice(0, 77)}…` : s);
    return h("li", {}, h("span", { class: "muted" }, k), " ", short(was), " → ", short(now));
  });
}

async function loadHistory(id) {
  if (!id) return;
  const seq = ++state.historySeq;
  try {
    const data = await gql(HISTORY_QUERY, { id });
    if (seq !== state.historySeq) return;
    const box = $("mw-history-body");
    if (!box || !current() || current().id !== id) return;
    const changes = data.mapping ? data.mapping.history : [];
    box.replaceChildren(
      changes.length
        ? h(
            "ol",
            { class: "mw-history-list" },
            changes.map((c) =>
              h(
                "li",
                { "data-testid": "history-entry", "data-action": c.action },
                h("div", {}, h("strong", {}, c.action), " ", h("span", { class: "muted small" }, `${fmtDateTime(c.at)} · ${c.by}`)),
                h("ul", { class: "mw-diff small" }, describeChange(c)),
                c.comment ? h("p", { class: "small" }, c.comment) : null,
              ),
            ),
          )
        : h("p", { class: "muted small" }, "No changes yet."),
    );
  } catch (error) {
    if (seq !== state.historySeq) return;
    const box = $("mw-history-body");
    if (box) box.replaceChildren(h("p", { class: "mw-error-inline" }, `Could not load the history: ${errorMessages(error).join("; ")}`));
  }
}

function toggleHistory() {
  const details = $("mw-history");
  if (details) details.open = !details.open;
}

// -- publishing and export ----------------------------------------------------------------------

async function publish(event) {
  event.preventDefault();
  const p = state.project;
  if (!p) return;
  const button = $("mw-publish");
  const result = $("mw-publish-result");
  button.disabled = true;
  result.replaceChildren(h("p", { class: "muted" }, "Publishing…"));
  try {
    const data = await gql(PUBLISH_MUTATION, {
      source: p.sourceSystem,
      target: p.targetSystem,
      workspace: p.workspace,
      name: $("mw-map-name").value.trim() || null,
    });
    const r = data.publishConceptMap;
    result.replaceChildren(
      h(
        "dl",
        { class: "mw-facts" },
        h("div", {}, h("dt", {}, "Map"), h("dd", { "data-testid": "publish-name", class: "mono" }, r.name)),
        h("div", {}, h("dt", {}, "Version"), h("dd", { "data-testid": "publish-version" }, r.version)),
        h("div", {}, h("dt", {}, "Elements"), h("dd", { "data-testid": "publish-elements" }, r.elements)),
        h("div", {}, h("dt", {}, "Links"), h("dd", { "data-testid": "publish-links" }, r.links)),
        h("div", {}, h("dt", {}, "Facts coded"), h("dd", { "data-testid": "publish-facts" }, r.factsCoded)),
      ),
      exportButtons(r.name, r.version),
    );
    announce(`Published ${r.name} version ${r.version}: ${r.elements} elements, ${r.factsCoded} facts coded.`);
    clearError();
    loadMaps();
  } catch (error) {
    result.replaceChildren();
    if (isDenied(error)) showAuth("denied", error);
    else showError("Could not publish", error);
    announce("Publishing failed.");
  } finally {
    button.disabled = false;
  }
}

function exportButtons(name, version) {
  return h(
    "div",
    { class: "mw-exports" },
    h(
      "button",
      { type: "button", class: "btn", "data-testid": "export-fhir", onclick: () => download(name, version, "FHIR") },
      "Export FHIR",
    ),
    h(
      "button",
      { type: "button", class: "btn", "data-testid": "export-sssom", onclick: () => download(name, version, "SSSOM") },
      "Export SSSOM",
    ),
  );
}

async function download(name, version, format) {
  try {
    const data = await gql(EXPORT_QUERY, { name, version, format });
    const fhir = format === "FHIR";
    const blob = new Blob([data.conceptMapExport], {
      type: fhir ? "application/fhir+json" : "text/tab-separated-values",
    });
    const url = URL.createObjectURL(blob);
    const safe = name.replace(/[^\w.-]+/g, "_");
    const link = h("a", { href: url, download: `${safe}-v${version}${fhir ? ".json" : ".sssom.tsv"}`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
    announce(`Exported ${name} version ${version} as ${fhir ? "FHIR ConceptMap JSON" : "SSSOM TSV"}.`);
  } catch (error) {
    showError(`Could not export ${name} version ${version}`, error);
  }
}

async function loadMaps() {
  const p = state.project;
  const box = $("mw-maps");
  if (!p) {
    box.replaceChildren();
    return;
  }
  try {
    const data = await gql(MAPS_QUERY, { source: p.sourceSystem });
    if (state.project !== p) return;
    const maps = data.conceptMaps.filter((c) => c.targetSystem === p.targetSystem);
    if (!maps.length) {
      box.replaceChildren(h("p", { class: "muted small" }, "Nothing published yet."));
      return;
    }
    box.replaceChildren(
      h(
        "table",
        { class: "grid mw-maps" },
        h("caption", { class: "sr-only" }, "Published concept map versions"),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Map", "Version", "Workspace", "Published", "Elements", "Export"].map((t) =>
              h("th", { scope: "col", class: t === "Elements" || t === "Version" ? "num" : null }, t),
            ),
          ),
        ),
        h(
          "tbody",
          {},
          maps.map((c) =>
            h(
              "tr",
              { "data-testid": "concept-map-row", "data-name": c.name, "data-version": c.version },
              h("td", { class: "mono" }, c.name, c.current ? h("span", { class: "mw-chosen-tag" }, "current") : null),
              h("td", { class: "num" }, c.version),
              h("td", {}, c.workspace || "—"),
              h("td", { class: "small" }, `${fmtDateTime(c.publishedAt)}${c.publishedBy ? ` · ${c.publishedBy}` : ""}`),
              h("td", { class: "num" }, c.elements),
              h("td", {}, exportButtons(c.name, c.version)),
            ),
          ),
        ),
      ),
    );
  } catch (error) {
    box.replaceChildren(h("p", { class: "mw-error-inline" }, errorMessages(error).join("; ")));
  }
}

// -- agreement ----------------------------------------------------------------------------------

async function agreement(event) {
  event.preventDefault();
  const p = state.project;
  const box = $("mw-agreement");
  const a = $("mw-ws-a").value.trim();
  const b = $("mw-ws-b").value.trim();
  if (!p || !a || !b) {
    box.replaceChildren(h("p", { class: "mw-error-inline" }, "Name two workspaces to compare."));
    return;
  }
  box.replaceChildren(h("p", { class: "muted" }, "Comparing…"));
  try {
    const data = await gql(AGREEMENT_QUERY, { source: p.sourceSystem, target: p.targetSystem, a, b });
    const r = data.mappingAgreement;
    box.replaceChildren(
      h(
        "dl",
        { class: "mw-facts" },
        h("div", {}, h("dt", {}, "Agreement"), h("dd", { "data-testid": "agreement-percent" }, `${(r.percent * 100).toFixed(1)} %`)),
        h("div", {}, h("dt", {}, "Cohen's κ"), h("dd", { "data-testid": "agreement-kappa" }, r.kappa === null ? "—" : r.kappa.toFixed(2))),
        h("div", {}, h("dt", {}, "Compared"), h("dd", { "data-testid": "agreement-compared" }, `${r.compared} of ${r.codes} codes`)),
        h("div", {}, h("dt", {}, "Agreed"), h("dd", {}, r.agreed)),
        h("div", {}, h("dt", {}, `Only ${a}`), h("dd", {}, r.onlyA)),
        h("div", {}, h("dt", {}, `Only ${b}`), h("dd", {}, r.onlyB)),
      ),
      r.disagreements.length
        ? h(
            "table",
            { class: "grid", "data-testid": "disagreements" },
            h("caption", { class: "mw-caption" }, `Disagreements (${r.disagreements.length})`),
            h(
              "thead",
              {},
              h("tr", {}, ["Local code", "Local display", a, b].map((t) => h("th", { scope: "col" }, t))),
            ),
            h(
              "tbody",
              {},
              r.disagreements.map((d) =>
                h(
                  "tr",
                  { "data-testid": "disagreement-row", "data-code": d.sourceCode },
                  h("td", { class: "mono" }, d.sourceCode),
                  h("td", { lang: langOf(d.sourceDisplay) }, d.sourceDisplay || "—"),
                  h("td", { class: "mono" }, d.decisionA),
                  h("td", { class: "mono" }, d.decisionB),
                ),
              ),
            ),
          )
        : h("p", { class: "muted small" }, "No disagreements."),
    );
  } catch (error) {
    box.replaceChildren(h("p", { class: "mw-error-inline", role: "alert" }, errorMessages(error).join("; ")));
  }
}

// -- keyboard -----------------------------------------------------------------------------------

const NOT_TYPING = new Set(["checkbox", "radio", "button", "submit", "reset", "range", "color", "file"]);

function isTyping(target) {
  if (!(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  return target instanceof HTMLInputElement && !NOT_TYPING.has(target.type);
}

function toggleHelp() {
  const dialog = $("mw-help");
  if (dialog.open) dialog.close();
  else dialog.showModal();
}

function onKey(event) {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  const dialog = $("mw-help");
  if (dialog.open) {
    if (event.key === "?") {
      event.preventDefault();
      dialog.close();
    }
    return; // Esc closes the dialog natively
  }
  if (isTyping(event.target) || els.workbench.hidden) return;
  const key = event.key;
  let handled = true;
  if (key === "j" || key === "ArrowDown") move(1);
  else if (key === "k" || key === "ArrowUp") move(-1);
  else if (/^[1-9]$/.test(key)) chooseCandidate(Number(key));
  else if (key in DECISIONS) decide(key);
  else if (key === "e") cycleEquivalence();
  else if (key === "c") {
    const box = $("mw-comment");
    if (box) box.focus();
    else handled = false;
  } else if (key === "x") {
    const m = current();
    if (m) {
      setSelected(m.id, !state.selected.has(m.id));
      announce(`${m.sourceCode} ${state.selected.has(m.id) ? "selected" : "unselected"} (${state.selected.size} selected).`);
    }
  } else if (key === "A") bulkApprove();
  else if (key === "/") {
    $("mw-text").focus();
    $("mw-text").select();
  } else if (key === "n") nextPage();
  else if (key === "p") prevPage();
  else if (key === "h") toggleHistory();
  else if (key === "?") toggleHelp();
  else handled = false;
  if (handled) event.preventDefault();
}

// -- start --------------------------------------------------------------------------------------

async function start() {
  els = {
    auth: $("mw-auth"),
    workbench: $("mw-workbench"),
    status: $("mw-status"),
    error: $("mw-error"),
    filters: $("mw-filters"),
    project: $("mw-project"),
    queueTable: $("mw-queue"),
    queueBody: $("mw-queue").querySelector("tbody"),
    pageInfo: $("mw-page-info"),
  };
  takeTokenFromFragment();

  document.addEventListener("keydown", onKey);
  $("mw-help-open").addEventListener("click", toggleHelp);
  els.project.addEventListener("change", () => chooseProject(els.project.value));
  els.filters.addEventListener("submit", (event) => {
    event.preventDefault();
    state.selected.clear();
    loadQueue(0, { focus: true });
  });
  for (const box of els.filters.querySelectorAll('input[name="status"]')) {
    box.addEventListener("change", () => loadQueue(0));
  }
  for (const id of ["mw-project", "mw-text", "mw-min", "mw-max"]) {
    $(id).addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        focusCursor();
      }
    });
  }
  $("mw-prev").addEventListener("click", prevPage);
  $("mw-next").addEventListener("click", nextPage);
  $("mw-bulk").addEventListener("click", bulkApprove);
  $("mw-publish-form").addEventListener("submit", publish);
  $("mw-agree-form").addEventListener("submit", agreement);
  $("mw-token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("mw-token-input").value.trim();
    if (!value) return;
    storeToken(value);
    $("mw-token-input").value = "";
    boot();
  });
  const skip = document.querySelector(".skip-link");
  if (skip) {
    skip.addEventListener("click", (event) => {
      event.preventDefault();
      focusCursor();
    });
  }
  await boot();
}

async function boot() {
  clearError();
  if (!readToken()) {
    showAuth("missing");
    return;
  }
  announce("Loading projects…");
  try {
    state.project = null;
    await loadProjects({ keep: false });
  } catch (error) {
    if (isDenied(error)) showAuth("denied", error);
    else {
      els.auth.hidden = true;
      showError("Could not load the mapping projects", error);
      announce("");
    }
    return;
  }
  els.auth.hidden = true;
  els.workbench.hidden = false;
  if (!state.project) {
    announce("");
    els.queueBody.replaceChildren(
      h(
        "tr",
        { "data-testid": "queue-empty" },
        h("td", { colspan: 7, class: "muted" }, "No mapping projects yet: `medshadow mapping suggest` (or the suggestMappings mutation) creates one."),
      ),
    );
    return;
  }
  announce(`${state.projects.length} mapping project${state.projects.length === 1 ? "" : "s"}. Press ? for the keys.`);
  $("mw-ws-a").value = state.project.workspace;
  await loadQueue(0, { focus: true });
  loadMaps();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
