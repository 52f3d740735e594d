// The patient's side of access control: "sign in as" for the embedded demo (top bar), the
// consent page (#/consent: grants, restrictions, authorised apps, the access log) and the
// approval page a third-party app sends the patient to (#/authorize?<OAuth query>).
//
// Consent is only meaningful if the patient can see what they agreed to and who looked, so the
// page shows the server's own records (consents, the audit trail) rather than a summary of them.
// Same rules as app.js: data reaches the DOM only as text, user input reaches the server only as
// GraphQL variables.

import { addNav, dateTimeCell, errorBox, errorMessages, fmtDateTime, gql, h, isAbort, route, stateBox } from "./app.js";
import { readToken, storeToken } from "./client.js";

export const CONSENT_ROUTE = /^#\/consent$/;
export const AUTHORIZE_ROUTE = /^#\/authorize$/;

const DEV_USERS_URL = new URL("../auth/dev-users", import.meta.url).href;
const DEV_TOKEN_URL = new URL("../auth/dev-token", import.meta.url).href;
const STYLESHEET = new URL("./consent.css", import.meta.url).href;

// index.html needs one line for this module; its stylesheet comes with it.
if (![...document.querySelectorAll('link[rel="stylesheet"]')].some((l) => l.href === STYLESHEET)) {
  document.head.append(h("link", { rel: "stylesheet", href: STYLESHEET }));
}

// -- queries ------------------------------------------------------------------------------------

const ME_QUERY = `query Me { me { subject role organisation patientId app scopes purpose tokenError } }`;

const CONSENT_FIELDS = `
fragment ConsentF on Consent {
  id kind granteeType grantee granteeName categories excluded purposes start end status
  breakGlass reason createdAt createdBy revokedAt revokedBy scopes
}`;

const EVENT_FIELDS = `
fragment EventF on AccessEvent {
  seq at actor role organisation app action what purpose outcome reason breakGlass
}`;

const CONSENT_PAGE_QUERY = `
query ConsentPage($p: ID!, $first: Int!) {
  consents(patientId: $p) { ...ConsentF }
  accessLog(patientId: $p, first: $first) { ...EventF }
  dataCategories { id label sensitive }
  organisations { id name }
}
${CONSENT_FIELDS}
${EVENT_FIELDS}`;

const LOG_QUERY = `
query AccessLog($p: ID!, $first: Int!, $before: Int) {
  accessLog(patientId: $p, first: $first, before: $before) { ...EventF }
}
${EVENT_FIELDS}`;

const GRANT_MUTATION = `
mutation Grant($p: ID!, $input: GrantInput!) { grantAccess(patientId: $p, input: $input) { ...ConsentF } }
${CONSENT_FIELDS}`;

const RESTRICT_MUTATION = `
mutation Restrict($p: ID!, $input: RestrictInput!) { restrictAccess(patientId: $p, input: $input) { ...ConsentF } }
${CONSENT_FIELDS}`;

const REVOKE_MUTATION = `
mutation Revoke($p: ID!, $c: ID!) { revokeConsent(patientId: $p, consentId: $c) { ...ConsentF } }
${CONSENT_FIELDS}`;

const APP_REQUEST_QUERY = `
query AppRequest($clientId: String!, $scope: String!, $redirectUri: String!) {
  appAuthorization(clientId: $clientId, scope: $scope, redirectUri: $redirectUri) {
    clientId name redirectUri scopes { scope category label sensitive }
  }
}`;

const APPROVE_MUTATION = `
mutation Approve($p: ID!, $clientId: String!, $scope: String!, $redirectUri: String!, $state: String,
                 $challenge: String!, $method: String!) {
  approveApp(patientId: $p, clientId: $clientId, scope: $scope, redirectUri: $redirectUri,
             state: $state, codeChallenge: $challenge, codeChallengeMethod: $method) { redirectTo }
}`;

const DENY_MUTATION = `
mutation Deny($clientId: String!, $redirectUri: String!, $state: String) {
  denyApp(clientId: $clientId, redirectUri: $redirectUri, state: $state) { redirectTo }
}`;

const LOG_PAGE = 50;

// -- formatting ---------------------------------------------------------------------------------

