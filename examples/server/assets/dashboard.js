// The archive's dashboard: conventions, hooks with their live releases and, with a
// token, the deployment audit log. Everything is read from the API; values are put in
// the page as text, never as markup.
"use strict";

const api = document.querySelector('meta[name="osa-api"]').content;

// A token handed over in the fragment (`osa dashboard`) is kept for this tab only and
// removed from the address bar; the fragment never reaches the server.
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  sessionStorage.setItem("osa-token", fragment.get("token"));
  history.replaceState(null, "", location.pathname + location.search);
}
const token = sessionStorage.getItem("osa-token");

async function get(path) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(api + path, { headers });
  if (!response.ok) {
    let message = `${response.status}`;
    try {
      const body = await response.json();
      message = `${response.status} ${body.code || ""}: ${body.message || ""}`;
    } catch (_) { /* not JSON */ }
    throw new Error(`${path}: ${message}`);
  }
  return response.json();
}

function cell(text, mono) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "" : String(text);
  if (mono) td.className = "mono";
  return td;
}

function fill(id, rows, empty) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren();
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(empty);
    td.colSpan = document.querySelectorAll(`#${id} thead th`).length;
    td.className = "empty";
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const cells of rows) {
    const tr = document.createElement("tr");
    tr.append(...cells);
    body.append(tr);
  }
}

const list = (answer) => (Array.isArray(answer) ? answer : answer.items || []);
const when = (iso) => (iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 19) : "");

async function conventions() {
  const items = list(await get("/conventions"));
  fill("conventions", items.map((c) => [
    cell(c.slug, true),
    cell(c.title),
    cell(c.schema ? `${c.schema.id}@${c.schema.version}` : "", true),
    cell((c.hooks || []).join(", ")),
    cell(when(c.updated_at || c.created_at)),
  ]), "no convention deployed yet (osa deploy)");
}

async function hooks() {
  const items = list(await get("/hooks"));
  fill("hooks", items.map((h) => {
    const name = h.name || (h.identity && h.identity.name);
    const feature = h.feature || (h.identity && h.identity.feature) || {};
    const live = h.live_release || h.live;
    const digest = live && (live.digest || (live.runtime && live.runtime.digest));
    return [
      cell(name, true),
      cell(feature.cardinality || ""),
      cell((feature.columns || []).map((c) => c.name).join(", ")),
      cell(live ? `v${live.version}` : "none"),
      cell(digest ? digest.slice(0, 19) : "", true),
    ];
  }), "no hook registered yet");
}

async function deployments() {
  const note = document.getElementById("deployments-note");
  if (!token) {
    note.textContent = "Open the dashboard with `osa dashboard` (or add #token=… to the address) to see the audit log.";
    fill("deployments", [], "needs a token with deployments:read");
    return;
  }
  try {
    const items = list(await get("/deployments?limit=20"));
    note.textContent = "";
    fill("deployments", items.map((d) => [
      cell(when(d.created_at)),
      cell(d.kind),
      cell(d.target, true),
      cell(d.principal),
      cell(d.error ? `${d.status}: ${d.error}` : d.status),
    ]), "no deployment yet");
  } catch (e) {
    note.textContent = e.message;
    note.className = "error";
    fill("deployments", [], "not readable with this token");
  }
}

async function main() {
  const status = document.getElementById("status");
  try {
    const health = await get("/health");
    await Promise.all([conventions(), hooks(), deployments()]);
    status.textContent = `server ${health.status || "up"} · ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    status.textContent = e.message;
    status.className = "error";
  }
}

main();
