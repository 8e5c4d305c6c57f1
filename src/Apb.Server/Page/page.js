// apb serve's page: a document and a question go to /v1/chat/completions as one user message (document, a blank
// line, the question: the server's APB cut puts the document in the context and the question in the query), the
// answer streams back over SSE, and "apb_timings" asks the server where the time went. Plain browser APIs only.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  model: $("model"), form: $("ask"), drop: $("drop"), doc: $("document"), file: $("file"), question: $("question"),
  docCount: $("document-count"), questionCount: $("question-count"), maxTokens: $("max-tokens"),
  temperature: $("temperature"), send: $("send"), stop: $("stop"), error: $("error"), answer: $("answer"),
  timing: $("timing"), ranksBox: $("ranks-box"), ranks: $("ranks"), ranksCaption: $("ranks-caption"),
  keyDialog: $("key-dialog"), keyForm: $("key-form"), key: $("key"), keyWhy: $("key-why"),
};

const state = { modelId: null, maxModelLen: null, apiKey: null, controller: null };
const number = new Intl.NumberFormat("en-US");

// ------------------------------------------------------------------------------------------------ requests

function headers() {
  const h = { "Content-Type": "application/json" };
  // Only when the user gave one; it lives in this variable alone (never in storage or the URL).
  if (state.apiKey) h.Authorization = "Bearer " + state.apiKey;
  return h;
}

/** The server's OpenAI-style error message from a failed response, or a line that says what came instead. */
async function errorOf(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON: say what the status was */ }
  return `HTTP ${response.status} ${response.statusText}${text ? ": " + text.slice(0, 300) : ""}`;
}

/**
 * fetch that asks for an API key when the server answers 401, then tries once more with it. Resolves to the
 * response (ok or not); null when the user declined to give a key.
 */
async function send(path, init) {
  for (;;) {
    const response = await fetch(path, { ...init, headers: headers() });
    if (response.status !== 401) return response;
    const why = await errorOf(response);
    if (!(await askKey(why))) {
      showError(why);
      return null;
    }
  }
}

// One dialog at a time: requests that meet a 401 together (the model card, the token counts) wait for the same answer.
let keyAsked = null;
function askKey(why) {
  keyAsked ??= openKeyDialog(why).finally(() => { keyAsked = null; });
  return keyAsked;
}

function openKeyDialog(why) {
  return new Promise((resolve) => {
    ui.keyWhy.textContent = `The server answered: ${why}`;
    ui.key.value = "";
    ui.keyDialog.returnValue = "";
    ui.keyDialog.addEventListener("close", () => {
      const ok = ui.keyDialog.returnValue === "ok" && ui.key.value.trim() !== "";
      if (ok) state.apiKey = ui.key.value.trim();
      ui.key.value = "";
      resolve(ok);
    }, { once: true });
    ui.keyDialog.showModal();
    ui.key.focus();
  });
}

// ------------------------------------------------------------------------------------------------ model

async function loadModel() {
  try {
    const response = await send("/v1/models", { method: "GET" });
    if (!response) return;
    if (!response.ok) { showError(await errorOf(response)); return; }
    const card = (await response.json()).data[0];
    state.modelId = card.id;
    state.maxModelLen = card.max_model_len;
    ui.model.textContent = `Model ${card.id} · ${card.strategy ?? "strategy: see the timing line after an answer"} · ` +
      `at most ${number.format(card.max_model_len)} tokens per request`;
  } catch (e) {
    ui.model.textContent = `Model: the server did not answer (${e.message}).`;
  }
}

// ------------------------------------------------------------------------------------------------ token counts

/** Counts the text's tokens with the server's tokenizer a moment after the typing stops; late answers are dropped. */
function counter(input, output, what) {
  let timer = 0, asked = 0;
  const run = async () => {
    const text = input.value, mine = ++asked;
    if (text === "") { output.textContent = ""; return; }
    try {
      const response = await send("/tokenize", {
        method: "POST", body: JSON.stringify({ prompt: text, add_special_tokens: false }),
      });
      if (mine !== asked || !response) return;
      if (!response.ok) { output.textContent = `${what}: ${await errorOf(response)}`; return; }
      const count = (await response.json()).count;
      output.textContent = `${what}: ${number.format(count)} tokens` +
        (state.maxModelLen ? ` (the model takes ${number.format(state.maxModelLen)} per request)` : "");
      output.dataset.tokens = String(count);
    } catch (e) {
      if (mine === asked) output.textContent = `${what}: not counted (${e.message})`;
    }
  };
  const schedule = () => { clearTimeout(timer); timer = setTimeout(run, 300); };
  input.addEventListener("input", schedule);
  return schedule;
}

const countDocument = counter(ui.doc, ui.docCount, "Document");
counter(ui.question, ui.questionCount, "Question");

// ------------------------------------------------------------------------------------------------ files

async function readFile(file) {
  if (!/\.(txt|md|markdown)$/i.test(file.name) && !file.type.startsWith("text/")) {
    showError(`${file.name} is not a text file: drop or open a .txt or .md file.`);
    return;
  }
  hideError();
  ui.doc.value = await file.text();
  countDocument();
  ui.question.focus();
}

ui.file.addEventListener("change", () => { if (ui.file.files.length) readFile(ui.file.files[0]); });
// A file dropped anywhere on the page becomes the document (the browser would otherwise open it in place of the
// page); dropped text is inserted where it lands, as usual.
document.addEventListener("dragover", (e) => {
  if (!e.dataTransfer.types.includes("Files")) return;
  e.preventDefault();
  ui.drop.classList.add("dragging");
});
document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) ui.drop.classList.remove("dragging"); });
document.addEventListener("drop", (e) => {
  ui.drop.classList.remove("dragging");
  if (!e.dataTransfer.files.length) return;
  e.preventDefault();
  readFile(e.dataTransfer.files[0]);
});