const GRANTEE_TYPES = {
  practitioner: "Practitioner",
  organisation: "Organisation",
  app: "App",
  research: "Research data bank",
  everyone: "Everyone",
};

function granteeText(c) {
  if (c.granteeType === "everyone" || c.granteeType === "research") return GRANTEE_TYPES[c.granteeType];
  const name = c.granteeName && c.granteeName !== c.grantee ? `${c.granteeName} (${c.grantee})` : c.grantee;
  return `${GRANTEE_TYPES[c.granteeType] || c.granteeType}: ${name}`;
}

function categoryText(ids, labels) {
  return ids.map((id) => labels.get(id) || id).join(", ");
}

function periodText(c) {
  if (!c.start && !c.end) return "no end date";
  if (!c.end) return `from ${fmtDateTime(c.start)}`;
  return `${c.start ? fmtDateTime(c.start) : "now"} – ${fmtDateTime(c.end)}`;
}

/** A URL the browser may be sent to: only http(s), whatever the server answered. */
function safeRedirect(target) {
  const url = new URL(target, location.href);
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new Error(`refusing to follow a redirect to a ${url.protocol} address`);
  }
  return url.href;
}

// -- sign in (embedded demo) --------------------------------------------------------------------

async function fetchMe(signal) {
  return (await gql(ME_QUERY, {}, { signal })).me;
}

async function fetchDevUsers() {
  const response = await fetch(DEV_USERS_URL, { headers: { Accept: "application/json" } });
  if (response.status === 404) return null; // production: no "sign in as"
  if (!response.ok) throw new Error(`/auth/dev-users answered ${response.status} ${response.statusText}`.trim());
  return response.json();
}

async function fetchDevToken(user) {
  const response = await fetch(DEV_TOKEN_URL, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(user),
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok || !body || !body.access_token) {
    const why = body && body.error ? body.error : `${response.status} ${response.statusText}`.trim();
    throw new Error(`sign-in refused: ${why}`);
  }
  return body.access_token;
}

/** Re-render the page on screen for the new identity (the router listens to hashchange). */
function redrawPage() {
  window.dispatchEvent(new HashChangeEvent("hashchange"));
}

function signInBox() {
  const box = h("div", { class: "signin", "data-testid": "signin" });
  let users = [];

  const who = (me) => {
    const user = users.find((u) => u.subject === me.subject);
    if (user) return user.label; // the demo's labels already say the role and clinic
    return `${me.subject} · ${me.role}${me.organisation ? ` at ${me.organisation}` : ""}`;
  };

  const signOut = () => {
    storeToken(null);
    draw();
    redrawPage();
  };

  const picker = () => {
    const select = h(
      "select",
      { id: "signin-user", "data-testid": "signin-user", class: "signin-select" },
      users.map((u, i) => h("option", { value: String(i) }, u.label)),
    );
    const failed = h("div", { class: "signin-error", "data-testid": "signin-error", role: "alert" });
    const go = h("button", { type: "submit", class: "btn", "data-testid": "signin-submit" }, "Sign in");
    const form = h(
      "form",
      {
        class: "signin-form",
        onsubmit: async (event) => {
          event.preventDefault();
          go.disabled = true;
          failed.textContent = "";
          try {
            storeToken(await fetchDevToken(users[Number(select.value)]));
          } catch (error) {
            go.disabled = false;
            failed.textContent = errorMessages(error).join("; ");
            return;
          }
          details.open = false;
          await draw();
          redrawPage();
        },
      },
      h("label", { for: "signin-user" }, "Sign in as"),
      select,
      go,
      failed,
    );
    const details = h(
      "details",
      { class: "signin-menu", "data-testid": "signin-menu" },
      h("summary", { "data-testid": "signin-open" }, readToken() ? "Switch user" : "Sign in"),
      h("div", { class: "signin-panel" }, form),
    );
    return details;
  };

  let drawing = 0;
  async function draw() {
    const mine = ++drawing;
    const [meResult, usersResult] = await Promise.allSettled([fetchMe(), fetchDevUsers()]);
    if (mine !== drawing) return; // a later sign-in or sign-out redraws
    const me = meResult.status === "fulfilled" ? meResult.value : null;
    const problem = meResult.status === "rejected" ? meResult.reason : null;
    const devUsers = usersResult.status === "fulfilled" ? usersResult.value : undefined;
    users = devUsers || [];
    const parts = [];
    if (problem) {
      parts.push(h("span", { class: "signin-who signin-problem", "data-testid": "signin-problem" }, errorMessages(problem).join("; ")));
    } else if (me.tokenError) {
      parts.push(h("span", { class: "signin-who signin-problem", "data-testid": "signin-problem" }, `Sign-in not valid: ${me.tokenError}`));
    } else {
      parts.push(
        h(
          "span",
          { class: "signin-who", "data-testid": "signin-who", "data-role": me.role, "data-subject": me.subject },
          readToken() ? who(me) : `Not signed in (${me.role === "none" ? "no access" : `acting as ${me.role}`})`,
        ),
      );
    }
    if (readToken()) {
      parts.push(h("button", { type: "button", class: "btn btn-quiet signin-out", "data-testid": "signin-out", onclick: signOut }, "Sign out"));
    }
    if (devUsers === null) {
      parts.push(h("span", { class: "signin-off", "data-testid": "signin-off" }, "Demo sign-in is off on this server: sign in through your organisation."));
    } else if (devUsers === undefined) {
      parts.push(h("span", { class: "signin-off signin-problem", "data-testid": "signin-unavailable" }, `Demo sign-in unavailable: ${errorMessages(usersResult.reason).join("; ")}`));
    } else if (users.length) {
      parts.push(picker());
    }
    box.replaceChildren(...parts);
  }

  draw();
  return box;
}

