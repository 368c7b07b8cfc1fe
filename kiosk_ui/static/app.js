"use strict";
// The kiosk's touch UI: one screen per step, texts from the message catalogs, the server holds the state.

const S = { lang: null, catalog: {}, ui: null, session: null, sub: null, busy: false, idle: null, poll: null,
            finish: null, auto: null };
const $ = (id) => document.getElementById(id);
const POLL_MS = 700;
const DONE_MS = 20000;

async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  if (res.status === 204) return null;
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(data.detail || res.statusText);
    err.status = res.status;
    throw err;
  }
  return data;
}

function t(key, vars) {
  let text = S.catalog[key];
  if (text === undefined) text = key;
  for (const [k, v] of Object.entries(vars || {})) text = text.split("{" + k + "}").join(String(v));
  return text;
}

function money(cents) {
  return S.ui.currency + " " + (cents / 100).toFixed(2);
}

async function setLang(lang) {
  S.catalog = await api("GET", "/api/i18n/" + lang);
  S.lang = lang;
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.title = t("app.title");
  render();
}

function other(lang) {
  const langs = S.ui.languages;
  return langs[(langs.indexOf(lang) + 1) % langs.length];
}

function status(text) {
  $("status").textContent = text || "";
}

// ------------------------------------------------------------------ screens

function screenName() {
  const s = S.session;
  if (!s) return "welcome";
  return S.sub || s.step;
}

function show(name) {
  document.querySelectorAll(".screen").forEach((el) => { el.hidden = el.id !== "screen-" + name; });
  $("cancel").hidden = !S.session || ["done", "staff"].includes(name);
  $("progress-nav").hidden = !S.session;
  document.body.dataset.screen = name;
  document.body.dataset.session = S.session ? S.session.id : "";
}

function progress() {
  const ol = $("progress");
  ol.textContent = "";
  if (!S.session) return;
  const steps = S.session.steps;
  const at = steps.indexOf(S.session.step);
  steps.forEach((step, i) => {
    const li = document.createElement("li");
    li.textContent = t("steps." + step);
    if (i < at || S.session.step === "done") li.className = "done";
    if (step === S.session.step) li.setAttribute("aria-current", "step");
    ol.appendChild(li);
  });
}

function fill(name, s) {
  const d = s ? s.data : {};
  if (name === "face") $("face-tries").textContent = t("face.tries_left", { n: d.tries_left });
  if (name === "room") {
    $("room-number").textContent = d.room || "";
    const b = d.booking || {};
    $("room-detail").textContent = t("room.detail", { type: b.room_type || "", nights: b.nights || "",
                                                      departure: b.departure || "" });
  }
  if (name === "deposit") $("deposit-amount").textContent = t("deposit.amount", { amount: money(d.deposit_cents) });
  if (name === "bill") {
    const tbody = $("bill-lines");
    tbody.textContent = "";
    const bill = d.bill || { lines: [], total_cents: 0 };
    if (!bill.lines.length) {
      const tr = tbody.insertRow();
      tr.insertCell().textContent = t("bill.empty");
    }
    bill.lines.forEach((line) => {
      const tr = tbody.insertRow();
      tr.insertCell().textContent = line.item;
      const c = tr.insertCell();
      c.textContent = money(line.cents);
      c.className = "amount";
    });
    $("bill-total").textContent = t("bill.total", { amount: money(bill.total_cents) });
    $("bill-deposit").textContent = t("bill.deposit", { amount: money(d.deposit_cents) });
  }
  if (name === "done") {
    const checkin = s.kind === "checkin";
    $("done-title").textContent = t(checkin ? "done.title" : "done.checkout_title");
    $("done-room").textContent = checkin ? (d.room || "") : "";
    $("done-text").textContent = t(checkin ? "done.take_card" : "done.bye");
    $("done-notice").textContent = d.notice ? t("notice." + d.notice) : "";
  }
  if (name === "staff") {
    const f = s.failure || {};
    $("staff-reason").textContent = t("reason." + f.reason);
    $("staff-compensation").textContent = f.compensation ? t("compensation." + f.compensation) : "";
  }
}

function render() {
  if (!S.ui) return;
  stopPoll();
  const name = screenName();
  fill(name, S.session);
  show(name);
  progress();
  status(S.session && S.session.message ? t("message." + S.session.message) : "");
  if (name === "id_card") poll("/id-card");
  if (name === "card") poll("/card");
  if (name === "key_card" && S.auto !== S.session.id) {
    S.auto = S.session.id;  // once per session: a failure shows the staff screen, never a retry loop
    act("/key-card");
  }
  if (name === "done") {
    clearTimeout(S.finish);
    S.finish = setTimeout(finish, DONE_MS);
  }
}

