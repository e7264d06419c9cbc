"use strict";
// Every value from a run (model outputs, prompts, names, reasons) is untrusted: it reaches the page
// only through textContent and attribute setters, never through innerHTML or a URL.
(function () {
  const BOARD = JSON.parse(document.getElementById("board-data").textContent);
  const PAGE = 25;
  const COLORS = ["#2f6fb2", "#d9822b", "#2e7d4f", "#b33a3a", "#7a4fb2", "#2b9fa6", "#8a6d3b", "#c2549d"];
  const cache = new Map();  // "run|task" -> Promise of samples

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "cls") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }
  const fmt = (v, d = 3) => (v === null || v === undefined) ? "–" : Number(v).toFixed(d);

  // ---------- overview ----------
  function cellText(c) {
    if (!c || c.status === "absent") return { text: "", cls: "na" };
    if (c.status === "not_applicable") return { text: "n/a", cls: "na", title: "not applicable: " + (c.reason || "") };
    if (c.value === null || c.value === undefined) return { text: c.status === "error" ? "error" : "–", cls: "err",
      title: (c.reason || "") + (c.parts ? "\nparts:\n" + Object.entries(c.parts).map(([k, v]) => `  ${k}: ${fmt(v)}`).join("\n") : "") };
    let title = `n=${c.n ?? "?"}, errors=${c.errors ?? 0}` + (c.extraction_failures ? `, unreadable answers=${c.extraction_failures}` : "");
    if (c.judge) title += `\njudge: ${c.judge}` + (c.judge_accounting ? ` (${c.judge_accounting})` : "");
    if (c.human_agreement) title += `\nagreement with human labels: ${c.human_agreement}`;
    if (c.reason) title += `\n${c.status}: ${c.reason}`;
    if (c.partly_not_applicable) title += `\n${c.partly_not_applicable}`;
    if (c.parts) title += "\nparts:\n" + Object.entries(c.parts).map(([k, v]) => `  ${k}: ${fmt(v)}`).join("\n");
    return { text: fmt(c.value) + (c.stderr !== null && c.stderr !== undefined ? " ± " + fmt(c.stderr) : ""), cls: c.status === "error" ? "err" : "", title };
  }

  // The scoring protocol of a task column, and a warning when runs here scored it under different ones.
  function protocolLabel(col) {
    if (!col.protocols || !col.protocols.length) return null;
    if (col.protocol_conflict)
      return [el("br"), el("span", { cls: "protocol conflict", title: "runs on this board scored this task under different protocols: their numbers are not comparable",
                                     text: "⚠ protocols differ: " + col.protocols.join(" / ") })];
    return [el("br"), el("span", { cls: "protocol", title: "scoring protocol", text: "protocol: " + col.protocols[0] })];
  }
  // A synergy metric's per-pair means, beside its value.
  function signed(v) { return (v > 0 ? "+" : v < 0 ? "−" : "±") + Math.abs(v).toFixed(3); }
  function deltaLine(run, col) {  // a trained run's difference from its base run on the board
    const d = run.vs_base ? run.vs_base.deltas[col.key] : undefined;
    if (typeof d !== "number") return null;
    return el("span", { cls: "small delta " + (d > 0 ? "up" : d < 0 ? "down" : ""), title: "vs base " + run.vs_base.base },
              el("br"), "vs base " + signed(d));
  }
  function synergyLine(c) {
    if (!c || !c.synergy || !Object.keys(c.synergy).length) return null;
    return [el("br"), el("span", { cls: "small synergy", text: Object.entries(c.synergy).map(([k, v]) => `${k} ${fmt(v)}`).join(" · ") })];
  }

  const sortState = { col: null, dir: 1 };
  let showParts = true;
  function sortValue(run, col) {
    if (col === "model") return run.label.toLowerCase();
    if (col === "samples") return run.samples;
    if (col === "errors") return run.errored;
    if (col === "judge") return run.judges.join(", ").toLowerCase() || null;
    const c = BOARD.cells[run.index][col];
    return c && typeof c.value === "number" ? c.value : null;
  }
  function renderOverview() {
    const table = document.getElementById("overview");
    table.textContent = "";
    const shownColumns = BOARD.columns.filter(c => showParts || !c.part);
    const heads = [["model", "model", null], ...shownColumns.map(c => c.group === "suite" ? [c.key, c.task.toUpperCase(), "mean of its parts (" + c.metric + ")", c]
                     : [c.key, c.task + " / " + c.metric, c.part ? (c.group + ": " + c.part) : null, c]),
                   ["samples", "samples", null], ["errors", "errors", null], ["judge", "judge", null]];
    const tr = el("tr");
    for (const [key, label, part, col] of heads) {
      const th = el("th", { "data-col": key, title: "sort by " + label + (part ? " / " + part : ""), onclick: () => sortBy(key) }, label,
                    part ? el("br") : null, part ? el("span", { cls: "part", text: part }) : null,
                    col && !col.part ? protocolLabel(col) : null);
      if (sortState.col === key) th.setAttribute("aria-sort", sortState.dir > 0 ? "ascending" : "descending");
      tr.appendChild(th);
    }
    table.appendChild(el("thead", {}, tr));
    let runs = BOARD.runs.slice();
    if (sortState.col) {
      runs.sort((a, b) => {
        const x = sortValue(a, sortState.col), y = sortValue(b, sortState.col);
        if (x === null && y === null) return 0;
        if (x === null) return 1;
        if (y === null) return -1;
        return (x < y ? -1 : x > y ? 1 : 0) * sortState.dir;
      });
    }
    const body = el("tbody");
    for (const run of runs) {
      const lineage = run.lineage ? "\n" + Object.entries(run.lineage).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join("\n") : "";
      const row = el("tr", { "data-run": run.index }, el("td", { title: run.run_id + lineage }, run.label));
      for (const col of shownColumns) {
        const c = BOARD.cells[run.index][col.key];
        const t = cellText(c);
        const counts = c && typeof c.n === "number" ? `n=${c.n}` + (c.errors ? ` · ${c.errors} err` : "") + (c.judge ? " · judged" : "") : "";
        const conflict = col.protocol_conflict && c && c.protocol;
        const title = (t.title || "") + (c && c.protocol ? (t.title ? "\n" : "") + "protocol: " + c.protocol +
          (conflict ? " (other runs on this board scored this task under " + col.protocols.filter(p => p !== c.protocol).join(", ") +
           ": the numbers are not comparable)" : "") : "");
        const td = el("td", { cls: "metric " + t.cls + (conflict ? " protocol-conflict" : ""), title: title || null, "data-col": col.key,
                              "data-status": c ? c.status : "absent", "data-protocol": c && c.protocol ? c.protocol : null },
                      el("span", { cls: "value", text: t.text }), synergyLine(c), deltaLine(run, col), counts ? el("br") : null, counts ? el("span", { cls: "small", text: counts }) : null,
                      conflict ? el("br") : null, conflict ? el("span", { cls: "protocol conflict", text: "⚠ protocol " + c.protocol }) : null);
        if (c && c.status !== "absent" && c.status !== "not_applicable" && run.tasks.includes(col.task))
          td.addEventListener("click", () => openDrill(run.index, col.task));
        row.appendChild(td);
      }
      row.appendChild(el("td", { text: run.samples }));
      row.appendChild(el("td", { cls: run.errored ? "err" : "", text: run.errored }));
      row.appendChild(el("td", { title: run.judge_accounting || null, text: run.judges.join(", ") || "–" }));
      body.appendChild(row);
    }
    table.appendChild(body);
  }
  function sortBy(key) {
    sortState.dir = sortState.col === key ? -sortState.dir : (key === "model" ? 1 : -1);
    sortState.col = key;
    renderOverview();
  }

  // ---------- runs and lineage ----------
  function renderRuns() {
    const table = document.getElementById("runs");
    const keys = ["base_model", "method", "data", "config_hash"];
    const hasLineage = BOARD.runs.some(r => r.lineage);
    table.appendChild(el("thead", {}, el("tr", {}, ["model", "run id", "status", "created", "model spec",
      ...(hasLineage ? ["base model", "training method", "training data", "config hash", "vs base run", "other lineage"] : []), "judge", "settings", "git"].map(h => el("th", { text: h })))));
    const body = el("tbody");
    for (const r of BOARD.runs) {
      const lin = r.lineage || {};
      const other = Object.keys(lin).filter(k => !keys.includes(k)).map(k => k + "=" + (typeof lin[k] === "string" ? lin[k] : JSON.stringify(lin[k]))).join("; ");
      const show = v => v === undefined || v === null ? "" : (typeof v === "string" ? v : JSON.stringify(v));
      body.appendChild(el("tr", { "data-run": r.index }, [r.label, r.run_id, r.status, r.created_at, r.model_spec,
        ...(hasLineage ? [...keys.map(k => show(lin[k])), vsBase(r), other] : []),
        (r.judges.join(", ") || "–") + (r.judge_accounting ? " — " + r.judge_accounting : ""), r.settings, r.git_revision].map(v => el("td", { text: v ?? "" }))));
    }
    table.appendChild(body);
  }

  function vsBase(r) {
    if (!r.vs_base) return "";
    const parts = Object.entries(r.vs_base.deltas).map(([k, d]) => k + " " + signed(d));
    return r.vs_base.base + (parts.length ? ": " + parts.join("; ") : "");
  }
  function renderCompare() {  // the align compare tables the runs' lineage points to
    const holder = document.getElementById("compare");
    if (!BOARD.compare || !BOARD.compare.length) { holder.closest("section").hidden = true; return; }
    const num = v => typeof v === "number" ? v.toFixed(3) : "—";
    for (const cmp of BOARD.compare) {
      holder.appendChild(el("p", { cls: "small", text: `${cmp.path}: ${cmp.seeds} seeds; mean [${Math.round(100 * cmp.table.level)}% interval] of each task's first metric` }));
      const head = el("tr", {}, ["task", "metric", ...cmp.arms, "LLF − binary (p)"].map(h => el("th", { text: h })));
      const body = el("tbody");
      for (const [task, entry] of Object.entries(cmp.table.tasks)) {
        const cells = cmp.arms.map(a => { const s = entry.arms[a]; return s && typeof s.mean === "number" ? `${num(s.mean)} [${num(s.low)}, ${num(s.high)}]` : "—"; });
        const paired = entry.paired.map(p => `${p.llf} − ${p.binary}: ${typeof p.diff === "number" ? signed(p.diff) : "—"} [${num(p.low)}, ${num(p.high)}] (p ${num(p.p)})`).join("; ");
        body.appendChild(el("tr", {}, [task, entry.metric, ...cells, paired].map(v => el("td", { text: v }))));
      }
      holder.appendChild(el("div", { cls: "scroll" }, el("table", { cls: "compare" }, el("thead", {}, head), body)));
      for (const [task, reason] of Object.entries(cmp.table.not_applicable || {}))
        holder.appendChild(el("p", { cls: "small", text: `${task}: not applicable (${reason})` }));
    }
  }

  // ---------- charts (SVG) ----------
  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = String(v); else node.setAttribute(k, String(v));
    }
    return node;
  }
  function barChart(chart) {
    const series = chart.series, groups = chart.groups;
    const values = series.flatMap(s => s.values).filter(v => typeof v === "number");
    const highest = Math.max(chart.max || 0, ...values);
    const top = highest > 0 ? highest : 1;
    const bw = Math.max(6, Math.min(22, 160 / Math.max(1, series.length))), gap = 18;
    const gw = Math.max(bw * series.length + gap, 84), h = 160, left = 36, bottom = 44;
    const width = left + gw * groups.length + 10;
    const root = svg("svg", { width, height: h + bottom + 10, role: "img" });
    root.appendChild(svg("title", { text: chart.title }));
    for (let i = 0; i <= 4; i++) {
      const y = 8 + h - h * i / 4;
      root.appendChild(svg("line", { x1: left, x2: width, y1: y, y2: y, stroke: "#e5e9ee" }));
      root.appendChild(svg("text", { x: left - 4, y: y + 4, "text-anchor": "end", "font-size": 10, fill: "#5d6b7a", text: (top * i / 4).toFixed(top >= 10 ? 0 : 2) }));
    }
    groups.forEach((g, gi) => {
      series.forEach((s, si) => {
        const v = s.values[gi];
        if (typeof v !== "number") return;
        const bh = h * v / top, x = left + gi * gw + (gw - bw * series.length) / 2 + si * bw;
        const bar = svg("rect", { x, y: 8 + h - bh, width: bw - 2, height: Math.max(0, bh), fill: s.color || COLORS[si % COLORS.length] });
        bar.appendChild(svg("title", { text: `${s.label} — ${g}: ${fmt(v)}` }));
        root.appendChild(bar);
      });
      const room = Math.max(4, Math.floor(gw / 6.8));  // characters that fit under the group
      const label = g.length > room ? g.slice(0, room - 1) + "…" : g;
      const t = svg("text", { x: left + gi * gw + gw / 2, y: 8 + h + 14, "text-anchor": "middle", "font-size": 11, fill: "#1d232b", text: label });
      t.appendChild(svg("title", { text: g }));
      root.appendChild(t);
    });
    const legend = el("div", { cls: "legend" }, series.map((s, si) => el("span", {}, el("i", { style: "background:" + (s.color || COLORS[si % COLORS.length]) }), s.label)));
    return el("div", { cls: "chart", "data-chart": chart.kind }, el("h3", { text: chart.title }), root, legend);
  }
  function renderCharts() {
    const box = document.getElementById("charts");
    if (!BOARD.charts.length) box.appendChild(el("p", { cls: "small", text: "No charts: nothing to compare yet." }));
    for (const chart of BOARD.charts) box.appendChild(barChart(chart));
  }

  // ---------- samples (lazy) ----------
  async function gunzipBase64(text) {
    const bytes = Uint8Array.from(atob(text.trim()), c => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return await new Response(stream).text();
  }
  const parsed = document.readyState === "loading"
    ? new Promise(resolve => document.addEventListener("DOMContentLoaded", resolve)) : Promise.resolve();
  function loadSamples(run, task) {
    const key = run + "|" + task;
    if (!cache.has(key)) {
      const pages = (BOARD.pages[key] || {}).blobs || [];
      cache.set(key, parsed.then(() => Promise.all(pages.map(id => gunzipBase64(document.getElementById(id).textContent).then(JSON.parse))))
        .then(parts => parts.flat()));
    }
    return cache.get(key);
  }
  const mediaUrls = new Map();
  function mediaNode(ref) {
    const info = BOARD.media[ref.key];
    if (!info || !info.blob) return el("div", { cls: "small", text: `${ref.modality}: ${ref.path || ""} (${info && info.skipped ? info.skipped : "not embedded"})` });
    let url = mediaUrls.get(ref.key);
    if (!url) {
      url = "data:" + info.mime + ";base64," + document.getElementById(info.blob).textContent.trim();
      mediaUrls.set(ref.key, url);
    }
    const tag = { image: "img", audio: "audio", video: "video" }[ref.modality];
    if (!tag) return el("div", { cls: "small", text: `${ref.modality}: ${ref.path || ""}` });
    const node = el(tag, tag === "img" ? { alt: ref.path || "image" } : { controls: "", preload: "metadata" });
    node.src = url;  // a data: URL built here from bytes embedded at build time, never from run text
    return node;
  }

  const drill = { run: null, task: null, compare: "", filter: "all", search: "", page: 0, min: NaN, max: NaN };
  function primary(sample) { const s = Object.values(sample.scores)[0]; return s ? s : null; }
  function scoreKey(sample) {
    return Object.entries(sample.scores).map(([k, s]) => k + "=" + (s.error ? "error" : s.value)).join(",");
  }
  function matches(sample, other) {
    const p = primary(sample);
    const errored = Object.values(sample.scores).some(s => s.error) || sample.outputs.some(o => o.error);
    switch (drill.filter) {
      case "pass": if (!p || p.error || !(p.value >= 1)) return false; break;
      case "fail": if (!p || p.error || !(p.value < 1)) return false; break;
      case "error": if (!errored) return false; break;
      case "unreadable": if (!Object.values(sample.scores).some(s => s.extraction_failed)) return false; break;
      case "changed": if (!other || scoreKey(other) === scoreKey(sample)) return false; break;
    }
    if (!isNaN(drill.min) || !isNaN(drill.max)) {
      if (!p || p.error || p.value === null) return false;
      if (!isNaN(drill.min) && p.value < drill.min) return false;
      if (!isNaN(drill.max) && p.value > drill.max) return false;
    }
    if (drill.search) {
      const needle = drill.search.toLowerCase();
      const hay = [sample.id, ...sample.variants.map(v => v.prompt), ...sample.outputs.map(o => o.text + " " + (o.error || "")),
                   ...sample.target, ...Object.values(sample.scores).map(s => (s.answer || "") + " " + (s.explanation || "") + " " + (s.error || ""))]
        .join("\n").toLowerCase();
      if (!hay.includes(needle)) return false;
    }
    return true;
  }
  function scoreBadges(sample) {
    return Object.entries(sample.scores).map(([name, s]) => {
      const cls = s.error ? "fail" : (s.value >= 1 ? "pass" : (s.value <= 0 ? "fail" : ""));
      if (s.not_applicable && (s.value === null || s.value === undefined))
        return el("span", { cls: "badge", title: "not applicable: " + s.not_applicable }, `${name}: n/a`);
      const text = `${name}: ${s.error ? "error" : fmt(s.value, 2)}` + (s.extraction_failed ? " (unreadable)" : "");
      return el("span", { cls: "badge " + cls, title: s.error ? s.error : (s.answer !== null && s.answer !== undefined ? "answer: " + s.answer : null) }, text);
    });
  }
  function outputsBlock(sample, title) {
    return el("div", {}, el("div", { cls: "kv", text: title }), sample.outputs.map(o => el("div", {},
      sample.outputs.length > 1 ? el("div", { cls: "kv", text: "variant " + o.variant }) : null,
      o.error ? el("pre", { cls: "err", text: "generation failed: " + o.error }) : el("pre", { text: o.text }),
      el("div", { cls: "media" }, (o.media || []).map(mediaNode)))),
      Object.entries(sample.scores).map(([name, s]) => (s.explanation || s.error) ? el("div", { cls: "small" },
        name + (s.answer !== null && s.answer !== undefined ? ` (answer ${JSON.stringify(s.answer)})` : "") + ": ",
        s.error ? el("span", { cls: "err", text: s.error }) : s.explanation) : null),
      Object.entries(sample.scores).map(([name, s]) => s.details ? el("div", { cls: "small" }, `${name} details: ${s.details}`) : null),
      Object.entries(sample.scores).map(([name, s]) => s.judge && s.judge.length ? el("details", { cls: "small" },
        el("summary", { text: `${name}: judge replies (${s.judge.length})` + (s.human !== undefined ? ` · human label ${s.human}` : "") }),
        s.judge.map(v => el("div", { cls: "verdict" }, el("div", { cls: "kv", text: `${v.label || "verdict"}: ${v.verdict ?? "–"}` + (v.error ? " · " + v.error : "") +
            (v.cached ? " · cached" : "") + (v.media_dropped && v.media_dropped.length ? " · judge could not see: " + v.media_dropped.join(", ") : "") }),
          v.raw.map(r => el("pre", { text: r })), v.asked ? auditBlock(v.asked) : null))) : null));
  }
  // What the judge was asked: the messages as sent, media by hash, sampling; collapsed, text only.
  function auditBlock(a) {
    const sampling = a.local ? "computed locally, no judge model" : [
      a.temperature !== null && a.temperature !== undefined ? "temperature " + a.temperature : null,
      a.max_new_tokens ? "max new tokens " + a.max_new_tokens : null,
      a.seeds && a.seeds.length ? (a.seeds.length > 1 ? "seeds " : "seed ") + a.seeds.join(", ") : null].filter(Boolean).join(" · ");
    const media = (a.media || []).map(m => el("li", { text: m.more ? `… ${m.more} more` :
      `${m.modality || "media"}: ` + (m.sha256 ? "sha256 " + m.sha256 : (m.path || "?") + (m.size !== undefined ? ` (${m.size} bytes)` : "")) }));
    return el("details", { cls: "audit" }, el("summary", { text: "what the judge was asked" + (sampling ? " · " + sampling : "") }),
      a.local ? null : [el("div", { cls: "kv", text: "system" }), el("pre", { cls: "audit-system", text: a.system === null || a.system === undefined ? "(no system message)" : a.system })],
      el("div", { cls: "kv", text: a.local ? "input" : "user" }), el("pre", { cls: "audit-user", text: a.user }),
      media.length ? [el("div", { cls: "kv", text: "media" }), el("ul", { cls: "audit-media" }, media)] : el("div", { cls: "kv", text: "no media" }));
  }
  function sampleCard(sample, other) {
    const changed = other && scoreKey(other) !== scoreKey(sample);
    const first = sample.variants[0] || { prompt: "", choices: [] };
    return el("div", { cls: "sample" + (changed ? " changed" : ""), "data-id": sample.id },
      el("h4", {}, sample.id + "  ", scoreBadges(sample),
         other ? el("span", { cls: "small" }, changed ? " changed from " : " same in ", other ? el("span", {}, scoreBadges(other)) : null) : null),
      el("div", { cls: "media" }, sample.media.map(mediaNode)),
      el("div", { cls: "kv", text: "prompt" }), el("pre", { text: first.prompt }),
      sample.variants.length > 1 ? el("details", {}, el("summary", { cls: "small", text: `${sample.variants.length - 1} more variants` }),
        sample.variants.slice(1).map(v => el("pre", { text: v.prompt }))) : null,
      el("div", { cls: "kv", text: "target: " + JSON.stringify(sample.target) }),
      other ? el("div", { cls: "cols" }, outputsBlock(sample, "output"), outputsBlock(other, "output in " + BOARD.runs[Number(drill.compare)].label))
            : outputsBlock(sample, "output"));
  }
  async function renderDrill() {
    const list = document.getElementById("samples");
    const count = document.getElementById("drill-count");
    document.body.dataset.drill = "loading";
    if (drill.run === null || !drill.task) { list.textContent = ""; count.textContent = "Pick a run and a task."; document.body.dataset.drill = "ready"; return; }
    const samples = await loadSamples(drill.run, drill.task);
    let others = null;
    if (drill.compare !== "" && Number(drill.compare) !== drill.run) {
      others = new Map((await loadSamples(Number(drill.compare), drill.task)).map(s => [s.id, s]));
    }
    const shown = samples.filter(s => (!others || others.has(s.id)) && matches(s, others && others.get(s.id)));
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    drill.page = Math.min(drill.page, pages - 1);
    const meta = BOARD.pages[drill.run + "|" + drill.task] || {};
    let changes = "";
    if (others) {
      let better = 0, worse = 0, other = 0;
      for (const s of samples) {
        const o = others.get(s.id);
        if (!o || scoreKey(o) === scoreKey(s)) continue;
        const a = primary(s), b = primary(o);
        if (a && b && !a.error && !b.error) { if (a.value > b.value) better++; else if (a.value < b.value) worse++; else other++; } else other++;
      }
      changes = ` · ${better + worse + other} changed vs. ${BOARD.runs[Number(drill.compare)].label}: ${better} better, ${worse} worse` + (other ? `, ${other} otherwise` : "");
    }
    const protocol = meta.protocol ? ` · protocol ${meta.protocol}` : "";
    const otherProtocol = others ? (BOARD.pages[drill.compare + "|" + drill.task] || {}).protocol : null;
    const mismatch = others && meta.protocol && otherProtocol && otherProtocol !== meta.protocol
      ? ` · ⚠ the compared run scored this task under protocol ${otherProtocol}: scores not comparable` : "";
    count.textContent = `${shown.length} of ${samples.length} samples` + (others ? ` shared with the compared run` : "") + protocol + mismatch + changes +
      (meta.truncated ? ` (board keeps the first ${meta.count} of ${meta.total})` : "") + ` · page ${drill.page + 1} of ${pages}`;
    list.textContent = "";
    for (const s of shown.slice(drill.page * PAGE, (drill.page + 1) * PAGE)) list.appendChild(sampleCard(s, others && others.get(s.id)));
    document.body.dataset.drill = "ready";
  }
  function fillSelect(select, options, value) {
    select.textContent = "";
    for (const [v, label] of options) select.appendChild(el("option", { value: v, text: label }));
    select.value = value;
  }
  function syncControls() {
    const runSel = document.getElementById("drill-run"), taskSel = document.getElementById("drill-task");
    const cmpSel = document.getElementById("drill-compare");
    fillSelect(runSel, BOARD.runs.map(r => [String(r.index), r.label]), drill.run === null ? "" : String(drill.run));
    const tasks = drill.run === null ? [] : BOARD.runs[drill.run].tasks;
    fillSelect(taskSel, tasks.map(t => [t, t]), drill.task || "");
    fillSelect(cmpSel, [["", "compare with: none"], ...BOARD.runs.filter(r => r.index !== drill.run && r.tasks.includes(drill.task)).map(r => [String(r.index), "compare with " + r.label])], drill.compare);
  }
  function openDrill(run, task) {
    drill.run = run; drill.task = task; drill.page = 0;
    if (drill.compare !== "" && !BOARD.runs[Number(drill.compare)].tasks.includes(task)) drill.compare = "";
    if (Number(drill.compare) === run) drill.compare = "";
    syncControls();
    document.getElementById("drill").scrollIntoView();
    return renderDrill();
  }
  function setupDrill() {
    const on = (id, ev, fn) => document.getElementById(id).addEventListener(ev, fn);
    on("drill-run", "change", e => { const r = Number(e.target.value); openDrill(r, BOARD.runs[r].tasks.includes(drill.task) ? drill.task : BOARD.runs[r].tasks[0]); });
    on("drill-task", "change", e => openDrill(drill.run, e.target.value));
    on("drill-compare", "change", e => { drill.compare = e.target.value; drill.page = 0; renderDrill(); });
    on("drill-filter", "change", e => { drill.filter = e.target.value; drill.page = 0; renderDrill(); });
    let timer = null;
    on("drill-search", "input", e => { clearTimeout(timer); timer = setTimeout(() => { drill.search = e.target.value; drill.page = 0; renderDrill(); }, 200); });
    on("drill-min", "change", e => { drill.min = parseFloat(e.target.value); drill.page = 0; renderDrill(); });
    on("drill-max", "change", e => { drill.max = parseFloat(e.target.value); drill.page = 0; renderDrill(); });
    on("drill-prev", "click", () => { if (drill.page > 0) { drill.page--; renderDrill(); } });
    on("drill-next", "click", () => { drill.page++; renderDrill(); });
    const first = BOARD.runs.find(r => r.tasks.length);
    if (first) { drill.run = first.index; drill.task = first.tasks[0]; }
    syncControls();
  }

  const partsToggle = document.getElementById("show-parts");
  partsToggle.checked = showParts;
  partsToggle.addEventListener("change", () => { showParts = partsToggle.checked; renderOverview(); });
  renderOverview();
  renderRuns();
  renderCompare();
  renderCharts();
  setupDrill();
  document.body.dataset.state = "ready";
})();