// -- the consent page ---------------------------------------------------------------------------

/** Resolves to the principal when it is a patient; otherwise draws why not and resolves null. */
async function requirePatient(main, ctx, prefix, purpose) {
  let me;
  try {
    me = await fetchMe(ctx.signal);
  } catch (error) {
    if (isAbort(error) || ctx.signal.aborted) return null;
    main.replaceChildren(errorBox(`${prefix}-error`, "Could not tell who is signed in", error));
    return null;
  }
  if (me.patientId && me.role === "patient") return me;
  const detail = me.tokenError
    ? `Your sign-in is not valid (${me.tokenError}). Sign in again as the patient.`
    : `You are ${readToken() ? "signed in" : "acting"} as ${me.role}${me.organisation ? ` at ${me.organisation}` : ""}. Sign in as the patient (top right) to ${purpose}.`;
  main.replaceChildren(stateBox("empty", `${prefix}-not-patient`, "Only the patient can do this", detail));
  return null;
}

function confirmButton(label, question, testid, action) {
  const holder = h("span", { class: "confirm" });
  const ask = () => {
    const yes = h("button", { type: "button", class: "btn btn-danger", "data-testid": `${testid}-confirm` }, `Yes, ${label.toLowerCase()}`);
    const no = h("button", { type: "button", class: "btn btn-quiet", "data-testid": `${testid}-cancel` }, "Cancel");
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      no.disabled = true;
      await action();
    });
    no.addEventListener("click", () => {
      holder.replaceChildren(start);
      start.focus();
    });
    holder.replaceChildren(h("span", { class: "confirm-q" }, question), " ", yes, " ", no);
    yes.focus();
  };
  const start = h("button", { type: "button", class: "btn", "data-testid": testid, onclick: ask }, label);
  holder.append(start);
  return holder;
}

