// Braid's job page: plain JavaScript over the /v1 API, no libraries, nothing from a CDN.
// Each page is one <main data-page="..."> that this script fills in and keeps live.
"use strict";

const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];

function nodes(children) {
  return children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== "")
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...nodes(children));
  return node;
}

// replaceChildren, with lists (of lists) and nulls among the children
function fill(node, ...children) {
  node.replaceChildren(...nodes(children));
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, {credentials: "same-origin", ...options,
                                      headers: {"Accept": "application/json", ...(options.headers || {})}});
  if (response.status === 401) {
    location.href = "/ui/login?next=" + encodeURIComponent(location.pathname + location.search);
    throw new Error("a key is needed");
  }
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new Error(body && body.detail ? body.detail : response.statusText);
  return body;
}

function when(text) {
  return text ? new Date(text).toLocaleTimeString([], {hour12: false}) + "." +
    String(new Date(text).getMilliseconds()).padStart(3, "0") : "";
}

function seconds(a, b) {
  return a && b ? ((new Date(b) - new Date(a)) / 1000).toFixed(3) + " s" : "";
}

function badge(state) {
  return el("span", {class: "state " + state, "data-state": state}, state);
}

// --- the step graph ---------------------------------------------------------------------

function layout(graph) {
  const into = {};
  for (const node of graph.nodes) into[node.name] = [];
  for (const [from, to] of [...graph.edges, ...(graph.streams || [])]) into[to].push(from);
  const depth = {};
  const place = (name) => {
    if (depth[name] === undefined) {
      depth[name] = 0;
      depth[name] = Math.max(0, ...into[name].map((d) => place(d) + 1));
    }
    return depth[name];
  };
  graph.nodes.forEach((n) => place(n.name));
  const columns = {};
  const at = {};
  for (const node of graph.nodes) {
    const column = depth[node.name];
    columns[column] = (columns[column] || 0) + 1;
    at[node.name] = {x: column, y: columns[column] - 1};
  }
  return {at, rows: Math.max(...Object.values(columns)), columns: Object.keys(columns).length};
}

function drawGraph(graph, steps) {
  const W = 210, H = 58, GX = 60, GY = 22;
  const {at, rows, columns} = layout(graph);
  const box = (name) => ({x: at[name].x * (W + GX) + 10, y: at[name].y * (H + GY) + 10});
  const root = svg("svg", {class: "graph", width: columns * (W + GX) + 20,
                           height: rows * (H + GY) + 20, role: "img"});
  const line = (from, to, dashed) => {
    const a = box(from), b = box(to);
    root.append(svg("line", {x1: a.x + W, y1: a.y + H / 2, x2: b.x, y2: b.y + H / 2,
                             class: dashed ? "edge stream" : "edge"}));
  };
  graph.edges.forEach(([from, to]) => line(from, to, false));
  (graph.streams || []).forEach(([from, to]) => line(from, to, true));
  for (const node of graph.nodes) {
    const step = (steps || {})[node.name] || {};
    const state = step.state || "queued";
    const {x, y} = box(node.name);
    const fanout = node.kind === "map" ? ` \u00d7${step.size ?? "?"} (${step.done ?? 0} done)` : "";
    const batch = step.batch ? ` batch ${step.batch.size}` : "";
    root.append(svg("g", {class: "node " + state, "data-step": node.name, "data-state": state},
      svg("rect", {x, y, width: W, height: H, rx: 8}),
      svg("title", {}, node.name),
      svg("text", {x: x + 10, y: y + 22, class: "name"},
          node.name.length > 29 ? node.name.slice(0, 28) + "\u2026" : node.name),
      svg("text", {x: x + 10, y: y + 44, class: "detail"}, state + fanout + batch)));
  }
  return root;
}

// --- one job ----------------------------------------------------------------------------

function waterfall(job) {
  const steps = Object.entries(job.steps || {});
  const start = new Date(job.created_at).getTime();
  const ends = steps.map(([, s]) => new Date(s.finished_at || Date.now()).getTime());
  const span = Math.max(1, Math.max(start + 1, ...ends) - start);
  const pct = (t) => ((new Date(t).getTime() - start) / span * 100).toFixed(2) + "%";
  const rows = steps.map(([name, s]) => {
    const queued = s.queued_at || job.created_at;
    const started = s.started_at;
    const finished = s.finished_at;
    const bar = el("div", {class: "lane"},
      el("div", {class: "wait", style: `left:${pct(queued)};width:calc(${pct(started || finished || new Date().toISOString())} - ${pct(queued)})`}),
      started ? el("div", {class: "run " + s.state, style: `left:${pct(started)};width:calc(${pct(finished || new Date().toISOString())} - ${pct(started)})`}) : null);
    return el("tr", {},
      el("td", {}, name), el("td", {}, badge(s.state)),
      el("td", {class: "num"}, seconds(queued, started)), el("td", {class: "num"}, seconds(started, finished)),
      el("td", {class: "num"}, s.batch ? `${s.batch.size}` : ""), el("td", {class: "bar"}, bar));
  });
  return el("table", {class: "waterfall"},
    el("tr", {}, ["step", "state", "waiting", "running", "batch", "timeline"].map((h) => el("th", {}, h))),
    rows);
}

