// The clinician's medication review (#/patient/<id>/medications): the reconciled list across
// every domain (clinic prescriptions and the patient's own portal entries), the drug-safety
// findings ranked most dangerous first, a what-if check of a new prescription, and text-mined
// literature kept apart from the curated knowledge. The patient page shows a summary (counts by
// priority) and links here.
//
// Override fatigue is the design constraint: "interrupt" findings are shown open and first, the
// "review" and "info" groups stay folded behind their counts, so the dangerous few stand out.
//
// Same rules as app.js: data reaches the DOM only as text, user input reaches the server only as
// GraphQL variables.

import { dateCell, errorBox, gql, h, isAbort, loadPatientPage, patientHref, route, sourceBadge, stateBox } from "./app.js";

export const MEDS_ROUTE = /^#\/patient\/([^/]+)\/medications$/;

export function medsHref(id) {
  return `${patientHref(id)}/medications`;
}

// -- queries ------------------------------------------------------------------------------------

const FRAGMENTS = `
fragment MedSourceF on MedicationSource {
  record kind domain domainKind domainName status active at display strength patientReported note
}
fragment MedItemF on MedicationItem {
  key display ingredients active resolved proposed prescribers conflicts sources { ...MedSourceF }
}
fragment FindingF on DrugFinding {
  kind severity baseSeverity priority title items drugs evidence sourceLevel mechanism management
  via rules also sources
}`;

const SUMMARY_QUERY = `
query MedicationSummary($id: ID!) {
  patient(id: $id) {
    __typename
    ... on Patient { medicationReview { activeCount knowledge counts { interrupt review info } } }
    ... on AccessDenied { message }
    ... on PatientNotFound { message }
  }
}`;

const REVIEW_QUERY = `
query MedicationReview($id: ID!) {
  patient(id: $id) {
    __typename
    ... on Patient {
      id name
      domains { id name kind }
      medicationReview {
        items { ...MedItemF }
        findings { ...FindingF }
        counts { interrupt review info }
        activeCount knowledge checkedInMs unresolved
        context { age egfr egfrSource pregnant pregnancyEvidence }
        literature { drugs type sentence source cue confidence method }
      }
    }
    ... on PatientMerged { mergedInto }
    ... on PatientNotFound { message }
    ... on AccessDenied { message }
  }
}
${FRAGMENTS}`;

const WHAT_IF_QUERY = `
query CheckPrescription($id: ID!, $drug: String!) {
  checkPrescription(patientId: $id, drug: $drug) {
    items { ...MedItemF }
    findings { ...FindingF }
  }
}
${FRAGMENTS}`;

const PRIORITIES = [
  { key: "interrupt", label: "Interrupt", long: "act before prescribing" },
  { key: "review", label: "Review", long: "check when convenient" },
  { key: "info", label: "Info", long: "for information" },
];
const SEVERITIES = ["CONTRAINDICATED", "MAJOR", "MODERATE", "MINOR"];
const PROPOSED = "proposed"; // the domain checkPrescription gives the what-if's own source

// -- formatting ---------------------------------------------------------------------------------

function fmt(value) {
  if (value === null || value === undefined) return "—";
  if (Number.isInteger(value)) return String(value);
  return String(Number(value.toFixed(Math.abs(value) < 10 ? 2 : 1)));
}

function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/** Severity is always written out; the colour only repeats it. */
function severityBadge(severity) {
  const known = SEVERITIES.includes(severity) ? severity.toLowerCase() : "unknown";
  return h("span", { class: `sev drug-sev drug-sev-${known}`, "data-testid": "finding-severity", "data-severity": severity }, known);
}

/** Domain uid → the name and kind the patient's records give it (finding sources are uids). */
function domainIndex(items, records = []) {
  const index = new Map(records.map((d) => [d.id, { name: d.name, kind: d.kind }]));
  for (const item of items) {
    for (const s of item.sources) {
      if (!index.has(s.domain)) index.set(s.domain, { name: s.domainName || s.domain, kind: s.domainKind });
    }
  }
  return index;
}

function domainBadge(uid, domains, recordId = null) {
  const known = domains.get(uid);
  return sourceBadge({ domain: known ? known.name : uid, domainId: uid, domainKind: known ? known.kind : null, recordId });
}

// -- summary on the patient page ----------------------------------------------------------------

function countChip(priority, n) {
  return h(
    "span",
    { class: `meds-chip meds-chip-${priority.key}${n ? "" : " meds-chip-zero"}`, "data-testid": "meds-count", "data-priority": priority.key, "data-count": n },
    h("strong", {}, String(n)),
    ` ${priority.label.toLowerCase()}`,
  );
}

