// Usage charts of the dashboard and the key page. No inline scripts (the CSP forbids
// them): each [data-usage] section names its JSON endpoint in data-usage-url; its
// [data-chart] figures say which part of the answer they draw. Every chart gets a data
// table (from the answer's "tables") and a CSV link for the same period.
(() => {
  "use strict";

  // The outcome classes, their legend and colour come with every answer ("classes",
  // from app/outcomes.py): this file keeps no palette of its own.
  const shownClasses = (data, counts) =>
    data.classes.filter((c) => c.always || counts.some((o) => o[c.name] > 0));
  const colourOf = (data, name) => (data.classes.find((c) => c.name === name) || {}).colour;
  // UTC and 24-hour, as every page and export writes times (app/times.py).
  const TICKS = {
    minute: { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: "UTC" },
    hour: { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: "UTC" },
    day: { month: "short", day: "numeric", timeZone: "UTC" },
  };
  const TOP_EMPTY = {
    keys: "No key was used in this period.",
    endpoints: "No endpoint was called in this period.",
    ips: "No client address in this period.",
  };

  const fmt = (n) => Number(n).toLocaleString();
  const ms = (v) => (v === null || v === undefined ? "–" : v < 10 ? `${v.toFixed(2)} ms` : `${Math.round(v)} ms`);
  const label = (iso, g) => new Date(iso).toLocaleString(undefined, TICKS[g]);

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function dataTable(figure, spec) {
    const wrap = figure.querySelector("[data-chart-table]");
    if (!wrap) return;
    wrap.replaceChildren();
    if (!spec || !spec.rows.length) {
      wrap.append(el("p", { class: "muted small" }, "No rows for this period."));
      return;
    }
    const table = el("table", { class: "table stack" });
    const title = figure.querySelector("figcaption");
    table.append(el("caption", { class: "visually-hidden" }, title ? title.textContent.trim() : "Data"));
    const head = el("tr");
    spec.header.forEach((h) => head.append(el("th", { scope: "col" }, h)));
    const thead = el("thead");
    thead.append(head);
    table.append(thead);
    const body = el("tbody");
    spec.rows.forEach((row) => {
      const tr = el("tr");
      row.forEach((v, i) => {
        const numeric = typeof v === "number";
        const td = el("td", { "data-label": spec.header[i], class: numeric ? "num" : "" });
        td.textContent = v === null ? "–" : numeric ? fmt(v) : String(v);
        tr.append(td);
      });
      body.append(tr);
    });
    table.append(body);
    wrap.append(table);
  }

  function seriesConfig(data) {
    const buckets = data.buckets;
    const labels = buckets.map((b) => label(b.start, data.granularity));
    // Always the main outcomes; rare ones only when they occur in the period.
    const shown = shownClasses(data, buckets.map((b) => b.outcome));
    const datasets = shown.map((c) => ({
      type: "bar",
      label: c.label,
      data: buckets.map((b) => b.outcome[c.name]),
      backgroundColor: c.colour,
      stack: "requests",
      yAxisID: "y",
    }));
    const scales = {
      x: { stacked: true, ticks: { maxTicksLimit: 8, autoSkip: true, maxRotation: 0 } },
      y: { stacked: true, beginAtZero: true, title: { display: true, text: "requests" }, ticks: { precision: 0 } },
    };
    if (buckets.length && "latency_p95_ms" in buckets[0]) {
      datasets.push({
        type: "line",
        label: "p95 latency (ms)",
        data: buckets.map((b) => b.latency_p95_ms),
        borderColor: "#111827",
        backgroundColor: "#111827",
        pointRadius: 1.5,
        borderWidth: 2,
        spanGaps: false,
        yAxisID: "latency",
      });
      scales.latency = {
        position: "right",
        beginAtZero: true,
        grid: { drawOnChartArea: false },
        title: { display: true, text: "p95 ms" },
      };
    }
    return { data: { labels, datasets }, options: { scales, interaction: { mode: "index", intersect: false } } };
  }

  function topConfig(data, rows, name) {
    // Keys may share a name (a rotated key keeps it): add the key ID where they do.
    const names = rows.map((r) => r.name);
    const labels = rows.map((r) =>
      name !== "keys" ? r.value : names.filter((n) => n === r.name).length > 1 ? `${r.name} (${r.key_id})` : r.name,
    );
    return {
      type: "bar",
      data: {
        labels,
        datasets: [
          { label: "succeeded and other", data: rows.map((r) => r.count - r.errors), backgroundColor: colourOf(data, "2xx"), stack: "n" },
          { label: "errors (4xx, 5xx)", data: rows.map((r) => r.errors), backgroundColor: colourOf(data, "5xx"), stack: "n" },
        ],
      },
      options: {
        indexAxis: "y",
        scales: {
          x: { stacked: true, beginAtZero: true, ticks: { precision: 0 } },
          // Shorter on a phone, where a long name would be cut at the canvas edge.
          y: { stacked: true, ticks: { autoSkip: false, callback(v, i) { return truncate(labels[i], this.chart.width < 480 ? 16 : 28); } } },
        },
      },
    };
  }

  const truncate = (s, n) => (s && s.length > n ? `${s.slice(0, n - 1)}…` : s);

  function topRows(data, name) {
    return { keys: data.top_keys, endpoints: data.top_endpoints, ips: data.top_ips }[name] || [];
  }

  function init(section) {
    const summary = section.querySelector("[data-usage-summary]");
    const empty = section.querySelector("[data-usage-empty]");
    const charts = section.querySelector(".charts");
    const buttons = section.querySelectorAll("[data-usage-range]");
    const picker = section.querySelector("[data-range-picker]");
    const instances = new Map();
    let ticket = 0;

    function press(range) {
      buttons.forEach((b) => {
        const on = b.dataset.usageRange === range;
        b.setAttribute("aria-pressed", on ? "true" : "false");
        b.classList.toggle("primary", on);
      });
    }

    async function load(params) {
      const mine = ++ticket;
      section.dataset.state = "loading";
      summary.textContent = "Loading usage…";
      const url = new URL(section.dataset.usageUrl, window.location.href);
      Object.entries(params).forEach(([k, v]) => url.searchParams.set(k, v));
      let data;
      try {
        const resp = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        const body = await resp.json().catch(() => ({}));
        if (!resp.ok) throw new Error(body.message || `HTTP ${resp.status}`);
        data = body;
      } catch (err) {
        if (mine === ticket) {
          summary.textContent = `Usage could not be loaded: ${err.message}.`;
          section.dataset.state = "error";
        }
        return;
      }
      if (mine !== ticket) return; // a later choice won
      render(data, params);
      section.dataset.state = "ready";
    }

    function stat(name, text) {
      const node = section.querySelector(`[data-stat="${name}"]`);
      if (node) node.textContent = text;
    }

    function render(data, params) {
      const total = data.total;
      const o = total.outcome;
      const errors = o["4xx"] + o["401/403"] + o["429"] + o["5xx"];
      const period = data.range === "custom" ? `${data.from.slice(0, 16)} to ${data.to.slice(0, 16)}` : `the ${data.range_text}`;
      summary.textContent = total.count
        ? `${fmt(total.count)} requests in ${period}: ${fmt(o["2xx"])} succeeded, ${fmt(errors)} failed (times in UTC).`
        : `No requests in ${period} (times in UTC).`;
      stat("count", fmt(total.count));
      if ("latency_p50_ms" in total) {
        stat("p50", ms(total.latency_p50_ms));
        stat("p95", ms(total.latency_p95_ms));
      }
      if (data.peak) {
        stat("peak", `${fmt(data.peak.count)} / ${fmt(data.peak.limit)}`);
        const meter = section.querySelector("[data-stat-meter]");
        if (meter) {
          meter.max = data.peak.limit || 1;
          meter.value = Math.min(data.peak.count, meter.max);
          meter.high = meter.max * 0.8;
          meter.optimum = 0;
        }
        const when = data.peak.at ? ` at ${data.peak.at.slice(0, 16).replace("T", " ")} UTC` : "";
        const refused = data.peak.refused ? `; ${fmt(data.peak.refused)} more refused (429)` : "";
        const limit = data.peak.limit_text || `${fmt(data.peak.limit)} a minute`;
        stat("peak-note", `Busiest minute${when}: ${Math.round((data.peak.share || 0) * 100)} % of the limit, ${limit}${refused}`);
      }
      const split = section.querySelector("[data-outcome-split]");
      if (split) {
        split.replaceChildren();
        shownClasses(data, [o]).forEach((c) => {
          const li = el("li");
          const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
          swatch.style.background = c.colour; // CSSOM, not a style attribute: the CSP allows it
          li.append(swatch);
          li.append(el("span", {}, `${c.label}: `));
          li.append(el("strong", {}, fmt(o[c.name])));
          split.append(li);
        });
      }
      empty.hidden = total.count > 0;
      if (charts) charts.hidden = total.count === 0;

      section.querySelectorAll("[data-chart]").forEach((figure) => {
        const name = figure.dataset.chart;
        const canvas = figure.querySelector("canvas");
        const box = figure.querySelector(".chart-box");
        const note = figure.querySelector("[data-chart-empty]");
        const csv = figure.querySelector("[data-chart-csv]");
        if (csv) {
          const link = new URL(csv.getAttribute("href"), window.location.href);
          ["range", "from", "to"].forEach((k) => link.searchParams.delete(k));
          Object.entries(params).forEach(([k, v]) => link.searchParams.set(k, v));
          csv.setAttribute("href", link.pathname + link.search);
        }
        dataTable(figure, data.tables && data.tables[name]);
        let config;
        if (name === "series") {
          config = seriesConfig(data);
        } else {
          const rows = topRows(data, name);
          note.hidden = rows.length > 0;
          note.textContent = TOP_EMPTY[name] || "Nothing in this period.";
          box.hidden = rows.length === 0;
          if (!rows.length) {
            if (instances.has(name)) instances.get(name).destroy();
            instances.delete(name);
            return;
          }
          config = topConfig(data, rows, name);
        }
        config.options = {
          animation: false,
          responsive: true,
          maintainAspectRatio: false,
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
          ...config.options,
        };
        if (instances.has(name)) instances.get(name).destroy();
        instances.set(name, new window.Chart(canvas, config));
      });
    }

    buttons.forEach((b) =>
      b.addEventListener("click", () => {
        press(b.dataset.usageRange);
        load({ range: b.dataset.usageRange });
      }),
    );
    if (picker) {
      picker.addEventListener("submit", (event) => {
        event.preventDefault();
        const from = picker.querySelector("[data-usage-from]").value;
        const to = picker.querySelector("[data-usage-to]").value;
        if (!from || !to) {
          summary.textContent = "Choose both a start and an end for the custom range.";
          return;
        }
        press(null);
        load({ range: "custom", from, to });
      });
    }
    const pressed = section.querySelector('[data-usage-range][aria-pressed="true"]');
    load({ range: pressed ? pressed.dataset.usageRange : "day" });
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-usage]").forEach((section) => {
      if (!window.Chart) {
        const summary = section.querySelector("[data-usage-summary]");
        if (summary) summary.textContent = "The chart library did not load.";
        return;
      }
      init(section);
    });
  });
})();
