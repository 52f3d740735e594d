// The clinician's view of a patient's digital shadow (#/patient/<id>/shadow): alerts to act on,
// the latest vitals across every domain, trends charted against the person's own baseline, the
// validated scores with what went in and what was missing, data requests and care gaps.
//
// Same rules as app.js: data reaches the DOM only as text (h(), textContent, SVG attributes),
// user input reaches the server only as GraphQL variables. Charts are inline SVG drawn here: no
// chart library, nothing fetched from outside the app.

import { dateTimeCell, errorBox, fmtDateTime, gql, h, isAbort, loadPatientPage, patientHref, route, setHashQuery, sourceBadge, stateBox } from "./app.js";

export const SHADOW_ROUTE = /^#\/patient\/([^/]+)\/shadow$/;

export function shadowHref(id) {
  return `${patientHref(id)}/shadow`;
}

/** The patient page's way in (app.js puts it under the record's header). */
export function shadowLink(id) {
  return h(
    "p",
    { class: "shadow-link" },
    h("a", { href: shadowHref(id), "data-testid": "shadow-link" }, "Digital shadow"),
    h("span", { class: "muted small" }, " alerts, vitals, trends, scores"),
  );
}

// -- queries ------------------------------------------------------------------------------------

const ALERT_FIELDS = `
fragment InputF on ShadowInput { name value unit }
fragment AlertF on Alert {
  id rule severity state title message reference at openedAt lastSeenAt acknowledgedAt resolvedAt
  occurrences evidence { ...InputF } trail { at actor action severity note }
}`;

const SHADOW_QUERY = `
query PatientShadow($id: ID!) {
  patient(id: $id) {
    __typename
    ... on Patient {
      id name
      domains { id name kind }
      shadow {
        vitals { metric display value unit at sourceDomain record derived inputs { ...InputF } method }
        scores { name version value category unit complete inputs { ...InputF } inputsMissing reference notes computedAt }
        careGaps { rule title status dueDate lastDone reference }
        dataRequests { id need display reasons domains tried status openedAt closedAt satisfiedBy }
        alerts { ...AlertF }
      }
    }
    ... on PatientMerged { mergedInto }
    ... on PatientNotFound { message }
    ... on AccessDenied { message }
  }
}
${ALERT_FIELDS}`;

// No `until`: the server ends every window at the shadow's own clock.
const TRENDS_QUERY = `
query PatientTrends($id: ID!, $window: TrendWindow!, $metrics: [String!]) {
  patient(id: $id) {
    __typename
    ... on Patient {
      shadow {
        trends(window: $window, metrics: $metrics) {
          metric display unit since until readings mean min max slopePerDay direction
          baselineMean baselineReadings deltaFromBaseline sources
          points { at value low high count sourceDomain }
        }
      }
    }
    ... on AccessDenied { message }
  }
}`;

const ACKNOWLEDGE = `mutation AcknowledgeAlert($id: ID!, $note: String) { acknowledgeAlert(id: $id, note: $note) { ...AlertF } } ${ALERT_FIELDS}`;
const RESOLVE = `mutation ResolveAlert($id: ID!, $note: String) { resolveAlert(id: $id, note: $note) { ...AlertF } } ${ALERT_FIELDS}`;

const WINDOWS = [
  { key: "HOURS_24", label: "24 h", long: "last 24 hours", axis: "time" },
  { key: "DAYS_30", label: "30 days", long: "last 30 days", axis: "date" },
  { key: "YEAR", label: "1 year", long: "last year", axis: "date" },
];
const SCORE_NAMES = ["NEWS2", "ASCVD10", "FINDRISC"];
const SEVERITIES = ["critical", "high", "medium", "low"];
const STATE_ORDER = { open: 0, acknowledged: 1, resolved: 2 };

// -- formatting ---------------------------------------------------------------------------------

function fmt(value) {
  if (value === null || value === undefined) return "—";
  if (Number.isInteger(value)) return String(value);
  return String(Number(value.toFixed(Math.abs(value) < 10 ? 2 : 1)));
}

