// Draws the insight and grid charts from the JSON embedded in the page; explains a clicked quarter.
(function () {
  "use strict";
  function data(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }
  var config = { responsive: true, displaylogo: false };
  var c = data("chart-data");
  if (c && c.prices.length && document.getElementById("prices-chart")) {
    var x = c.prices.map(function (p) { return p.x; });
    var at = c.prices.map(function (p) { return p.at; });
    function part(status) {
      return c.prices.map(function (p) { return p.status === status ? p.y : null; });
    }
    var traces = [
      { x: x, y: part("fixed"), customdata: at, name: c.labels.fixed, mode: "lines", line: { shape: "hv", dash: "solid", color: "#16324f" } },
      { x: x, y: part("forecast"), customdata: at, name: c.labels.forecast, mode: "lines", line: { shape: "hv", dash: "dash", color: "#d9822b" } }
    ];
    var chart = document.getElementById("prices-chart");
    Plotly.newPlot(chart, traces, { margin: { t: 10 }, yaxis: { title: { text: "EUR/kWh" } }, hovermode: "x" }, config);
    chart.on("plotly_click", function (ev) {
      var when = ev.points[0].customdata;
      var url = "/api/v1/prices/explain?plan=" + encodeURIComponent(c.plan) + "&at=" + encodeURIComponent(when) + "&lang=" + c.lang;
      fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (rows) {
        var out = document.getElementById("explanation");
        out.textContent = "";
        var head = document.createElement("h3");
        head.textContent = ev.points[0].x;
        out.appendChild(head);
        (Array.isArray(rows) ? rows : []).forEach(function (row) {
          var p = document.createElement("p");
          p.textContent = row.sentence;
          out.appendChild(p);
        });
      });
    });
  }
  if (c && c.usage.x.length && document.getElementById("usage-chart")) {
    Plotly.newPlot("usage-chart", [
      { x: c.usage.x, y: c.usage.import, name: c.labels.import, type: "bar", marker: { color: "#16324f" } },
      { x: c.usage.x, y: c.usage.export, name: c.labels.export, type: "bar", marker: { color: "#4caf50" } }
    ], { margin: { t: 10 }, barmode: "group", yaxis: { title: { text: "kWh" } } }, config);
  }
  var g = data("grid-data");
  if (g && g.x.length && document.getElementById("grid-chart")) {
    Plotly.newPlot("grid-chart", [
      { x: g.x, y: g.import, name: g.labels.import, mode: "lines", line: { color: "#16324f" } },
      { x: g.x, y: g.export, name: g.labels.export, mode: "lines", line: { color: "#4caf50" } }
    ], { margin: { t: 10 }, yaxis: { title: { text: "kWh" } } }, config);
  }
})();
// The performance page: the participant's average price per kWh against the community's, per month.
(function () {
  "use strict";
  var el = document.getElementById("performance-data");
  var p = el ? JSON.parse(el.textContent) : null;
  if (p && p.x.length && document.getElementById("performance-chart")) {
    Plotly.newPlot("performance-chart", [
      { x: p.x, y: p.mine, name: p.labels.you, mode: "lines+markers", line: { color: "#16324f" } },
      { x: p.x, y: p.community, name: p.labels.community_avg, mode: "lines+markers", line: { color: "#d9822b", dash: "dash" } }
    ], { margin: { t: 10 }, xaxis: { type: "category" }, yaxis: { title: { text: "EUR/kWh" } } }, { responsive: true, displaylogo: false });
  }
})();