// ------------------------------------------------------------------ actions

function path(suffix) {
  return "/api/sessions/" + S.session.id + suffix;
}

function setBusy(on) {
  S.busy = on;
  document.querySelectorAll("main button").forEach((b) => { b.disabled = on; });
}

async function act(suffix, body) {
  if (S.busy || !S.session) return;
  setBusy(true);
  try {
    S.session = await api("POST", path(suffix), body === undefined ? {} : body);
    S.sub = null;
  } catch (err) {
    await recover(err);
  } finally {
    setBusy(false);
  }
  render();
}

async function recover(err) {
  if (err.status === 404) {
    S.session = null;
    S.sub = null;
    return;
  }
  if (err.status === 409 && S.session) {
    try { S.session = await api("GET", path("")); } catch (e) { S.session = null; }
    return;
  }
  status(err.status === 422 ? t("error.input") : t("error.network"));
}

function poll(suffix) {
  const loop = async () => {
    if (!S.session || S.busy) return;
    try {
      const view = await api("POST", path(suffix), {});
      if (view.waiting && view.step === S.session.step) {
        S.poll = setTimeout(loop, POLL_MS);
        return;
      }
      S.session = view;
      S.sub = null;
    } catch (err) {
      await recover(err);
    }
    render();
  };
  S.poll = setTimeout(loop, POLL_MS);
}

function stopPoll() {
  clearTimeout(S.poll);
  S.poll = null;
}

async function start(kind) {
  setBusy(true);
  try {
    S.session = await api("POST", "/api/sessions", { kind, lang: S.lang });
    S.sub = null;
  } catch (err) {
    status(t("error.network"));
  } finally {
    setBusy(false);
  }
  touch();
  render();
}

async function finish() {
  clearTimeout(S.finish);
  clearTimeout(S.idle);
  stopPoll();
  const s = S.session;
  S.session = null;
  S.sub = null;
  if (s) {
    try { await api("DELETE", "/api/sessions/" + s.id); } catch (err) { /* already gone */ }
  }
  $("confirmation").value = "";
  $("guest-name").value = "";
  $("guest-phone").value = "";
  if (S.lang !== S.ui.languages[0]) await setLang(S.ui.languages[0]);
  render();
}

function touch() {
  clearTimeout(S.idle);
  if (S.session) S.idle = setTimeout(finish, S.ui.idle_s * 1000);
}

async function switchLang() {
  const lang = other(S.lang);
  if (S.session) {
    try { S.session = await api("PUT", path("/lang"), { lang }); } catch (err) { await recover(err); }
  }
  await setLang(lang);
}

function wire() {
  $("lang").addEventListener("click", switchLang);
  $("start-checkin").addEventListener("click", () => start("checkin"));
  $("start-checkout").addEventListener("click", () => start("checkout"));
  $("by-id").addEventListener("click", () => { S.sub = "id_card"; render(); });
  $("by-confirmation").addEventListener("click", () => { S.sub = "booking-confirmation"; render(); });
  $("by-name").addEventListener("click", () => { S.sub = "booking-name"; render(); });
  $("form-confirmation").addEventListener("submit", (e) => {
    e.preventDefault();
    act("/booking", { confirmation: $("confirmation").value.trim() });
  });
  $("form-name").addEventListener("submit", (e) => {
    e.preventDefault();
    act("/booking", { name: $("guest-name").value.trim(), phone: $("guest-phone").value.trim() });
  });
  $("face-start").addEventListener("click", () => act("/face"));
  $("room-continue").addEventListener("click", () => act("/room"));
  $("deposit-pay").addEventListener("click", () => act("/deposit"));
  $("receipt-print").addEventListener("click", () => act("/receipt", { skip: false }));
  $("receipt-skip").addEventListener("click", () => act("/receipt", { skip: true }));
  $("bill-settle").addEventListener("click", () => act("/settle"));
  $("done-finish").addEventListener("click", finish);
  $("staff-restart").addEventListener("click", finish);
  $("cancel").addEventListener("click", finish);
  ["pointerdown", "keydown", "input"].forEach((ev) => document.addEventListener(ev, touch, true));
}

async function boot() {
  S.ui = await api("GET", "/api/ui");
  wire();
  await setLang(S.ui.languages[0]);
}

document.addEventListener("DOMContentLoaded", boot);