function signed(value) {
  if (value === null || value === undefined) return "—";
  return `${value > 0 ? "+" : value < 0 ? "−" : "±"}${fmt(Math.abs(value))}`;
}


function label(text) {
  return String(text || "").replace(/[-_]/g, " ");
}

function inputText(input) {
  return `${input.name} = ${input.value}${input.unit ? ` ${input.unit}` : ""}`;
}

/** A source badge for a domain uid, named as the patient's record names it when it can be. */
function domainBadge(uid, domains) {
  const known = domains.get(uid);
  return sourceBadge({ domain: known ? known.name : uid, domainId: uid, domainKind: known ? known.kind : null });
}

function section(key, title, count, ...body) {
  return h(
    "section",
    { class: "panel shadow-panel", "data-testid": `shadow-${key}`, "aria-labelledby": `shadow-${key}-h` },
    h("div", { class: "panel-head" }, h("h2", { id: `shadow-${key}-h` }, title), count ? h("span", { class: "muted" }, count) : null),
    ...body,
  );
}

function table(testid, headers, rows) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "grid", "data-testid": testid },
      h("thead", {}, h("tr", {}, headers.map(([text, cls]) => h("th", { scope: "col", class: cls || null }, text)))),
      h("tbody", {}, rows),
    ),
  );
}

// -- header -------------------------------------------------------------------------------------

/** The newest score computation stands for the shadow's "as of": every recomputation writes them. */
function asOf(scores) {
  const times = scores.map((s) => s.computedAt).filter(Boolean).sort();
  return times.length ? times[times.length - 1] : null;
}

function header(p) {
  const computed = asOf(p.shadow.scores);
  return h(
    "header",
    { class: "patient-header shadow-header", "data-testid": "shadow-header" },
    h("h1", { tabindex: "-1", "data-testid": "shadow-name" }, p.name || "(no name)", h("span", { class: "shadow-kicker" }, " · digital shadow")),
    h(
      "dl",
      { class: "demographics" },
      h(
        "div",
        { class: "demo-item" },
        h("dt", {}, "As of"),
        h("dd", { "data-testid": "shadow-as-of", "data-as-of": computed || "" }, computed ? dateTimeCell(computed) : "not computed yet"),
      ),
      h(
        "div",
        { class: "demo-item" },
        h("dt", {}, "Record"),
        h("dd", {}, h("a", { href: patientHref(p.id), "data-testid": "back-to-record" }, "Open the patient record")),
      ),
    ),
  );
}

// -- alerts -------------------------------------------------------------------------------------

function severityBadge(severity) {
  const known = SEVERITIES.includes(severity) ? severity : "unknown";
  return h("span", { class: `sev sev-${known}`, "data-testid": "alert-severity", "data-severity": severity }, severity || "unknown");
}

function trail(alert) {
  return h(
    "details",
    { class: "alert-trail", "data-testid": "alert-trail" },
    h("summary", {}, `Audit trail (${alert.trail.length})`),
    alert.trail.length
      ? h(
          "ol",
          {},
          alert.trail.map((e) =>
            h(
              "li",
              { "data-testid": "trail-entry", "data-action": e.action, "data-actor": e.actor },
              dateTimeCell(e.at),
              " ",
              h("strong", {}, e.action),
              ` by ${e.actor}`,
              e.severity ? ` (${e.severity})` : "",
              e.note ? h("span", { class: "muted" }, ` — ${e.note}`) : null,
            ),
          ),
        )
      : h("p", { class: "muted" }, "No entries."),
  );
}