/**
 * The patient page's medication panel: counts of findings by priority and the way into the full
 * review. Fetched on its own so a drug-safety failure (no knowledge loaded) never hides the record.
 */
export function medsSummary(id, { signal } = {}) {
  const body = h("div", { class: "meds-summary-body", "data-testid": "meds-summary-body" }, stateBox("loading", "meds-summary-loading", "Checking the medications…"));
  const node = h(
    "section",
    { class: "panel meds-summary", "data-testid": "meds-summary", "aria-labelledby": "meds-summary-h", "aria-busy": "true" },
    h(
      "div",
      { class: "panel-head" },
      h("h2", { id: "meds-summary-h" }, "Medication review"),
      h("a", { href: medsHref(id), "data-testid": "meds-link" }, "Open the full review"),
    ),
    body,
  );
  (async () => {
    let data;
    try {
      data = await gql(SUMMARY_QUERY, { id }, { signal });
    } catch (error) {
      if (isAbort(error) || (signal && signal.aborted)) return;
      node.removeAttribute("aria-busy");
      body.replaceChildren(errorBox("meds-summary-error", "Could not check the medications", error));
      return;
    }
    node.removeAttribute("aria-busy");
    const result = data.patient;
    if (result.__typename !== "Patient") {
      body.replaceChildren(stateBox("error", "meds-summary-error", "Medication review unavailable", result.message || ""));
      return;
    }
    const r = result.medicationReview;
    body.replaceChildren(
      h(
        "p",
        { class: "meds-chips" },
        PRIORITIES.map((p) => countChip(p, r.counts[p.key])),
        h("span", { class: "muted small", "data-testid": "meds-active-count" }, `${plural(r.activeCount, "active medicine")}`),
      ),
    );
  })();
  return node;
}

// -- findings -----------------------------------------------------------------------------------

function fact(label, value, testid) {
  if (value === null || value === undefined || (Array.isArray(value) && value.length === 0)) return null;
  const dd = Array.isArray(value)
    ? h("dd", {}, h("ul", { class: "plain" }, value.map((v) => h("li", { "data-testid": testid }, v))))
    : h("dd", { "data-testid": testid }, value);
  return h("div", { class: "finding-fact" }, h("dt", {}, label), dd);
}

function findingCard(f, domains, n) {
  const titleId = `finding-${n}-title`;
  const raised = f.severity !== f.baseSeverity;
  return h(
    "li",
    {
      class: `finding finding-${f.priority}`,
      "data-testid": "finding",
      "data-priority": f.priority,
      "data-severity": f.severity,
      "data-kind": f.kind,
      "aria-labelledby": titleId,
    },
    h(
      "div",
      { class: "finding-head" },
      severityBadge(f.severity),
      raised
        ? h("span", { class: "finding-raised", "data-testid": "finding-raised", title: "Raised by the patient's context (see the rules below)" }, `raised from ${f.baseSeverity.toLowerCase()}`)
        : null,
      h("h4", { id: titleId, class: "finding-title", "data-testid": "finding-title" }, f.title),
      h("span", { class: "finding-kind muted small" }, f.kind),
    ),
    // the drugs line only when the title does not already name them (interaction titles do)
    f.drugs.length && f.drugs.join(" + ") !== f.title ? h("p", { class: "finding-drugs", "data-testid": "finding-drugs" }, f.drugs.join(" + ")) : null,
    h(
      "dl",
      { class: "finding-facts" },
      fact("Source says", f.sourceLevel, "finding-source-level"),
      fact("Mechanism", f.mechanism, "finding-mechanism"),
      fact("Management", f.management, "finding-management"),
      fact("Why raised", f.rules, "finding-rule"),
      fact("Matched via", f.via, "finding-via"),
      fact("Also listed", f.also, "finding-also"),
      fact("Evidence", f.evidence, "finding-evidence"),
      f.sources.length
        ? h(
            "div",
            { class: "finding-fact" },
            h("dt", {}, "Prescribed by"),
            h(
              "dd",
              { "data-testid": "finding-sources" },
              h("ul", { class: "plain badges" }, f.sources.map((d) => h("li", {}, d === PROPOSED ? flag("proposed", "proposed", "The what-if prescription") : domainBadge(d, domains)))),
            ),
          )
        : null,
    ),
  );
}

let findingSeq = 0; // unique title ids across the panel and what-if results