// ------------------------------------------------------------------------------------------------ asking

function showError(message) { ui.error.textContent = message; ui.error.hidden = false; }
function hideError() { ui.error.textContent = ""; ui.error.hidden = true; }

function busy(on) {
  ui.send.disabled = on;
  ui.stop.disabled = !on;
  ui.answer.setAttribute("aria-busy", String(on));
}

async function ask(event) {
  event.preventDefault();
  if (state.controller) return;
  const question = ui.question.value.trim();
  if (question === "") { showError("Write a question first."); ui.question.focus(); return; }
  // The question is the final paragraph: the document must not end in a blank line of its own.
  const documentText = ui.doc.value.replace(/\s+$/, "");
  const body = {
    messages: [{ role: "user", content: documentText ? documentText + "\n\n" + question : question }],
    stream: true, stream_options: { include_usage: true }, apb_timings: true,
    max_tokens: Number(ui.maxTokens.value) || undefined, temperature: Number(ui.temperature.value),
  };
  if (state.modelId) body.model = state.modelId;

  hideError();
  ui.answer.textContent = "";
  ui.timing.textContent = "Waiting for the first token…";
  ui.ranksBox.hidden = true;
  busy(true);
  const controller = new AbortController();
  state.controller = controller;
  const started = performance.now();
  let firstAt = 0, characters = 0;
  try {
    const response = await send("/v1/chat/completions", { method: "POST", body: JSON.stringify(body), signal: controller.signal });
    if (!response) { ui.timing.textContent = ""; return; }
    if (!response.ok) { showError(await errorOf(response)); ui.timing.textContent = ""; return; }
    for await (const event of events(response.body)) {
      if (event.error) { showError(event.error.message || JSON.stringify(event.error)); continue; }
      const choice = event.choices && event.choices[0];
      const text = choice && choice.delta && choice.delta.content;
      if (text) {
        if (!firstAt) { firstAt = performance.now(); ui.timing.textContent = "Generating…"; }
        ui.answer.append(text);
        characters += text.length;
      }
      if (event.timings) showTimings(event.timings, choice && choice.finish_reason);
    }
  } catch (e) {
    if (e.name === "AbortError") {
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      ui.timing.textContent = `Stopped after ${seconds} s and ${number.format(characters)} characters: ` +
        "the request was cancelled, which ends the generation on the server.";
    } else {
      showError(`The request failed: ${e.message}`);
    }
  } finally {
    state.controller = null;
    busy(false);
  }
}

/** The JSON payloads of an OpenAI-style SSE body ("data: {...}" events, "data: [DONE]" at the end). */
async function* events(stream) {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of block.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") return;
          yield JSON.parse(data);
        }
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function ms(x) { return x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(0)} ms`; }
function rate(x) { return number.format(Math.round(x * 10) / 10); }

function showTimings(t, finish) {
  const parts = [
    `TTFT ${ms(t.time_to_first_token_ms)}` + (t.queue_ms >= 1 ? ` (${ms(t.queue_ms)} in line)` : ""),
    `prefill ${number.format(t.prompt_tokens)} tokens in ${ms(t.prefill_ms)} (${rate(t.prefill_tokens_per_second)} tok/s)`,
    // The first token comes from the prefill; decode speed is that of the tokens after it.
    t.completion_tokens > 1
      ? `decode ${number.format(t.completion_tokens)} tokens at ${rate(t.decode_tokens_per_second)} tok/s`
      : `${t.completion_tokens} token (from the prefill)`,
  ];
  if (finish) parts.push(finish === "length" ? "stopped at max tokens" : "finished");
  ui.timing.textContent = parts.join(" · ") + (t.strategy ? ` · ran as ${t.strategy}` : "");
  showRanks(t.prefill_ranks);
}

/** The per-rank phase table (the CLI's --timings) from the server's columns and rows. */
function showRanks(table) {
  if (!table || !table.rows.length) { ui.ranksBox.hidden = true; return; }
  ui.ranksCaption.textContent = table.rows.length > 1
    ? `Prefill per rank: the slowest rank sets the time; max/mean 1.00 is perfect balance`
    : "Prefill on one rank";
  const cell = (tag, text) => { const c = document.createElement(tag); c.textContent = text; return c; };
  const head = document.createElement("tr");
  head.append(cell("th", "rank"), ...table.columns.map((c) => cell("th", c)));
  head.querySelectorAll("th").forEach((th) => th.setAttribute("scope", "col"));
  ui.ranks.tHead.replaceChildren(head);
  const fmt = (x) => x >= 100 ? x.toFixed(0) : x.toFixed(3);
  const rows = table.rows.map((r) => {
    const tr = document.createElement("tr");
    tr.append(cell("td", String(r.rank)), ...r.values.map((v) => cell("td", fmt(v))));
    return tr;
  });
  if (table.max_over_mean) {
    const tr = document.createElement("tr");
    tr.className = "imbalance";
    tr.append(cell("td", "max/mean"), ...table.max_over_mean.map((v) => cell("td", v == null ? "–" : v.toFixed(2))));
    rows.push(tr);
  }
  ui.ranks.tBodies[0].replaceChildren(...rows);
  ui.ranksBox.hidden = false;
}

function stop() { if (state.controller) state.controller.abort(); }

ui.form.addEventListener("submit", ask);
ui.stop.addEventListener("click", stop);
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && state.controller && !ui.keyDialog.open) stop(); });
// Ctrl+Enter (or Cmd+Enter) in the document asks, as Enter does in the question.
ui.doc.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) ui.form.requestSubmit();
});

loadModel();