function alertRow(alert, onChange) {
  const note = h("input", {
    type: "text",
    class: "filter-input alert-note",
    placeholder: "Note (optional)",
    "aria-label": `Note for “${alert.title}”`,
    "data-testid": "alert-note",
  });
  const messages = h("div", { class: "alert-messages", role: "status" });
  const buttons = [];
  const act = async (mutation, field, verb) => {
    for (const b of buttons) b.disabled = true;
    messages.replaceChildren(h("span", { class: "muted" }, `${verb}…`));
    try {
      const data = await gql(mutation, { id: alert.id, note: note.value.trim() || null });
      onChange(alert, data[field]);
    } catch (error) {
      if (isAbort(error)) return;
      for (const b of buttons) b.disabled = false;
      messages.replaceChildren(errorBox("alert-error", `Could not ${verb.toLowerCase()} this alert`, error));
    }
  };
  if (alert.state === "open") {
    buttons.push(
      h("button", { type: "button", class: "btn", "data-testid": "alert-ack", onclick: () => act(ACKNOWLEDGE, "acknowledgeAlert", "Acknowledge") }, "Acknowledge"),
    );
  }
  if (alert.state === "open" || alert.state === "acknowledged") {
    buttons.push(
      h("button", { type: "button", class: "btn", "data-testid": "alert-resolve", onclick: () => act(RESOLVE, "resolveAlert", "Resolve") }, "Resolve"),
    );
  }
  const titleId = `alert-${alert.id}-title`;
  return h(
    "li",
    {
      class: `alert-row alert-${alert.state}`,
      "data-testid": "alert-row",
      "data-id": alert.id,
      "data-state": alert.state,
      "data-severity": alert.severity,
      "aria-labelledby": titleId,
    },
    h(
      "div",
      { class: "alert-head" },
      severityBadge(alert.severity),
      h("h3", { id: titleId, class: "alert-title", tabindex: "-1", "data-testid": "alert-title" }, alert.title),
      h("span", { class: `alert-state state-${alert.state}`, "data-testid": "alert-state" }, alert.state),
    ),
    h("p", { class: "alert-message", "data-testid": "alert-message" }, alert.message),
    h(
      "p",
      { class: "alert-meta small muted" },
      "Evidence at ",
      dateTimeCell(alert.at),
      " · last seen ",
      dateTimeCell(alert.lastSeenAt),
      " · ",
      h("span", { "data-testid": "alert-occurrences" }, `${alert.occurrences} occurrence${alert.occurrences === 1 ? "" : "s"}`),
      alert.evidence.length ? ` · ${alert.evidence.map(inputText).join(", ")}` : "",
    ),
    alert.reference ? h("p", { class: "reference" }, alert.reference) : null,
    buttons.length ? h("div", { class: "alert-actions" }, note, buttons) : null,
    messages,
    trail(alert),
  );
}

function sortAlerts(alerts) {
  return alerts
    .map((a, i) => ({ a, i }))
    .sort((x, y) => (STATE_ORDER[x.a.state] ?? 3) - (STATE_ORDER[y.a.state] ?? 3) || x.i - y.i)
    .map((x) => x.a);
}

function alertCount(alerts) {
  const active = alerts.filter((a) => a.state !== "resolved").length;
  return alerts.length ? `${active} open or acknowledged of ${alerts.length}` : "";
}

function alertsPanel(alerts) {
  const list = h("ul", { class: "alert-list", "data-testid": "alert-list" });
  const status = h("p", { class: "sr-only", role: "status", "data-testid": "alerts-status" });
  const panel = section("alerts", "Alerts", alertCount(alerts));
  const count = () => panel.querySelector(".panel-head .muted");

  // Acknowledge or resolve: the row is replaced in place by the alert the server returned.
  const onChange = (before, after) => {
    const i = alerts.findIndex((a) => a.id === before.id);
    if (i >= 0) alerts[i] = after;
    const old = list.querySelector(`[data-id="${CSS.escape(before.id)}"]`);
    const row = alertRow(after, onChange);
    if (old) old.replaceWith(row);
    const c = count();
    if (c) c.textContent = alertCount(alerts);
    status.textContent = `Alert “${after.title}” is now ${after.state}.`;
    const next = row.querySelector("button") || row.querySelector(".alert-title");
    next.focus();
  };

  if (alerts.length === 0) {
    panel.append(stateBox("empty", "alerts-empty", "No alerts", "Nothing in this person's data has fired an alert rule."));
  } else {
    list.append(...sortAlerts(alerts).map((a) => alertRow(a, onChange)));
    panel.append(status, list);
  }
  return panel;
}

// -- vitals -------------------------------------------------------------------------------------