function findingList(findings, domains) {
  return h("ol", { class: "finding-list" }, findings.map((f) => findingCard(f, domains, (findingSeq += 1))));
}

function findingsPanel(review, domains) {
  const by = (key) => review.findings.filter((f) => f.priority === key);
  const [interrupt, ...folded] = PRIORITIES;
  const urgent = by(interrupt.key);
  const groups = [
    h(
      "div",
      { class: "finding-group", "data-testid": "findings-interrupt", "data-count": urgent.length },
      h("h3", {}, `${interrupt.label} — ${interrupt.long} (${urgent.length})`),
      urgent.length
        ? findingList(urgent, domains)
        : stateBox("empty", "interrupt-empty", "Nothing to interrupt for", "No contraindicated or major finding in this list."),
    ),
    ...folded.map((p) => {
      const list = by(p.key);
      return h(
        "details",
        { class: "finding-group finding-fold", "data-testid": `findings-${p.key}`, "data-count": list.length },
        h("summary", {}, h("span", { class: "fold-label" }, p.label), ` — ${p.long} `, h("span", { class: "tab-count", "data-testid": "fold-count" }, String(list.length))),
        list.length ? findingList(list, domains) : h("p", { class: "muted" }, "None."),
      );
    }),
  ];
  const c = review.counts;
  return h(
    "section",
    { class: "panel meds-panel", "data-testid": "meds-findings", "aria-labelledby": "meds-findings-h" },
    h(
      "div",
      { class: "panel-head" },
      h("h2", { id: "meds-findings-h" }, "Findings"),
      h("span", { class: "muted" }, `${c.interrupt} interrupt · ${c.review} review · ${c.info} info, most dangerous first`),
    ),
    groups,
  );
}

// -- reconciled list ----------------------------------------------------------------------------

function sourceLine(s, item, domains) {
  if (item.proposed) {
    return h("li", { class: "med-source", "data-testid": "item-source" }, h("span", { class: "muted" }, "what-if, not written"), s.strength ? ` · ${s.strength}` : "");
  }
  return h(
    "li",
    { class: `med-source${s.active ? "" : " med-source-stopped"}`, "data-testid": "item-source", "data-domain": s.domain, "data-active": String(s.active) },
    domainBadge(s.domain, domains, s.record),
    " ",
    h("span", { class: `status status-${s.active ? "active" : "stopped"}`, "data-testid": "source-status" }, s.status),
    s.strength ? h("span", { class: "med-strength", "data-testid": "source-strength" }, ` · ${s.strength}`) : null,
    s.at ? h("span", {}, " · ", dateCell(s.at)) : null,
    s.patientReported ? h("span", { class: "muted small" }, " · patient-reported") : null,
    s.note ? h("span", { class: "muted small" }, ` · “${s.note}”`) : null,
    s.display !== item.display ? h("div", { class: "muted small" }, s.display) : null,
  );
}

function flag(kind, text, title) {
  return h("span", { class: `med-flag med-flag-${kind}`, "data-testid": `item-${kind}`, title }, text);
}

function itemRow(item, domains) {
  const classes = ["med-row"];
  if (item.conflicts.length) classes.push("med-row-conflict");
  if (!item.resolved) classes.push("med-row-unresolved");
  if (item.proposed) classes.push("med-row-proposed");
  return h(
    "tr",
    {
      class: classes.join(" "),
      "data-testid": "med-item",
      "data-key": item.key,
      "data-proposed": String(item.proposed),
      "data-resolved": String(item.resolved),
    },
    h(
      "th",
      { scope: "row" },
      h("span", { "data-testid": "item-display" }, item.display),
      item.proposed ? flag("proposed", "proposed", "A what-if prescription: checked, not written") : null,
      item.resolved
        ? null
        : flag("unresolved", "not recognised", "No ingredient of the drug dictionary matches this name: it is not checked for interactions"),
      item.ingredients.length > 1 || (item.ingredients.length === 1 && item.ingredients[0].toLowerCase() !== item.display.toLowerCase())
        ? h("div", { class: "muted small" }, item.ingredients.join(" + "))
        : null,
    ),
    h("td", {}, h("span", { class: `status status-${item.active ? "active" : "stopped"}`, "data-testid": "item-status" }, item.active ? "active" : "not active")),
    h("td", {}, h("ul", { class: "plain med-sources" }, item.sources.map((s) => sourceLine(s, item, domains)))),
    h(
      "td",
      {},
      item.conflicts.length
        ? h(
            "ul",
            { class: "plain med-conflicts" },
            item.conflicts.map((c) => h("li", { "data-testid": "item-conflict" }, h("strong", {}, "Conflict: "), c)),
          )
        : h("span", { class: "muted" }, "—"),
    ),
  );
}

