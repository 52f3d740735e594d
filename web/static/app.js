// medshadow web UI: one ES module, no build step.
//
// The core (gql, h, the hash router) is exported so later pages (consent, terminologist queue,
// shadow dashboard) can live in their own modules:
//
//   import { route, addNav, gql, h } from "./app.js";
//   addNav("#/consent", "Consent");
//   route(/^#\/consent$/, async (main, ctx) => { ... });
//
// and be listed as another <script type="module"> in index.html. Rules for every page: data goes
// into the DOM only as text (h() / textContent, never innerHTML), and user input reaches the
// server only as GraphQL variables, never spliced into a query string.

// The GraphQL client and h() live in client.js (side-effect free, shared with the standalone
// pages); re-exported here for modules that import the core from app.js.
import { gql, GraphQLRequestError, h } from "./client.js";
import { shadowLink } from "./shadow.js";
import { medsSummary } from "./meds.js";

export { gql, GraphQLRequestError, h };

export function isAbort(error) {
  return error && error.name === "AbortError";
}

// -- DOM ----------------------------------------------------------------------------------------

export function stateBox(kind, testid, title, ...detail) {
  return h(
    "div",
    { class: `state state-${kind}`, "data-testid": testid, role: kind === "error" ? "alert" : "status" },
    h("strong", { class: "state-title" }, title),
    detail.length ? h("div", { class: "state-detail" }, ...detail) : null,
  );
}

export function errorMessages(error) {
  if (error instanceof GraphQLRequestError) return error.messages;
  return [error && error.message ? error.message : String(error)];
}

export function errorBox(testid, title, error) {
  return stateBox("error", testid, title, h("ul", {}, errorMessages(error).map((m) => h("li", {}, m))));
}

function errorState(testid, title, error) {
  return stateBox("error", testid, title, h("ul", {}, errorMessages(error).map((m) => h("li", {}, m))));
}

// -- formatting ---------------------------------------------------------------------------------

const SYSTEMS = {
  "http://snomed.info/sct": "SNOMED CT",
  "http://loinc.org": "LOINC",
  "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
  "http://hl7.org/fhir/sid/cvx": "CVX",
  "http://hl7.org/fhir/sid/icd-10": "ICD-10",
  "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
  "http://unitsofmeasure.org": "UCUM",
};

export function systemLabel(system) {
  return SYSTEMS[system] || system || "";
}

export function codeTitle(code) {
  if (!code) return null;
  const label = systemLabel(code.system);
  const full = label !== code.system && code.system ? ` (${code.system})` : "";
  return `${label} ${code.code}${full}`.trim();
}

/** The display text of a code with "system code" in the tooltip. */
export function codeText(code, fallback = "—") {
  if (!code) return h("span", { class: "muted" }, fallback);
  return h(
    "span",
    { class: "code", title: codeTitle(code), "data-code": code.code },
    code.display || code.code,
  );
}

export function fmtDate(iso) {
  if (!iso) return "";
  return String(iso).slice(0, 10);
}

export function dateCell(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: iso, title: iso }, fmtDate(iso));
}

export function fmtDateTime(iso) {
  if (!iso) return "";
  const s = String(iso);
  return s.length > 10 ? `${s.slice(0, 10)} ${s.slice(11, 16)}` : s;
}

export function dateTimeCell(iso, fallback = "—") {
  if (!iso) return h("span", { class: "muted" }, fallback);
  return h("time", { datetime: iso, title: iso }, fmtDateTime(iso));
}

function fmtNumber(value) {
  if (value === null || value === undefined) return "";
  if (Number.isInteger(value)) return String(value);
  return String(Number(value.toFixed(Math.abs(value) < 10 ? 2 : 1)));
}

function ageFrom(birthDate) {
  if (!birthDate) return null;
  const [y, m, d] = birthDate.split("-").map(Number);
  const now = new Date();
  let age = now.getFullYear() - y;
  if (now.getMonth() + 1 < m || (now.getMonth() + 1 === m && now.getDate() < d)) age -= 1;
  return Number.isFinite(age) ? age : null;
}

function humanize(value) {
  if (!value) return "";
  return String(value).replace(/[-_]/g, " ").replace(/([a-z])([A-Z])/g, "$1 $2");
}

// -- domains: a stable colour per source -------------------------------------------------------