function derivedMarker(v) {
  if (!v.derived) return null;
  const summary = [...v.inputs.map((i) => `${i.name}: ${i.value}`), v.method || ""].filter(Boolean).join("\n");
  return h(
    "details",
    { class: "derived", "data-testid": "vital-derived" },
    h("summary", { title: summary }, "derived"),
    h("ul", { class: "derived-inputs" }, v.inputs.map((i) => h("li", { "data-testid": "derived-input" }, `${i.name}: ${i.value}`))),
    v.method ? h("p", { class: "reference" }, v.method) : null,
  );
}

function vitalsPanel(vitals, domains) {
  const body =
    vitals.length === 0
      ? stateBox("empty", "vitals-empty", "No vitals yet", "No domain has sent a value of any metric the shadow follows.")
      : table(
          "vitals-table",
          [["Metric"], ["Value", "num"], ["Time", "date"], ["Source", "src"], ["Derivation"]],
          vitals.map((v) =>
            h(
              "tr",
              { "data-testid": "vital-row", "data-metric": v.metric, "data-source": v.sourceDomain, "data-derived": String(v.derived) },
              h("th", { scope: "row", class: "vital-name" }, v.display),
              h(
                "td",
                { class: "num" },
                h("span", { class: "value", "data-testid": "vital-value", "data-value": String(v.value) }, fmt(v.value)),
                " ",
                h("span", { class: "unit muted", "data-testid": "vital-unit" }, v.unit),
              ),
              h("td", { class: "date" }, dateTimeCell(v.at)),
              h("td", { class: "src" }, domainBadge(v.sourceDomain, domains)),
              h("td", {}, derivedMarker(v)),
            ),
          ),
        );
  return section("vitals", "Vitals", vitals.length ? `${vitals.length} metrics, latest value each` : "", body);
}

// -- trends: inline SVG charts ------------------------------------------------------------------

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined && value !== false) el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const CHART = { width: 360, height: 150, left: 46, right: 10, top: 12, bottom: 26 };

function axisTime(ms, span) {
  const iso = new Date(ms).toISOString();
  return span.axis === "time" ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(0, 10);
}

function trendSummary(t, span) {
  const parts = [`${t.display}, ${span.long}: ${t.points.length} point${t.points.length === 1 ? "" : "s"} from ${t.readings} reading${t.readings === 1 ? "" : "s"}`];
  if (t.mean !== null) parts.push(`mean ${fmt(t.mean)} ${t.unit}`);
  if (t.direction) parts.push(`${t.direction}${t.slopePerDay !== null ? ` ${signed(t.slopePerDay)} ${t.unit} per day` : ""}`);
  if (t.baselineMean !== null) parts.push(`${signed(t.deltaFromBaseline)} ${t.unit} from the personal baseline of ${fmt(t.baselineMean)}`);
  else parts.push("no personal baseline yet");
  return `${parts.join(", ")}.`;
}