function itemsPanel(review, domains) {
  const tbody = h("tbody", { "data-testid": "med-items" }, review.items.map((i) => itemRow(i, domains)));
  const unresolved = review.items.filter((i) => !i.resolved).length;
  const conflicting = review.items.filter((i) => i.conflicts.length).length;
  const note = [plural(review.items.length, "item"), conflicting ? `${conflicting} with conflicts` : null, unresolved ? `${unresolved} not recognised` : null]
    .filter(Boolean)
    .join(" · ");
  const panel = h(
    "section",
    { class: "panel meds-panel", "data-testid": "meds-items", "aria-labelledby": "meds-items-h" },
    h("div", { class: "panel-head" }, h("h2", { id: "meds-items-h" }, "Reconciled list"), h("span", { class: "muted" }, note)),
    review.items.length === 0
      ? stateBox("empty", "items-empty", "No medications", "No domain records a medication for this person.")
      : h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "grid med-table" },
            h("caption", { class: "sr-only" }, "Medications reconciled across domains"),
            h(
              "thead",
              {},
              h("tr", {}, h("th", { scope: "col" }, "Medicine"), h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, "Sources"), h("th", { scope: "col" }, "Conflicts")),
            ),
            tbody,
          ),
        ),
  );
  return {
    node: panel,
    /** Show the what-if's proposed item(s) at the end of the list, replacing earlier ones. */
    propose(items) {
      for (const row of tbody.querySelectorAll('[data-proposed="true"]')) row.remove();
      tbody.append(...items.map((i) => itemRow(i, domains)));
    },
  };
}

// -- what-if ------------------------------------------------------------------------------------

function whatIfPanel(id, domains, list, signal) {
  const input = h("input", {
    type: "text",
    id: "whatif-drug",
    class: "filter-input whatif-input",
    placeholder: "e.g. a generic name, a brand or rxnorm:<code>",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "data-testid": "whatif-input",
  });
  const button = h("button", { type: "submit", class: "btn", "data-testid": "whatif-submit" }, "Check");
  const result = h("div", { class: "whatif-result", "data-testid": "whatif-result", role: "status", "aria-live": "polite" });
  let seq = 0;

  const check = async (drug) => {
    const my = ++seq;
    button.disabled = true;
    result.removeAttribute("data-drug");
    result.replaceChildren(stateBox("loading", "whatif-loading", `Checking ${drug}…`));
    let data;
    try {
      data = await gql(WHAT_IF_QUERY, { id, drug }, { signal });
    } catch (error) {
      if (isAbort(error) || my !== seq) return;
      button.disabled = false;
      list.propose([]);
      result.replaceChildren(errorBox("whatif-error", `Could not check “${drug}”`, error));
      return;
    }
    if (my !== seq) return;
    button.disabled = false;
    const r = data.checkPrescription;
    const proposed = r.items.filter((i) => i.proposed);
    list.propose(proposed);
    const all = new Map([...domains, ...domainIndex(r.items)]);
    const name = proposed.length ? proposed[0].display : drug;
    result.setAttribute("data-drug", drug);
    result.replaceChildren(
      r.findings.length
        ? h(
            "div",
            { "data-testid": "whatif-findings", "data-count": r.findings.length },
            h("p", {}, h("strong", {}, `Adding ${name} would raise ${plural(r.findings.length, "finding")}`), ", most dangerous first:"),
            findingList(r.findings, all),
          )
        : stateBox("empty", "whatif-none", "No new findings", `Adding ${name} to the current list raises nothing the knowledge base knows.`),
    );
  };

  const form = h(
    "form",
    {
      class: "filter-bar whatif-form",
      onsubmit: (event) => {
        event.preventDefault();
        const drug = input.value.trim();
        if (drug) check(drug);
      },
    },
    h("label", { for: "whatif-drug" }, "Check a new prescription"),
    input,
    button,
  );
  return h(
    "section",
    { class: "panel meds-panel", "data-testid": "meds-whatif", "aria-labelledby": "meds-whatif-h" },
    h(
      "div",
      { class: "panel-head" },
      h("h2", { id: "meds-whatif-h" }, "What if"),
      h("span", { class: "muted" }, "the findings a new prescription would add, before it is written"),
    ),
    form,
    result,
  );
}

// -- literature ---------------------------------------------------------------------------------