function consentRow(c, labels, revoke) {
  const flags = [];
  if (c.breakGlass) {
    flags.push(h("span", { class: "flag flag-glass", "data-testid": "consent-break-glass", title: c.reason || "" }, "Break-glass"));
  }
  const excluded = c.excluded.length
    ? h("div", { class: "small consent-excluded", "data-testid": "consent-excluded" }, `except ${categoryText(c.excluded, labels)}`)
    : null;
  const revoked = c.status === "revoked";
  return h(
    "tr",
    {
      "data-testid": revoked ? "history-row" : "consent-row",
      "data-id": c.id,
      "data-kind": c.kind,
      "data-grantee-type": c.granteeType,
      "data-grantee": c.grantee,
      "data-status": c.status,
      class: c.breakGlass ? "row-glass" : null,
    },
    h("td", {}, h("span", { class: `kind-badge kind-${c.kind}`, "data-testid": "consent-kind" }, c.kind === "deny" ? "Hidden from" : "Shared with"), flags),
    h("td", { "data-testid": "consent-grantee" }, granteeText(c)),
    h("td", {}, h("span", { "data-testid": "consent-categories" }, categoryText(c.categories, labels)), excluded),
    h("td", { "data-testid": "consent-purposes" }, c.purposes.join(", ")),
    h("td", { class: "small", "data-testid": "consent-period" }, periodText(c), c.reason ? h("div", { class: "muted" }, `Reason: ${c.reason}`) : null),
    revoked
      ? h("td", { class: "small", "data-testid": "consent-revoked" }, `revoked ${fmtDateTime(c.revokedAt)}${c.revokedBy ? ` by ${c.revokedBy}` : ""}`)
      : h("td", { class: "small" }, dateTimeCell(c.createdAt)),
    revoked ? null : h("td", { class: "actions" }, confirmButton("Revoke", `Revoke this ${c.kind === "deny" ? "restriction" : "grant"}?`, "consent-revoke", () => revoke(c))),
  );
}

function consentTable(rows, testid, { history = false } = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "grid consent-grid", "data-testid": testid },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Kind"),
          h("th", { scope: "col" }, "Who"),
          h("th", { scope: "col" }, "What"),
          h("th", { scope: "col" }, "Purpose"),
          h("th", { scope: "col" }, "Period"),
          h("th", { scope: "col" }, history ? "Revoked" : "Since"),
          history ? null : h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
        ),
      ),
      h("tbody", {}, rows),
    ),
  );
}

function appRow(c, labels, revoke) {
  return h(
    "li",
    { class: "app-item", "data-testid": "app-row", "data-id": c.id, "data-grantee": c.grantee },
    h("div", { class: "app-name" }, h("strong", { "data-testid": "app-name" }, c.granteeName || c.grantee), h("span", { class: "muted small mono" }, ` ${c.grantee}`)),
    h("div", { class: "small" }, `May read: ${categoryText(c.categories, labels)}`),
    c.scopes.length ? h("div", { class: "small muted mono" }, c.scopes.join(" ")) : null,
    h("div", { class: "small muted" }, `Approved ${fmtDateTime(c.createdAt)}`),
    confirmButton("Revoke", "Stop this app reading your record?", "app-revoke", () => revoke(c)),
  );
}

function eventRow(e, self) {
  const denied = e.outcome !== "allowed";
  const via = [e.role, e.organisation, e.app ? `app ${e.app}` : null].filter(Boolean).join(" · ");
  return h(
    "tr",
    {
      "data-testid": "log-row",
      "data-seq": String(e.seq),
      "data-actor": e.actor,
      "data-outcome": e.outcome,
      "data-break-glass": e.breakGlass ? "true" : "false",
      class: [e.breakGlass ? "row-glass" : "", denied ? "row-denied" : ""].join(" ").trim() || null,
    },
    h("td", { class: "date" }, dateTimeCell(e.at)),
    h("td", { "data-testid": "log-actor", title: e.actor }, e.actor === self ? "You" : e.actor),
    h("td", { class: "small", "data-testid": "log-via" }, via),
    h("td", { "data-testid": "log-what" }, h("span", { class: "kind" }, e.action), " ", e.what),
    h("td", { "data-testid": "log-purpose" }, e.purpose),
    h(
      "td",
      { "data-testid": "log-outcome" },
      h("span", { class: denied ? "outcome outcome-denied" : "outcome outcome-allowed" }, denied ? "Denied" : "Allowed"),
      e.breakGlass ? h("span", { class: "flag flag-glass", "data-testid": "log-break-glass" }, "Break-glass") : null,
      e.reason ? h("div", { class: "small muted" }, e.reason) : null,
    ),
  );
}

