// The dashboard's only script: draws the charts with uPlot, asks before a revocation, copies a new key.
/* global document, window, navigator, ResizeObserver, uPlot */
'use strict';

(function startDashboard() {
  // Colours told apart by most colour-blind readers (Okabe–Ito), "other" in grey.
  var PALETTE = ['#0072b2', '#e69f00', '#009e73', '#cc79a7', '#56b4e9', '#d55e00'];
  var OTHER = '#8a8a8a';

  function dollars(value) {
    if (value === null || value === undefined) return '—';
    if (value === 0) return '$0';
    return '$' + (Math.abs(value) >= 0.01 ? value.toFixed(2) : value.toPrecision(2));
  }

  // An axis's labels at the fewest decimals (cents at least) at which they all differ: $0.025 never reads $0.03.
  function moneyTicks(splits) {
    for (var decimals = 2; ; decimals++) {
      var labels = splits.map(function (value) {
        return (value < 0 ? '-$' : '$') + Math.abs(value).toFixed(decimals);
      });
      var distinct = labels.filter(function (label, i) {
        return labels.indexOf(label) === i;
      });
      if (distinct.length === labels.length || decimals === 9) return labels;
    }
  }

  function drawChart(box) {
    var source = document.getElementById(box.getAttribute('data-chart'));
    if (!source || typeof uPlot === 'undefined') return;
    var chart = JSON.parse(source.textContent);
    var data = [chart.x].concat(
      chart.series.map(function (series) {
        return series.values;
      }),
    );
    var series = [{ label: 'Time (UTC)' }].concat(
      chart.series.map(function (series, i) {
        var colour = series.label === 'other' ? OTHER : PALETTE[i % PALETTE.length];
        // One series is filled; filled areas over each other would hide the lines behind.
        return {
          label: series.label,
          stroke: colour,
          fill: chart.series.length === 1 ? colour + '22' : undefined,
          width: 2,
          points: { show: chart.x.length <= 60 },
          value: function (_u, v) {
            return dollars(v);
          },
        };
      }),
    );
    var height = window.matchMedia('(max-width: 600px)').matches ? 220 : 280;
    var plot = new uPlot(
      {
        width: Math.max(240, box.clientWidth),
        height: height,
        series: series,
        // Periods are cut in UTC; the axis says the same times the tables do.
        tzDate: function (ts) {
          return uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC');
        },
        // The whole range asked, to the end of its last bucket: the last day is on the axis, not its edge.
        scales: {
          x: {
            time: true,
            range: function () {
              return [chart.x[0], chart.end];
            },
          },
        },
        axes: [
          {},
          {
            values: function (_u, splits) {
              var labels = moneyTicks(splits);
              // What the axis reads, on the page for whoever checks it (the canvas holds only pixels).
              box.setAttribute('data-y-ticks', labels.join(' '));
              return labels;
            },
            size: 80,
          },
        ],
        legend: { live: true },
        hooks: {
          draw: [
            function (u) {
              box.setAttribute('data-x-range', u.scales.x.min + ' ' + u.scales.x.max);
              box.setAttribute('data-drawn', 'true');
            },
          ],
        },
      },
      data,
      box,
    );
    new ResizeObserver(function () {
      plot.setSize({ width: Math.max(240, box.clientWidth), height: height });
    }).observe(box);
  }

  function askBeforeSubmit(form) {
    form.addEventListener('submit', function (event) {
      if (!window.confirm(form.getAttribute('data-confirm'))) event.preventDefault();
    });
  }

  function copyOnClick(button) {
    button.addEventListener('click', function () {
      var target = document.getElementById(button.getAttribute('data-copy'));
      if (!target || !navigator.clipboard) return;
      navigator.clipboard.writeText(target.textContent).then(function () {
        button.textContent = 'Copied';
      });
    });
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll('[data-chart]'), drawChart);
    Array.prototype.forEach.call(document.querySelectorAll('form[data-confirm]'), askBeforeSubmit);
    Array.prototype.forEach.call(document.querySelectorAll('button[data-copy]'), copyOnClick);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