function literaturePanel(statements) {
  return h(
    "details",
    { class: "panel meds-panel meds-literature", "data-testid": "meds-literature", "data-count": statements.length },
    h("summary", {}, h("h2", { class: "inline-h" }, "Literature (text-mined, not curated)"), " ", h("span", { class: "tab-count" }, String(statements.length))),
    h("p", { class: "muted small" }, "Sentences a text-mining model found about pairs of these drugs. They are not reviewed knowledge: read the source before acting."),
    statements.length === 0
      ? stateBox("empty", "literature-empty", "No literature statements", "The text-mined corpus says nothing about any pair of these drugs.")
      : h(
          "ul",
          { class: "plain literature-list" },
          statements.map((s) =>
            h(
              "li",
              { class: "literature-row", "data-testid": "literature-row", "data-type": s.type },
              h("div", { class: "small" }, h("strong", {}, s.drugs.filter(Boolean).join(" + ")), ` · ${s.type} · confidence ${fmt(s.confidence)}`),
              h("blockquote", { class: "literature-sentence" }, s.sentence),
              h("div", { class: "muted small" }, [s.source, s.cue ? `cue “${s.cue}”` : null, s.method].filter(Boolean).join(" · ")),
            ),
          ),
        ),
  );
}

// -- header -------------------------------------------------------------------------------------

/** The eGFR's source: a domain (named as the patient's records name it) or the derivation used. */
function egfrSource(source, domains) {
  const known = domains.get(source);
  return known ? h("span", { title: source }, known.name) : source;
}

function header(p, review, domains) {
  const item = (label, value, testid) => h("div", { class: "demo-item" }, h("dt", {}, label), h("dd", { "data-testid": testid }, value));
  const poly = review.findings.find((f) => f.kind === "polypharmacy");
  const ctx = review.context;
  return h(
    "header",
    { class: "patient-header meds-header", "data-testid": "meds-header" },
    h("h1", { tabindex: "-1", "data-testid": "meds-name" }, p.name || "(no name)", h("span", { class: "meds-kicker" }, " · medication review")),
    h(
      "dl",
      { class: "demographics" },
      item(
        "Active medicines",
        h(
          "span",
          {},
          h("span", { "data-testid": "meds-active" }, String(review.activeCount)),
          poly ? h("span", { class: "sev drug-sev drug-sev-moderate meds-poly", "data-testid": "meds-polypharmacy", title: poly.title }, "polypharmacy") : null,
        ),
        "meds-active-item",
      ),
      ctx && ctx.age !== null ? item("Age", `${Math.floor(ctx.age)} y`, "meds-age") : null,
      ctx && ctx.egfr !== null
        ? item("eGFR", h("span", {}, `${fmt(ctx.egfr)} mL/min/1.73 m²`, ctx.egfrSource ? h("span", { class: "muted small", "data-testid": "meds-egfr-source" }, " (", egfrSource(ctx.egfrSource, domains), ")") : null), "meds-egfr")
        : null,
      ctx && ctx.pregnant ? item("Pregnancy", `pregnant${ctx.pregnancyEvidence ? ` (${ctx.pregnancyEvidence})` : ""}`, "meds-pregnant") : null,
      item("Knowledge", review.knowledge || "none loaded", "meds-knowledge"),
      item("Record", h("a", { href: patientHref(p.id), "data-testid": "back-to-record" }, "Open the patient record"), "meds-record"),
    ),
  );
}

// -- page ---------------------------------------------------------------------------------------

async function renderMeds(main, ctx) {
  const page = await loadPatientPage(main, ctx, {
    query: REVIEW_QUERY,
    view: "Medication review",
    loading: "Checking the medications…",
    failed: "Could not check the medications",
    prefix: "meds",
    hrefOf: medsHref,
  });
  if (page === null) return;
  const { result, back } = page;
  const review = result.medicationReview;
  const domains = domainIndex(review.items, result.domains);
  const list = itemsPanel(review, domains);
  main.replaceChildren(
    h(
      "article",
      { class: "page page-meds", "data-testid": "patient-meds" },
      back,
      header(result, review, domains),
      findingsPanel(review, domains),
      list.node,
      whatIfPanel(result.id, domains, list, ctx.signal),
      literaturePanel(review.literature),
    ),
  );
  main.querySelector("h1").focus({ preventScroll: true });
}

// app.js imports this module for medsSummary, so this body runs before app.js's own (an ES module
// cycle): register the route once the module graph has run (as shadow.js does).
queueMicrotask(() => route(MEDS_ROUTE, renderMeds));
