// Baton's web console: runs, workflows, agents, schedules and webhooks, over the REST API
// of the server that serves this page. No framework and no build step: pages are drawn
// with the DOM, a run's graph with SVG, and live updates come from the run's event
// stream (Server-Sent Events, read with fetch so that an API key can be sent).
"use strict";

const KEY = "baton.apiKey";
const view = document.getElementById("view");
const problemBox = document.getElementById("problem");
let leaving = []; // what the current page must stop when another one is shown

// ---------------------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? `${status}: ${body.message}` : `HTTP ${status}`);
    this.status = status;
  }
}

function headers(extra) {
  const found = { Accept: "application/json", ...extra };
  const key = localStorage.getItem(KEY);
  if (key) found["X-API-Key"] = key;
  return found;
}

async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// Calls onEvent with each event of a Server-Sent Events stream until the page changes.
function subscribe(path, onEvent) {
  const controller = new AbortController();
  leaving.push(() => controller.abort());
  (async () => {
    const response = await fetch(path, {
      headers: headers({ Accept: "text/event-stream" }),
      signal: controller.signal,
    });
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const data = buffer
          .slice(0, end)
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trimStart())
          .join("\n");
        buffer = buffer.slice(end + 2);
        if (data) onEvent(JSON.parse(data));
      }
    }
  })().catch((error) => {
    if (!controller.signal.aborted) showProblem(error);
  });
}