function hash32(text) {
  let hash = 0x811c9dc5; // FNV-1a
  for (let i = 0; i < text.length; i += 1) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** Hue derived from the domain id only, so a clinic has the same colour on every page. */
export function domainHue(domainId) {
  return hash32(String(domainId)) % 360;
}

export function sourceBadge(source) {
  // Names are not unique (two clinics may share one): the tooltip and colour use the domain id.
  const title = [
    `${source.domain} (${source.domainKind ? `${source.domainKind} ` : ""}${source.domainId})`,
    source.recordId ? `record ${source.recordId}` : null,
  ]
    .filter(Boolean)
    .join(" · ");
  return h(
    "span",
    {
      class: "badge",
      style: { "--hue": domainHue(source.domainId) },
      title,
      "data-testid": "source-badge",
      "data-domain": source.domain,
      "data-domain-id": source.domainId,
    },
    h("span", { class: "badge-label" }, source.domain),
  );
}

// -- router -------------------------------------------------------------------------------------

const routes = [];
let navigation = null; // AbortController of the page on screen
let started = false;

/** Register a page: `pattern` is matched against the hash path (without `?query`). */
export function route(pattern, render) {
  routes.push({ pattern, render });
  if (started && pattern.test(hashParts().path)) dispatch();
}

/** Add a link to the top navigation. */
export function addNav(href, label) {
  const nav = document.getElementById("topnav");
  if (nav) nav.append(h("a", { href, "data-testid": `nav-${label.toLowerCase().replace(/\W+/g, "-")}` }, label));
}

function hashParts() {
  const hash = location.hash || "#/";
  const at = hash.indexOf("?");
  return {
    path: at < 0 ? hash : hash.slice(0, at),
    query: new URLSearchParams(at < 0 ? "" : hash.slice(at + 1)),
  };
}

function safeDecode(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** Replace the query part of the current hash without a navigation (keeps back/reload state). */
export function setHashQuery(params) {
  const { path } = hashParts();
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) search.set(k, v);
  const qs = search.toString();
  history.replaceState(history.state, "", qs ? `${path}?${qs}` : path);
}

async function dispatch() {
  const { path, query } = hashParts();
  if (navigation) navigation.abort();
  navigation = new AbortController();
  const { signal } = navigation;
  const main = document.getElementById("main");
  main.replaceChildren();
  main.removeAttribute("aria-busy");

  for (const link of document.querySelectorAll("#topnav a")) {
    const target = link.getAttribute("href");
    const current = target === "#/" ? path === "#/" || path === "#" || path.startsWith("#/patient/") : path.startsWith(target);
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }

  const match = routes.map((r) => ({ r, m: path.match(r.pattern) })).find((x) => x.m);
  if (!match) {
    document.title = "Not found · medshadow";
    main.append(
      stateBox("empty", "route-not-found", "Page not found", "There is no page at this address. ", h("a", { href: "#/" }, "Go to patient search")),
    );
    return;
  }
  try {
    await match.r.render(main, { params: match.m.slice(1).map(safeDecode), query, signal });
  } catch (error) {
    if (isAbort(error) || signal.aborted) return;
    main.replaceChildren(errorState("page-error", "Something went wrong", error));
  }
}

function start() {
  if (started) return;
  started = true;
  window.addEventListener("hashchange", dispatch);
  const skip = document.querySelector(".skip-link");
  if (skip) {
    skip.addEventListener("click", (event) => {
      event.preventDefault(); // "#main" would be taken for a route
      document.getElementById("main").focus();
    });
  }
  dispatch();
}

// -- page: patient search -----------------------------------------------------------------------

const PATIENTS_QUERY = `
query Patients($q: String, $first: Int!, $after: String) {
  patients(search: $q, first: $first, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { id name gender birthDate nationalId domains { name } } }
  }
}`;

const PAGE_SIZE = 20;
const DEBOUNCE_MS = 250;

export function patientHref(id) {
  return `#/patient/${encodeURIComponent(id)}`;
}

/**
 * A page about one patient (digital shadow, medication review): runs `query` with the route's id
 * and handles the states every such page has — loading, failure, merged (follows `hrefOf` of the
 * surviving id), not found, access denied. Resolves to `{ result, back }` (the Patient and the
 * back link) when there is a patient to draw, or null when a state was shown instead.
 */
export async function loadPatientPage(main, ctx, { query, view, loading, failed, prefix, hrefOf }) {
  const [id] = ctx.params;
  document.title = `${view} · medshadow`;
  const back = h("a", { href: patientHref(id), class: "back", "data-testid": `${prefix}-back` }, "← Patient record");
  main.setAttribute("aria-busy", "true");
  main.append(back, stateBox("loading", `${prefix}-loading`, loading));
  let data;
  try {
    data = await gql(query, { id }, { signal: ctx.signal });
  } catch (error) {
    if (isAbort(error) || ctx.signal.aborted) return null;
    main.removeAttribute("aria-busy");
    main.replaceChildren(back, errorBox(`${prefix}-error`, failed, error));
    return null;
  }
  if (ctx.signal.aborted) return null;
  main.removeAttribute("aria-busy");
  const result = data.patient;
  if (result.__typename === "PatientMerged") {
    location.replace(hrefOf(result.mergedInto));
    return null;
  }
  if (result.__typename === "PatientNotFound") {
    document.title = "Patient not found · medshadow";
    main.replaceChildren(back, stateBox("empty", "patient-not-found", "Patient not found", `No patient with id “${id}” is visible to you.`));
    return null;
  }
  if (result.__typename === "AccessDenied") {
    document.title = "Access denied · medshadow";
    main.replaceChildren(back, stateBox("error", "access-denied", "Access denied", `You may not open the record “${id}”: ${result.message}.`));
    return null;
  }
  document.title = `${result.name || "Patient"} · ${view.toLowerCase()} · medshadow`;
  return { result, back };
}

function renderSearch(main, { query, signal }) {
  document.title = "Patients · medshadow";
  const initial = query.get("q") || "";

  const input = h("input", {
    type: "search",
    id: "patient-search",
    class: "search-input",
    placeholder: "Name or national id — Enter opens the first match",
    autocomplete: "off",
    spellcheck: "false",
    value: initial,
    "data-testid": "search-input",
    "aria-describedby": "search-status",
  });
  const status = h("span", { id: "search-status", class: "muted", "data-testid": "search-status", role: "status" });
  const tbody = h("tbody", { "data-testid": "patient-results" });
  const table = h(
    "table",
    { class: "grid grid-clickable", hidden: true },
    h("caption", { class: "sr-only" }, "Patients"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Name"),
        h("th", { scope: "col" }, "Gender"),
        h("th", { scope: "col" }, "Birth date"),
        h("th", { scope: "col" }, "National id"),
        h("th", { scope: "col", class: "num" }, "Domains"),
      ),
    ),
    tbody,
  );
  const messages = h("div", { class: "messages" });
  const more = h("button", { type: "button", class: "btn", hidden: true, "data-testid": "load-more" }, "Load more");

  main.append(
    h(
      "section",
      { class: "page page-search" },
      h(
        "div",
        { class: "page-head" },
        h("h1", {}, "Patients"),
        status,
      ),
      h(
        "div",
        { class: "search-bar" },
        h("label", { for: "patient-search", class: "sr-only" }, "Search patients"),
        input,
      ),
      messages,
      h("div", { class: "table-wrap" }, table),
      h("div", { class: "more-bar" }, more),
    ),
  );

  let seq = 0;
  let timer = null;
  let endCursor = null;
  let results = [];
  let lastQuery = null; // the query whose results are on screen (or being fetched)
  let inflight = null;

  const open = (id) => {
    location.hash = patientHref(id);
  };

  const row = (p) => {
    const names = p.domains.map((d) => d.name);
    return h(
      "tr",
      {
        tabindex: "0",
        "data-testid": "patient-row",
        "data-id": p.id,
        onclick: (event) => {
          if (event.target.closest("a")) return; // the link navigates by itself
          open(p.id);
        },
        onkeydown: (event) => {
          if (event.key === "Enter" && event.target === event.currentTarget) open(p.id);
        },
      },
      h("td", { class: "name" }, h("a", { href: patientHref(p.id), tabindex: "-1" }, p.name || "(no name)")),
      h("td", {}, humanize(p.gender) || "—"),
      h("td", {}, p.birthDate ? h("time", { datetime: p.birthDate }, p.birthDate) : "—"),
      h("td", { class: "mono" }, p.nationalId || "—"),
      h(
        "td",
        { class: "num" },
        h(
          "span",
          { class: names.length > 1 ? "pill pill-multi" : "pill", title: names.join(", "), "data-testid": "domain-count" },
          String(names.length),
        ),
      ),
    );
  };

  async function run(q, append) {
    const my = ++seq;
    lastQuery = q;
    main.setAttribute("aria-busy", "true");
    status.textContent = append ? "Loading more…" : "Searching…";
    more.disabled = true;
    const variables = { q: q || null, first: PAGE_SIZE, after: append ? endCursor : null };
    let data;
    try {
      data = await gql(PATIENTS_QUERY, variables, { signal });
    } catch (error) {
      if (isAbort(error) || my !== seq) return;
      main.removeAttribute("aria-busy");
      status.textContent = "";
      more.disabled = false;
      messages.replaceChildren(errorState("search-error", "Could not load patients", error));
      if (!append) {
        results = [];
        tbody.replaceChildren();
        table.hidden = true;
        more.hidden = true;
      }
      return;
    }
    if (my !== seq) return;
    main.removeAttribute("aria-busy");
    const conn = data.patients;
    const nodes = conn.edges.map((e) => e.node);
    results = append ? results.concat(nodes) : nodes;
    endCursor = conn.pageInfo.endCursor;
    if (append) tbody.append(...nodes.map(row));
    else tbody.replaceChildren(...nodes.map(row));
    table.hidden = results.length === 0;
    more.hidden = !conn.pageInfo.hasNextPage;
    more.disabled = false;
    const total = conn.totalCount ?? results.length;
    status.textContent =
      results.length === 0
        ? ""
        : `${results.length < total ? `${results.length} of ` : ""}${total} patient${total === 1 ? "" : "s"}`;
    if (results.length === 0) {
      messages.replaceChildren(
        q
          ? stateBox("empty", "search-empty", "No matching patients", `Nothing matches “${q}”. Try fewer letters or a national id.`)
          : stateBox("empty", "search-empty", "No patients yet", "Load data with “medshadow load” or “medshadow demo”."),
      );
    } else {
      messages.replaceChildren();
    }
  }

  function search(q) {
    inflight = run(q, false);
    return inflight;
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    const q = input.value.trim();
    setHashQuery({ q });
    timer = setTimeout(() => {
      if (q !== lastQuery) search(q);
    }, DEBOUNCE_MS);
  });
  input.addEventListener("keydown", async (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      clearTimeout(timer);
      const q = input.value.trim();
      if (q !== lastQuery) await search(q);
      else if (inflight) await inflight;
      if (signal.aborted) return;
      if (results.length > 0) open(results[0].id);
    } else if (event.key === "ArrowDown" && tbody.firstElementChild) {
      event.preventDefault();
      tbody.firstElementChild.focus();
    }
  });
  tbody.addEventListener("keydown", (event) => {
    const tr = event.target.closest("tr");
    if (!tr) return;
    if (event.key === "ArrowDown" && tr.nextElementSibling) {
      event.preventDefault();
      tr.nextElementSibling.focus();
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      (tr.previousElementSibling || input).focus();
    }
  });
  more.addEventListener("click", () => {
    inflight = run(lastQuery, true);
  });

  input.focus();
  return search(initial);
}

