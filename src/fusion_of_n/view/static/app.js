// fusion-of-n view: the single page app (plain ES2020, no framework, no build step, works offline).
//
// Routes (on location.pathname): "/" the record list, "/record/<id>" one record, "/compare?a=..&b=.."
// two texts side by side. The JSON API and the DOM hooks are fixed by the view contract.
//
// Safety: every piece of data reaches the DOM through textContent, text nodes or attributes set with
// setAttribute / element.style; innerHTML is never used. Links only ever point at paths built here.
"use strict";

(() => {
  const PAGE_SIZE = 50;
  const SEARCH_DEBOUNCE_MS = 250;
  // Light, mutually distinguishable tints (dark text stays readable on every one). Candidate i gets
  // PALETTE[i % length]: the fused answer's spans, the card's top border and the shares bar agree.
  const PALETTE = [
    "#a9cdfa", // blue
    "#ffb7a8", // coral
    "#b6e3a1", // green
    "#ffe08a", // yellow
    "#d4bcf7", // violet
    "#9fe0d8", // teal
    "#ffc0e0", // pink
    "#e2cfa6", // sand
    "#c6e86f", // lime
    "#f7c58f", // orange
    "#b8c4d9", // slate
  ];
  const LIST_KEYS = ["file", "q", "language", "method", "flag", "error", "verdict", "sort", "order", "page"];
  const FILTER_KEYS = ["q", "language", "method", "flag", "error", "verdict", "sort", "order"];
  const LIST_DEFAULTS = {
    file: "0", q: "", language: "", method: "", flag: "", error: "", verdict: "",
    sort: "", order: "asc", page: "1",
  };
  const SORTS = [["", "file order"], ["line", "input line"], ["id", "id"], ["language", "language"], ["tokens", "tokens"], ["seconds", "seconds"]];
  const VERDICT_CLASS = { win: "good", correct: "good", loss: "bad", wrong: "bad", tie: "neutral" };

  // ---------------------------------------------------------------------------------------- helpers

  /** createElement with attributes and children (strings become text nodes, never markup). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [key, value] of Object.entries(attrs)) {
        if (value === null || value === undefined || value === false) continue;
        if (key === "class") el.className = value;
        else if (key === "text") el.textContent = String(value);
        else if (key === "style") Object.assign(el.style, value);
        else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
        else el.setAttribute(key, value === true ? "" : String(value));
      }
    }
    add(el, ...children);
    return el;
  }

  function add(el, ...children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const clamp = (x, lo, hi) => Math.max(lo, Math.min(hi, x));
  const colorOf = (i) => PALETTE[((Number(i) % PALETTE.length) + PALETTE.length) % PALETTE.length];
  const numberFormat = new Intl.NumberFormat("en-US");

  function fmtInt(v) {
    return v === null || v === undefined || v === "" || Number.isNaN(Number(v)) ? "—" : numberFormat.format(Number(v));
  }

  function fmtNum(v) {
    if (v === null || v === undefined || v === "") return "—";
    const x = Number(v);
    if (!Number.isFinite(x)) return String(v);
    if (Number.isInteger(x)) return numberFormat.format(x);
    const a = Math.abs(x);
    return a >= 100 ? x.toFixed(1) : a >= 1 ? x.toFixed(2) : x.toFixed(3);
  }

  function fmtSeconds(v) {
    if (v === null || v === undefined || v === "") return "—";
    const x = Number(v);
    return Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) : String(v);
  }

  const pct = (x) => `${Math.round((Number(x) || 0) * 100)}%`;

  function ordinal(n) {
    const tens = n % 100;
    if (tens >= 11 && tens <= 13) return `${n}th`;
    return `${n}${["th", "st", "nd", "rd"][n % 10] || "th"}`;
  }

  function plural(n, word) {
    return `${fmtInt(n)} ${word}${Number(n) === 1 ? "" : "s"}`;
  }

  /**
   * Map Python character offsets (code points) to JavaScript string offsets (UTF-16 code units):
   * they differ once a text holds a character outside the BMP (emoji, rare CJK).
   */
  function offsetsOf(text) {
    if (!/[\uD800-\uDFFF]/.test(text)) return (i) => clamp(Number(i) || 0, 0, text.length);
    const units = [0];
    let u = 0;
    for (const ch of text) {
      u += ch.length;
      units.push(u);
    }
    return (i) => units[clamp(Number(i) || 0, 0, units.length - 1)];
  }

  function badge(text, cls = "", title = null) {
    return h("span", { class: `badge ${cls}`.trim(), title }, text);
  }

  function flagBadges(flags) {
    return (Array.isArray(flags) ? flags : []).map((f) => badge(f, "flag"));
  }

  function verdictLabel(v) {
    if (v === null || v === undefined) return null;
    if (typeof v === "string") return v;
    if (typeof v === "boolean") return v ? "correct" : "wrong";
    if (typeof v === "object") {
      for (const key of ["verdict", "outcome", "result"]) if (typeof v[key] === "string") return v[key];
      if (typeof v.correct === "boolean") return v.correct ? "correct" : "wrong";
    }
    return null;
  }

  function verdictBadge(v, prefix = "") {
    const label = verdictLabel(v);
    const title = typeof v === "object" && v !== null ? JSON.stringify(v, null, 1) : null;
    return badge(`${prefix}${label ?? "eval"}`, `verdict ${VERDICT_CLASS[label] || "neutral"}`, title);
  }

  function errorText(error) {
    if (error === null || error === undefined || error === "") return null;
    if (typeof error !== "object") return String(error);
    return String(error.message ?? error.error ?? JSON.stringify(error));
  }

  function safeDecode(s) {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  }

  // an id in a path segment: percent-encoded, with the harmless ':' and '@' kept readable
  const encodeId = (id) => encodeURIComponent(String(id)).replace(/%3A/gi, ":").replace(/%40/g, "@");

  /**
   * A record's page. ``filters`` (the list's, when the record is opened from a filtered list) ride along:
   * the server's prev/next then walk that list, and j/k with them.
   */
  function recordUrl(id, file, filters = null) {
    const f = file === null || file === undefined ? "0" : String(file);
    const p = new URLSearchParams();
    if (f !== "0") p.set("file", f);
    for (const key of FILTER_KEYS) {
      const value = filters ? filters[key] : "";
      if (value && value !== LIST_DEFAULTS[key]) p.set(key, value);
    }
    const query = p.toString();
    return `/record/${encodeId(id)}${query ? `?${query}` : ""}`;
  }

  function filtersFrom(params) {
    const filters = {};
    for (const key of FILTER_KEYS) filters[key] = params.get(key) || "";
    return filters;
  }

  const sideKey = (side) => `${side.file}:${side.id}:${side.method}`;

  function compareUrl(a, b) {
    const enc = (side) => encodeURIComponent(sideKey(side)).replace(/%3A/gi, ":").replace(/%40/g, "@");
    return `/compare?a=${enc(a)}&b=${enc(b)}`;
  }

  /** "FILE:ID:METHOD": ids may hold ':' themselves, so file is before the first ':', method after the last. */
  function parseSide(s) {
    if (!s) return null;
    const first = s.indexOf(":");
    const last = s.lastIndexOf(":");
    if (first < 0 || last <= first) return null;
    return { file: s.slice(0, first), id: s.slice(first + 1, last), method: s.slice(last + 1) };
  }

  // -------------------------------------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, params) {
    const url = new URL(path, location.origin);
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, String(value));
    }
    let response;
    try {
      response = await fetch(url, { headers: { Accept: "application/json" } });
    } catch (err) {
      throw new ApiError(0, `cannot reach the viewer's server (${err.message}); is \`fusion-of-n view\` still running?`);
    }
    const raw = await response.text();
    let body = null;
    try {
      body = raw ? JSON.parse(raw) : null;
    } catch {
      body = null;
    }
    if (!response.ok) {
      const message = body && typeof body === "object" && body.error ? String(body.error) : raw.slice(0, 300) || response.statusText;
      throw new ApiError(response.status, message);
    }
    if (body === null || typeof body !== "object") throw new ApiError(response.status, `${url.pathname} did not return JSON`);
    return body;
  }

  let filesPromise = null;
  function getFiles() {
    if (!filesPromise) {
      filesPromise = api("/api/files").catch((err) => {
        filesPromise = null;
        throw err;
      });
    }
    return filesPromise;
  }

  /** A file's name in a select: its base name, or its whole path when two files share the base name. */
  function fileLabel(entries, f) {
    const base = (path) => String(path).split(/[\\/]/).pop();
    const name = base(f.path);
    return entries.filter((g) => base(g.path) === name).length > 1 ? String(f.path) : name;
  }

  function fileInfo(files, file) {
    return ((files && files.files) || []).find((f) => String(f.file) === String(file)) || null;
  }

  function errorBox(err, what) {
    const status = err instanceof ApiError && err.status ? `HTTP ${err.status}: ` : "";
    return h(
      "div",
      { class: "error-message", role: "alert" },
      h("strong", null, what ? `Could not load ${what}.` : "Error."),
      " ",
      h("span", { class: "error-text" }, `${status}${err && err.message ? err.message : String(err)}`),
    );
  }

  // ------------------------------------------------------------------------------------ navigation

  let navToken = 0; // bumped on every route: a late answer for a page we left is dropped
  let currentView = null;
  let lastRecord = null; // {id, file}: the list selects it again when we come back

  function listSearch() {
    try {
      return sessionStorage.getItem("fon:list-search") || "";
    } catch {
      return "";
    }
  }

  function navigate(url, { replace = false } = {}) {
    if (replace) history.replaceState(null, "", url);
    else history.pushState(null, "", url);
    route();
  }

  function setMain(id, attrs = {}) {
    const main = h("main", { id, ...attrs });
    const old = $("main");
    if (old) old.replaceWith(main);
    else document.body.appendChild(main);
    return main;
  }

  function setWhere(...parts) {
    const where = $("#where");
    if (where) where.replaceChildren(...parts.filter(Boolean).map((p) => (p instanceof Node ? p : h("span", null, p))));
  }

  function route() {
    const token = ++navToken;
    const path = location.pathname;
    const params = new URLSearchParams(location.search);
    if (path === "/" || path === "/index.html") {
      currentView = "list";
      showList(params);
      return;
    }
    const m = path.match(/^\/record\/(.+)$/);
    if (m) {
      currentView = "record";
      showRecord(safeDecode(m[1]), params, token);
      return;
    }
    if (path === "/compare" || path === "/compare/") {
      currentView = "compare";
      showCompare(params, token);
      return;
    }
    currentView = "notfound";
    const main = setMain("notfound");
    add(main, errorBox(new ApiError(404, `no page at ${path}`), "this page"), h("p", null, h("a", { href: "/" }, "← the record list")));
  }

  // same-origin links navigate in place (plain left clicks only: a middle or modified click opens a tab)
  document.addEventListener("click", (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
    const a = e.target instanceof Element ? e.target.closest("a[href]") : null;
    if (!a || a.target || a.hasAttribute("download")) return;
    const href = a.getAttribute("href");
    if (!href || !href.startsWith("/") || href.startsWith("//") || href.startsWith("/api/") || href.startsWith("/static/")) return;
    e.preventDefault();
    navigate(href);
  });

  window.addEventListener("popstate", route);

  // ------------------------------------------------------------------------------------------ list

  const list = {
    main: null,
    state: { ...LIST_DEFAULTS },
    seq: 0,
    selected: -1,
    afterLoad: null, // "first" | "last" | null
    facetsKey: {},
    searchTimer: null,
    el: {},
  };

  function listStateFrom(params) {
    const state = {};
    for (const key of LIST_KEYS) state[key] = params.get(key) ?? LIST_DEFAULTS[key];
    return state;
  }

  function listQuery(state) {
    const p = new URLSearchParams();
    for (const key of LIST_KEYS) if (state[key] !== "" && state[key] !== LIST_DEFAULTS[key]) p.set(key, state[key]);
    const s = p.toString();
    return s ? `?${s}` : "";
  }

  function labelled(text, control) {
    return h("label", { class: "ctl" }, h("span", null, text), control);
  }

  function buildList() {
    const el = {};
    el.search = h("input", {
      id: "search", type: "text", placeholder: "search prompts and answers  ( / )", autocomplete: "off",
      spellcheck: "false", "aria-label": "search prompts and answers",
    });
    el.file = h("select", { id: "filter-file", "aria-label": "file" });
    el.language = h("select", { id: "filter-language", "aria-label": "language" });
    el.method = h("select", { id: "filter-method", "aria-label": "method" });
    el.flag = h("select", { id: "filter-flag", "aria-label": "flag" });
    el.error = h(
      "select",
      { id: "filter-error", "aria-label": "errors" },
      h("option", { value: "" }, "any"),
      h("option", { value: "1" }, "with error"),
      h("option", { value: "0" }, "without error"),
    );
    el.verdict = h("select", { id: "filter-verdict", "aria-label": "eval verdict" });
    el.sort = h("select", { id: "sort", "aria-label": "sort by" }, SORTS.map(([v, t]) => h("option", { value: v }, t)));
    el.order = h(
      "select",
      { id: "order", "aria-label": "order" },
      h("option", { value: "asc" }, "ascending"),
      h("option", { value: "desc" }, "descending"),
    );
    el.total = h("span", { id: "total" }, "…");
    el.totalNote = h("span", { class: "total-note" });
    el.prev = h("button", { id: "prev-page", type: "button", title: "previous page" }, "‹ prev");
    el.next = h("button", { id: "next-page", type: "button", title: "next page" }, "next ›");
    el.pageInfo = h("span", { id: "page-info" });
    el.message = h("div", { class: "list-message" });
    el.fileCtl = labelled("file", el.file);
    el.fileCtl.hidden = true;
    for (const key of ["language", "method", "flag", "verdict"]) fillSelect(el[key], [], "", "any");

    const headers = [
      ["col-line", "#", "line"], ["col-id", "id", "id"], ["col-lang", "lang", "language"], ["col-prompt", "prompt", null],
      ["col-methods", "methods", null], ["col-flags", "flags", null], ["col-error", "error", null],
      ["col-tokens num", "tokens", "tokens"], ["col-seconds num", "sec", "seconds"], ["col-verdicts", "eval", null],
    ];
    el.thead = h(
      "thead",
      null,
      h(
        "tr",
        null,
        headers.map(([cls, text, sort]) =>
          h("th", { class: cls + (sort ? " sortable" : ""), "data-sort": sort, scope: "col", title: sort ? `sort by ${sort}` : null }, text),
        ),
      ),
    );
    el.tbody = h("tbody");
    el.table = h(
      "table",
      { id: "records" },
      h("colgroup", null, headers.map(([cls]) => h("col", { class: cls.split(" ")[0] }))),
      el.thead,
      el.tbody,
    );

    const main = setMain("list");
    add(
      main,
      h(
        "div",
        { class: "toolbar" },
        el.search,
        el.fileCtl,
        labelled("language", el.language),
        labelled("method", el.method),
        labelled("flag", el.flag),
        labelled("errors", el.error),
        labelled("eval", el.verdict),
      ),
      h(
        "div",
        { class: "summary" },
        h("span", { class: "count" }, el.total, " ", h("span", { class: "total-label" }, "matching records"), el.totalNote),
        h("span", { class: "sorting" }, labelled("sort", el.sort), el.order),
        h("span", { class: "pager" }, el.prev, el.pageInfo, el.next),
      ),
      el.message,
      h("div", { class: "table-wrap" }, el.table),
    );

    el.search.addEventListener("input", () => {
      clearTimeout(list.searchTimer);
      list.searchTimer = setTimeout(flushSearch, SEARCH_DEBOUNCE_MS);
    });
    el.search.addEventListener("change", flushSearch); // committed (blur): no need to wait
    for (const key of ["file", "language", "method", "flag", "error", "verdict", "sort", "order"]) {
      el[key].addEventListener("change", () => {
        const changes = { [key]: el[key].value };
        if (key === "file") Object.assign(changes, { language: "", method: "", flag: "", verdict: "" });
        updateList(changes);
      });
    }
    // the pager gives focus back to the page, so j/k/Enter act on the rows again after a click
    el.prev.addEventListener("click", () => {
      el.prev.blur();
      gotoPage(currentPage() - 1);
    });
    el.next.addEventListener("click", () => {
      el.next.blur();
      gotoPage(currentPage() + 1);
    });
    el.thead.addEventListener("click", (e) => {
      const th = e.target instanceof Element ? e.target.closest("th[data-sort]") : null;
      if (!th) return;
      const sort = th.dataset.sort;
      const order = list.state.sort === sort && list.state.order === "asc" ? "desc" : "asc";
      updateList({ sort, order });
    });
    el.tbody.addEventListener("click", (e) => {
      const tr = e.target instanceof Element ? e.target.closest("tr.record-row") : null;
      if (!tr || e.target.closest("a")) return; // the id link navigates by itself
      selectRow($$("tr.record-row", el.tbody).indexOf(tr), { scroll: false });
      openRow(tr);
    });

    list.main = main;
    list.el = el;
    list.facetsKey = {};
    list.selected = -1;
    return main;
  }

  function fillSelect(select, values, current, anyLabel) {
    const seen = new Set();
    const options = [];
    for (const v of values || []) {
      if (v === null || v === undefined || v === "") continue;
      const s = String(v);
      if (!seen.has(s)) {
        seen.add(s);
        options.push(s);
      }
    }
    if (current && !seen.has(current)) options.push(current);
    const key = options.join("\u0000");
    if (select.dataset.options !== key || select.options.length === 0) {
      select.replaceChildren(h("option", { value: "" }, anyLabel), ...options.map((v) => h("option", { value: v }, v)));
      select.dataset.options = key;
    }
    select.value = current || "";
  }

  function syncControls(state) {
    const el = list.el;
    if (document.activeElement !== el.search) el.search.value = state.q;
    for (const key of ["language", "method", "flag", "verdict"]) {
      const select = el[key];
      if (state[key] && !Array.from(select.options).some((o) => o.value === state[key])) {
        select.appendChild(h("option", { value: state[key] }, state[key]));
      }
      select.value = state[key];
    }
    el.error.value = ["", "1", "0"].includes(state.error) ? state.error : "";
    el.sort.value = SORTS.some(([v]) => v === state.sort) ? state.sort : "";
    el.order.value = state.order === "desc" ? "desc" : "asc";
    for (const th of $$("th[data-sort]", el.thead)) {
      th.classList.toggle("sorted", th.dataset.sort === state.sort);
      th.dataset.order = th.dataset.sort === state.sort ? state.order : "";
    }
  }

  function currentPage() {
    return Math.max(1, parseInt(list.state.page, 10) || 1);
  }

  function rememberList() {
    try {
      sessionStorage.setItem("fon:list-search", location.pathname === "/" ? location.search : "");
    } catch {
      // storage disabled: Escape then goes back to the unfiltered list
    }
  }

  function showList(params) {
    const state = listStateFrom(params);
    const fresh = !list.main || !list.main.isConnected;
    if (fresh) {
      buildList();
      list.afterLoad = null;
    }
    list.state = state;
    syncControls(state);
    rememberList();
    document.title = "fusion-of-n view";
    populateFiles(state.file);
    loadList(fresh && lastRecord ? { selectId: lastRecord.id } : {});
  }

  async function populateFiles(current) {
    let files;
    try {
      files = await getFiles();
    } catch {
      return; // the records request reports a dead server
    }
    if (!list.main || !list.main.isConnected) return;
    const entries = files.files || [];
    const el = list.el;
    el.fileCtl.hidden = entries.length < 2;
    const key = entries.map((f) => `${f.file}:${f.path}`).join("\u0000");
    if (el.file.dataset.options !== key) {
      el.file.replaceChildren(...entries.map((f) => h("option", { value: String(f.file), title: f.path }, `${fileLabel(entries, f)} (${fmtInt(f.rows)})`)));
      el.file.dataset.options = key;
    }
    el.file.value = current;
    const info = fileInfo(files, current);
    const evals = files.evals || [];
    list.fileRows = info ? info.rows : undefined;
    setWhere(
      info ? h("span", { class: "path", title: info.path }, info.path) : null,
      info ? h("span", { class: "muted" }, plural(info.rows, "row")) : null,
      evals.length
        ? h("span", { class: "muted", title: evals.map((e) => `${e.kind}: ${e.path}${e.note ? ` (${e.note})` : ""}`).join("\n") }, `+ ${plural(evals.length, "eval")}`)
        : null,
    );
    renderTotalNote();
  }

  function renderTotalNote() {
    const total = Number(list.el.total.textContent);
    const known = list.fileRows !== undefined && list.fileRows !== null && Number.isFinite(total);
    list.el.totalNote.textContent = known && Number(list.fileRows) !== total ? ` of ${fmtInt(list.fileRows)}` : "";
  }

  function updateList(changes, { push = true } = {}) {
    const state = { ...list.state, ...changes };
    if (!("page" in changes)) state.page = "1";
    const url = `/${listQuery(state)}`;
    if (url !== location.pathname + location.search) {
      if (push) history.pushState(null, "", url);
      else history.replaceState(null, "", url);
    }
    list.state = state;
    syncControls(state);
    rememberList();
    loadList();
  }

  function flushSearch() {
    clearTimeout(list.searchTimer);
    list.searchTimer = null;
    if (!list.el.search || list.el.search.value === list.state.q) return;
    updateList({ q: list.el.search.value }, { push: false });
  }

  function gotoPage(page, afterLoad = null) {
    if (page < 1) return;
    list.afterLoad = afterLoad;
    updateList({ page: String(page) });
    window.scrollTo(0, 0);
  }

  async function loadList({ selectId = null } = {}) {
    const seq = ++list.seq;
    const s = list.state;
    const page = currentPage();
    const main = list.main;
    main.setAttribute("aria-busy", "true");
    let data;
    try {
      data = await api("/api/records", {
        file: s.file, offset: (page - 1) * PAGE_SIZE, limit: PAGE_SIZE, q: s.q, language: s.language, method: s.method,
        flag: s.flag, error: s.error, verdict: s.verdict, sort: s.sort, order: s.order,
      });
    } catch (err) {
      if (seq !== list.seq || !main.isConnected) return;
      main.removeAttribute("aria-busy");
      list.el.message.replaceChildren(errorBox(err, "the records"));
      list.el.tbody.replaceChildren();
      list.el.total.textContent = "0";
      list.el.pageInfo.textContent = "";
      list.el.prev.disabled = list.el.next.disabled = true;
      return;
    }
    if (seq !== list.seq || !main.isConnected) return;
    main.removeAttribute("aria-busy");
    list.el.message.replaceChildren();
    renderFacets(data.facets || {});
    renderRows(Array.isArray(data.rows) ? data.rows : []);
    renderPager(data);
    const rows = $$("tr.record-row", list.el.tbody);
    let index = 0;
    if (list.afterLoad === "last") index = rows.length - 1;
    if (selectId !== null) {
      const found = rows.findIndex((tr) => tr.dataset.id === String(selectId));
      if (found >= 0) index = found;
    }
    list.afterLoad = null;
    selectRow(index, { scroll: selectId !== null });
  }

  function renderFacets(facets) {
    const el = list.el;
    const s = list.state;
    fillSelect(el.language, facets.languages, s.language, "any");
    fillSelect(el.method, facets.methods, s.method, "any");
    fillSelect(el.flag, facets.flags, s.flag, "any");
    fillSelect(el.verdict, facets.verdicts, s.verdict, "any");
  }

  function renderRows(rows) {
    const el = list.el;
    const showVerdicts = rows.some((r) => r.verdicts && Object.keys(r.verdicts).length) || el.verdict.options.length > 1;
    el.table.classList.toggle("no-verdicts", !showVerdicts);
    if (!rows.length) {
      el.tbody.replaceChildren(h("tr", { class: "empty" }, h("td", { colspan: "10" }, "No record matches.")));
      return;
    }
    el.tbody.replaceChildren(...rows.map(rowElement));
  }

  function rowElement(r) {
    const file = r.file ?? list.state.file;
    const methods = Array.isArray(r.methods) ? r.methods : [];
    const verdicts = r.verdicts && typeof r.verdicts === "object" ? Object.entries(r.verdicts) : [];
    const tr = h(
      "tr",
      { class: `record-row${r.error ? " has-error" : ""}`, "data-id": String(r.id), "data-file": String(file) },
      h("td", { class: "col-line num muted" }, r.line ?? ""),
      h("td", { class: "col-id", title: String(r.id) }, h("a", { href: recordUrl(r.id, file, list.state), tabindex: "-1" }, String(r.id))),
      h("td", { class: "col-lang" }, r.language ?? "—"),
      h("td", { class: "col-prompt", title: r.prompt ?? "" }, r.prompt ?? ""),
      h("td", { class: "col-methods", title: methods.join(", ") }, methods.join(" · ")),
      h("td", { class: "col-flags", title: (r.flags || []).join(", ") || null }, flagBadges(r.flags)),
      h("td", { class: "col-error", title: errorText(r.error) }, r.error ? [badge("error", "error"), " ", h("span", { class: "error-text" }, errorText(r.error))] : ""),
      h("td", { class: "col-tokens num" }, fmtInt(r.tokens)),
      h("td", { class: "col-seconds num" }, fmtSeconds(r.seconds)),
      h("td", { class: "col-verdicts", title: verdicts.map(([m, v]) => `${m}: ${verdictLabel(v)}`).join(", ") || null }, verdicts.map(([m, v]) => verdictBadge(v, `${m}: `))),
    );
    return tr;
  }

  function renderPager(data) {
    const el = list.el;
    const total = Number(data.total) || 0;
    const offset = Number(data.offset) || 0;
    const count = Array.isArray(data.rows) ? data.rows.length : 0;
    el.total.textContent = String(total);
    renderTotalNote();
    el.pageInfo.textContent = count ? `${fmtInt(offset + 1)}–${fmtInt(offset + count)} of ${fmtInt(total)}` : total ? `past the end (${fmtInt(total)})` : "";
    el.prev.disabled = currentPage() <= 1;
    el.next.disabled = offset + PAGE_SIZE >= total;
  }

  function selectRow(index, { scroll = true } = {}) {
    const rows = $$("tr.record-row", list.el.tbody);
    if (!rows.length) {
      list.selected = -1;
      return;
    }
    index = clamp(index, 0, rows.length - 1);
    rows.forEach((tr, i) => {
      tr.classList.toggle("selected", i === index);
      if (i === index) tr.setAttribute("aria-selected", "true");
      else tr.removeAttribute("aria-selected");
    });
    list.selected = index;
    if (scroll) rows[index].scrollIntoView({ block: "nearest" });
  }

  function moveSelection(delta) {
    const rows = $$("tr.record-row", list.el.tbody);
    if (!rows.length) return;
    const target = list.selected + delta;
    if (target >= rows.length) {
      if (!list.el.next.disabled) gotoPage(currentPage() + 1, "first");
      return;
    }
    if (target < 0) {
      if (currentPage() > 1) gotoPage(currentPage() - 1, "last");
      return;
    }
    selectRow(target);
  }

  function openRow(tr) {
    if (tr) navigate(recordUrl(tr.dataset.id, tr.dataset.file, list.state));
  }

  // ---------------------------------------------------------------------------------------- record

  async function showRecord(id, params, token) {
    const file = params.get("file") ?? "0";
    const filters = filtersFrom(params);
    lastRecord = { id, file };
    const old = $("main");
    if (old) old.setAttribute("aria-busy", "true");
    document.title = `${id} · fusion-of-n view`;
    let record;
    let files = null;
    try {
      [record, files] = await Promise.all([
        api(`/api/record/${encodeURIComponent(id)}`, { file, ...filters }),
        getFiles().catch(() => null),
      ]);
    } catch (err) {
      if (token !== navToken) return;
      const main = setMain("record", { class: "failed" });
      add(
        main,
        h("div", { class: "rec-head" }, h("a", { class: "back", href: `/${listSearch()}` }, "← list"), h("h1", { class: "rec-id" }, id)),
        errorBox(err, `record ${JSON.stringify(id)}`),
      );
      window.scrollTo(0, 0);
      return;
    }
    if (token !== navToken) return;
    renderRecord(record, String(record.file ?? file), files, filters);
    window.scrollTo(0, 0);
  }

  function renderRecord(rec, file, files, filters = {}) {
    const info = fileInfo(files, file);
    const candidates = Array.isArray(rec.candidates) ? rec.candidates : [];
    const byIndex = new Map(candidates.map((c) => [Number(c.index), c]));
    const results = rec.results && typeof rec.results === "object" ? rec.results : {};
    const methods = (Array.isArray(rec.methods) && rec.methods.length ? rec.methods : Object.keys(results)).filter((m) => results[m]);
    const usage = rec.usage && typeof rec.usage === "object" ? rec.usage : {};
    const verdicts = rec.verdicts && typeof rec.verdicts === "object" ? rec.verdicts : {};
    const generated = methods.filter((m) => results[m].chosen === null || results[m].chosen === undefined || results[m].attribution);
    const selected = methods.filter((m) => !generated.includes(m));
    const orders = methods.filter((m) => Array.isArray(results[m].presentation_order));
    const ctx = { rec, file, byIndex, results, usage, verdicts, orders, attrSpans: new Map(), marks: new Map(), marksMethod: null };

    const main = setMain("record", { "data-id": String(rec.id), "data-file": file });
    setWhere(info ? h("span", { class: "path", title: info.path }, info.path) : null);

    // header: id, where it comes from, navigation
    const total = usage.total || null;
    const nav = h(
      "nav",
      { class: "rec-nav" },
      rec.prev !== null && rec.prev !== undefined
        ? h("a", { id: "prev-record", href: recordUrl(rec.prev, file, filters), title: `previous: ${rec.prev} (k)` }, "‹ prev")
        : h("span", { class: "disabled" }, "‹ prev"),
      rec.next !== null && rec.next !== undefined
        ? h("a", { id: "next-record", href: recordUrl(rec.next, file, filters), title: `next: ${rec.next} (j)` }, "next ›")
        : h("span", { class: "disabled" }, "next ›"),
      compareLink(rec, file, files, methods),
    );
    add(
      main,
      h(
        "div",
        { class: "rec-head" },
        h("a", { class: "back", href: `/${listSearch()}`, title: "back to the list (Esc)" }, "← list"),
        h("h1", { class: "rec-id" }, String(rec.id)),
        h(
          "span",
          { class: "rec-meta" },
          rec.line !== null && rec.line !== undefined ? h("span", null, `line ${rec.line}`) : null,
          h("span", null, rec.language ?? "language —"),
          h("span", null, plural(candidates.length, "candidate")),
          total && total.total_tokens !== undefined ? h("span", null, `${fmtInt(total.total_tokens)} tokens`) : null,
          total && total.seconds !== undefined ? h("span", null, `${fmtSeconds(total.seconds)} s`) : null,
          filterNote(filters),
        ),
        nav,
      ),
    );

    if (rec.error) add(main, recordError(rec.error));
    if (rec.problem) {
      add(main, h("div", { class: "error-message record-problem", role: "alert" }, h("strong", null, "This record is damaged: "), h("span", { class: "error-text" }, String(rec.problem))));
    }

    // the conversation
    add(main, h("section", { class: "panel conversation" }, h("h2", null, "Prompt"), conversation(rec, "prompt")));

    // generated answers (fusion and any method whose text is not one candidate's copy), then the pool
    if (!methods.length) add(main, h("p", { class: "muted" }, "No result (the row failed before aggregation)."));
    if (generated.length) add(main, h("div", { class: "results generated" }, generated.map((m) => resultSection(m, ctx))));
    if (candidates.length) add(main, candidatesPanel(candidates, methods, ctx));
    if (selected.length) {
      add(main, h("section", { class: "panel selections" }, h("h2", null, "Selections"), h("div", { class: "results selected" }, selected.map((m) => resultSection(m, ctx)))));
    }
    if (Object.keys(usage).length) add(main, usagePanel(usage));
    // the rest of the record, as JSON, folded
    const extras = [
      ["failures", Array.isArray(rec.failures) && rec.failures.length ? rec.failures : null, "failed calls the row survived (retries, a model that dropped out)"],
      ["adaptive", rec.adaptive, "the adaptive sampling decision"],
      ["meta", rec.meta && typeof rec.meta === "object" && Object.keys(rec.meta).length ? rec.meta : null, "the input row's meta"],
    ];
    for (const [name, value, title] of extras) {
      if (value === null || value === undefined) continue;
      const label = Array.isArray(value) ? `${name} (${value.length})` : name;
      add(main, h("details", { class: "panel meta", "data-field": name }, h("summary", { title }, label), h("pre", null, JSON.stringify(value, null, 2))));
    }

    // source marks for the first attributed method; hovering another method's span switches them
    const firstAttributed = methods.find((m) => results[m].attribution);
    if (firstAttributed) setMarks(ctx, firstAttributed);
    wireHover(main, ctx);
  }

  function filterNote(filters) {
    const shown = FILTER_KEYS.filter((k) => filters[k] && filters[k] !== LIST_DEFAULTS[k] && k !== "sort" && k !== "order");
    if (!shown.length) return null;
    const text = shown.map((k) => (k === "q" ? `“${filters.q}”` : k === "error" ? (filters.error === "1" ? "with error" : "without error") : `${k} ${filters[k]}`)).join(", ");
    return h("span", { class: "filter-note", title: "prev/next (k/j) walk the filtered list" }, `within: ${text}`);
  }

  function compareLink(rec, file, files, methods) {
    if (!methods.length) return null;
    const a = { file, id: rec.id, method: methods[0] };
    let b = null;
    if (methods.length > 1) b = { file, id: rec.id, method: methods[1] };
    else {
      const other = ((files && files.files) || []).find((f) => String(f.file) !== String(file));
      if (other) b = { file: String(other.file), id: rec.id, method: methods[0] };
    }
    if (!b) return null;
    return h("a", { id: "compare-link", href: compareUrl(a, b), title: "two methods, or this row in two files, side by side" }, "compare…");
  }

  function recordError(error) {
    const message = typeof error === "object" && error !== null ? error.message ?? error.error ?? null : String(error);
    const kind = typeof error === "object" && error !== null ? error.type ?? error.kind ?? error.stage ?? null : null;
    return h(
      "div",
      { class: "error-message record-error", role: "alert" },
      h("strong", null, `This row failed${kind ? ` (${kind})` : ""}: `),
      h("span", { class: "error-text" }, message ?? ""),
      typeof error === "object" && error !== null ? h("details", null, h("summary", null, "details"), h("pre", null, JSON.stringify(error, null, 2))) : null,
    );
  }

  function conversation(rec, id) {
    const box = h("div", { id, class: "conversation-turns" });
    const messages = Array.isArray(rec.messages) ? rec.messages : [];
    const turns = [];
    if (rec.system) turns.push({ role: "system", content: rec.system });
    for (const m of messages) {
      if (m && m.role === "system" && rec.system && m.content === rec.system) continue; // shown once
      turns.push(m || {});
    }
    if (!messages.length && typeof rec.prompt === "string") turns.push({ role: "user", content: rec.prompt });
    for (const turn of turns) {
      const content = typeof turn.content === "string" ? turn.content : JSON.stringify(turn.content, null, 1);
      box.appendChild(
        h("div", { class: "message", "data-role": String(turn.role ?? "?") }, h("div", { class: "role" }, String(turn.role ?? "?")), h("div", { class: "content" }, content ?? "")),
      );
    }
    if (!turns.length) box.appendChild(h("div", { class: "muted" }, "(no prompt)"));
    return box;
  }

  function candidateLabel(i, byIndex) {
    const c = byIndex.get(Number(i));
    return `candidate ${i}${c && c.model ? ` (${c.model})` : ""}`;
  }

  function chip(i, byIndex, prefix = "") {
    return h(
      "a",
      { class: "chip", href: `#candidate-${i}`, "data-candidate": String(i), title: candidateLabel(i, byIndex), style: { background: colorOf(i) } },
      `${prefix}#${i}`,
    );
  }

  function resultSection(method, ctx) {
    const r = ctx.results[method];
    const byIndex = ctx.byIndex;
    const hasChosen = r.chosen !== null && r.chosen !== undefined;
    const verdict = ctx.verdicts[method];
    const head = h(
      "header",
      { class: "result-head" },
      h("h3", null, method),
      r.by ? h("span", { class: "by muted", title: "the fusor or judge" }, `by ${r.by}`) : null,
      hasChosen ? h("span", { class: "chosen" }, "chose ", chip(r.chosen, byIndex)) : null,
      r.score !== null && r.score !== undefined ? h("span", { class: "score muted" }, `score ${fmtNum(r.score)}`) : null,
      h("span", { class: "flags" }, flagBadges(r.flags)),
      verdict !== undefined && verdict !== null ? verdictBadge(verdict, "eval: ") : null,
    );
    const section = h("section", { class: `result panel${hasChosen ? " is-selection" : " is-generated"}`, "data-method": method, id: `result-${method}` }, head);

    if (r.strategy || r.evidence) {
      section.appendChild(
        h("p", { class: "strategy" }, r.strategy ? [h("b", null, "strategy "), h("code", null, String(r.strategy))] : null, r.evidence ? [" — ", String(r.evidence)] : null),
      );
    }
    const text = typeof r.text === "string" ? r.text : r.text === null || r.text === undefined ? "" : String(r.text);
    const answer = h("div", { class: "answer" });
    if (r.attribution && Array.isArray(r.attribution.spans)) {
      section.appendChild(sharesBar(r.attribution, byIndex));
      ctx.attrSpans.set(method, renderAttributed(answer, text, r.attribution, byIndex));
    } else {
      answer.textContent = text;
    }
    if (!text) answer.classList.add("empty");
    section.appendChild(answer);

    const order = Array.isArray(r.presentation_order) ? r.presentation_order : null;
    if (r.analysis || order) {
      section.appendChild(
        h(
          "details",
          { class: "analysis" },
          h("summary", null, method === "fusion" || order ? "the fusor's analysis" : "analysis"),
          order
            ? h("p", { class: "order-note muted" }, "order shown to the fusor (its “candidate 1, 2, …”): ", order.map((i, k) => [k ? " " : "", `${k + 1}=`, chip(i, byIndex)]))
            : null,
          h("div", { class: "analysis-text" }, r.analysis ? String(r.analysis) : "(no analysis)"),
        ),
      );
    }
    const u = r.usage || ctx.usage[method] || null;
    if (u && typeof u === "object" && Object.values(u).some((v) => v)) section.appendChild(h("div", { class: "usage-line muted" }, usageLine(u)));
    return section;
  }

  function usageLine(u) {
    const parts = [];
    if (u.calls !== undefined) parts.push(plural(u.calls, "call"));
    if (u.prompt_tokens !== undefined || u.completion_tokens !== undefined) parts.push(`${fmtInt(u.prompt_tokens)} → ${fmtInt(u.completion_tokens)} tokens`);
    else if (u.total_tokens !== undefined) parts.push(`${fmtInt(u.total_tokens)} tokens`);
    if (u.seconds !== undefined) parts.push(`${fmtSeconds(u.seconds)} s`);
    return parts.length ? `usage: ${parts.join(" · ")}` : `usage: ${JSON.stringify(u)}`;
  }

  /** The fused answer as text nodes and one span.attr per copied span (novel text stays plain). */
  function renderAttributed(container, text, attribution, byIndex) {
    const at = offsetsOf(text);
    const spans = attribution.spans
      .map((s, k) => ({ ...s, k }))
      .filter((s) => s && Number.isFinite(Number(s.start)) && Number.isFinite(Number(s.end)))
      .sort((x, y) => Number(x.start) - Number(y.start));
    const byK = new Map();
    let pos = 0;
    for (const s of spans) {
      const start = Math.max(at(s.start), pos);
      const end = at(s.end);
      if (end <= start) continue;
      if (start > pos) container.appendChild(document.createTextNode(text.slice(pos, start)));
      const span = h("span", { class: "attr", "data-candidate": String(s.candidate), "data-span": String(s.k), title: `from ${candidateLabel(s.candidate, byIndex)}` });
      span.style.background = colorOf(s.candidate);
      span.textContent = text.slice(start, end);
      container.appendChild(span);
      byK.set(s.k, span);
      pos = end;
    }
    if (pos < text.length) container.appendChild(document.createTextNode(text.slice(pos)));
    return byK;
  }

  function sharesBar(attribution, byIndex) {
    const given = attribution.shares && typeof attribution.shares === "object" ? attribution.shares : {};
    // one segment per pool candidate (0 wide for one the fusor did not see), plus any other index in shares
    const indices = [...new Set([...byIndex.keys(), ...Object.keys(given).map(Number)])].filter(Number.isFinite).sort((x, y) => x - y);
    const shares = indices.map((i) => [i, Number(given[String(i)]) || 0]);
    const copied = shares.reduce((sum, [, s]) => sum + s, 0);
    const novel = attribution.novel !== null && attribution.novel !== undefined ? Number(attribution.novel) || 0 : Math.max(0, 1 - copied);
    const bar = h("div", { class: "shares", role: "img", "aria-label": `shares: ${shares.map(([i, s]) => `candidate ${i} ${pct(s)}`).join(", ")}, novel ${pct(novel)}` });
    const legend = h("div", { class: "shares-legend" });
    for (const [i, share] of shares) {
      const unseen = !(String(i) in given) ? " (not compared: excluded)" : "";
      const seg = h("div", { class: "share", "data-candidate": String(i), title: `${candidateLabel(i, byIndex)}: ${pct(share)}${unseen}` });
      seg.style.width = `${(clamp(share, 0, 1) * 100).toFixed(3)}%`;
      seg.style.background = colorOf(i);
      bar.appendChild(seg);
      if (share > 0) legend.appendChild(h("span", { class: "legend-item", title: candidateLabel(i, byIndex) }, h("i", { style: { background: colorOf(i) } }), `#${i} ${pct(share)}`));
    }
    const novelSeg = h("div", { class: "share novel", title: `novel: ${pct(novel)}` });
    novelSeg.style.width = `${(clamp(novel, 0, 1) * 100).toFixed(3)}%`;
    bar.appendChild(novelSeg);
    legend.appendChild(h("span", { class: "legend-item", title: "text in no candidate" }, h("i", { class: "novel" }), `novel ${pct(novel)}`));
    return h("div", { class: "shares-wrap" }, bar, legend);
  }

  function candidatesPanel(candidates, methods, ctx) {
    const attributed = methods.filter((m) => ctx.results[m].attribution);
    const picker = attributed.length > 1
      ? h("label", { class: "ctl marks-picker" }, h("span", null, "sources marked for"), h("select", { id: "marks-method" }, attributed.map((m) => h("option", { value: m }, m))))
      : attributed.length === 1
        ? h("span", { class: "muted marks-note" }, `marked: the text ${attributed[0]} copied (hover its answer)`)
        : null;
    if (picker && attributed.length > 1) picker.querySelector("select").addEventListener("change", (e) => setMarks(ctx, e.target.value));
    const grid = h("div", { class: "candidates" });
    grid.style.setProperty("--n", String(candidates.length));
    for (const c of candidates) grid.appendChild(candidateCard(c, methods, ctx));
    return h("section", { class: "panel candidates-panel" }, h("div", { class: "panel-head" }, h("h2", null, `Candidates (${candidates.length})`), picker), grid);
  }

  function candidateCard(c, methods, ctx) {
    const i = Number(c.index);
    const results = ctx.results;
    const chosenBy = methods.filter((m) => results[m].chosen !== null && results[m].chosen !== undefined && Number(results[m].chosen) === i);
    const shown = ctx.orders
      .map((m) => {
        const k = results[m].presentation_order.map(Number).indexOf(i);
        const where = k >= 0 ? `shown ${ordinal(k + 1)}` : "not shown";
        return ctx.orders.length > 1 ? `${where} (${m})` : where;
      })
      .join(", ");
    // scores a method gave (a method that scores nothing, e.g. fusion, is null for every candidate)
    const scores = c.scores && typeof c.scores === "object" ? Object.entries(c.scores).filter(([, v]) => v !== null && v !== undefined) : [];
    const shares = methods
      .filter((m) => results[m].attribution && results[m].attribution.shares && Number(results[m].attribution.shares[String(i)]) > 0)
      .map((m) => [m, results[m].attribution.shares[String(i)]]);
    const card = h(
      "article",
      { class: `candidate${c.excluded ? " excluded" : ""}`, "data-index": String(c.index), id: `candidate-${c.index}` },
      h(
        "header",
        { class: "cand-head" },
        h("span", { class: "cand-no", style: { background: colorOf(i) } }, `#${c.index}`),
        h("span", { class: "model", title: c.model ?? "" }, c.model ?? "—"),
      ),
      h(
        "div",
        { class: "cand-meta" },
        h("span", { title: "completion tokens" }, h("span", { class: "tokens" }, c.tokens === null || c.tokens === undefined ? "—" : String(c.tokens)), " tok"),
        h("span", { class: "finish-reason", title: "finish reason" }, c.finish_reason ?? "—"),
        shown ? h("span", { class: "order", title: "position in the fusor's prompt" }, shown) : null,
        c.excluded ? badge("excluded", "excluded", "left out of aggregation (see its flags)") : null,
      ),
      h("div", { class: "flags" }, flagBadges(c.flags)),
      chosenBy.length || shares.length
        ? h(
          "div",
          { class: "cand-roles" },
          chosenBy.length ? h("span", { class: "chosen-by" }, "chosen by ", chosenBy.map((m, k) => [k ? ", " : "", h("b", null, m)])) : null,
          shares.map(([m, s]) => h("span", { class: "share-note" }, `${pct(s)} of ${m}`)),
        )
        : null,
      scores.length
        ? h(
          "table",
          { class: "scores" },
          h("tbody", null, scores.map(([m, v]) => h("tr", { class: chosenBy.includes(m) ? "chose" : null }, h("th", null, m), h("td", { class: "num" }, fmtNum(v))))),
        )
        : null,
      h("div", { class: "candidate-text" }, typeof c.text === "string" ? c.text : String(c.text ?? "")),
    );
    card.style.borderTopColor = colorOf(i);
    card.style.setProperty("--c", colorOf(i));
    return card;
  }

  /** Wrap, in each candidate's text, the ranges `method` copied from it in mark.src[data-span]. */
  function setMarks(ctx, method) {
    ctx.marksMethod = method;
    ctx.marks = new Map();
    const r = ctx.results[method];
    const spans = (r && r.attribution && Array.isArray(r.attribution.spans) ? r.attribution.spans : []).map((s, k) => ({ ...s, k }));
    const picker = $("#marks-method");
    if (picker && picker.value !== method) picker.value = method;
    for (const card of $$("article.candidate")) {
      const c = ctx.byIndex.get(Number(card.dataset.index));
      const el = $(".candidate-text", card);
      if (!c || !el) continue;
      const text = typeof c.text === "string" ? c.text : String(c.text ?? "");
      const at = offsetsOf(text);
      const ranges = spans
        .filter((s) => String(s.candidate) === String(c.index) && s.cstart !== null && s.cstart !== undefined && s.cend !== null && s.cend !== undefined)
        .map((s) => [at(s.cstart), at(s.cend), s.k])
        .filter(([a, b]) => b > a);
      el.replaceChildren();
      if (!ranges.length) {
        el.textContent = text;
        continue;
      }
      // cut at every range boundary; a piece covered by several ranges (repeated text) lists them all
      const cuts = [...new Set([0, text.length, ...ranges.flatMap(([a, b]) => [a, b])])].sort((x, y) => x - y);
      let pending = null; // [start, end, keys]
      const flush = () => {
        if (!pending) return;
        const [a, b, keys] = pending;
        if (!keys) el.appendChild(document.createTextNode(text.slice(a, b)));
        else {
          const mark = h("mark", { class: "src", "data-span": keys }, text.slice(a, b));
          for (const k of keys.split(" ")) {
            if (!ctx.marks.has(k)) ctx.marks.set(k, []);
            ctx.marks.get(k).push(mark);
          }
          el.appendChild(mark);
        }
        pending = null;
      };
      for (let n = 0; n + 1 < cuts.length; n++) {
        const a = cuts[n];
        const b = cuts[n + 1];
        if (b <= a) continue;
        const keys = ranges.filter(([s, e]) => s <= a && e >= b).map(([, , k]) => k).join(" ") || null;
        if (pending && pending[2] === keys && pending[1] === a) pending[1] = b;
        else {
          flush();
          pending = [a, b, keys];
        }
      }
      flush();
    }
  }

  function wireHover(main, ctx) {
    let lit = [];
    const clear = () => {
      for (const el of lit) el.classList.remove("hl");
      lit = [];
    };
    const light = (els) => {
      for (const el of els) {
        el.classList.add("hl");
        lit.push(el);
      }
    };
    main.addEventListener("mouseover", (e) => {
      const target = e.target instanceof Element ? e.target : null;
      if (!target) return;
      const span = target.closest(".answer .attr");
      if (span) {
        if (lit.includes(span)) return;
        clear();
        const section = span.closest("section.result");
        const method = section ? section.dataset.method : null;
        if (method && method !== ctx.marksMethod) setMarks(ctx, method);
        const marks = ctx.marks.get(span.dataset.span) || [];
        light([span, ...marks]);
        if (marks.length) revealInCard(marks[0]);
        return;
      }
      const mark = target.closest(".candidate-text mark.src");
      if (mark) {
        if (lit.includes(mark)) return;
        clear();
        const spans = ctx.attrSpans.get(ctx.marksMethod) || new Map();
        const keys = (mark.dataset.span || "").split(" ");
        light([mark, ...keys.map((k) => spans.get(Number(k))).filter(Boolean)]);
      }
    });
    main.addEventListener("mouseout", (e) => {
      const target = e.target instanceof Element ? e.target : null;
      if (!target || !target.closest(".answer .attr, .candidate-text mark.src")) return;
      const to = e.relatedTarget instanceof Element ? e.relatedTarget : null;
      if (to && lit.some((el) => el === to || el.contains(to))) return;
      clear();
    });
    // a chip (#3) scrolls to its candidate card and flashes it
    main.addEventListener("click", (e) => {
      const a = e.target instanceof Element ? e.target.closest("a.chip[data-candidate]") : null;
      if (!a) return;
      e.preventDefault();
      const card = $(`article.candidate[data-index="${CSS.escape(a.dataset.candidate)}"]`, main);
      if (!card) return;
      card.scrollIntoView({ behavior: "smooth", block: "nearest", inline: "nearest" });
      card.classList.remove("flash");
      void card.offsetWidth; // restart the animation
      card.classList.add("flash");
    });
  }

  /** Scroll a mark into view inside its card's text box (and the card into the row), not the page. */
  function revealInCard(mark) {
    const box = mark.closest(".candidate-text");
    if (box && box.scrollHeight > box.clientHeight) {
      const top = mark.getBoundingClientRect().top - box.getBoundingClientRect().top + box.scrollTop;
      if (top < box.scrollTop || top + mark.offsetHeight > box.scrollTop + box.clientHeight) {
        box.scrollTo({ top: Math.max(0, top - box.clientHeight / 3), behavior: "smooth" });
      }
    }
    const card = mark.closest("article.candidate");
    const grid = card ? card.parentElement : null;
    if (card && grid && grid.scrollWidth > grid.clientWidth) {
      const left = card.getBoundingClientRect().left - grid.getBoundingClientRect().left + grid.scrollLeft;
      if (left < grid.scrollLeft || left + card.offsetWidth > grid.scrollLeft + grid.clientWidth) {
        grid.scrollTo({ left: Math.max(0, left - 8), behavior: "smooth" });
      }
    }
  }

  function usagePanel(usage) {
    const stages = Object.keys(usage).filter((s) => usage[s] && typeof usage[s] === "object");
    const preferred = ["calls", "prompt_tokens", "completion_tokens", "total_tokens", "seconds"];
    const keys = [...new Set(stages.flatMap((s) => Object.keys(usage[s])))].sort((x, y) => {
      const ix = preferred.indexOf(x);
      const iy = preferred.indexOf(y);
      return (ix < 0 ? 99 : ix) - (iy < 0 ? 99 : iy) || x.localeCompare(y);
    });
    const cell = (k, v) => {
      if (v === null || v === undefined) return "—";
      if (typeof v === "object") return JSON.stringify(v);
      return k === "seconds" ? fmtSeconds(v) : fmtNum(v);
    };
    const idle = (u) => keys.every((k) => !u[k]);
    return h(
      "section",
      { class: "panel usage" },
      h("h2", null, "Usage per stage"),
      h(
        "table",
        { class: "usage-table" },
        h("thead", null, h("tr", null, h("th", null, "stage"), keys.map((k) => h("th", { class: "num" }, k.replace(/_/g, " "))))),
        h(
          "tbody",
          null,
          stages.map((s) =>
            h("tr", { class: `${s === "total" ? "total" : ""}${idle(usage[s]) ? " idle" : ""}`.trim() || null }, h("th", null, s), keys.map((k) => h("td", { class: "num" }, cell(k, usage[s][k])))),
          ),
        ),
      ),
    );
  }

  // --------------------------------------------------------------------------------------- compare

  async function showCompare(params, token) {
    const a = parseSide(params.get("a"));
    const b = parseSide(params.get("b"));
    const old = $("main");
    if (old) old.setAttribute("aria-busy", "true");
    document.title = "compare · fusion-of-n view";

    const files = await getFiles().catch(() => null);
    if (token !== navToken) return;
    // each side's record gives the methods to choose from (and side a's prompt)
    const records = new Map();
    const recordOf = async (side) => {
      if (!side) return null;
      const key = `${side.file}\u0000${side.id}`;
      if (!records.has(key)) records.set(key, api(`/api/record/${encodeURIComponent(side.id)}`, { file: side.file }).catch((err) => ({ failed: err })));
      return records.get(key);
    };
    const [recA, recB] = await Promise.all([recordOf(a), recordOf(b)]);
    if (token !== navToken) return;

    // a method the other file's row lacks: take that row's first method instead
    let fixed = false;
    for (const [side, rec] of [[a, recA], [b, recB]]) {
      const methods = rec && !rec.failed && Array.isArray(rec.methods) ? rec.methods : null;
      if (side && methods && methods.length && !methods.includes(side.method)) {
        side.method = methods[0];
        fixed = true;
      }
    }
    if (fixed && a && b) history.replaceState(null, "", compareUrl(a, b));

    let data = null;
    let failure = null;
    if (a && b) {
      try {
        data = await api("/api/compare", { a: sideKey(a), b: sideKey(b) });
      } catch (err) {
        failure = err;
      }
      if (token !== navToken) return;
    }

    const main = setMain("compare");
    add(
      main,
      h(
        "div",
        { class: "rec-head" },
        a ? h("a", { class: "back", href: recordUrl(a.id, a.file), title: "back to the record (Esc)" }, "← record") : h("a", { class: "back", href: `/${listSearch()}` }, "← list"),
        h("h1", { class: "rec-id" }, a ? `compare ${a.id}` : "compare"),
      ),
      compareControls(a, b, recA, recB, files),
    );
    if (!a || !b) {
      add(main, h("p", { class: "muted" }, "Choose two sides: open a record and follow “compare…”, or give ?a=FILE:ID:METHOD&b=FILE:ID:METHOD."));
      return;
    }
    if (recA && !recA.failed) {
      add(main, h("details", { class: "panel conversation" }, h("summary", null, "prompt"), conversation(recA, null)));
    }
    if (failure) {
      add(main, errorBox(failure, "the comparison"));
      return;
    }
    const sides = [["a", a, data.a], ["b", b, data.b]];
    const textA = data.a && typeof data.a.text === "string" ? data.a.text : "";
    const textB = data.b && typeof data.b.text === "string" ? data.b.text : "";
    add(
      main,
      h(
        "div",
        { class: "sides" },
        sides.map(([name, want, got]) => {
          const side = got || {};
          const info = fileInfo(files, side.file ?? want.file);
          return h(
            "section",
            { class: "side panel", "data-side": name, "data-method": String(side.method ?? want.method) },
            h(
              "header",
              { class: "result-head" },
              h("h3", null, `${name.toUpperCase()}: ${side.method ?? want.method}`),
              h("span", { class: "muted path", title: info ? info.path : "" }, info ? info.path : `file ${side.file ?? want.file}`),
              String(side.id ?? want.id) !== String(a.id) ? h("span", { class: "muted" }, String(side.id ?? want.id)) : null,
              h("span", { class: "flags" }, flagBadges(side.flags)),
              textA === textB ? badge("identical", "neutral") : null,
            ),
            h("div", { class: "answer side-text" }, typeof side.text === "string" ? side.text : String(side.text ?? "")),
          );
        }),
      ),
      verdictsPanel(Array.isArray(data.verdicts) ? data.verdicts : data.verdicts ? [data.verdicts] : []),
    );
  }

  function compareControls(a, b, recA, recB, files) {
    const entries = (files && files.files) || [];
    const methodsOf = (rec, side) => {
      const m = rec && !rec.failed && Array.isArray(rec.methods) ? [...rec.methods] : [];
      if (side && side.method && !m.includes(side.method)) m.push(side.method);
      return m;
    };
    const idInput = h("input", { id: "compare-id", type: "text", value: (a && a.id) || "", placeholder: "record id", spellcheck: "false", autocomplete: "off" });
    const controls = [];
    const selects = {};
    for (const [name, side, rec] of [["a", a, recA], ["b", b, recB]]) {
      const fileSel = h("select", { id: `${name}-file`, "aria-label": `side ${name} file` }, entries.map((f) => h("option", { value: String(f.file), title: f.path }, fileLabel(entries, f))));
      if (side && !entries.some((f) => String(f.file) === side.file)) fileSel.appendChild(h("option", { value: side.file }, `file ${side.file}`));
      fileSel.value = side ? side.file : entries.length ? String(entries[0].file) : "0";
      const methodSel = h("select", { id: `${name}-method`, "aria-label": `side ${name} method` }, methodsOf(rec, side).map((m) => h("option", { value: m }, m)));
      if (side) methodSel.value = side.method;
      selects[name] = { fileSel, methodSel, side };
      controls.push(h("span", { class: "side-ctl" }, h("b", null, name.toUpperCase()), fileSel, methodSel, rec && rec.failed ? h("span", { class: "bad-note", title: rec.failed.message }, "row not found") : null));
    }
    const go = () => {
      const id = idInput.value.trim();
      if (!id) return;
      // one id for both sides; a B row that differed from A's keeps its own id until the id is edited
      const keepB = a && b && b.id !== a.id && id === a.id;
      const pick = (name) => ({
        file: selects[name].fileSel.value,
        id: name === "b" && keepB ? b.id : id,
        method: selects[name].methodSel.value || (selects[name].side ? selects[name].side.method : ""),
      });
      navigate(compareUrl(pick("a"), pick("b")));
    };
    for (const { fileSel, methodSel } of Object.values(selects)) {
      fileSel.addEventListener("change", go);
      methodSel.addEventListener("change", go);
    }
    idInput.addEventListener("change", go);
    const swap = h("button", { type: "button", title: "swap A and B", onclick: () => a && b && navigate(compareUrl(b, a)) }, "⇄ swap");
    return h("div", { class: "toolbar compare-controls" }, labelled("id", idInput), controls, swap);
  }

  function verdictsPanel(verdicts) {
    const panel = h("section", { class: "panel verdicts" }, h("h2", null, "Judge verdicts"));
    if (!verdicts.length) {
      panel.appendChild(h("p", { class: "muted" }, "No judge verdict for this pair (pass a winrate result with --eval to see them)."));
      return panel;
    }
    const objects = verdicts.filter((v) => v && typeof v === "object");
    const keys = [...new Set(objects.flatMap((v) => Object.keys(v)))];
    if (!keys.length) {
      panel.appendChild(h("ul", null, verdicts.map((v) => h("li", null, typeof v === "string" ? verdictBadge(v) : JSON.stringify(v)))));
      return panel;
    }
    const cell = (v) => {
      if (v === null || v === undefined) return "—";
      if (typeof v === "string" && VERDICT_CLASS[v]) return verdictBadge(v);
      if (typeof v === "object") return h("code", null, JSON.stringify(v));
      return String(v);
    };
    panel.appendChild(
      h(
        "table",
        { class: "verdict-table" },
        h("thead", null, h("tr", null, keys.map((k) => h("th", null, k.replace(/_/g, " "))))),
        h("tbody", null, objects.map((v) => h("tr", null, keys.map((k) => h("td", null, cell(v[k])))))),
      ),
    );
    return panel;
  }

  // -------------------------------------------------------------------------------------- keyboard

  document.addEventListener("keydown", (e) => {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    const t = e.target instanceof HTMLElement ? e.target : null;
    const editing = t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
    if (editing) {
      if (e.key === "Escape") {
        if (t.id === "search") flushSearch();
        t.blur();
        e.preventDefault();
      } else if (e.key === "Enter" && t.id === "search") {
        flushSearch();
        e.preventDefault();
      }
      return;
    }
    const onControl = t && t.closest("a[href], button, summary");
    if (currentView === "list") {
      if (!list.main || !list.main.isConnected) return;
      if (e.key === "/") {
        e.preventDefault();
        list.el.search.focus();
        list.el.search.select();
      } else if (e.key === "j") {
        e.preventDefault();
        moveSelection(1);
      } else if (e.key === "k") {
        e.preventDefault();
        moveSelection(-1);
      } else if (e.key === "Enter" && !onControl) {
        const tr = $$("tr.record-row", list.el.tbody)[list.selected];
        if (tr) {
          e.preventDefault();
          openRow(tr);
        }
      }
    } else if (currentView === "record") {
      const main = $("main#record");
      if (e.key === "j" || e.key === "k") {
        const link = $(e.key === "j" ? "#next-record" : "#prev-record", main || document);
        if (link) {
          e.preventDefault();
          navigate(link.getAttribute("href"));
        }
      } else if (e.key === "Escape") {
        e.preventDefault();
        navigate(`/${listSearch()}`);
      } else if (e.key === "/") {
        e.preventDefault();
        navigate(`/${listSearch()}`);
        if (list.el.search) list.el.search.focus();
      }
    } else if (currentView === "compare" || currentView === "notfound") {
      if (e.key === "Escape") {
        e.preventDefault();
        const back = $("main .rec-head a.back");
        navigate(back ? back.getAttribute("href") : `/${listSearch()}`);
      } else if (e.key === "/") {
        e.preventDefault();
        navigate(`/${listSearch()}`);
        if (list.el.search) list.el.search.focus();
      }
    }
  });

  // ------------------------------------------------------------------------------------------ start

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", route);
  else route();
})();