// Runs fn at most once per `ms`, after the last call (refreshes after bursts of events).
function debounce(fn, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

// --------------------------------------------------------------------------- drawing

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

// replaceChildren and append would show a null child as the text "null".
const present = (children) => children.flat().filter((c) => c !== null && c !== undefined);
const fill = (parent, ...children) => parent.replaceChildren(...present(children));
const add = (parent, ...children) => parent.append(...present(children));

const badge = (status) => el("span", { class: `status ${status}` }, status);
const when = (time) => (time ? new Date(time).toLocaleString() : "");
const short = (id) => (id ? id.replace(/^run-/, "").slice(0, 8) : "");
const json = (value) => el("pre", {}, JSON.stringify(value ?? null, null, 2));

function duration(start, end) {
  if (!start) return "";
  const ms = (end ? new Date(end) : new Date()) - new Date(start);
  return ms < 1000 ? `${ms} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

function table(columns, rows, onOpen) {
  return el(
    "table",
    {},
    el("thead", {}, el("tr", {}, columns.map(([title]) => el("th", {}, title)))),
    el(
      "tbody",
      {},
      rows.map((row) =>
        el(
          "tr",
          onOpen ? { class: "link", onclick: () => onOpen(row) } : {},
          columns.map(([, cell]) => el("td", {}, cell(row))),
        ),
      ),
    ),
  );
}

function showProblem(error) {
  problemBox.hidden = !error;
  problemBox.textContent = error ? String(error.message || error) : "";
}

async function act(label, fn) {
  try {
    await fn();
    showProblem(null);
  } catch (error) {
    showProblem(new Error(`${label}: ${error.message}`));
  }
}

// ------------------------------------------------------------------------- the graph

// The edges of a workflow's steps: next_step, each route's next_step, and depends_on.
function edges(steps) {
  const found = [];
  for (const step of Object.values(steps)) {
    if (step.next_step) found.push([step.id, step.next_step]);
    for (const route of step.routes || []) if (route.next_step) found.push([step.id, route.next_step]);
    for (const before of step.depends_on || []) found.push([before, step.id]);
  }
  return found.filter(([a, b]) => steps[a] && steps[b]);
}

// Layers by longest distance from the start step; unreachable steps after the rest.
function layers(definition) {
  const steps = definition.steps || {};
  const graph = edges(steps);
  const depth = { [definition.start_step]: 0 };
  for (let round = 0; round < Object.keys(steps).length; round++) {
    for (const [a, b] of graph) {
      if (depth[a] !== undefined && (depth[b] === undefined || depth[b] < depth[a] + 1)) {
        depth[b] = Math.min(depth[a] + 1, Object.keys(steps).length);
      }
    }
  }
  const last = Math.max(0, ...Object.values(depth));
  const columns = [];
  for (const id of Object.keys(steps)) {
    const column = depth[id] ?? last + 1;
    (columns[column] = columns[column] || []).push(id);
  }
  return { columns: columns.filter(Boolean), graph };
}

const NODE_W = 160;
const NODE_H = 40;

// An SVG drawing of the step graph; statusOf(id) colours each node, onPick(id) on click.
function drawGraph(definition, statusOf, onPick) {
  const { columns, graph } = layers(definition);
  const place = {};
  columns.forEach((ids, x) => ids.forEach((id, y) => (place[id] = { x: 20 + x * (NODE_W + 50), y: 20 + y * (NODE_H + 24) })));
  const width = 40 + columns.length * (NODE_W + 50);
  const height = 40 + Math.max(1, ...columns.map((c) => c.length)) * (NODE_H + 24);
  const drawing = svg("svg", { class: "graph", viewBox: `0 0 ${width} ${height}`, height });
  for (const [a, b] of graph) {
    const from = place[a];
    const to = place[b];
    const x1 = from.x + NODE_W;
    const y1 = from.y + NODE_H / 2;
    const x2 = to.x;
    const y2 = to.y + NODE_H / 2;
    drawing.append(svg("path", { d: `M${x1},${y1} C${x1 + 25},${y1} ${x2 - 25},${y2} ${x2},${y2}` }));
  }
  for (const [id, at] of Object.entries(place)) {
    const title = svg("title");
    title.textContent = id;
    const label = svg("text", { x: at.x + 10, y: at.y + 25 });
    label.textContent = id.length > 20 ? `${id.slice(0, 19)}…` : id;
    drawing.append(
      svg(
        "g",
        { class: `node ${statusOf(id)}`, "data-step": id, onclick: () => onPick(id) },
        svg("rect", { x: at.x, y: at.y, width: NODE_W, height: NODE_H }),
        label,
        title,
      ),
    );
  }
  return drawing;
}

// ---------------------------------------------------------------------------- pages

async function runsPage(query) {
  const workflows = (await api("/api/v1/workflows?page_size=100")).items;
  const filters = el(
    "form",
    { class: "filters", onsubmit: (event) => {
      event.preventDefault();
      const chosen = new URLSearchParams();
      for (const [name, value] of new FormData(event.target)) if (value) chosen.set(name, value);
      location.hash = `#/runs?${chosen}`;
    } },
    el("label", {}, "status", el("select", { name: "status" }, el("option", { value: "" }, "any"),
      ["PENDING", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "CANCELLED"].map((s) =>
        el("option", { value: s, selected: query.get("status") === s }, s.toLowerCase())))),
    el("label", {}, "workflow", el("select", { name: "workflow_id" }, el("option", { value: "" }, "any"),
      workflows.map((w) => el("option", { value: w.id, selected: query.get("workflow_id") === w.id }, w.name)))),
    el("label", {}, "created after", el("input", { type: "datetime-local", name: "created_after", value: query.get("created_after") || "" })),
    el("label", {}, "sort", el("select", { name: "sort_order" },
      el("option", { value: "desc" }, "newest first"),
      el("option", { value: "asc", selected: query.get("sort_order") === "asc" }, "oldest first"))),
    el("button", { type: "submit" }, "Filter"),
  );
  const list = el("div");
  add(view, el("h1", {}, "Runs"), filters, list);
  const page = Number(query.get("page") || 1);
  const load = async () => {
    const params = new URLSearchParams({ page_size: "25", page: String(page) });
    for (const name of ["status", "workflow_id", "sort_order"]) if (query.get(name)) params.set(name, query.get(name));
    if (query.get("created_after")) params.set("created_after", new Date(query.get("created_after")).toISOString());
    const runs = await api(`/api/v1/runs?${params}`);
    const pager = (to) => {
      const next = new URLSearchParams(query);
      next.set("page", String(to));
      return `#/runs?${next}`;
    };
    fill(list,
      table(
        [
          ["run", (r) => el("code", {}, short(r.id))],
          ["workflow", (r) => r.workflow_name],
          ["status", (r) => badge(r.status)],
          ["triggered by", (r) => r.triggered_by],
          ["created", (r) => when(r.created_at)],
          ["duration", (r) => duration(r.created_at, r.completed_at || r.cancelled_at)],
        ],
        runs.items,
        (r) => (location.hash = `#/runs/${r.id}`),
      ),
      el("p", { class: "meta" }, `${runs.total} runs, page ${runs.page} of ${Math.max(1, runs.total_pages)} `,
        page > 1 ? el("a", { href: pager(page - 1) }, "previous") : null, " ",
        page < runs.total_pages ? el("a", { href: pager(page + 1) }, "next") : null),
    );
  };
  await load();
  // Any run changing status refreshes the list.
  subscribe("/api/v1/events", debounce(() => load().catch(showProblem), 300));
}