// -- page: patient record -----------------------------------------------------------------------

const FRAGMENTS = {
  code: `fragment CodeF on Code { system code display }`,
  source: `fragment SourceF on Source { domain domainId domainKind recordId }`,
  fact: `fragment FactF on Fact { id date status code { ...CodeF } source { ...SourceF } }`,
  obs: `fragment ObsPageF on ObservationConnection {
  pageInfo { hasNextPage endCursor }
  edges { node { ...FactF category value unit valueString
    components { code { ...CodeF } value unit valueString } } }
}`,
  timeline: `fragment TimelinePageF on TimelineEntryConnection {
  pageInfo { hasNextPage endCursor }
  edges { node { id kind date code { ...CodeF } source { ...SourceF } } }
}`,
};

const RECORD_QUERY = `
query PatientRecord($id: ID!, $first: Int!) {
  patient(id: $id) {
    __typename
    ... on PatientNotFound { message }
    ... on PatientMerged { mergedInto }
    ... on AccessDenied { message }
    ... on Patient {
      id name family given gender birthDate nationalId
      domains { id name kind recordId mrn facts lastUpdated
        kinds { kind count }
        link { method probability linkedBy evidence { comparison level } } }
      conditions { ...FactF clinicalStatus verificationStatus end }
      medications { ...FactF intent dosage }
      allergies { ...FactF type category criticality clinicalStatus }
      immunizations { ...FactF }
      procedures { ...FactF }
      encounters { ...FactF encounterClass end reason }
      documents { ...FactF contentType text }
      observations(first: $first) { ...ObsPageF }
      timeline(first: $first) { ...TimelinePageF }
    }
  }
}
${FRAGMENTS.code}
${FRAGMENTS.source}
${FRAGMENTS.fact}
${FRAGMENTS.obs}
${FRAGMENTS.timeline}`;