// A value as the REST API gives it: images drawn, arrays summed up, the rest as JSON
// (a large one linked rather than shown).
function preview(value, link) {
  if (value && typeof value === "object" && value.media_type === "image/png" && value.data) {
    return el("img", {class: "preview", alt: "image", src: "data:image/png;base64," + value.data});
  }
  if (value && typeof value === "object" && Array.isArray(value.shape) && "dtype" in value) {
    const text = JSON.stringify(value.data);
    return el("div", {class: "array"}, `array ${value.dtype} [${value.shape.join(" \u00d7 ")}]`,
              el("pre", {class: "value"}, text.length > 2000 ? text.slice(0, 2000) + " \u2026" : text));
  }
  if (Array.isArray(value) && value.some((v) => v && typeof v === "object" && (v.media_type || v.shape))) {
    return el("div", {}, value.map((v) => preview(v, link)));
  }
  if (value && typeof value === "object" && !Array.isArray(value) &&
      Object.values(value).some((v) => v && typeof v === "object" && (v.media_type || v.shape))) {
    return el("div", {}, Object.entries(value).map(([k, v]) => el("div", {}, el("strong", {}, k), preview(v, link))));
  }
  const text = JSON.stringify(value, null, 2);
  if (text && text.length > 20000) {
    return el("p", {}, `${text.length} characters: `, link ? el("a", {href: link}, "the whole value") : "too large to show");
  }
  return el("pre", {class: "value"}, text);
}

async function jobPage(main) {
  const id = main.dataset.id;
  let job = await api(`/v1/jobs/${id}`);
  const embedded = document.getElementById("pipeline");
  const pipeline = embedded ? JSON.parse(embedded.textContent) : {graph: {nodes: [], edges: [], streams: []}};
  const kept = document.getElementById("inputs");
  const inputs = kept ? JSON.parse(kept.textContent) : null;
  const streamed = el("pre", {class: "streamed", id: "streamed"});
  const render = () => {
    const cancel = job.state === "queued" || job.state === "running"
      ? el("button", {id: "cancel", onclick: async () => { job = await api(`/v1/jobs/${id}`, {method: "DELETE"}); render(); }}, "Cancel")
      : null;
    const errors = [];
    if (job.error) errors.push(el("div", {class: "error", id: "job-error"},
      el("strong", {}, `${job.error.type}`), job.error.step ? ` in step ${job.error.step}: ` : ": ", job.error.message));
    for (const [name, s] of Object.entries(job.steps || {})) {
      if (s.error && (!job.error || job.error.step !== name)) {
        errors.push(el("div", {class: "error"}, el("strong", {}, s.error.type), ` in step ${name}: `, s.error.message));
      }
    }
    fill(main, 
      el("h1", {}, `Job ${id}`),
      el("p", {}, badge(job.state), ` ${job.pipeline} \u00b7 created ${when(job.created_at)}`,
         job.finished_at ? ` \u00b7 took ${seconds(job.created_at, job.finished_at)}` : "",
         ` \u00b7 ${job.progress.done}/${job.progress.total} steps `, cancel),
      errors,
      el("h2", {}, "Steps"), drawGraph(pipeline.graph, job.steps),
      el("h2", {}, "Timing"), waterfall(job),
      hasStream(pipeline) ? [el("h2", {}, "Streamed output"), streamed] : null,
      el("h2", {}, "Inputs"), inputs ? preview(inputs, null) : el("p", {class: "muted"}, "not kept"),
      el("h2", {}, "Result"), "result" in job ? preview(job.result, `/v1/jobs/${id}/result`) : el("p", {class: "muted"}, "none yet"));
  };
  render();
  let pending = null;
  const refresh = () => {
    if (pending) return;
    pending = setTimeout(async () => { pending = null; job = await api(`/v1/jobs/${id}`); render(); }, 100);
  };
  const final = ["succeeded", "failed", "cancelled"].includes(job.state);
  if (!final) {  // a job that ended has nothing more to tell
    const events = new EventSource(`/v1/jobs/${id}/events`);
    events.addEventListener("step", refresh);
    events.addEventListener("end", () => { events.close(); refresh(); });
  }
  if (hasStream(pipeline)) {
    const chunks = new EventSource(`/v1/jobs/${id}/stream`);
    chunks.addEventListener("restart", () => { streamed.textContent = ""; });
    chunks.addEventListener("chunk", (e) => {
      for (const item of JSON.parse(e.data).items) {
        streamed.textContent += typeof item === "string" ? item : JSON.stringify(item) + "\n";
      }
    });
    chunks.addEventListener("end", () => chunks.close());
  }
}

function hasStream(pipeline) {
  return (pipeline.graph.nodes || []).some((n) => n.streams);
}

// --- the jobs list ----------------------------------------------------------------------