async function workflowDefinition(run) {
  const versions = await api(`/api/v1/workflows/${run.workflow_id}/versions?page_size=100`);
  const version = versions.items.find((v) => v.id === run.workflow_definition_id) || versions.items[0];
  return version ? version.workflow_data : { steps: {} };
}

async function runPage(runId) {
  let run = await api(`/api/v1/runs/${runId}`);
  const definition = await workflowDefinition(run);
  const steps = {}; // step id -> RunStep (the step itself, not its fan-out items)
  const logs = [];
  let selected = null;

  const head = el("div");
  const graphBox = el("div");
  const detail = el("div");
  const logBox = el("pre", { class: "log" });
  add(view, head, el("div", { class: "split" }, el("div", {}, el("h2", {}, "Steps"), graphBox), el("div", {}, detail)),
    el("h2", {}, "Log"), logBox);

  const drawHead = () => {
    const live = ["PENDING", "RUNNING", "PAUSED"].includes(run.status);
    fill(head,
      el("h1", {}, "Run ", el("code", {}, run.id), " ", badge(run.status)),
      el("p", { class: "meta" }, "workflow ", el("a", { href: `#/workflows/${run.workflow_id}` }, run.workflow_name),
        ` · created ${when(run.created_at)} · ${duration(run.created_at, run.completed_at || run.cancelled_at)}`,
        run.error_message ? ` · ${run.error_message}` : ""),
      el("div", { class: "actions" },
        el("button", { id: "cancel-run", disabled: !live, onclick: () => act("cancel", () =>
          api(`/api/v1/runs/${run.id}/cancel`, { method: "POST", body: { reason: "cancelled from the console" } })) }, "Cancel"),
        el("button", { id: "retry-run", disabled: !["FAILED", "CANCELLED"].includes(run.status), onclick: () => act("retry", async () => {
          await api(`/api/v1/runs/${run.id}/retry`, { method: "POST", body: {} });
          route();
        }) }, "Retry"),
        run.status === "RUNNING" ? el("button", { onclick: () => act("pause", () => api(`/api/v1/runs/${run.id}/pause`, { method: "POST", body: {} })) }, "Pause") : null,
        run.status === "PAUSED" ? el("button", { onclick: () => act("resume", () => api(`/api/v1/runs/${run.id}/resume`, { method: "POST", body: {} })) }, "Resume") : null),
    );
  };
  const drawGraphBox = () => {
    fill(graphBox, drawGraph(definition, (id) => `${(steps[id] && steps[id].status) || "PENDING"}${id === selected ? " selected" : ""}`, (id) => {
      selected = id;
      drawGraphBox();
      drawDetail();
    }));
  };
  const drawDetail = () => {
    const step = steps[selected];
    if (!selected) {
      fill(detail, el("p", { class: "meta" }, "Pick a step to see its input, output and log."));
      return;
    }
    fill(detail,
      el("h2", {}, "Step ", el("code", {}, selected), " ", badge((step && step.status) || "PENDING")),
      step ? el("p", { class: "meta" }, `agent ${step.agent_name} · started ${when(step.started_at)} · ${duration(step.started_at, step.completed_at)}`) : null,
      step && step.error_message ? el("p", {}, step.error_message) : null,
      el("h2", {}, "Input"), json(step && step.input_data),
      el("h2", {}, "Output"), json(step && step.output_data),
      el("h2", {}, "Log"), el("pre", {}, logs.filter((l) => l.step_id === selected).map((l) => `${l.level || ""} ${l.message}\n`).join("")),
    );
  };
  const drawLogs = () => {
    logBox.textContent = logs.map((l) => `${when(l.timestamp)} ${l.level || ""} ${l.step_id ? `[${l.step_id}] ` : ""}${l.message}`).join("\n");
  };
  const takeSteps = (list) => {
    for (const step of list) if (!step.parent_step_id) steps[step.step_id] = step;
  };
  const refreshSteps = debounce(async () => {
    takeSteps(await api(`/api/v1/runs/${run.id}/steps`));
    drawGraphBox();
    drawDetail();
  }, 150);

  logs.push(...(await api(`/api/v1/runs/${run.id}/logs`)).logs);
  drawHead();
  drawGraphBox();
  drawDetail();
  drawLogs();
  const stepStatus = {
    step_started: "RUNNING",
    step_retrying: "RUNNING",
    step_completed: "COMPLETED",
    step_failed: "FAILED",
    step_skipped: "SKIPPED",
    step_waiting: "WAITING",
  };
  subscribe(`/api/v1/runs/${run.id}/events`, (event) => {
    if (event.type === "state_sync") {
      run = event.run;
      takeSteps(event.steps || []);
    } else {
      if (event.status) run = { ...run, status: event.status, error_message: event.error_message || run.error_message };
      const status = stepStatus[event.type];
      if (status && event.step_id && !event.step_id.includes("[")) {
        steps[event.step_id] = { ...(steps[event.step_id] || { step_id: event.step_id }), status };
        refreshSteps();
      }
      if (event.type === "run_status") api(`/api/v1/runs/${run.id}`).then((fresh) => { run = fresh; drawHead(); }).catch(showProblem);
      if (event.message) {
        logs.push({ timestamp: event.timestamp, level: event.level, step_id: event.step_id, message: event.message });
        drawLogs();
      }
    }
    drawHead();
    drawGraphBox();
    drawDetail();
  });
}

