// Admin charts (/admin, /admin/security). No inline scripts (CSP): each
// <section data-chart data-chart-url> fetches its JSON, draws it with the vendored
// Chart.js, and fills its data table, where every figure that comes from the audit
// trail links to the audit browser filtered to what it counts.
(() => {
  "use strict";

  // Series named after an outcome or a status class carry their colour and legend in
  // the JSON (app/outcomes.py); the fallback only tells apart series that have none.
  const FALLBACK = ["#2f5fd0", "#b42318", "#1a7f46", "#b7791f", "#7c3aed", "#0e7490", "#6b7280"];

  function colour(s, i) {
    return s.colour || FALLBACK[i % FALLBACK.length];
  }

  function cell(tag, text, href) {
    const el = document.createElement(tag);
    if (tag === "th") el.scope = "col";
    if (href) {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      el.appendChild(a);
    } else {
      el.textContent = text;
    }
    return el;
  }

  function fillTable(table, data) {
    table.querySelectorAll("thead, tbody").forEach((el) => el.remove());
    const head = document.createElement("thead");
    const hr = document.createElement("tr");
    hr.appendChild(cell("th", data.kind === "hbar" ? "" : "Day"));
    data.series.forEach((s) => hr.appendChild(cell("th", s.label || s.name, s.link)));
    head.appendChild(hr);
    const body = document.createElement("tbody");
    data.labels.forEach((label, i) => {
      const tr = document.createElement("tr");
      const first = cell("td", label, data.links[i]);
      first.className = "name";
      tr.appendChild(first);
      data.series.forEach((s) => {
        // A non-zero figure of one day opens that day's events of its kind.
        const href = s.links && Number(s.data[i]) ? s.links[i] : null;
        const td = cell("td", Number(s.data[i]).toLocaleString(), href);
        td.className = "num";
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    table.appendChild(head);
    table.appendChild(body);
  }

  function config(data) {
    const kind = data.kind;
    const stacked = kind === "stacked";
    const horizontal = kind === "hbar";
    const line = kind === "line";
    const datasets = data.series.map((s, i) => ({
      label: s.label || s.name,
      data: s.data,
      backgroundColor: colour(s, i),
      borderColor: colour(s, i),
      borderWidth: line ? 2 : 0,
      pointRadius: line ? 2 : 0,
      fill: false,
      stack: stacked ? "all" : undefined,
      yAxisID: s.axis === "right" ? "y2" : "y",
    }));
    const right = data.series.find((s) => s.axis === "right");
    const title = (text) => ({ display: true, text });
    return {
      type: line ? "line" : "bar",
      data: { labels: data.labels, datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        indexAxis: horizontal ? "y" : "x",
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { display: data.series.length > 1 } },
        scales: {
          x: {
            ...(horizontal ? { type: data.log ? "logarithmic" : "linear" } : {}),
            stacked,
            beginAtZero: true,
            ticks: { maxTicksLimit: horizontal ? 6 : 10, autoSkip: true },
          },
          y: {
            stacked,
            beginAtZero: true,
            // A long label (an email, a key name) is shortened on a phone; the tooltip
            // and the data table keep it whole.
            ticks: horizontal
              ? { autoSkip: false, callback(v, i) { const s = String(data.labels[i] || ""); const n = this.chart.width < 480 ? 18 : 40; return s.length > n ? `${s.slice(0, n - 1)}…` : s; } }
              : { precision: 0 },
            title: right ? title(data.unit) : { display: false },
          },
          // A series of another size (rate-limit refusals) gets its own axis.
          ...(right
            ? { y2: { position: "right", beginAtZero: true, ticks: { precision: 0 }, grid: { drawOnChartArea: false }, title: title(right.label || right.name) } }
            : {}),
        },
        // A bar or point of a figure that comes from the trail opens the audit browser
        // on its own day (and kind, where the series has one link a point).
        onClick: (event, elements, chart) => {
          // The bar or point under the pointer: its own series and day; beside it, the
          // day (every kind) where the chart has one link a label.
          const hit = chart.getElementsAtEventForMode(event, "nearest", { intersect: true }, true)[0];
          let href = null;
          if (hit) {
            const s = data.series[hit.datasetIndex] || {};
            href = (s.links && s.links[hit.index]) || data.links[hit.index] || s.link;
          } else if (elements.length) {
            href = data.links[elements[0].index];
          }
          if (href) window.location.assign(href);
        },
      },
    };
  }

  async function init(section) {
    const status = section.querySelector("[data-chart-status]");
    const title = section.querySelector("[data-chart-title]");
    const box = section.querySelector("[data-chart-box]");
    const canvas = section.querySelector("[data-chart-canvas]");
    const table = section.querySelector("[data-chart-table]");
    let data;
    try {
      const resp = await fetch(section.dataset.chartUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      data = await resp.json();
    } catch (err) {
      status.textContent = `This chart could not be loaded (${err.message}).`;
      box.hidden = true;
      return;
    }
    title.textContent = data.title;
    fillTable(table, data);
    const total = data.series.reduce((n, s) => n + s.data.reduce((a, b) => a + Number(b || 0), 0), 0);
    section.dataset.points = String(data.labels.length);
    if (!data.labels.length || !total) {
      status.textContent = "Nothing to show for this range yet.";
      box.hidden = true;
      return;
    }
    const days = data.kind === "hbar" || data.kind === "bar" ? "" : `${data.labels.length} days; `;
    status.textContent = data.note || `${days}times in UTC.`;
    box.style.height = data.kind === "hbar" ? `${Math.max(160, 28 * data.labels.length + 40)}px` : "260px";
    if (!window.Chart) {
      status.textContent = "The chart library did not load; the data table below has the figures.";
      box.hidden = true;
      return;
    }
    const chart = new window.Chart(canvas, config(data));
    section.dataset.drawn = "true";
    const log = section.querySelector("[data-chart-log]");
    if (log && data.kind === "hbar") {
      // A log scale keeps small bars readable beside one that dwarfs them; the server
      // starts with it where the spread is wide (Chart.to_dict), the admin can switch.
      const said = status.textContent;
      // The axis starts a decade below the smallest bar, so that bar has a length.
      const least = Math.min(...data.series.flatMap((s) => s.data).filter((v) => v > 0));
      const floor = 10 ** (Math.floor(Math.log10(least)) - 1);
      const set = (on) => {
        log.setAttribute("aria-pressed", String(on));
        chart.options.scales.x.type = on ? "logarithmic" : "linear";
        chart.options.scales.x.min = on ? floor : undefined;
        chart.update();
        status.textContent = on ? `${said} Log scale: small bars stay visible; the data table has the figures.` : said;
      };
      log.hidden = false;
      set(Boolean(data.log));
      log.addEventListener("click", () => set(log.getAttribute("aria-pressed") !== "true"));
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-chart]").forEach((section) => init(section));
  });
})();