function logPanel(me, first, ctx) {
  const tbody = h("tbody", { "data-testid": "log-rows" }, first.map((e) => eventRow(e, me.subject)));
  const messages = h("div", { class: "messages" });
  let oldest = first.length ? first[first.length - 1].seq : null;
  const more = h("button", { type: "button", class: "btn", "data-testid": "log-more", hidden: first.length < LOG_PAGE }, "Older entries");
  more.addEventListener("click", async () => {
    more.disabled = true;
    let data;
    try {
      data = await gql(LOG_QUERY, { p: me.patientId, first: LOG_PAGE, before: oldest }, { signal: ctx.signal });
    } catch (error) {
      if (isAbort(error)) return;
      more.disabled = false;
      messages.replaceChildren(errorBox("log-error", "Could not load older entries", error));
      return;
    }
    const rows = data.accessLog;
    tbody.append(...rows.map((e) => eventRow(e, me.subject)));
    if (rows.length) oldest = rows[rows.length - 1].seq;
    more.hidden = rows.length < LOG_PAGE;
    more.disabled = false;
  });
  return h(
    "section",
    { class: "panel", "data-testid": "access-log", "aria-labelledby": "log-h" },
    h("div", { class: "panel-head" }, h("h2", { id: "log-h" }, "Who accessed your record"), h("span", { class: "muted" }, "newest first")),
    messages,
    first.length === 0
      ? stateBox("empty", "log-empty", "Nobody has accessed your record yet.")
      : h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "grid log-grid" },
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                h("th", { scope: "col", class: "date" }, "When"),
                h("th", { scope: "col" }, "Who"),
                h("th", { scope: "col" }, "Role · organisation · app"),
                h("th", { scope: "col" }, "What"),
                h("th", { scope: "col" }, "Purpose"),
                h("th", { scope: "col" }, "Outcome"),
              ),
            ),
            tbody,
          ),
        ),
    h("div", { class: "more-bar" }, more),
  );
}

let formSeq = 0;

function checkbox(name, value, label, { checked = false, testid = null, hint = null } = {}) {
  const id = `cf-${++formSeq}`;
  const input = h("input", { type: "checkbox", id, name, value, checked, "data-testid": testid });
  return h("label", { class: "check", for: id }, input, " ", label, hint ? h("span", { class: "muted small" }, ` ${hint}`) : null);
}

function checkedValues(form, name) {
  return [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);
}

/** "All my data" and the single categories exclude each other: all disables the others. */
function categoryBoxes(categories, name) {
  const boxes = categories.map((c) =>
    checkbox(name, c.id, c.label, { testid: `${name}-${c.id}`, hint: c.sensitive ? "(sensitive)" : null }),
  );
  const wrap = h("div", { class: "check-grid" }, boxes);
  wrap.addEventListener("change", (event) => {
    if (event.target.value !== "all") return;
    for (const input of wrap.querySelectorAll("input")) {
      if (input.value === "all") continue;
      input.disabled = event.target.checked;
      if (event.target.checked) input.checked = false;
    }
  });
  return wrap;
}

function dayStart(value) {
  return value ? `${value}T00:00:00Z` : null;
}

function dayEnd(value) {
  return value ? `${value}T23:59:59Z` : null;
}