async function workflowsPage() {
  const workflows = await api("/api/v1/workflows?page_size=100");
  add(view,
    el("h1", {}, "Workflows"),
    table(
      [
        ["name", (w) => w.name],
        ["version", (w) => w.version],
        ["status", (w) => badge(w.status)],
        ["steps", (w) => Object.keys((w.workflow_data && w.workflow_data.steps) || {}).length],
        ["updated", (w) => when(w.updated_at)],
      ],
      workflows.items,
      (w) => (location.hash = `#/workflows/${w.id}`),
    ),
  );
}

// A line diff of two texts (longest common subsequence), for comparing versions.
function diffLines(before, after) {
  const a = before.split("\n");
  const b = after.split("\n");
  const lcs = Array.from({ length: a.length + 1 }, () => new Array(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const lines = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) lines.push([" ", a[i++], j++]);
    else if (j < b.length && (i === a.length || lcs[i][j + 1] >= lcs[i + 1][j])) lines.push(["+", b[j++]]);
    else lines.push(["-", a[i++]]);
  }
  return lines;
}

async function workflowPage(workflowId) {
  const workflow = await api(`/api/v1/workflows/${workflowId}`);
  const versions = (await api(`/api/v1/workflows/${workflowId}/versions?page_size=100`)).items;
  const input = el("textarea", { rows: 4, cols: 60, id: "run-input" }, "{}");
  const diffBox = el("div", { class: "diff" });
  const pick = (name, index) => el("select", { name }, versions.map((v, at) =>
    el("option", { value: String(at), selected: at === index }, `version ${v.version}`)));
  const older = pick("from", Math.min(1, versions.length - 1));
  const newer = pick("to", 0);
  const showDiff = () => {
    const text = (at) => JSON.stringify(versions[Number(at)].workflow_data, null, 2);
    fill(diffBox, el("pre", {}, diffLines(text(older.value), text(newer.value)).map(([mark, line]) =>
      el("div", { class: mark === "+" ? "add" : mark === "-" ? "del" : "" }, `${mark} ${line}`))));
  };
  older.addEventListener("change", showDiff);
  newer.addEventListener("change", showDiff);
  add(view,
    el("h1", {}, workflow.name, " ", badge(workflow.status)),
    el("p", { class: "meta" }, `version ${workflow.version} · ${workflow.description || ""}`),
    el("div", { class: "actions" },
      el("button", { onclick: () => act("activate", async () => { await api(`/api/v1/workflows/${workflowId}/activate`, { method: "POST", body: {} }); route(); }) }, "Activate"),
      el("button", { onclick: () => act("deactivate", async () => { await api(`/api/v1/workflows/${workflowId}/deactivate`, { method: "POST", body: {} }); route(); }) }, "Deactivate"),
      el("a", { href: `#/runs?workflow_id=${workflowId}` }, "its runs")),
    drawGraph(workflow.workflow_data, () => "PENDING", () => {}),
    el("h2", {}, "Start a run"),
    el("p", { class: "meta" }, "Input (JSON):"),
    input,
    el("div", { class: "actions" }, el("button", { id: "start-run", onclick: () => act("start", async () => {
      const run = await api(`/api/v1/workflows/${workflowId}/execute`, { method: "POST", body: { input_data: JSON.parse(input.value) } });
      location.hash = `#/runs/${run.id}`;
    }) }, "Start")),
    el("h2", {}, "Versions"),
    table([["version", (v) => v.version], ["status", (v) => badge(v.status)], ["created", (v) => when(v.created_at)]], versions),
    versions.length > 1 ? el("div", {}, el("h2", {}, "Compare versions"), el("div", { class: "actions" }, older, " → ", newer), diffBox) : null,
  );
  if (versions.length > 1) showDiff();
}