const OBSERVATIONS_QUERY = `
query PatientObservations($id: ID!, $code: String, $first: Int!, $after: String) {
  patient(id: $id) {
    __typename
    ... on PatientNotFound { message }
    ... on AccessDenied { message }
    ... on Patient { observations(code: $code, first: $first, after: $after) { ...ObsPageF } }
  }
}
${FRAGMENTS.code}
${FRAGMENTS.source}
${FRAGMENTS.fact}
${FRAGMENTS.obs}`;

const TIMELINE_QUERY = `
query PatientTimeline($id: ID!, $first: Int!, $after: String) {
  patient(id: $id) {
    __typename
    ... on PatientNotFound { message }
    ... on AccessDenied { message }
    ... on Patient { timeline(first: $first, after: $after) { ...TimelinePageF } }
  }
}
${FRAGMENTS.code}
${FRAGMENTS.source}
${FRAGMENTS.timeline}`;

const RECORD_PAGE = 50;

const BP_SYSTOLIC = "8480-6";
const BP_DIASTOLIC = "8462-4";

function valueText(value, unit, valueString) {
  if (value !== null && value !== undefined) return `${fmtNumber(value)}${unit ? ` ${unit}` : ""}`;
  return valueString || "";
}

/** "120/80 mmHg" for blood pressure, "value unit" for simple results, a list for other panels. */
export function observationValue(o) {
  const simple = valueText(o.value, o.unit, o.valueString);
  if (simple) return h("span", { class: "value" }, simple);
  const comps = o.components || [];
  if (comps.length === 0) return h("span", { class: "muted" }, "—");
  const sys = comps.find((c) => c.code && c.code.code === BP_SYSTOLIC);
  const dia = comps.find((c) => c.code && c.code.code === BP_DIASTOLIC);
  if (sys && dia && sys.value != null && dia.value != null) {
    const unit = sys.unit || dia.unit;
    return h(
      "span",
      { class: "value", title: `${sys.code.display || "systolic"} / ${dia.code.display || "diastolic"}` },
      `${fmtNumber(sys.value)}/${fmtNumber(dia.value)}${unit ? ` ${unit}` : ""}`,
    );
  }
  return h(
    "ul",
    { class: "components" },
    comps.map((c) =>
      h(
        "li",
        {},
        c.code ? h("span", { class: "code", title: codeTitle(c.code) }, c.code.display || c.code.code) : null,
        c.code ? ": " : null,
        h("span", { class: "value" }, valueText(c.value, c.unit, c.valueString) || "—"),
      ),
    ),
  );
}