function grantForm(me, data, labels, done) {
  const orgSelect = h(
    "select",
    { id: "grant-org", name: "organisation", "data-testid": "grant-org" },
    data.organisations.map((o) => h("option", { value: o.id }, `${o.name} (${o.id})`)),
  );
  const practitioner = h("input", { type: "text", id: "grant-practitioner", "data-testid": "grant-practitioner", autocomplete: "off", spellcheck: "false", placeholder: "practitioner id" });
  const radio = (value, label, control, checked = false) => {
    const id = `grant-to-${value}`;
    return h(
      "div",
      { class: "radio-row" },
      h("input", { type: "radio", name: "to", id, value, checked, "data-testid": `grant-to-${value}` }),
      h("label", { for: id }, label),
      control,
    );
  };
  const status = h("div", { class: "form-status", role: "status", "data-testid": "grant-status" });
  const submit = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "grant-submit" }, "Grant access");
  const form = h(
    "form",
    { class: "consent-form", "data-testid": "grant-form", "aria-labelledby": "grant-h" },
    h("h3", { id: "grant-h" }, "Share my record"),
    h(
      "fieldset",
      {},
      h("legend", {}, "With"),
      radio("organisation", "Organisation", orgSelect, true),
      radio("practitioner", "Practitioner", practitioner),
      radio("research", "The research data bank", h("span", { class: "muted small" }, "de-identified, for research only")),
    ),
    h("fieldset", {}, h("legend", {}, "What"), categoryBoxes(data.dataCategories, "grant-cat")),
    h(
      "fieldset",
      {},
      h("legend", {}, "Keep private even so"),
      checkbox("grant-excl", "mental-health", "Exclude mental health", { testid: "grant-exclude-mental-health" }),
      checkbox("grant-excl", "hiv", "Exclude HIV", { testid: "grant-exclude-hiv" }),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "For"),
      checkbox("grant-purpose", "treatment", "Treatment", { checked: true, testid: "grant-purpose-treatment" }),
      checkbox("grant-purpose", "research", "Research", { testid: "grant-purpose-research" }),
    ),
    h(
      "fieldset",
      { class: "period" },
      h("legend", {}, "Period (optional)"),
      h("label", { for: "grant-start" }, "From "),
      h("input", { type: "date", id: "grant-start", "data-testid": "grant-start" }),
      h("label", { for: "grant-end" }, " until "),
      h("input", { type: "date", id: "grant-end", "data-testid": "grant-end" }),
    ),
    h("div", { class: "form-actions" }, submit, status),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const to = form.querySelector('input[name="to"]:checked').value;
    const input = {
      granteeType: to,
      grantee: to === "organisation" ? orgSelect.value : to === "practitioner" ? practitioner.value.trim() : null,
      categories: checkedValues(form, "grant-cat"),
      excluded: checkedValues(form, "grant-excl"),
      purposes: to === "research" ? ["research"] : checkedValues(form, "grant-purpose"),
      start: dayStart(form.querySelector("#grant-start").value),
      end: dayEnd(form.querySelector("#grant-end").value),
    };
    submit.disabled = true;
    status.replaceChildren("Saving…");
    try {
      const saved = (await gql(GRANT_MUTATION, { p: me.patientId, input })).grantAccess;
      await done(`Shared with ${granteeText(saved)}.`);
    } catch (error) {
      submit.disabled = false;
      status.replaceChildren(errorBox("grant-error", "Access was not granted", error));
    }
  });
  return form;
}

function restrictForm(me, data, done) {
  const status = h("div", { class: "form-status", role: "status", "data-testid": "restrict-status" });
  const submit = h("button", { type: "submit", class: "btn btn-primary", "data-testid": "restrict-submit" }, "Hide from everyone");
  const sensitiveFirst = [...data.dataCategories].sort((a, b) => Number(b.sensitive) - Number(a.sensitive));
  const form = h(
    "form",
    { class: "consent-form", "data-testid": "restrict-form", "aria-labelledby": "restrict-h" },
    h("h3", { id: "restrict-h" }, "Hide from everyone"),
    h("p", { class: "muted small" }, "Restrictions win over grants: nobody sees these categories until you revoke the restriction (except in a flagged emergency)."),
    h("fieldset", {}, h("legend", {}, "Hide"), categoryBoxes(sensitiveFirst, "restrict-cat")),
    h("div", { class: "form-actions" }, submit, status),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = { granteeType: "everyone", categories: checkedValues(form, "restrict-cat") };
    submit.disabled = true;
    status.replaceChildren("Saving…");
    try {
      await gql(RESTRICT_MUTATION, { p: me.patientId, input });
      await done("Hidden from everyone.");
    } catch (error) {
      submit.disabled = false;
      status.replaceChildren(errorBox("restrict-error", "Nothing was hidden", error));
    }
  });
  return form;
}