async function jobsPage(main) {
  const params = new URLSearchParams(location.search);
  const pipelines = (await api("/v1/pipelines")).pipelines.map((p) => p.name);
  const filter = el("form", {class: "filter", method: "get"},
    el("label", {}, "pipeline ", el("select", {name: "pipeline"}, el("option", {value: ""}, "any"),
      pipelines.map((p) => el("option", p === params.get("pipeline") ? {value: p, selected: ""} : {value: p}, p)))),
    el("label", {}, " state ", el("select", {name: "state"}, el("option", {value: ""}, "any"),
      STATES.map((s) => el("option", s === params.get("state") ? {value: s, selected: ""} : {value: s}, s)))),
    el("button", {type: "submit"}, "Show"));
  const table = el("table", {class: "jobs", id: "jobs"});
  const more = el("p");
  fill(main, el("h1", {}, "Jobs"), filter, table, more);
  const load = async () => {
    const query = new URLSearchParams({limit: "50"});
    for (const key of ["pipeline", "state", "before"]) if (params.get(key)) query.set(key, params.get(key));
    const found = await api(`/v1/jobs?${query}`);
    fill(table, 
      el("tr", {}, ["job", "pipeline", "state", "created", "took"].map((h) => el("th", {}, h))),
      found.jobs.map((j) => el("tr", {"data-job": j.id},
        el("td", {}, el("a", {href: `/ui/jobs/${j.id}`}, j.id)), el("td", {}, j.pipeline),
        el("td", {}, badge(j.state)), el("td", {}, when(j.created_at)),
        el("td", {class: "num"}, seconds(j.created_at, j.finished_at)))));
    const last = found.jobs[found.jobs.length - 1];
    fill(more, found.next ? el("a", {href: "?" + new URLSearchParams({
      ...Object.fromEntries(params), before: found.next})}, "older jobs \u2192") : "");
    return last;
  };
  await load();
  if (!params.get("before")) setInterval(load, 2000);  // the newest page stays live
}

// --- pipelines and services -------------------------------------------------------------

function example(schema) {
  const out = {};
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    if ("default" in prop) out[name] = prop.default;
    else if (prop.examples) out[name] = prop.examples[0];
  }
  return JSON.stringify(out, null, 2);
}

async function pipelinesPage(main) {
  const {pipelines} = await api("/v1/pipelines");
  fill(main, el("h1", {}, "Pipelines"), pipelines.map((p) => {
    const body = el("textarea", {rows: 6, cols: 70, name: "body"}, example(p.input_schema));
    const problem = el("p", {class: "error-text"});
    const form = el("form", {class: "submit", "data-pipeline": p.name, onsubmit: async (e) => {
      e.preventDefault();
      try {
        const job = await api(p.submit_url, {method: "POST", body: body.value,
                                             headers: {"Content-Type": "application/json"}});
        location.href = `/ui/jobs/${job.id}`;
      } catch (err) { problem.textContent = err.message; }
    }}, body, el("br"), el("button", {type: "submit"}, `Submit a ${p.name} job`), problem);
    return el("section", {id: "pipeline-" + p.name}, el("h2", {}, p.name), drawGraph(p.graph, {}),
      el("details", {}, el("summary", {}, "input schema"), el("pre", {}, JSON.stringify(p.input_schema, null, 2))),
      form);
  }));
}

async function servicesPage(main) {
  const {services} = await api("/v1/services");
  const flower = main.dataset.flower;
  fill(main, el("h1", {}, "Services"),
    flower ? el("p", {}, el("a", {href: flower}, "Flower: the workers, their pools and tasks")) : null,
    el("table", {class: "services"},
      el("tr", {}, ["service", "queue", "depth", "live workers", "resources", "processes", "APIs"].map((h) => el("th", {}, h))),
      services.map((s) => el("tr", {"data-service": s.name},
        el("td", {}, s.name), el("td", {}, s.queue), el("td", {class: "num"}, s.depth),
        el("td", {class: "num"}, s.live_workers),
        el("td", {}, `cpu ${s.resources.cpu}, gpu ${s.resources.gpu}` + (s.resources.memory ? `, ${s.resources.memory}` : "")),
        el("td", {}, (s.processes || []).map((p) => el("div", {}, `${p.process} on ${p.device}` +
          (p.models.length ? `: ${p.models.join(", ")}` : "")))),
        el("td", {}, s.apis.map((a) => el("div", {}, a.name,
          a.batch ? ` (batch ${a.batch.max_size} / ${a.batch.max_latency_ms} ms)` : "",
          a.inline ? " (inline)" : "", a.streams ? " (streams)" : "")))))));
}

const PAGES = {jobs: jobsPage, job: jobPage, pipelines: pipelinesPage, services: servicesPage};

window.addEventListener("DOMContentLoaded", () => {
  const main = document.querySelector("main[data-page]");
  PAGES[main.dataset.page](main).catch((err) => {
    main.append(el("p", {class: "error", id: "page-error"}, err.message));
  });
});