function statusText(...values) {
  const v = values.find((x) => x);
  return v ? h("span", { class: `status status-${String(v).toLowerCase().replace(/\W+/g, "-")}` }, humanize(v)) : h("span", { class: "muted" }, "—");
}

function factRow(fact, cells) {
  return h(
    "tr",
    { "data-testid": "fact-row", "data-id": fact.id },
    cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : h("td", {}, c))),
    h("td", { class: "src" }, sourceBadge(fact.source)),
  );
}

function factTable(testid, headers, rows, emptyText) {
  if (rows.length === 0) return stateBox("empty", `${testid}-empty`, emptyText);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "grid", "data-testid": `${testid}-table` },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          headers.map(([label, cls]) => h("th", { scope: "col", class: cls || null }, label)),
          h("th", { scope: "col", class: "src" }, "Source"),
        ),
      ),
      h("tbody", {}, rows),
    ),
  );
}

const OPT = "opt"; // columns that are dropped on narrow screens

const SECTIONS = [
  {
    key: "conditions",
    label: "Conditions",
    count: (p) => p.conditions.length,
    render: (p) =>
      factTable(
        "conditions",
        [["Onset", "date"], ["Condition"], ["Clinical status"], ["Verification", OPT], ["Resolved", `date ${OPT}`]],
        p.conditions.map((c) =>
          factRow(c, [dateCell(c.date), codeText(c.code), statusText(c.clinicalStatus, c.status), h("td", { class: OPT }, humanize(c.verificationStatus) || "—"), h("td", { class: OPT }, dateCell(c.end))]),
        ),
        "No conditions recorded.",
      ),
  },
  {
    key: "medications",
    label: "Medications",
    count: (p) => p.medications.length,
    render: (p) =>
      factTable(
        "medications",
        [["Date", "date"], ["Medication"], ["Status"], ["Intent", OPT], ["Dosage"]],
        p.medications.map((m) =>
          factRow(m, [dateCell(m.date), codeText(m.code), statusText(m.status), h("td", { class: OPT }, humanize(m.intent) || "—"), m.dosage || "—"]),
        ),
        "No medications recorded.",
      ),
  },
  {
    key: "allergies",
    label: "Allergies",
    count: (p) => p.allergies.length,
    render: (p) =>
      factTable(
        "allergies",
        [["Recorded", "date"], ["Substance"], ["Type", OPT], ["Category", OPT], ["Criticality"], ["Status"]],
        p.allergies.map((a) =>
          factRow(a, [
            dateCell(a.date),
            codeText(a.code),
            h("td", { class: OPT }, humanize(a.type) || "—"),
            h("td", { class: OPT }, a.category.map(humanize).join(", ") || "—"),
            a.criticality ? h("span", { class: `crit crit-${a.criticality}` }, humanize(a.criticality)) : "—",
            statusText(a.clinicalStatus, a.status),
          ]),
        ),
        "No known allergies recorded.",
      ),
  },
  {
    key: "immunizations",
    label: "Immunizations",
    count: (p) => p.immunizations.length,
    render: (p) =>
      factTable(
        "immunizations",
        [["Date", "date"], ["Vaccine"], ["Status"]],
        p.immunizations.map((i) => factRow(i, [dateCell(i.date), codeText(i.code), statusText(i.status)])),
        "No immunizations recorded.",
      ),
  },
  {
    key: "procedures",
    label: "Procedures",
    count: (p) => p.procedures.length,
    render: (p) =>
      factTable(
        "procedures",
        [["Date", "date"], ["Procedure"], ["Status"]],
        p.procedures.map((x) => factRow(x, [dateCell(x.date), codeText(x.code), statusText(x.status)])),
        "No procedures recorded.",
      ),
  },
  {
    key: "encounters",
    label: "Encounters",
    count: (p) => p.encounters.length,
    render: (p) =>
      factTable(
        "encounters",
        [["Start", "date"], ["Encounter"], ["Class"], ["Reason", OPT], ["End", `date ${OPT}`]],
        p.encounters.map((e) =>
          factRow(e, [
            dateCell(e.date),
            codeText(e.code),
            humanize(e.encounterClass) || "—",
            h("td", { class: OPT }, e.reason || "—"),
            h("td", { class: OPT }, e.end ? h("time", { datetime: e.end, title: e.end }, fmtDateTime(e.end)) : "—"),
          ]),
        ),
        "No encounters recorded.",
      ),
  },
  {
    key: "observations",
    label: "Observations",
    count: (p) => `${p.observations.edges.length}${p.observations.pageInfo.hasNextPage ? "+" : ""}`,
    render: (p, ctx) => observationsPanel(p, ctx),
  },
  {
    key: "documents",
    label: "Documents",
    count: (p) => p.documents.length,
    render: (p) =>
      factTable(
        "documents",
        [["Date", "date"], ["Document"]],
        p.documents.map((d) =>
          factRow(d, [
            dateCell(d.date),
            h(
              "td",
              { class: "doc" },
              h(
                "details",
                { "data-testid": "document" },
                h("summary", {}, codeText(d.code, "Note"), d.contentType ? h("span", { class: "muted small" }, ` ${d.contentType}`) : null),
                d.text ? h("pre", { class: "note" }, d.text) : h("p", { class: "muted" }, "No text in this document."),
              ),
            ),
          ]),
        ),
        "No documents recorded.",
      ),
  },
  {
    key: "timeline",
    label: "Timeline",
    count: (p) => `${p.timeline.edges.length}${p.timeline.pageInfo.hasNextPage ? "+" : ""}`,
    render: (p, ctx) => timelinePanel(p, ctx),
  },
];