async function renderConsent(main, ctx) {
  document.title = "My consent · medshadow";
  main.setAttribute("aria-busy", "true");
  main.append(stateBox("loading", "consent-loading", "Loading your consent…"));
  const me = await requirePatient(main, ctx, "consent", "manage who may see the record");
  main.removeAttribute("aria-busy");
  if (me === null) return;

  const page = h("article", { class: "page page-consent", "data-testid": "consent-page", "data-patient": me.patientId });
  const notice = h("div", { class: "consent-notice", role: "status", "data-testid": "consent-notice" });

  async function load(message) {
    let data;
    try {
      data = await gql(CONSENT_PAGE_QUERY, { p: me.patientId, first: LOG_PAGE }, { signal: ctx.signal });
    } catch (error) {
      if (isAbort(error) || ctx.signal.aborted) return;
      main.replaceChildren(errorBox("consent-error", "Could not load your consent", error));
      return;
    }
    if (ctx.signal.aborted) return;
    draw(data, message);
  }

  async function revoke(c) {
    try {
      await gql(REVOKE_MUTATION, { p: me.patientId, c: c.id }, { signal: ctx.signal });
    } catch (error) {
      if (isAbort(error)) return;
      notice.replaceChildren(errorBox("revoke-error", "Could not revoke", error));
      return;
    }
    await load(`Revoked: ${granteeText(c)}.`);
  }

  function draw(data, message) {
    const labels = new Map(data.dataCategories.map((c) => [c.id, c.label]));
    const active = data.consents.filter((c) => c.status === "active");
    const rules = active.filter((c) => c.granteeType !== "app");
    const apps = active.filter((c) => c.granteeType === "app");
    const past = data.consents.filter((c) => c.status !== "active");
    notice.replaceChildren(message ? h("span", { class: "consent-ok" }, message) : "");

    page.replaceChildren(
      h(
        "header",
        { class: "page-head consent-head" },
        h("h1", { tabindex: "-1" }, "My consent"),
        h("span", { class: "muted" }, "Who may see your record, and who did"),
      ),
      notice,
      h(
        "section",
        { class: "panel", "data-testid": "consent-active", "aria-labelledby": "active-h" },
        h("div", { class: "panel-head" }, h("h2", { id: "active-h" }, "Grants and restrictions"), h("span", { class: "muted", "data-testid": "consent-count" }, `${rules.length} active`)),
        rules.length === 0
          ? stateBox("empty", "consent-none", "No grants or restrictions.", "Your clinics may read your record for your treatment; every access is listed below.")
          : consentTable(rules.map((c) => consentRow(c, labels, revoke)), "consent-table"),
      ),
      h(
        "section",
        { class: "panel", "data-testid": "consent-apps", "aria-labelledby": "apps-h" },
        h("div", { class: "panel-head" }, h("h2", { id: "apps-h" }, "Apps you authorised")),
        apps.length === 0
          ? stateBox("empty", "apps-none", "No app may read your record.")
          : h("ul", { class: "app-list" }, apps.map((c) => appRow(c, labels, revoke))),
      ),
      h(
        "details",
        { class: "panel consent-history", "data-testid": "consent-history" },
        h("summary", {}, h("h2", { class: "inline" }, "History"), " ", h("span", { class: "pill", "data-testid": "history-count" }, String(past.length)), h("span", { class: "muted" }, " revoked grants, restrictions and apps")),
        past.length === 0
          ? stateBox("empty", "history-none", "Nothing revoked yet.")
          : consentTable(past.map((c) => consentRow(c, labels, revoke)), "history-table", { history: true }),
      ),
      h(
        "section",
        { class: "panel consent-forms", "aria-label": "Change who may see my record" },
        grantForm(me, data, labels, load),
        restrictForm(me, data, load),
      ),
      logPanel(me, data.accessLog, ctx),
    );
    if (!page.isConnected) {
      main.replaceChildren(page);
      page.querySelector("h1").focus({ preventScroll: true });
    }
  }

  await load(null);
}

// -- the app approval page ----------------------------------------------------------------------

const REQUIRED_PARAMS = ["client_id", "redirect_uri", "scope", "code_challenge"];

