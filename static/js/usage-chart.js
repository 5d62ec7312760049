// Usage chart on the key page. No inline scripts (the CSP forbids them): the data URL
// comes from the canvas's data-usage-url, the range from the buttons' data-usage-range.
(() => {
  "use strict";

  const COLORS = { "2xx": "#1a7f46", "3xx": "#2f5fd0", "4xx": "#b7791f", "5xx": "#b42318", other: "#6b7280" };
  const LABELS = {
    minute: { hour: "2-digit", minute: "2-digit", timeZone: "UTC" },
    hour: { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZone: "UTC" },
    day: { month: "short", day: "numeric", timeZone: "UTC" },
  };
  const RANGE_TEXT = { hour: "last hour", day: "last 24 hours", month: "last 30 days" };

  function label(iso, granularity) {
    return new Date(iso).toLocaleString(undefined, LABELS[granularity]);
  }

  function ms(value) {
    if (value === null || value === undefined) return "–";
    return value < 10 ? `${value.toFixed(2)} ms` : `${Math.round(value)} ms`;
  }

  function init(canvas) {
    const section = canvas.closest("section");
    const summary = section.querySelector("[data-usage-summary]");
    const empty = section.querySelector("[data-usage-empty]");
    const box = section.querySelector("[data-usage-chart-box]");
    const buttons = section.querySelectorAll("[data-usage-range]");
    let chart = null;
    let current = 0;
    // Chart.js sizes the canvas from a relatively positioned parent of its own.
    box.style.position = "relative";
    box.style.width = "100%";
    box.style.height = "min(340px, 60vw)";

    async function load(range) {
      const ticket = ++current;
      buttons.forEach((b) => {
        const on = b.dataset.usageRange === range;
        b.setAttribute("aria-pressed", on ? "true" : "false");
        b.classList.toggle("primary", on);
      });
      summary.textContent = "Loading usage…";
      let data;
      try {
        const url = new URL(canvas.dataset.usageUrl, window.location.href);
        url.searchParams.set("range", range);
        const resp = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
        data = await resp.json();
      } catch (err) {
        if (ticket === current) summary.textContent = `Usage could not be loaded (${err.message}). Try again in a moment.`;
        return;
      }
      if (ticket !== current) return; // a later click won
      render(data);
    }

    function render(data) {
      const total = data.total;
      const when = RANGE_TEXT[data.range] || data.range;
      if (!total.count) {
        summary.textContent = `No requests in the ${when} (times in UTC).`;
        empty.hidden = false;
        box.hidden = true;
        return;
      }
      empty.hidden = true;
      box.hidden = false;
      const errors = total.status["4xx"] + total.status["5xx"];
      summary.textContent =
        `${total.count.toLocaleString()} requests in the ${when}: ` +
        `${total.status["2xx"].toLocaleString()} succeeded, ${errors.toLocaleString()} errors; ` +
        `latency avg ${ms(total.latency_avg_ms)}, p95 ${ms(total.latency_p95_ms)} (times in UTC).`;

      const labels = data.buckets.map((b) => label(b.start, data.granularity));
      const classes = Object.keys(COLORS).filter(
        (c) => c !== "other" || data.buckets.some((b) => b.status.other > 0),
      );
      const datasets = classes.map((c) => ({
        type: "bar",
        label: c,
        data: data.buckets.map((b) => b.status[c]),
        backgroundColor: COLORS[c],
        stack: "requests",
        yAxisID: "y",
      }));
      datasets.push({
        type: "line",
        label: "p95 latency (ms)",
        data: data.buckets.map((b) => b.latency_p95_ms),
        borderColor: "#111827",
        backgroundColor: "#111827",
        pointRadius: 2,
        borderWidth: 2,
        spanGaps: false,
        yAxisID: "latency",
      });
      if (chart) chart.destroy();
      chart = new window.Chart(canvas, {
        data: { labels, datasets },
        options: {
          animation: false,
          responsive: true,
          maintainAspectRatio: false,
          interaction: { mode: "index", intersect: false },
          scales: {
            x: { stacked: true, ticks: { maxTicksLimit: 12, autoSkip: true } },
            y: { stacked: true, beginAtZero: true, title: { display: true, text: "requests" }, ticks: { precision: 0 } },
            latency: {
              position: "right",
              beginAtZero: true,
              grid: { drawOnChartArea: false },
              title: { display: true, text: "p95 ms" },
            },
          },
        },
      });
    }

    buttons.forEach((b) => b.addEventListener("click", () => load(b.dataset.usageRange)));
    const pressed = section.querySelector('[data-usage-range][aria-pressed="true"]');
    load(pressed ? pressed.dataset.usageRange : "day");
  }

  document.addEventListener("DOMContentLoaded", () => {
    const canvas = document.getElementById("usage-chart");
    if (!canvas) return;
    if (!window.Chart) {
      const summary = canvas.closest("section").querySelector("[data-usage-summary]");
      if (summary) summary.textContent = "The chart library did not load.";
      return;
    }
    init(canvas);
  });
})();