function observationRows(conn) {
  return conn.edges.map(({ node: o }) =>
    factRow(o, [
      h("td", { class: "date" }, dateCell(o.date)),
      codeText(o.code),
      h("td", { class: "value-cell" }, observationValue(o)),
      h("td", { class: OPT }, humanize(o.category) || "—"),
    ]),
  );
}

/** Fetch one more page of a connection for the record on screen; null if the page was left. */
async function fetchPage(query, variables, field, ctx) {
  const data = await gql(query, variables, { signal: ctx.signal });
  const result = data.patient;
  if (result.__typename !== "Patient") throw new Error(result.message || "patient not available");
  return result[field];
}

function pagedPanel({ testid, headers, first, rowsOf, load, filter }) {
  const tbody = h("tbody", {}, rowsOf(first));
  const table = h(
    "table",
    { class: "grid", "data-testid": `${testid}-table` },
    h(
      "thead",
      {},
      h("tr", {}, headers.map(([label, cls]) => h("th", { scope: "col", class: cls || null }, label)), h("th", { scope: "col", class: "src" }, "Source")),
    ),
    tbody,
  );
  const empty = h("div", {});
  const messages = h("div", { class: "messages" });
  const more = h("button", { type: "button", class: "btn", "data-testid": `${testid}-more` }, "More");
  const shown = h("span", { class: "muted", role: "status" });
  let cursor = null;
  let busy = false;

  const show = (conn, append) => {
    if (append) tbody.append(...rowsOf(conn));
    else tbody.replaceChildren(...rowsOf(conn));
    cursor = conn.pageInfo.endCursor;
    more.hidden = !conn.pageInfo.hasNextPage;
    const n = tbody.children.length;
    table.hidden = n === 0;
    empty.replaceChildren(n === 0 ? stateBox("empty", `${testid}-empty`, filter && filter.value() ? "Nothing matches this filter." : "Nothing recorded.") : "");
    shown.textContent = n ? `${n} shown${conn.pageInfo.hasNextPage ? ", more available" : ""}` : "";
  };

  const fetchInto = async (append) => {
    if (busy) return;
    busy = true;
    more.disabled = true;
    messages.replaceChildren();
    try {
      show(await load(append ? cursor : null), append);
    } catch (error) {
      if (!isAbort(error)) messages.replaceChildren(errorState(`${testid}-error`, "Could not load", error));
    } finally {
      busy = false;
      more.disabled = false;
    }
  };
  more.addEventListener("click", () => fetchInto(true));
  show(first, false);
  return {
    node: h("div", { class: "paged" }, messages, empty, h("div", { class: "table-wrap" }, table), h("div", { class: "more-bar" }, more, shown)),
    reload: () => fetchInto(false),
  };
}