function chart(t, span) {
  const { width, height, left, right, top, bottom } = CHART;
  const points = t.points.map((p) => ({ ...p, ms: Date.parse(p.at) })).sort((a, b) => a.ms - b.ms);
  const x0 = Date.parse(t.since);
  const x1 = Math.max(Date.parse(t.until), x0 + 1);
  const values = points.flatMap((p) => [p.value, p.low, p.high]).filter((v) => v !== null && v !== undefined);
  if (t.baselineMean !== null) values.push(t.baselineMean);
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  const pad = (hi - lo || Math.abs(hi) || 1) * 0.08;
  lo -= pad;
  hi += pad;
  const x = (ms) => left + ((ms - x0) / (x1 - x0)) * (width - left - right);
  const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (height - top - bottom);
  const r = (n) => Math.round(n * 10) / 10;

  const whiskers = points
    .filter((p) => p.low !== null && p.high !== null && p.high > p.low)
    .map((p) => svg("line", { class: "trend-range", x1: r(x(p.ms)), x2: r(x(p.ms)), y1: r(y(p.low)), y2: r(y(p.high)) }));
  const line =
    points.length > 1
      ? svg("polyline", { class: "trend-line", points: points.map((p) => `${r(x(p.ms))},${r(y(p.value))}`).join(" ") })
      : null;
  const dots = points.map((p) =>
    svg(
      "circle",
      { class: p.count > 1 ? "trend-point trend-aggregate" : "trend-point", "data-testid": "trend-point", cx: r(x(p.ms)), cy: r(y(p.value)), r: 2.6 },
      svg(
        "title",
        {},
        `${fmtDateTime(p.at)}: ${fmt(p.value)} ${t.unit}` +
          (p.count > 1 ? ` (mean of ${p.count} readings, ${fmt(p.low)}–${fmt(p.high)})` : "") +
          ` · ${p.sourceDomain}`,
      ),
    ),
  );
  const baseline =
    t.baselineMean !== null
      ? svg("line", {
          class: "trend-baseline",
          "data-testid": "trend-baseline",
          x1: left,
          x2: width - right,
          y1: r(y(t.baselineMean)),
          y2: r(y(t.baselineMean)),
        })
      : null;
  const bottomY = height - bottom;
  return svg(
    "svg",
    {
      class: "trend-svg",
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": trendSummary(t, span),
      "data-testid": "trend-svg",
      preserveAspectRatio: "xMidYMid meet",
    },
    svg("rect", { class: "trend-plot", x: left, y: top, width: width - left - right, height: bottomY - top }),
    svg("line", { class: "trend-axis", x1: left, x2: left, y1: top, y2: bottomY }),
    svg("line", { class: "trend-axis", x1: left, x2: width - right, y1: bottomY, y2: bottomY }),
    svg("text", { class: "trend-tick", x: left - 4, y: top + 4, "text-anchor": "end" }, fmt(hi)),
    svg("text", { class: "trend-tick", x: left - 4, y: bottomY, "text-anchor": "end" }, fmt(lo)),
    svg("text", { class: "trend-unit", x: 4, y: r((top + bottomY) / 2), "text-anchor": "start" }, t.unit),
    svg("text", { class: "trend-tick", x: left, y: height - 8, "text-anchor": "start" }, axisTime(x0, span)),
    svg("text", { class: "trend-tick", x: width - right, y: height - 8, "text-anchor": "end" }, axisTime(x1, span)),
    baseline,
    whiskers,
    line,
    dots,
  );
}

function trendCaption(t) {
  const item = (name, value, testid) => h("div", { class: "trend-fact" }, h("dt", {}, name), h("dd", { "data-testid": testid }, value));
  return h(
    "dl",
    { class: "trend-facts" },
    item("Mean", t.mean === null ? "—" : `${fmt(t.mean)} ${t.unit}`, "trend-mean"),
    item("Slope", t.slopePerDay === null ? "—" : `${signed(t.slopePerDay)} ${t.unit}/day`, "trend-slope"),
    item("Direction", t.direction || "—", "trend-direction"),
    item(
      "From baseline",
      t.baselineMean === null ? "no baseline" : `${signed(t.deltaFromBaseline)} (baseline ${fmt(t.baselineMean)}, ${t.baselineReadings} readings)`,
      "trend-delta",
    ),
    item("Readings", String(t.readings), "trend-readings"),
    item("Sources", t.sources.join(", ") || "—", "trend-sources"),
  );
}

function trendFigure(t, span) {
  return h(
    "figure",
    { class: "trend", "data-testid": "trend-chart", "data-metric": t.metric, "data-points": String(t.points.length) },
    h("h3", { class: "trend-title" }, t.display, h("span", { class: "muted small" }, ` ${t.unit}`)),
    chart(t, span),
    h("figcaption", {}, trendCaption(t)),
  );
}

