// The GraphQL client and DOM helper of the standalone pages (mapping.html, ...), free of side
// effects on import: app.js starts its hash router when imported, so pages with their own HTML
// cannot import from it. Same contract as app.js: the bearer token lives in
// localStorage["medshadowToken"], data reaches the DOM only as text, user input reaches the
// server only as GraphQL variables.

const GRAPHQL_URL = new URL("../graphql", import.meta.url).href;
export const TOKEN_KEY = "medshadowToken";

export class GraphQLRequestError extends Error {
  constructor(messages, status) {
    super(messages.join("; "));
    this.name = "GraphQLRequestError";
    this.messages = messages;
    this.status = status;
  }
}

export function readToken() {
  try {
    return window.localStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled: act anonymously
  }
}

export function storeToken(token) {
  try {
    if (token) window.localStorage.setItem(TOKEN_KEY, token);
    else window.localStorage.removeItem(TOKEN_KEY);
    return true;
  } catch {
    return false;
  }
}

/** POST a query with variables to /graphql; resolves to `data`, throws with the error messages. */
export async function gql(query, variables = {}, { signal } = {}) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  const token = readToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(GRAPHQL_URL, {
    method: "POST",
    headers,
    body: JSON.stringify({ query, variables }),
    signal,
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (body && Array.isArray(body.errors) && body.errors.length > 0) {
    throw new GraphQLRequestError(
      body.errors.map((e) => String(e && e.message ? e.message : e)),
      response.status,
    );
  }
  if (!response.ok || !body || !body.data) {
    throw new GraphQLRequestError(
      [`server answered ${response.status} ${response.statusText}`.trim()],
      response.status,
    );
  }
  return body.data;
}

export function errorMessages(error) {
  if (error instanceof GraphQLRequestError) return error.messages;
  return [error && error.message ? error.message : String(error)];
}

/**
 * Create an element. `attrs`: `class`, `style` (object of CSS properties, custom ones allowed),
 * `on<event>` functions, booleans (true = present), anything else as an attribute. Children are
 * nodes or values appended as text; null/false are skipped, arrays are flattened.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "style" && typeof value === "object") {
      for (const [prop, v] of Object.entries(value)) el.style.setProperty(prop, String(v));
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}