async function agentsPage() {
  const agents = (await api("/api/v1/agents?page_size=100")).items;
  const health = {};
  const rows = el("div");
  const draw = () => fill(rows, table(
    [
      ["name", (a) => a.name],
      ["url", (a) => el("code", {}, a.url)],
      ["protocol", (a) => a.protocol],
      ["status", (a) => badge(a.status)],
      ["health", (a) => (health[a.id] ? el("span", {}, badge(health[a.id].healthy ? "healthy" : "unhealthy"), " ",
        health[a.id].error || `${Math.round(health[a.id].response_time_ms || 0)} ms`) : el("span", { class: "meta" }, "checking…"))],
    ],
    agents,
  ));
  add(view, el("h1", {}, "Agents"), rows);
  draw();
  for (const agent of agents) {
    api(`/api/v1/agents/${agent.id}/health`).then((found) => {
      health[agent.id] = found;
      draw();
    }).catch((error) => {
      health[agent.id] = { healthy: false, error: error.message };
      draw();
    });
  }
}

async function schedulesPage() {
  const schedules = (await api("/api/v1/workflow_schedules?page_size=100")).items;
  add(view,
    el("h1", {}, "Schedules"),
    table(
      [
        ["name", (s) => s.name],
        ["workflow", (s) => el("a", { href: `#/workflows/${s.workflow_id}` }, s.workflow_name)],
        ["when", (s) => s.cron_expression || (s.interval_value ? `every ${s.interval_value} ${s.interval_unit}` : when(s.execution_time))],
        ["time zone", (s) => s.timezone],
        ["state", (s) => badge(s.enabled ? s.state || "active" : "inactive")],
        ["next", (s) => when(s.next_execution)],
        ["", (s) => el("button", { onclick: () => act("trigger", async () => {
          const run = await api(`/api/v1/workflow_schedules/${s.id}/trigger`, { method: "POST", body: {} });
          location.hash = `#/runs/${run.id}`;
        }) }, "Trigger now")],
      ],
      schedules,
    ),
  );
}