async function renderAuthorize(main, ctx) {
  document.title = "Approve an app · medshadow";
  const q = ctx.query;
  const missing = REQUIRED_PARAMS.filter((k) => !q.get(k));
  if (missing.length) {
    main.append(stateBox("error", "authorize-invalid", "This approval request is incomplete", `Missing: ${missing.join(", ")}. Go back to the app and start again.`));
    return;
  }
  const request = {
    clientId: q.get("client_id"),
    redirectUri: q.get("redirect_uri"),
    scope: q.get("scope"),
    state: q.get("state"),
    challenge: q.get("code_challenge"),
    method: q.get("code_challenge_method") || "S256",
  };
  main.setAttribute("aria-busy", "true");
  main.append(stateBox("loading", "authorize-loading", "Checking the app's request…"));
  const me = await requirePatient(main, ctx, "authorize", "approve or deny this app");
  if (me === null) {
    main.removeAttribute("aria-busy");
    return;
  }
  let app;
  try {
    app = (await gql(APP_REQUEST_QUERY, { clientId: request.clientId, scope: request.scope, redirectUri: request.redirectUri }, { signal: ctx.signal })).appAuthorization;
  } catch (error) {
    if (isAbort(error) || ctx.signal.aborted) return;
    main.removeAttribute("aria-busy");
    main.replaceChildren(errorBox("authorize-error", "This app's request cannot be approved", error));
    return;
  }
  main.removeAttribute("aria-busy");
  let host;
  try {
    host = new URL(app.redirectUri).host;
  } catch {
    host = app.redirectUri;
  }

  const status = h("div", { class: "form-status", role: "status", "data-testid": "authorize-status" });
  const decide = async (mutation, variables, key, busy) => {
    for (const b of buttons) b.disabled = true;
    status.replaceChildren(busy);
    try {
      const data = await gql(mutation, variables, { signal: ctx.signal });
      location.assign(safeRedirect(data[key].redirectTo));
    } catch (error) {
      if (isAbort(error)) return;
      for (const b of buttons) b.disabled = false;
      status.replaceChildren(errorBox("authorize-decision-error", "The decision was not recorded", error));
    }
  };
  const approve = h("button", { type: "button", class: "btn btn-primary", "data-testid": "authorize-approve" }, "Approve");
  const deny = h("button", { type: "button", class: "btn", "data-testid": "authorize-deny" }, "Deny");
  const buttons = [approve, deny];
  approve.addEventListener("click", () =>
    decide(
      APPROVE_MUTATION,
      {
        p: me.patientId,
        clientId: request.clientId,
        scope: request.scope,
        redirectUri: request.redirectUri,
        state: request.state,
        challenge: request.challenge,
        method: request.method,
      },
      "approveApp",
      "Approving…",
    ),
  );
  deny.addEventListener("click", () =>
    decide(DENY_MUTATION, { clientId: request.clientId, redirectUri: request.redirectUri, state: request.state }, "denyApp", "Denying…"),
  );
  const sensitive = app.scopes.filter((s) => s.sensitive).length;
  main.replaceChildren(
    h(
      "article",
      { class: "page page-authorize", "data-testid": "authorize-page", "data-client-id": app.clientId },
      h("h1", { tabindex: "-1" }, h("span", { "data-testid": "authorize-app" }, app.name), " asks to read your record"),
      h("p", {}, "If you approve, it will be sent back to ", h("strong", { class: "mono", "data-testid": "authorize-host" }, host), " with permission to read:"),
      h(
        "ul",
        { class: "scope-list", "data-testid": "authorize-scopes" },
        app.scopes.map((s) =>
          h(
            "li",
            { class: s.sensitive ? "scope scope-sensitive" : "scope", "data-testid": "authorize-scope", "data-scope": s.scope, "data-sensitive": s.sensitive ? "true" : "false" },
            h("span", { class: "scope-label", "data-testid": "scope-label" }, s.label),
            s.sensitive ? h("span", { class: "flag flag-sensitive", "data-testid": "scope-sensitive" }, "Sensitive") : null,
            h("span", { class: "muted small mono" }, ` ${s.scope}`),
          ),
        ),
      ),
      sensitive
        ? h("p", { class: "scope-warning", "data-testid": "authorize-sensitive" }, `${sensitive === 1 ? "One permission covers" : `${sensitive} permissions cover`} sensitive data. Approve only if you trust this app with it.`)
        : null,
      h("p", { class: "muted small" }, "You can revoke the approval at any time on ", h("a", { href: "#/consent" }, "My consent"), "."),
      h("div", { class: "form-actions" }, approve, deny, status),
    ),
  );
  main.querySelector("h1").focus({ preventScroll: true });
}

// -- registration -------------------------------------------------------------------------------

const topbar = document.querySelector(".topbar");
if (topbar) topbar.append(signInBox());
addNav("#/consent", "My consent");
route(CONSENT_ROUTE, renderConsent);
route(AUTHORIZE_ROUTE, renderAuthorize);
