// The gateway console: plain DOM, no framework, no build step.
//
// Every value from the gateway is written with textContent (or as an SVG attribute number),
// never as HTML: model names and key names are other people's words. The admin key lives in
// this tab's sessionStorage and travels in the Authorization header only: the live feed is
// read with fetch() and a stream reader, because EventSource cannot send a header.
"use strict";

(() => {
  const KEY_STORE = "gateway-console-admin-key";
  const VIEWS = ["live", "keys", "providers", "playground"];
  const REFRESH_MS = 2000; // Keys and Providers, while shown
  const RECONNECT_MS = 2000; // the feed, after it broke

  const $ = (id) => document.getElementById(id);

  // An element with text children only: el("td", {class: "num"}, "12").
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (name === "class") node.className = value;
      else node.setAttribute(name, String(value));
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const DASH = "—";
  const shown = (value) => (value === null || value === undefined || value === "" ? DASH : value);

  function number(value, digits) {
    if (value === null || value === undefined) return DASH;
    return Number(value).toLocaleString(undefined, {
      maximumFractionDigits: digits === undefined ? 0 : digits,
      minimumFractionDigits: 0,
    });
  }

  function clock(seconds) {
    const date = new Date(seconds * 1000);
    const pad = (n, width) => String(n).padStart(width || 2, "0");
    return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return DASH;
    const total = Math.max(0, Math.ceil(seconds));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = total % 60;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  }

  // Money (cost_usd, spend_usd); a dash when unknown.
  function money(value) {
    if (value === null || value === undefined) return DASH;
    return `$${Number(value).toFixed(value < 0.01 ? 6 : 4)}`;
  }

  function statusClass(status, error) {
    if (error === "cancelled") return "status-warn";
    if (status >= 500 || (error && status >= 400)) return "status-err";
    if (status >= 400 || error) return "status-warn";
    return "status-ok";
  }

  // ---- the admin key and the JSON routes ----

  let adminKey = null;

  class Refused extends Error {}

  async function api(path) {
    const response = await fetch(path, {
      headers: { Authorization: `Bearer ${adminKey}` },
      cache: "no-store",
    });
    if (response.status === 401) {
      logOut("The gateway refused this admin key.");
      throw new Refused("401");
    }
    if (!response.ok) throw new Error(`${path}: ${response.status}`);
    return response.json();
  }

  async function logIn(key, remember) {
    adminKey = key;
    try {
      await api("/console/api/keys");
    } catch (error) {
      if (!(error instanceof Refused)) $("login-error").textContent = `The gateway did not answer: ${error.message}`;
      return;
    }
    if (remember) sessionStorage.setItem(KEY_STORE, key);
    $("login").hidden = true;
    $("tabs").hidden = false;
    $("logout").hidden = false;
    live.start();
    show(viewOfHash());
  }

  function logOut(message) {
    adminKey = null;
    sessionStorage.removeItem(KEY_STORE);
    live.stop();
    stopRefresh();
    for (const view of VIEWS) $(view).hidden = true;
    for (const id of ["live-rows", "keys-rows", "providers-rows", "resting-rows", "seen-keys"]) {
      $(id).replaceChildren();
    }
    $("tabs").hidden = true;
    $("logout").hidden = true;
    $("process").textContent = "";
    $("login").hidden = false;
    $("admin-key").value = "";
    $("login-error").textContent = message || "";
  }

  // ---- views ----

  let current = null;
  let timer = null;

  function viewOfHash() {
    const name = location.hash.slice(1);
    return VIEWS.includes(name) ? name : "live";
  }

  function stopRefresh() {
    if (timer !== null) clearInterval(timer);
    timer = null;
  }

  function show(name) {
    if (adminKey === null) return;
    current = name;
    for (const view of VIEWS) $(view).hidden = view !== name;
    for (const link of document.querySelectorAll("nav a")) {
      link.classList.toggle("active", link.dataset.view === name);
    }
    stopRefresh();
    const refresh = { keys: refreshKeys, providers: refreshProviders }[name];
    if (refresh) {
      refresh();
      timer = setInterval(refresh, REFRESH_MS);
    }
    if (name === "playground") playground.loadModels(false);
  }

  // ---- Live: the ring, then the feed ----

  const live = (() => {
    let entries = []; // newest first
    let capacity = 1000;
    let lastId = 0;
    let feed = null; // the running feed's AbortController
    const keysSeen = new Set();

    function filters() {
      return {
        key: $("filter-key").value.trim(),
        model: $("filter-model").value.trim().toLowerCase(),
        status: $("filter-status").value,
      };
    }

    // The same rules as GET /console/api/requests' key, model and status.
    function matches(entry, f) {
      if (f.key && entry.key !== f.key) return false;
      if (f.model && ![entry.model, entry.served || ""].some((name) => name.toLowerCase().includes(f.model))) return false;
      if (f.status === "ok") return !entry.error;
      if (f.status === "error") return Boolean(entry.error);
      if (/^[1-5]xx$/.test(f.status)) return Math.floor(entry.status / 100) === Number(f.status[0]);
      return true;
    }

    function row(entry, arrived) {
      const tries = entry.attempts
        .map((a, i) => `${i + 1}. ${a.target} ${a.status === null ? "" : a.status + " "}${a.outcome || ""}`)
        .join("\n");
      const status = entry.error && entry.error !== String(entry.status)
        ? `${entry.status} ${entry.error}` : String(entry.status);
      // "~": estimated by the gateway (a stream cut before its usage came).
      const about = entry.usage_estimated ? "~" : "";
      const tokens = entry.input_tokens === null && entry.output_tokens === null
        ? DASH : `${about}${number(entry.input_tokens)} / ${number(entry.output_tokens)}`;
      return el(
        "tr",
        { class: arrived ? "arrived" : null, "data-id": entry.id },
        el("td", { class: "num" }, clock(entry.time)),
        el("td", { class: "nowrap" }, shown(entry.key)),
        el("td", { class: "nowrap" }, entry.operation),
        el("td", {}, entry.model),
        el("td", {}, shown(entry.served)),
        el("td", { class: "num", title: tries || null }, entry.attempts.length),
        el("td", { class: `num ${statusClass(entry.status, entry.error)}`, title: entry.error_code }, status),
        el("td", { class: "num" }, number(entry.ttft_ms, 1)),
        el("td", { class: "num" }, number(entry.duration_ms, 1)),
        el("td", { class: "num" }, tokens),
        el("td", { class: "num", title: entry.usage_estimated ? "estimated" : null }, `${about}${money(entry.cost_usd)}`),
      );
    }

    function noteKey(key) {
      if (key && !keysSeen.has(key)) {
        keysSeen.add(key);
        $("seen-keys").append(el("option", { value: key }));
      }
    }

    function render() {
      const f = filters();
      const rows = entries.filter((entry) => matches(entry, f)).map((entry) => row(entry, false));
      $("live-rows").replaceChildren(...rows);
      counted(rows.length);
    }

    function counted(count) {
      $("live-empty").hidden = count > 0;
      $("live-count").textContent = `${count} of the last ${entries.length} (this process keeps ${capacity})`;
    }

    function arrive(entry) {
      entries.unshift(entry);
      lastId = Math.max(lastId, entry.id);
      noteKey(entry.key);
      const body = $("live-rows");
      if (entries.length > capacity) {
        const gone = entries.pop();
        const old = body.querySelector(`tr[data-id="${Number(gone.id)}"]`);
        if (old) old.remove();
      }
      if (matches(entry, filters())) body.prepend(row(entry, true));
      counted(body.childElementCount);
    }

    function feedState(text, kind) {
      const badge = $("feed-state");
      badge.textContent = text;
      badge.className = `badge ${kind || ""}`;
    }

    // One SSE event block: its id, event name and data.
    function parseEvent(block) {
      const event = { id: null, name: "message", data: [] };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") event.id = value;
        else if (field === "event") event.name = value;
        else if (field === "data") event.data.push(value);
      }
      return event;
    }

    // Read the feed until it ends or breaks; false when the admin key was refused.
    async function follow(control) {
      const response = await fetch("/console/api/feed", {
        headers: { Authorization: `Bearer ${adminKey}`, "Last-Event-ID": String(lastId) },
        cache: "no-store",
        signal: control.signal,
      });
      if (response.status === 401) {
        logOut("The gateway refused this admin key.");
        return false;
      }
      if (!response.ok || !response.body) throw new Error(`feed: ${response.status}`);
      feedState("live", "live");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return true;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = parseEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event.name === "message" && event.data.length) arrive(JSON.parse(event.data.join("\n")));
          else if (event.name === "gap") feedState(`live (${event.data.join("")} skipped)`, "live");
        }
      }
    }

    // The ring, then the feed from its last number; after a break, both again: the gateway
    // may have restarted, or another worker (with its own ring) may answer.
    async function start() {
      stop();
      const control = new AbortController();
      feed = control;
      while (!control.signal.aborted) {
        feedState("connecting");
        try {
          const ring = await api("/console/api/requests");
          if (control.signal.aborted) return;
          capacity = ring.capacity;
          entries = ring.data;
          lastId = ring.last_id;
          for (const entry of entries) noteKey(entry.key);
          $("process").textContent = `process ${ring.pid}`;
          render();
          if (!(await follow(control))) return;
        } catch (error) {
          if (error instanceof Refused || control.signal.aborted) return;
        }
        feedState("reconnecting", "down");
        await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
      }
    }

    function stop() {
      if (feed) feed.abort();
      feed = null;
      entries = [];
      lastId = 0;
      keysSeen.clear();
    }

    for (const id of ["filter-key", "filter-model", "filter-status"]) {
      $(id).addEventListener("input", render);
      $(id).addEventListener("change", render);
    }
    return { start, stop };
  })();

  // ---- Keys ----

  function use(used, limit) {
    if (limit === null || limit === undefined) return el("span", {}, number(used));
    return el(
      "span",
      { class: "use" },
      `${number(used)} / ${number(limit)}`,
      el("meter", { min: 0, max: limit, value: Math.min(used, limit), high: limit * 0.8, optimum: 0 }),
    );
  }

  async function refreshKeys() {
    let answer;
    try {
      answer = await api("/console/api/keys");
    } catch (error) {
      return;
    }
    if (current !== "keys") return;
    $("keys-note").textContent = answer.shared
      ? "Use across every gateway instance (the counters are in Redis)."
      : `Use counted in this process (${answer.pid}); with several instances, set [state] redis_url to see their sum.`;
    $("keys-empty").hidden = answer.data.length > 0;
    $("keys-rows").replaceChildren(
      ...answer.data.map((key) => {
        const budget = key.budget === null
          ? `${number(key.budget_spent)} (no budget)`
          : use(key.budget_spent, key.budget);
        return el(
          "tr",
          { "data-key": key.key },
          el("td", {}, key.key),
          el("td", {}, key.models.join(", ")),
          el("td", {}, use(key.requests_last_minute, key.limits.rpm)),
          el("td", {}, use(key.tokens_last_minute, key.limits.tpm)),
          el("td", {}, use(key.in_flight, key.limits.max_parallel)),
          el("td", {}, budget),
          el("td", { class: "nowrap" }, `${key.budget_period}, resets in ${duration(key.budget_resets_in_seconds)}`),
          // Money: USD spent and its cap, once requests are priced.
          el("td", { class: "num spend" }, `${money(key.spend_usd)} / ${money(key.max_spend_usd)}`),
        );
      }),
    );
  }

  // ---- Providers ----

  const SVG = "http://www.w3.org/2000/svg";

  function sparkline(minutes, windowMinutes, now) {
    const width = 10 * windowMinutes;
    const height = 24;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const most = Math.max(1, ...minutes.map((m) => m.attempts));
    const thisMinute = Math.floor(now / 60) * 60;
    for (const m of minutes) {
      const slot = windowMinutes - 1 - Math.round((thisMinute - m.minute) / 60);
      if (slot < 0) continue;
      const total = (m.attempts / most) * height;
      const failed = (m.failed_attempts / most) * height;
      for (const [kind, top, size] of [["ok", height - total, total - failed], ["failed", height - failed, failed]]) {
        if (size <= 0) continue;
        const bar = document.createElementNS(SVG, "rect");
        bar.setAttribute("class", kind);
        bar.setAttribute("x", slot * 10 + 1);
        bar.setAttribute("y", top);
        bar.setAttribute("width", 8);
        bar.setAttribute("height", size);
        svg.append(bar);
      }
    }
    const title = document.createElementNS(SVG, "title");
    title.textContent = minutes.map((m) => `${clock(m.minute).slice(0, 5)}: ${m.attempts} attempts, ${m.failed_attempts} failed`).join("\n");
    svg.append(title);
    return svg;
  }

  const REASONS = {
    401: "the upstream refused the key (401)",
    403: "the upstream refused the key (403)",
    429: "rate limited by the upstream (429)",
  };

  function why(rest) {
    const failure = rest.why;
    if (!failure) return "rested by another instance, or before this process saw it fail";
    const status = failure.status === null ? "no answer" : `answered ${failure.status}`;
    if (rest.kind === "key") {
      return `${REASONS[failure.status] || status} on ${failure.target}, at ${clock(failure.at)}`;
    }
    return `${status}, last at ${clock(failure.at)}`;
  }

  async function refreshProviders() {
    let answer;
    try {
      answer = await api("/console/api/providers");
    } catch (error) {
      return;
    }
    if (current !== "providers") return;
    const windowMinutes = answer.providers.length ? answer.providers[0].window_minutes : 5;
    $("providers-note").textContent = `Attempts and TTFT over the last ${windowMinutes} minutes in this process (${answer.pid}); `
      + (answer.shared ? "rests shared by every instance (Redis)." : "rests of this process.");
    $("providers-rows").replaceChildren(
      ...answer.providers.map((p) => el(
        "tr",
        { "data-provider": p.name },
        el("td", {}, p.name),
        el("td", {}, p.type),
        el("td", { class: "num" }, p.keys),
        el("td", { class: "num" }, number(p.attempts)),
        el("td", { class: "num" }, number(p.failed_attempts)),
        el("td", { class: `num ${p.error_rate ? "status-err" : ""}` }, p.error_rate === null ? DASH : `${number(p.error_rate * 100, 1)} %`),
        el("td", { class: "num" }, number(p.requests)),
        el("td", { class: "num" }, number(p.ttft_p50_ms, 1)),
        el("td", { class: "num" }, number(p.ttft_p95_ms, 1)),
        el("td", {}, sparkline(p.minutes, p.window_minutes, answer.now)),
      )),
    );
    $("resting-empty").hidden = answer.resting.length > 0;
    $("resting-rows").replaceChildren(
      ...answer.resting.map((rest) => el(
        "tr",
        { "data-rest": rest.id },
        el("td", {}, rest.id),
        el("td", {}, rest.kind),
        el("td", {}, rest.provider),
        el("td", { class: "num" }, clock(rest.since)),
        el("td", { class: "num" }, duration(rest.seconds_left)),
        el("td", {}, why(rest)),
      )),
    );
  }

  // ---- Playground: the gateway's own /v1/chat/completions, streamed ----

  const playground = (() => {
    let running = null; // its AbortController
    let loadedWith = null; // the gateway key the model list was loaded with

    function gatewayHeaders() {
      const key = $("play-key").value.trim();
      return key ? { Authorization: `Bearer ${key}` } : {};
    }

    async function errorText(response) {
      try {
        const body = await response.json();
        return (body.error && body.error.message) || JSON.stringify(body);
      } catch (error) {
        return response.statusText;
      }
    }

    async function loadModels(force) {
      const key = $("play-key").value.trim();
      if (!force && loadedWith === key) return;
      loadedWith = key;
      $("play-error").textContent = "";
      const response = await fetch("/v1/models", { headers: gatewayHeaders(), cache: "no-store" });
      if (!response.ok) {
        $("play-error").textContent = `Models: ${response.status} ${await errorText(response)}`;
        return;
      }
      const models = (await response.json()).data;
      $("play-models").replaceChildren(...models.map((model) => el("option", { value: model.id })));
      if (!$("play-model").value && models.length) $("play-model").value = models[0].id;
    }

    function set(id, text) {
      $(id).textContent = text;
    }

    async function send(event) {
      event.preventDefault();
      if (running) return;
      const control = new AbortController();
      running = control;
      $("play-send").disabled = true;
      $("play-stop").disabled = false;
      const output = $("play-output");
      output.replaceChildren();
      for (const id of ["play-status", "play-served", "play-ttft", "play-tokens", "play-rate"]) set(id, DASH);
      set("play-error", "");
      const started = performance.now();
      let first = null;
      let chunks = 0;
      let usage = null;
      const rate = () => {
        const tokens = usage ? usage.completion_tokens : chunks;
        const seconds = (performance.now() - first) / 1000;
        set("play-tokens", usage ? `${usage.prompt_tokens} in / ${usage.completion_tokens} out` : `${chunks} chunks`);
        if (first !== null && seconds > 0 && tokens > 1) set("play-rate", number((tokens - 1) / seconds, 1));
      };
      try {
        const response = await fetch("/v1/chat/completions", {
          method: "POST",
          headers: { "Content-Type": "application/json", ...gatewayHeaders() },
          body: JSON.stringify({
            model: $("play-model").value.trim(),
            stream: true,
            stream_options: { include_usage: true },
            max_tokens: Number($("play-max").value) || undefined,
            messages: [{ role: "user", content: $("play-prompt").value }],
          }),
          signal: control.signal,
        });
        set("play-status", String(response.status));
        set("play-served", shown(response.headers.get("x-gateway-model")));
        if (!response.ok) {
          set("play-error", await errorText(response));
          return;
        }
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            for (const line of block.split("\n")) {
              if (!line.startsWith("data:")) continue;
              const data = line.slice(5).trim();
              if (data === "[DONE]") continue;
              const chunk = JSON.parse(data);
              if (chunk.error) {
                set("play-error", chunk.error.message || JSON.stringify(chunk.error));
                continue;
              }
              if (chunk.usage) usage = chunk.usage;
              const text = chunk.choices && chunk.choices[0] && chunk.choices[0].delta && chunk.choices[0].delta.content;
              if (text) {
                if (first === null) {
                  first = performance.now();
                  set("play-ttft", `${number(first - started, 1)} ms`);
                }
                chunks += 1;
                output.append(text); // a text node: the model's words stay words
              }
              rate();
            }
          }
        }
        rate();
      } catch (error) {
        if (!control.signal.aborted) set("play-error", String(error.message || error));
      } finally {
        running = null;
        $("play-send").disabled = false;
        $("play-stop").disabled = true;
      }
    }

    $("play-form").addEventListener("submit", send);
    $("play-stop").addEventListener("click", () => running && running.abort());
    $("play-load").addEventListener("click", () => loadModels(true));
    $("play-key").addEventListener("change", () => loadModels(false));
    return { loadModels };
  })();

  // ---- start ----

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    const key = $("admin-key").value.trim();
    if (key) logIn(key, true);
  });
  $("logout").addEventListener("click", () => logOut(""));
  window.addEventListener("hashchange", () => show(viewOfHash()));
  const remembered = sessionStorage.getItem(KEY_STORE);
  if (remembered) logIn(remembered, false);
})();
