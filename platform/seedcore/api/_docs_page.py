"""The `/docs` page: self-contained HTML + JS (no CDN) that reads /openapi.json and sends requests ("try it")."""

DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SeedCore Flywheel API</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 1000px; padding: 1em; color: #222; }
  header { display: flex; gap: 1em; align-items: baseline; flex-wrap: wrap; }
  details.op { border: 1px solid #ccc; border-radius: 4px; margin: .4em 0; }
  details.op > summary { cursor: pointer; padding: .4em .6em; }
  .op-body { padding: .4em .8em .8em; border-top: 1px solid #eee; }
  .method { display: inline-block; min-width: 4em; font-weight: bold; font-family: monospace; }
  .GET { color: #1565c0; } .POST { color: #2e7d32; } .PUT, .PATCH { color: #ef6c00; } .DELETE { color: #c62828; }
  .path { font-family: monospace; } .lock { color: #888; }
  label { display: block; margin: .3em 0; font-family: monospace; }
  label input { margin-left: .5em; width: 20em; }
  textarea { width: 100%; min-height: 9em; font-family: monospace; }
  pre { background: #f6f6f6; padding: .6em; overflow: auto; max-height: 30em; }
  .codes { color: #555; font-size: 90%; }
</style>
</head>
<body>
<header>
  <h1 id="title">API</h1>
  <span id="version"></span>
  <a href="openapi.json">openapi.json</a>
  <label>Bearer token<input id="token" type="password" autocomplete="off"
    placeholder="only if SEEDCORE_API_TOKEN is set"></label>
</header>
<p id="description"></p>
<main id="ops">Loading /openapi.json ...</main>
<script>
"use strict";
let spec = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child);  // strings become text nodes: no HTML injection
  return node;
}

function resolve(schema) {
  let depth = 0;
  while (schema && schema.$ref && depth++ < 20) {
    schema = schema.$ref.split("/").slice(1).reduce((obj, key) => obj && obj[key], spec);
  }
  return schema || {};
}

function example(schema, depth) {
  schema = resolve(schema);
  if (depth > 6) return null;
  if (schema.examples && schema.examples.length) return schema.examples[0];
  if ("default" in schema) return schema.default;
  if ("const" in schema) return schema.const;
  if (schema.enum) return schema.enum[0];
  const alternatives = schema.anyOf || schema.oneOf;
  if (alternatives) return example(alternatives.find(s => s.type !== "null") || alternatives[0], depth + 1);
  const type = Array.isArray(schema.type) ? schema.type.find(t => t !== "null") : schema.type;
  if (type === "object" || schema.properties) {
    const out = {};
    for (const [name, prop] of Object.entries(schema.properties || {})) {
      const optionalNull = !(schema.required || []).includes(name) && prop.default === null;
      if (!optionalNull) out[name] = example(prop, depth + 1);
    }
    return out;
  }
  if (type === "array") return [];
  if (type === "integer") return schema.minimum !== undefined ? schema.minimum : 0;
  if (type === "number") return schema.minimum !== undefined ? schema.minimum : 0.0;
  if (type === "boolean") return false;
  if (type === "string") return "";
  return null;
}

function buildUrl(path, inputs) {
  const query = new URLSearchParams();
  for (const input of inputs) {
    if (input.value === "") continue;
    if (input.dataset.in === "path") path = path.replace("{" + input.name + "}", encodeURIComponent(input.value));
    else query.append(input.name, input.value);
  }
  const text = query.toString();
  return text ? path + "?" + text : path;
}

async function send(method, path, form, output) {
  const inputs = [...form.querySelectorAll("input[data-in]")];
  const headers = {};
  const token = document.getElementById("token").value;
  if (token) headers["Authorization"] = "Bearer " + token;
  const init = { method, headers };
  const body = form.querySelector("textarea");
  if (body) { headers["Content-Type"] = "application/json"; init.body = body.value; }
  const url = buildUrl(path, inputs);
  output.textContent = method + " " + url + " ...";
  try {
    const response = await fetch(url, init);
    const text = await response.text();
    let shown = text;
    try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON: show as is */ }
    output.textContent = method + " " + url + "\\n" + response.status + " " + response.statusText + "\\n\\n" + shown;
  } catch (err) {
    output.textContent = method + " " + url + "\\nrequest failed: " + err;
  }
}

function operationView(path, method, op) {
  const upper = method.toUpperCase();
  const form = el("div", { class: "op-body" });
  for (const param of op.parameters || []) {
    const input = el("input", { name: param.name, "data-in": param.in, placeholder: param.description || "" });
    form.append(el("label", {}, param.name + (param.required ? " *" : "") + " (" + param.in + ")", input));
  }
  if (op.requestBody) {
    const schema = op.requestBody.content["application/json"].schema;
    form.append(el("div", {}, "JSON body:"), el("textarea", {}, JSON.stringify(example(schema, 0), null, 2)));
  }
  const codes = Object.entries(op.responses || {}).map(([code, r]) => code + " " + (r.description || ""));
  form.append(el("div", { class: "codes" }, "Responses: " + codes.join("; ")));
  const output = el("pre", {}, "");
  const button = el("button", { type: "button" }, "Send");
  button.addEventListener("click", () => send(upper, path, form, output));
  form.append(button, output);
  const lock = op.security ? el("span", { class: "lock", title: "bearer token when configured" }, " [auth]") : "";
  const summary = el("summary", {}, el("span", { class: "method " + upper }, upper), " ",
                     el("span", { class: "path" }, path), lock, " \\u2014 " + (op.summary || ""));
  return el("details", { class: "op" }, summary, form);
}

async function main() {
  const tokenInput = document.getElementById("token");
  tokenInput.value = sessionStorage.getItem("seedcoreToken") || "";
  tokenInput.addEventListener("change", () => sessionStorage.setItem("seedcoreToken", tokenInput.value));
  const ops = document.getElementById("ops");
  try {
    spec = await (await fetch("openapi.json")).json();
  } catch (err) {
    ops.textContent = "could not load openapi.json: " + err;
    return;
  }
  document.getElementById("title").textContent = spec.info.title;
  document.getElementById("version").textContent = "v" + spec.info.version;
  document.getElementById("description").textContent = spec.info.description || "";
  ops.textContent = "";
  const groups = {};
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ["other"])[0];
      (groups[tag] = groups[tag] || []).push(operationView(path, method, op));
    }
  }
  for (const [tag, views] of Object.entries(groups)) ops.append(el("h2", {}, "/" + tag), ...views);
}
main();
</script>
</body>
</html>
"""