function trendsPanel(p, ctx) {
  // The person's own metrics (derived ones such as mean arterial pressure have no history).
  const metrics = [...new Set(p.shadow.vitals.filter((v) => !v.derived).map((v) => v.metric))];
  const initial = WINDOWS.find((w) => w.key === ctx.query.get("window")) || WINDOWS[1];
  const charts = h("div", { class: "trend-grid", "data-testid": "trend-charts" });
  const messages = h("div", { class: "messages" });
  const buttons = WINDOWS.map((w) =>
    h("button", { type: "button", class: "btn window-btn", "data-testid": `window-${w.key}`, "data-window": w.key, onclick: () => load(w) }, w.label),
  );
  const panel = section(
    "trends",
    "Trends",
    "",
    h("div", { class: "window-bar", role: "group", "aria-label": "Trend window" }, h("span", { class: "muted" }, "Window"), buttons),
    h("p", { class: "trend-legend small muted" }, "Dots: values, filled for a period's mean of device readings; bars: the period's low–high; dashed line: the person's own baseline (the windows before)."),
    messages,
    charts,
  );
  let seq = 0;

  async function load(w) {
    const my = ++seq;
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.window === w.key));
    panel.dataset.window = w.key;
    panel.setAttribute("aria-busy", "true");
    panel.removeAttribute("data-loaded");
    setHashQuery({ window: w.key === WINDOWS[1].key ? null : w.key });
    messages.replaceChildren(stateBox("loading", "trends-loading", `Loading the ${w.long}…`));
    let data;
    try {
      data = await gql(TRENDS_QUERY, { id: p.id, window: w.key, metrics: metrics.length ? metrics : null }, { signal: ctx.signal });
    } catch (error) {
      if (isAbort(error) || my !== seq) return;
      panel.removeAttribute("aria-busy");
      charts.replaceChildren();
      messages.replaceChildren(errorBox("trends-error", "Could not load the trends", error));
      return;
    }
    if (my !== seq || ctx.signal.aborted) return;
    panel.removeAttribute("aria-busy");
    const result = data.patient;
    if (result.__typename !== "Patient") {
      charts.replaceChildren();
      messages.replaceChildren(stateBox("error", "trends-error", "Could not load the trends", result.message || result.__typename));
      return;
    }
    const trends = result.shadow.trends;
    charts.replaceChildren(...trends.map((t) => trendFigure(t, w)));
    messages.replaceChildren(
      trends.length === 0 ? stateBox("empty", "trends-empty", `No data in the ${w.long}`, "Try a longer window.") : "",
    );
    panel.dataset.loaded = w.key;
  }

  load(initial);
  return panel;
}

// -- scores -------------------------------------------------------------------------------------

function scoreValue(s) {
  if (!s.complete || s.value === null) return h("span", { class: "score-incomplete" }, "incomplete");
  return [h("span", { class: "value" }, `${fmt(s.value)}${s.unit ? ` ${s.unit}` : ""}`), s.category ? h("span", { class: "score-category" }, ` ${label(s.category)}`) : null];
}

function scoreCard(name, s) {
  if (!s) {
    return h(
      "article",
      { class: "score-card score-none", "data-testid": "score-card", "data-name": name, "aria-labelledby": `score-${name}` },
      h("h3", { id: `score-${name}` }, name),
      h("p", { class: "muted", "data-testid": "score-value" }, "not computed yet"),
    );
  }
  return h(
    "article",
    {
      class: `score-card${s.complete ? "" : " score-partial"}`,
      "data-testid": "score-card",
      "data-name": s.name,
      "data-complete": String(s.complete),
      "aria-labelledby": `score-${s.name}`,
    },
    h("h3", { id: `score-${s.name}` }, s.name, h("span", { class: "muted small", "data-testid": "score-version" }, ` ${s.version}`)),
    h("p", { class: "score-value", "data-testid": "score-value" }, scoreValue(s)),
    h("p", { class: "small muted" }, "Computed ", dateTimeCell(s.computedAt)),
    h("h4", {}, "Inputs used"),
    s.inputs.length
      ? h("ul", { class: "score-inputs" }, s.inputs.map((i) => h("li", { "data-testid": "score-input", "data-input": i.name }, inputText(i))))
      : h("p", { class: "muted" }, "None."),
    s.inputsMissing.length
      ? [
          h("h4", {}, "Inputs missing"),
          h("ul", { class: "score-missing" }, s.inputsMissing.map((m) => h("li", { "data-testid": "score-missing", "data-input": m }, m))),
        ]
      : null,
    s.notes.length ? [h("h4", {}, "Notes"), h("ul", { class: "score-notes small" }, s.notes.map((n) => h("li", { "data-testid": "score-note" }, n)))] : null,
    h("p", { class: "reference" }, s.reference),
  );
}

