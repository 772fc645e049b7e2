// e2m-live browser surface. Every control is built from the daemon's OSC address table
// (/api/table), so an address added to the table appears here without touching this file.
// Controls go out over one WebSocket as {address, args}; feedback comes back as OSC-like batches.
"use strict";
(() => {
  const SEND_EVERY_MS = 33; // a dragged control sends at most ~30 messages a second
  const HOLD_MS = 500; // feedback does not move a control the hand is on (or just left)
  const MAX_ERRORS = 50;
  const PANELS = { transport: "Transport", pad: "Valence × energy", feature: "Features",
    arrangement: "Arrangement", sync: "Sync", state: "State" };

  let table = null;
  let tableText = "";
  let ws = null;
  let attempt = 0;
  let retryTimer = null;
  const followers = new Map(); // feedback address -> [fn(args)]
  const followed = new Set(); // feedback addresses some control follows
  const stateRows = new Map(); // feedback address -> <dd>
  const plan = { section: null, bars: [], index: -1, ready: 0, complete: false };

  // ---- small helpers ------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }
  const $ = (id) => document.getElementById(id);
  const name = (address) => address.slice(address.lastIndexOf("/") + 1);
  const isNumeric = (arg) => /[fi]/.test(arg.types[0]);
  const integer = (arg) => arg.types[0] === "i" && !arg.types.includes("f");
  function format(value) {
    if (typeof value !== "number") return String(value);
    return Number.isInteger(value) ? String(value) : value.toFixed(Math.abs(value) >= 10 ? 1 : 2);
  }

  function send(address, args) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ address, args }));
    else addError(address, "not connected: not sent");
  }

  // One sender per control: while dragging, at most one message per SEND_EVERY_MS, the last always.
  function throttled(address) {
    let last = 0, timer = null, pending = null;
    const flush = () => { timer = null; last = performance.now(); send(address, pending); pending = null; };
    return (args) => {
      pending = args;
      const wait = SEND_EVERY_MS - (performance.now() - last);
      if (wait <= 0) flush();
      else if (!timer) timer = setTimeout(flush, wait);
    };
  }

  // A control the hand is on ignores feedback until HOLD_MS after the last touch.
  function hand() {
    let until = 0;
    return { touch: () => { until = performance.now() + HOLD_MS; }, busy: () => performance.now() < until };
  }

  function follow(address, fn) {
    if (!followers.has(address)) followers.set(address, []);
    followers.get(address).push(fn);
    followed.add(address);
  }

  // The feedback address (and argument index) that carries an argument's value in force:
  // /e2m/state/<name> first, else any feedback message with an argument of that name.
  function feedbackFor(argName) {
    const outs = table.addresses.filter((a) => a.direction === "out");
    const exact = outs.find((a) => name(a.address) === argName && a.arguments.length >= 1);
    if (exact) return [exact.address, 0];
    for (const a of outs) {
      const index = a.arguments.findIndex((arg) => arg.name === argName);
      if (index >= 0 && a.control !== "multi") return [a.address, index];
    }
    return null;
  }

  function followArgument(arg, fn) {
    const where = feedbackFor(arg.name);
    if (where) follow(where[0], (args) => { if (args.length > where[1]) fn(args[where[1]]); });
  }

  // ---- widgets ------------------------------------------------------------------------------------
  function step(arg) {
    if (integer(arg)) return 1;
    const span = arg.high - arg.low;
    return span <= 2 ? 0.005 : span <= 100 ? 0.1 : 1;
  }

  function fader(entry, arg, editable) {
    const id = `ctl-${name(entry.address)}`;
    const h = hand();
    const out = throttled(entry.address);
    const input = el("input", { type: "range", id, min: arg.low, max: arg.high, step: step(arg),
      value: arg.default ?? arg.low, "data-address": entry.address, "aria-label": entry.label });
    const shown = editable
      ? el("input", { type: "number", min: arg.low, max: arg.high, step: step(arg), value: arg.default,
        "aria-label": `${entry.label} value` })
      : el("span", { class: "value", text: format(arg.default ?? arg.low) });
    const show = (v) => { if (editable) shown.value = format(v); else shown.textContent = format(v); };
    const number = () => (integer(arg) ? parseInt(input.value, 10) : parseFloat(input.value));
    for (const type of ["pointerdown", "touchstart"]) input.addEventListener(type, h.touch, { passive: true });
    input.addEventListener("input", () => { h.touch(); show(number()); out([number()]); });
    input.addEventListener("change", () => { h.touch(); send(entry.address, [number()]); });
    if (editable) {
      shown.addEventListener("change", () => {
        const v = parseFloat(shown.value);
        if (Number.isFinite(v)) { input.value = v; send(entry.address, [integer(arg) ? Math.round(v) : v]); }
      });
    }
    followArgument(arg, (v) => {
      if (typeof v !== "number" || h.busy() || document.activeElement === shown) return;
      input.value = v; show(v);
    });
    const unit = arg.unit ? ` (${arg.unit})` : "";
    // what the music does: the feature re-estimated from the notes played, where the daemon reports it
    const heard = table.addresses.find((a) => a.direction === "out" && a.address.endsWith(`/measured/${arg.name}`));
    let cell = shown;
    if (heard) {
      const measured = el("span", { class: "measured", title: heard.effect, text: "heard -" });
      follow(heard.address, (args) => { measured.textContent = `heard ${format(args[0])}`; });
      cell = el("div", { class: "value" }, shown, measured);
    }
    return el("div", { class: "row control", title: entry.effect },
      el("label", { for: id, text: entry.label + unit }), input, cell);
  }

  function choices(entry, arg) {
    // menus: named choices (mood, key, mode, ensemble, sync) or a short integer range (beats/bar)
    if (arg.choices.length) return arg.choices.map((c, i) => [c, arg.types.includes("s") ? c : (arg.low ?? 0) + i]);
    const list = [];
    for (let v = arg.low; v <= arg.high; v += 1) list.push([arg.unit === "beats/bar" ? `${v}/4` : String(v), v]);
    return list;
  }

  function segmented(entry, arg) {
    const options = choices(entry, arg);
    const buttons = options.map(([label, value]) => el("button", { type: "button", text: label,
      "data-address": entry.address, "data-value": String(value),
      onclick: () => send(entry.address, [value]) }));
    const select = (v) => {
      const index = typeof v === "string"
        ? options.findIndex(([label, value]) => String(value).toLowerCase() === v.toLowerCase()
          || label.toLowerCase() === v.toLowerCase())
        : options.findIndex(([, value]) => value === v) >= 0
          ? options.findIndex(([, value]) => value === v)
          : v - (arg.low ?? 0);
      buttons.forEach((b, i) => b.classList.toggle("selected", i === index));
    };
    followArgument(arg, select);
    if (name(entry.address) === "mood") moodButtons = { buttons, options };
    const many = options.length > 6 && options.every(([label]) => label.length <= 3);
    return el("div", { class: "control", title: entry.effect }, el("span", { class: "label", text: entry.label }),
      el("div", { class: many ? "buttons grid" : "buttons" }, ...buttons));
  }

  let moodButtons = null;
  function showMood(features) {
    // no /e2m/state/mood: a mood button lights when the features in force are that preset
    if (!moodButtons) return;
    moodButtons.options.forEach(([mood], i) => {
      const preset = table.moods[mood];
      const same = preset && table.features.every((f, k) => Math.abs(preset[f] - features[k]) < 1e-3);
      moodButtons.buttons[i].classList.toggle("selected", Boolean(same));
    });
  }

  function toggle(entry, arg) {
    const button = el("button", { type: "button", text: entry.label, "aria-pressed": "false",
      "data-address": entry.address });
    button.addEventListener("click", () => send(entry.address, [button.getAttribute("aria-pressed") === "true" ? 0 : 1]));
    followArgument(arg, (v) => button.setAttribute("aria-pressed", String(Boolean(Number(v)))));
    return button;
  }

  function pushButton(entry, args, label) {
    const kind = { play: "go", continue: "go", stop: "danger", panic: "danger" }[name(entry.address)] || "";
    return el("button", { type: "button", class: kind, text: label || entry.label, title: entry.effect,
      "data-address": entry.address, onclick: () => send(entry.address, args) });
  }

  function pad(entry) {
    const [ax, ay] = entry.arguments;
    const h = hand();
    const out = throttled(entry.address);
    const dot = el("div", { class: "dot" });
    const area = el("div", { class: "pad", id: `ctl-${name(entry.address)}`, "data-address": entry.address,
      role: "slider", "aria-label": entry.label },
    el("span", { class: "axis x", text: `${ax.name} →` }), el("span", { class: "axis y", text: `↑ ${ay.name}` }), dot);
    const readout = el("div", { class: "pad-readout" });
    const value = { x: ax.default, y: ay.default };
    const place = () => {
      dot.style.left = `${(100 * (value.x - ax.low)) / (ax.high - ax.low)}%`;
      dot.style.top = `${100 - (100 * (value.y - ay.low)) / (ay.high - ay.low)}%`;
      readout.textContent = `${ax.name} ${format(value.x)} · ${ay.name} ${format(value.y)}`;
    };
    const at = (event) => {
      const box = area.getBoundingClientRect();
      const fx = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
      const fy = Math.min(1, Math.max(0, 1 - (event.clientY - box.top) / box.height));
      value.x = ax.low + fx * (ax.high - ax.low);
      value.y = ay.low + fy * (ay.high - ay.low);
      place(); h.touch(); out([value.x, value.y]);
    };
    let dragging = false;
    area.addEventListener("pointerdown", (e) => { dragging = true; area.setPointerCapture(e.pointerId); at(e); });
    area.addEventListener("pointermove", (e) => { if (dragging) at(e); });
    const end = (e) => { if (dragging) { dragging = false; at(e); } };
    area.addEventListener("pointerup", end);
    area.addEventListener("pointercancel", () => { dragging = false; });
    followArgument(ax, (v) => { if (!h.busy() && typeof v === "number") { value.x = v; place(); } });
    followArgument(ay, (v) => { if (!h.busy() && typeof v === "number") { value.y = v; place(); } });
    place();
    return el("div", { class: "control", title: entry.effect }, area, readout);
  }

  function entryField(entry) {
    const id = `ctl-${name(entry.address)}`;
    const input = el("input", { type: "text", id, list: "instrument-names", autocomplete: "off",
      placeholder: entry.repeated ? "names, commas between" : "a name or program number",
      "data-address": entry.address });
    const go = () => { send(entry.address, input.value.trim() ? [input.value.trim()] : []); input.value = ""; };
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
    const quick = (entry.extra.quick || []).map(([label, args]) =>
      pushButton(entry, args, `${entry.label}: ${label}`));
    return el("div", { class: "control", title: entry.effect },
      el("label", { for: id, class: "label", text: entry.label }),
      el("div", { class: "entry" }, input, el("button", { type: "button", text: "Send", onclick: go })),
      quick.length ? el("div", { class: "buttons" }, ...quick) : null);
  }

  // Anything the widgets above do not cover (a new kind of address): one field per argument; a
  // bounded float is a slider that sends as it moves (the scene morph), the rest send with "Send".
  function generic(entry) {
    const out = throttled(entry.address);
    const values = () => entry.arguments.map((arg, i) => {
      const raw = fields[i].value.trim();
      if (raw === "") return null;
      return isNumeric(arg) && !arg.choices.length ? Number(raw) : raw;
    }).filter((v) => v !== null);
    const fields = entry.arguments.map((arg) => {
      const label = `${entry.label}: ${arg.name}`;
      if (arg.choices.length) {
        return el("select", { "aria-label": label }, ...arg.choices.map((c) => el("option", { value: c, text: c })));
      }
      if (isNumeric(arg) && arg.low != null && arg.high != null && !integer(arg)) {
        const range = el("input", { type: "range", min: arg.low, max: arg.high, step: step(arg),
          value: arg.default ?? arg.low, "aria-label": label, title: arg.name });
        range.addEventListener("input", () => out(values()));
        return range;
      }
      if (integer(arg) && arg.low != null && arg.high != null && arg.high - arg.low <= 16) {
        const options = [];
        for (let v = arg.low; v <= arg.high; v += 1) options.push(el("option", { value: v, text: `${arg.name} ${v}` }));
        const select = el("select", { "aria-label": label }, ...options);
        select.value = String(arg.default ?? arg.low);
        return select;
      }
      return el("input", { type: isNumeric(arg) ? "number" : "text", placeholder: arg.name, "aria-label": label,
        step: "any", value: arg.default ?? "" });
    });
    return el("div", { class: "control", title: entry.effect },
      el("span", { class: "label", text: entry.label }),
      el("div", { class: "buttons" }, ...fields,
        el("button", { type: "button", text: "Send", "data-address": entry.address, onclick: () => send(entry.address, values()) })),
      el("div", { class: "effect", text: entry.effect }));
  }

  function widget(entry) {
    const args = entry.arguments;
    const one = args[0];
    switch (entry.control) {
      case "fader": if (args.length === 1 && isNumeric(one) && one.low != null && one.high != null) return fader(entry, one, false); break;
      case "xy": if (args.length === 2) return pad(entry); break;
      case "menu": if (args.length === 1) return segmented(entry, one); break;
      case "toggle":
        if (args.length === 1) return one.choices.length ? segmented(entry, one) : toggle(entry, one);
        break;
      case "number":
        if (args.length === 1 && integer(one) && one.high - one.low <= 12) return segmented(entry, one);
        if (args.length === 1 && one.low != null && one.high != null) return fader(entry, one, true);
        break;
      case "button": return pushButton(entry, []);
      case "multi": // all the features at once: a Defaults preset; other multis get a form
        if (args.map((a) => a.name).join() === table.features.join()) {
          return pushButton(entry, args.map((a) => a.default), `${entry.label}: defaults`);
        }
        break;
      case "entry": if (args.length === 1) return entryField(entry); break;
      default: break;
    }
    return generic(entry);
  }

  // ---- panels -------------------------------------------------------------------------------------
  function panel(key) {
    let node = $(`panel-${key}`);
    if (!node) {
      const title = PANELS[key] || key.charAt(0).toUpperCase() + key.slice(1);
      node = el("section", { id: `panel-${key}`, class: "panel" }, el("h2", { text: title }));
      $("surface").insertBefore(node, $("panel-errors"));
    }
    return node;
  }

  function rank(entry) {
    if (entry.control === "menu" && entry.arguments[0]?.types === "s") return 0; // mood, ensemble first
    return { fader: 1, number: 2, menu: 3, button: 4, toggle: 5, entry: 6, multi: 7 }[entry.control] ?? 8;
  }

  function build() {
    for (const key of ["transport", "pad", "feature", "arrangement", "sync"]) panel(key);
    const inputs = table.addresses.filter((a) => a.direction === "in");
    const buttons = new Map();
    for (const entry of [...inputs].sort((a, b) => rank(a) - rank(b))) {
      const key = entry.control === "xy" ? "pad" : entry.group;
      const node = widget(entry);
      if (entry.control === "button" || (entry.control === "toggle" && !entry.arguments[0].choices.length)) {
        if (!buttons.has(key)) {
          buttons.set(key, el("div", { class: "buttons" }));
          panel(key).append(buttons.get(key));
        }
        buttons.get(key).append(node);
      } else {
        panel(key).append(node);
      }
    }
    if (inputs.some((a) => a.control === "entry")) {
      document.body.append(el("datalist", { id: "instrument-names" },
        ...table.instruments.map((n) => el("option", { value: n }))));
    }
    buildChips();
    buildState();
  }

  // The instruments in force as chips: a tap mutes one; a muted chip's tap lets it play again.
  function buildChips() {
    const inputs = new Set(table.addresses.filter((a) => a.direction === "in").map((a) => a.address));
    const chips = el("div", { class: "chips", id: "chips" });
    const draw = () => {
      chips.replaceChildren();
      for (const n of stateValue("/e2m/state/instruments")) {
        if (n === "auto") { chips.append(el("span", { class: "hint", text: "instruments: auto (the features choose)" })); continue; }
        chips.append(el("button", { type: "button", class: "chip", text: n, title: "tap to mute",
          onclick: () => inputs.has("/e2m/mute") && send("/e2m/mute", [n]) }));
      }
      for (const n of stateValue("/e2m/state/muted")) {
        if (n === "none") continue;
        chips.append(el("button", { type: "button", class: "chip muted", text: n, title: "tap to unmute",
          onclick: () => inputs.has("/e2m/unmute") && send("/e2m/unmute", [n]) }));
      }
    };
    for (const address of ["/e2m/state/instruments", "/e2m/state/muted"]) follow(address, draw);
    panel("arrangement").append(el("span", { class: "label", text: "In force (tap to mute or unmute)" }), chips);
  }

  const latest = new Map();
  const stateValue = (address) => latest.get(address) || [];

  function buildState() {
    const special = new Set(["/e2m/state/plan", "/e2m/state/bar", "/e2m/state/lag", "/e2m/error",
      "/e2m/state/playing", "/e2m/state/features"]);
    const list = el("dl", { class: "state" });
    for (const entry of table.addresses) {
      if (entry.direction !== "out" || special.has(entry.address)) continue;
      if (followed.has(entry.address) && entry.arguments.length === 1) continue; // a control shows it
      const own = (arg) => table.addresses.some((a) => a.direction === "out" && a.address !== entry.address
        && a.address.endsWith(`/${arg.name}`));
      if (entry.control === "multi" && entry.arguments.every(own)) continue; // shown one by one
      const dd = el("dd", { text: "-", "data-address": entry.address });
      stateRows.set(entry.address, dd);
      list.append(el("dt", { text: entry.label, title: entry.effect }), dd);
    }
    panel("state").append(list);
  }

  // ---- feedback -----------------------------------------------------------------------------------
  function apply(address, args) {
    latest.set(address, args);
    for (const fn of followers.get(address) || []) fn(args);
    const row = stateRows.get(address);
    if (row) row.textContent = args.map(format).join(address.endsWith("/sync") ? " · " : ", ") || "-";
    switch (address) {
      case "/e2m/state/playing": {
        const on = Boolean(Number(args[0]));
        $("playing").textContent = on ? "playing" : "stopped";
        $("playing").className = `pill ${on ? "on" : ""}`;
        break;
      }
      case "/e2m/state/bar":
        $("where").textContent = `bar ${args[0]} · ${args[1] + 1}/${table.section_bars}`;
        plan.index = args[1];
        drawStrip();
        break;
      case "/e2m/state/lag":
        $("lag").textContent = `lag ${args[0]} bar${args[0] === 1 ? "" : "s"} · ${format(args[1])} ms`;
        $("lag").className = `pill ${args[1] > 0 ? "warn" : ""}`;
        break;
      case "/e2m/state/sync": {
        const [source, tempo, running, peers] = args;
        $("clock").textContent = `${source} ${format(tempo)} BPM${running ? "" : " (waiting)"}${peers ? ` · ${peers} peers` : ""}`;
        break;
      }
      case "/e2m/state/plan": {
        const text = String(args[0]);
        $("plan-text").textContent = text;
        const ready = text.match(/(\d+)\/(\d+) ready/);
        plan.complete = /complete/.test(text);
        plan.ready = plan.complete ? table.section_bars : ready ? Number(ready[1]) : 0;
        drawStrip();
        break;
      }
      case "/e2m/state/features": showMood(args); break;
      case "/e2m/error": addError(args[0], args[1]); break;
      default: break;
    }
  }

  function addError(address, message) {
    const when = new Date().toLocaleTimeString();
    const item = el("li", {}, el("span", { class: "when", text: `${when} ` }),
      el("span", { class: "address", text: address || "(packet)" }), ` ${message}`);
    $("errors").prepend(item);
    while ($("errors").children.length > MAX_ERRORS) $("errors").lastChild.remove();
  }

  function shortName(instrument) {
    return instrument.replace(/\s*\(.*\)$/, "").replace(/^(Acoustic|Electric) /, "");
  }

  function drawStrip() {
    const strip = $("strip");
    if (strip.children.length !== table.section_bars) {
      strip.replaceChildren(...Array.from({ length: table.section_bars }, (_, i) =>
        el("div", { class: "bar", "data-index": String(i) })));
    }
    const byIndex = new Map(plan.bars.map((b) => [b.index, b]));
    [...strip.children].forEach((cell, i) => {
      const bar = byIndex.get(i);
      cell.className = "bar" + (i === plan.index ? " now" : i < plan.index ? " played" : "")
        + (i >= plan.ready && !bar ? " pending" : "");
      cell.replaceChildren(el("div", { class: "n", text: String(i + 1) }),
        el("div", { class: "chord", text: bar ? bar.chord : "·" }),
        el("div", { class: "inst", text: bar ? bar.instruments.map(shortName).join(", ") : "" }));
    });
  }

  function receive(frame) {
    if (frame.type === "osc") for (const [address, args] of frame.messages) apply(address, args);
    else if (frame.type === "bars") { plan.section = frame.section; plan.bars = frame.bars; drawStrip(); }
  }

  // ---- connection (reconnects by itself, with backoff) ---------------------------------------------
  function setConnection(text, kind) {
    $("connection").textContent = text;
    $("connection").className = `pill ${kind}`;
    document.body.dataset.connected = kind === "on" ? "1" : "0";
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    const socket = new WebSocket(url);
    ws = socket;
    socket.onopen = async () => {
      if (attempt > 0) {
        // a restarted daemon may have a newer table: rebuild the page if it differs
        try {
          const text = await (await fetch("/api/table", { cache: "no-store" })).text();
          if (text !== tableText) { location.reload(); return; }
        } catch (error) { /* the socket is open: keep going */ }
      }
      attempt = 0;
      setConnection("connected", "on");
      socket.send(JSON.stringify({ type: "state" })); // the full state on every (re)connect
    };
    socket.onmessage = (event) => receive(JSON.parse(event.data));
    socket.onclose = () => {
      if (ws !== socket) return;
      const delay = Math.min(5000, 250 * 2 ** attempt) * (0.75 + Math.random() / 2);
      attempt += 1;
      setConnection(`reconnecting in ${(delay / 1000).toFixed(1)} s`, "off");
      retryTimer = setTimeout(connect, delay);
    };
  }

  document.addEventListener("visibilitychange", () => {
    // phones drop sockets while asleep: try at once when the page is back
    if (document.visibilityState === "visible" && ws && ws.readyState === WebSocket.CLOSED) connect();
  });

  async function start() {
    $("clear-errors").addEventListener("click", () => $("errors").replaceChildren());
    for (;;) {
      try {
        const response = await fetch("/api/table", { cache: "no-store" });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        tableText = await response.text();
        table = JSON.parse(tableText);
        break;
      } catch (error) {
        setConnection("daemon unreachable, retrying", "off");
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    }
    build();
    drawStrip();
    connect();
  }

  window.e2m = { latest, send }; // for tests and the browser console
  start();
})();