function observationsPanel(p, ctx) {
  const input = h("input", {
    type: "search",
    id: "obs-code",
    class: "filter-input",
    placeholder: "Code, e.g. 8480-6",
    autocomplete: "off",
    spellcheck: "false",
    "data-testid": "obs-filter",
  });
  let code = null;
  const panel = pagedPanel({
    testid: "obs",
    headers: [["Date", "date"], ["Observation"], ["Value"], ["Category", OPT]],
    first: p.observations,
    rowsOf: observationRows,
    filter: { value: () => code },
    load: (after) =>
      fetchPage(OBSERVATIONS_QUERY, { id: p.id, code, first: RECORD_PAGE, after }, "observations", ctx),
  });
  const form = h(
    "form",
    {
      class: "filter-bar",
      role: "search",
      onsubmit: (event) => {
        event.preventDefault();
        code = input.value.trim() || null;
        panel.reload();
      },
    },
    h("label", { for: "obs-code" }, "Filter by code"),
    input,
    h("button", { type: "submit", class: "btn" }, "Filter"),
    h(
      "button",
      {
        type: "button",
        class: "btn btn-quiet",
        onclick: () => {
          if (!input.value && code === null) return;
          input.value = "";
          code = null;
          panel.reload();
        },
      },
      "Clear",
    ),
  );
  return h("div", {}, form, panel.node);
}

function timelinePanel(p, ctx) {
  return pagedPanel({
    testid: "timeline",
    headers: [["Date", "date"], ["Kind"], ["What"]],
    first: p.timeline,
    rowsOf: (conn) =>
      conn.edges.map(({ node: t }) =>
        factRow(t, [
          h("td", { class: "date" }, h("time", { datetime: t.date, title: t.date }, fmtDateTime(t.date))),
          h("span", { class: "kind" }, humanize(t.kind)),
          codeText(t.code),
        ]),
      ),
    load: (after) => fetchPage(TIMELINE_QUERY, { id: p.id, first: RECORD_PAGE, after }, "timeline", ctx),
  }).node;
}

const LINK_METHODS = {
  rule: "same national id and birth date",
  probabilistic: "record linkage",
  singleton: "no other record matched",
  merge: "merged with another person",
  steward: "decided by a data steward",
};

// How the master patient index tied this domain record to the person, with its evidence.
function linkCell(link) {
  if (!link) return h("td", { class: OPT }, "—");
  const evidence = (link.evidence || []).map((e) => `${e.comparison}: ${e.level}`).join("\n");
  const p = link.probability == null ? "" : ` ${(link.probability * 100).toFixed(link.probability >= 0.9999 ? 2 : 1)} %`;
  const title = [LINK_METHODS[link.method] || link.method, evidence, link.linkedBy ? `by ${link.linkedBy}` : ""]
    .filter(Boolean)
    .join("\n");
  return h("td", { class: OPT, "data-testid": "link-cell", title }, `${humanize(link.method)}${p}`);
}

// Which kinds of data the domain holds on the person (the operational data store's registry).
function kindsCell(kinds) {
  const text = (kinds || []).map((k) => `${humanize(k.kind)} ${k.count}`).join(" · ");
  return h("td", { class: `small ${OPT}`, "data-testid": "kinds-cell" }, text || "—");
}

function domainsPanel(p) {
  const rows = p.domains.map((d) =>
    h(
      "tr",
      { "data-testid": "domain-row", "data-domain": d.name },
      h("td", {}, sourceBadge({ domain: d.name, domainId: d.id, domainKind: d.kind, recordId: d.recordId })),
      h("td", {}, humanize(d.kind)),
      h("td", { class: "mono" }, d.recordId),
      h("td", { class: `mono ${OPT}` }, d.mrn || "—"),
      linkCell(d.link),
      kindsCell(d.kinds),
      h("td", { class: "num" }, String(d.facts)),
      h("td", { class: "date" }, dateCell(d.lastUpdated)),
    ),
  );
  return h(
    "section",
    { class: "panel", "data-testid": "domains-panel", "aria-labelledby": "domains-h" },
    h(
      "div",
      { class: "panel-head" },
      h("h2", { id: "domains-h" }, "Domains"),
      h(
        "span",
        { class: "muted" },
        p.domains.length > 1 ? `This record spans ${p.domains.length} domains` : p.domains.length === 1 ? "One domain" : "No domain records",
      ),
    ),
    p.domains.length === 0
      ? stateBox("empty", "domains-empty", "No source records are linked to this person.")
      : h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "grid" },
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                h("th", { scope: "col" }, "Domain"),
                h("th", { scope: "col" }, "Kind"),
                h("th", { scope: "col" }, "Record id"),
                h("th", { scope: "col", class: OPT }, "MRN"),
                h("th", { scope: "col", class: OPT }, "Linked by"),
                h("th", { scope: "col", class: OPT }, "Data held"),
                h("th", { scope: "col", class: "num" }, "Facts"),
                h("th", { scope: "col", class: "date" }, "Last updated"),
              ),
            ),
            h("tbody", {}, rows),
          ),
        ),
  );
}

function patientHeader(p) {
  const age = ageFrom(p.birthDate);
  const item = (label, value, testid) =>
    h("div", { class: "demo-item" }, h("dt", {}, label), h("dd", { "data-testid": testid }, value || "—"));
  return h(
    "header",
    { class: "patient-header", "data-testid": "patient-header" },
    h("h1", { tabindex: "-1", "data-testid": "patient-name" }, p.name || [p.given.join(" "), p.family].filter(Boolean).join(" ") || "(no name)"),
    h(
      "dl",
      { class: "demographics" },
      item("Gender", humanize(p.gender), "patient-gender"),
      item("Born", p.birthDate ? `${p.birthDate}${age !== null ? ` (${age} y)` : ""}` : null, "patient-birth"),
      item("National id", p.nationalId, "patient-national-id"),
      item("Person id", h("span", { class: "mono small" }, p.id), "patient-id"),
    ),
  );
}