function scoresPanel(scores) {
  const byName = new Map(scores.map((s) => [s.name, s]));
  const names = [...SCORE_NAMES, ...scores.map((s) => s.name).filter((n) => !SCORE_NAMES.includes(n))];
  return section("scores", "Scores", "", h("div", { class: "score-grid" }, names.map((n) => scoreCard(n, byName.get(n)))));
}

// -- data requests and care gaps ----------------------------------------------------------------

function statusText(status) {
  return h("span", { class: `status status-${status === "open" ? "active" : "resolved"}`, "data-testid": "status" }, status);
}

function requestsPanel(requests, domains) {
  const open = requests.filter((r) => r.status === "open").length;
  const body =
    requests.length === 0
      ? stateBox("empty", "requests-empty", "No data requests", "The shadow has every input its scores and rules need.")
      : table(
          "requests-table",
          [["Needed"], ["For"], ["Asked of"], ["Tried first"], ["Status"]],
          requests.map((r) =>
            h(
              "tr",
              { "data-testid": "request-row", "data-id": r.id, "data-need": r.need },
              h("th", { scope: "row" }, r.display),
              h("td", {}, r.reasons.join(", ") || "—"),
              h("td", {}, r.domains.length ? h("ul", { class: "plain badges" }, r.domains.map((d) => h("li", {}, domainBadge(d, domains)))) : "—"),
              h("td", { class: "small" }, r.tried.length ? h("ul", { class: "plain" }, r.tried.map((t) => h("li", {}, t))) : "—"),
              h("td", {}, statusText(r.status), r.satisfiedBy ? h("div", { class: "small muted" }, r.satisfiedBy) : null),
            ),
          ),
        );
  return section("requests", "Data requests", requests.length ? `${open} open of ${requests.length}` : "", body);
}

function gapsPanel(gaps) {
  const open = gaps.filter((g) => g.status === "open").length;
  const body =
    gaps.length === 0
      ? stateBox("empty", "gaps-empty", "No care gaps", "No care-gap rule applies, or none has been evaluated yet.")
      : table(
          "gaps-table",
          [["Recommended care"], ["Due", "date"], ["Last done", "date"], ["Status"]],
          gaps.map((g) =>
            h(
              "tr",
              { "data-testid": "gap-row", "data-rule": g.rule },
              h("th", { scope: "row" }, g.title, h("div", { class: "reference" }, g.reference)),
              h("td", { class: "date" }, g.dueDate ? h("time", { datetime: g.dueDate }, g.dueDate) : h("span", { class: "muted" }, "—")),
              h("td", { class: "date" }, g.lastDone ? h("time", { datetime: g.lastDone }, g.lastDone) : h("span", { class: "muted" }, "never")),
              h("td", {}, statusText(g.status)),
            ),
          ),
        );
  return section("gaps", "Care gaps", gaps.length ? `${open} open of ${gaps.length}` : "", body);
}

// -- page ---------------------------------------------------------------------------------------

async function renderShadow(main, ctx) {
  const page = await loadPatientPage(main, ctx, {
    query: SHADOW_QUERY,
    view: "Digital shadow",
    loading: "Loading the digital shadow…",
    failed: "Could not load the digital shadow",
    prefix: "shadow",
    hrefOf: shadowHref,
  });
  if (page === null) return;
  const { result, back } = page;
  const domains = new Map(result.domains.map((d) => [d.id, d]));
  const s = result.shadow;
  main.replaceChildren(
    h(
      "article",
      { class: "page page-shadow", "data-testid": "patient-shadow" },
      back,
      header(result),
      alertsPanel([...s.alerts]),
      vitalsPanel(s.vitals, domains),
      trendsPanel(result, ctx),
      scoresPanel(s.scores),
      requestsPanel(s.dataRequests, domains),
      gapsPanel(s.careGaps),
    ),
  );
  main.querySelector("h1").focus({ preventScroll: true });
}

// app.js imports this module for shadowLink, so this body runs before app.js's own (an ES module
// cycle) and app.js's route table does not exist yet: register once the module graph has run.
queueMicrotask(() => route(SHADOW_ROUTE, renderShadow));