async function webhooksPage() {
  const webhooks = (await api("/api/v1/webhooks?page_size=100")).items;
  add(view,
    el("h1", {}, "Webhooks"),
    table(
      [
        ["url", (w) => el("code", {}, w.url)],
        ["events", (w) => (w.events || []).join(", ")],
        ["enabled", (w) => badge(w.enabled ? "active" : "inactive")],
        ["created", (w) => when(w.created_at)],
      ],
      webhooks,
      (w) => (location.hash = `#/webhooks/${w.id}`),
    ),
  );
}

async function webhookPage(webhookId) {
  const webhook = await api(`/api/v1/webhooks/${webhookId}`);
  const deliveries = (await api(`/api/v1/webhooks/${webhookId}/deliveries?page_size=100`)).items;
  add(view,
    el("h1", {}, "Webhook ", el("code", {}, webhook.url)),
    el("div", { class: "actions" }, el("button", { onclick: () => act("test", async () => {
      await api(`/api/v1/webhooks/${webhookId}/test`, { method: "POST", body: {} });
      route();
    }) }, "Send a test event")),
    el("h2", {}, "Deliveries"),
    table(
      [
        ["event", (d) => d.event],
        ["status", (d) => badge(d.status)],
        ["attempts", (d) => d.attempts],
        ["last answer", (d) => (d.last_status_code ? `${d.last_status_code} in ${d.last_duration_ms} ms` : d.last_error || "")],
        ["created", (d) => when(d.created_at)],
        ["run", (d) => (d.run_id ? el("a", { href: `#/runs/${d.run_id}` }, short(d.run_id)) : "")],
        ["", (d) => el("button", { onclick: () => act("redeliver", async () => {
          await api(`/api/v1/webhooks/${webhookId}/deliveries/${d.id}/redeliver`, { method: "POST", body: {} });
          route();
        }) }, "Redeliver")],
      ],
      deliveries,
    ),
  );
}

// --------------------------------------------------------------------------- routing

const ROUTES = [
  [/^#\/runs\/([^/?]+)$/, runPage],
  [/^#\/runs$/, runsPage],
  [/^#\/workflows\/([^/?]+)$/, workflowPage],
  [/^#\/workflows$/, workflowsPage],
  [/^#\/agents$/, agentsPage],
  [/^#\/schedules$/, schedulesPage],
  [/^#\/webhooks\/([^/?]+)$/, webhookPage],
  [/^#\/webhooks$/, webhooksPage],
];

async function route() {
  for (const stop of leaving) stop();
  leaving = [];
  const [path, search] = (location.hash || "#/runs").split("?");
  const query = new URLSearchParams(search || "");
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("active", path.startsWith(link.getAttribute("href")));
  }
  for (const [pattern, page] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    fill(view);
    showProblem(null);
    try {
      await (match.length > 1 ? page(decodeURIComponent(match[1]), query) : page(query));
    } catch (error) {
      showProblem(error);
    }
    return;
  }
  location.hash = "#/runs";
}

document.getElementById("api-key").value = localStorage.getItem(KEY) || "";
document.getElementById("credential").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = document.getElementById("api-key").value.trim();
  if (key) localStorage.setItem(KEY, key);
  else localStorage.removeItem(KEY);
  route();
});
window.addEventListener("hashchange", route);
route();