function tabs(p, ctx, initialKey) {
  const list = h("div", { class: "tabs", role: "tablist", "aria-label": "Record sections" });
  const panels = h("div", { class: "tab-panels" });
  const entries = SECTIONS.map((s) => {
    const tab = h(
      "button",
      {
        type: "button",
        role: "tab",
        id: `tab-${s.key}`,
        class: "tab",
        "aria-controls": `panel-${s.key}`,
        "data-testid": `tab-${s.key}`,
      },
      s.label,
      h("span", { class: "tab-count" }, String(s.count(p))),
    );
    const panel = h("section", {
      role: "tabpanel",
      id: `panel-${s.key}`,
      class: "tab-panel",
      "aria-labelledby": `tab-${s.key}`,
      "data-testid": `section-${s.key}`,
      hidden: true,
    });
    return { s, tab, panel, rendered: false };
  });

  const select = (key, focus) => {
    for (const e of entries) {
      const on = e.s.key === key;
      e.tab.setAttribute("aria-selected", on ? "true" : "false");
      e.tab.tabIndex = on ? 0 : -1;
      e.panel.hidden = !on;
      if (on && !e.rendered) {
        e.panel.append(e.s.render(p, ctx)); // sections render on first view
        e.rendered = true;
      }
      if (on && focus) e.tab.focus();
    }
    setHashQuery({ tab: key === SECTIONS[0].key ? null : key });
  };

  entries.forEach((e, i) => {
    e.tab.addEventListener("click", () => select(e.s.key, false));
    e.tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      let next = null;
      if (step) next = entries[(i + step + entries.length) % entries.length];
      else if (event.key === "Home") next = entries[0];
      else if (event.key === "End") next = entries[entries.length - 1];
      if (next) {
        event.preventDefault();
        select(next.s.key, true);
      }
    });
    list.append(e.tab);
    panels.append(e.panel);
  });
  select(SECTIONS.some((s) => s.key === initialKey) ? initialKey : SECTIONS[0].key, false);
  return h("div", { class: "record-sections" }, list, panels);
}

async function renderPatient(main, ctx) {
  const [id] = ctx.params;
  document.title = "Patient · medshadow";
  const back = h("a", { href: "#/", class: "back" }, "← Patients");
  main.setAttribute("aria-busy", "true");
  main.append(back, stateBox("loading", "record-loading", "Loading record…"));
  let data;
  try {
    data = await gql(RECORD_QUERY, { id, first: RECORD_PAGE }, { signal: ctx.signal });
  } catch (error) {
    if (isAbort(error) || ctx.signal.aborted) return;
    main.removeAttribute("aria-busy");
    main.replaceChildren(back, errorState("record-error", "Could not load the record", error));
    return;
  }
  if (ctx.signal.aborted) return;
  main.removeAttribute("aria-busy");
  const result = data.patient;
  if (result.__typename === "PatientMerged") {
    // the master patient index merged this person into another: follow, keeping history clean
    location.replace(patientHref(result.mergedInto));
    return;
  }
  if (result.__typename === "PatientNotFound") {
    document.title = "Patient not found · medshadow";
    main.replaceChildren(
      back,
      stateBox("empty", "patient-not-found", "Patient not found", `No patient with id “${id}” is visible to you.`, h("div", {}, h("a", { href: "#/" }, "Search patients"))),
    );
    return;
  }
  if (result.__typename === "AccessDenied") {
    document.title = "Access denied · medshadow";
    main.replaceChildren(
      back,
      stateBox("error", "access-denied", "Access denied", `You may not open the record “${id}”: ${result.message}.`),
    );
    return;
  }
  document.title = `${result.name || "Patient"} · medshadow`;
  main.replaceChildren(
    h(
      "article",
      { class: "page page-record", "data-testid": "patient-record" },
      back,
      patientHeader(result),
      shadowLink(result.id),
      medsSummary(result.id, ctx),
      domainsPanel(result),
      tabs(result, ctx, ctx.query.get("tab")),
    ),
  );
  const heading = main.querySelector("h1");
  if (heading) heading.focus({ preventScroll: true });
}

route(/^#\/?$/, renderSearch);
route(/^#\/patient\/([^/]+)$/, renderPatient);

// Start after every page module has registered its routes (module scripts run before
// DOMContentLoaded); "load" is the fallback when this module is imported late.
if (document.readyState === "complete") start();
else {
  document.addEventListener("DOMContentLoaded", start);
  window.addEventListener("load", start);
}
